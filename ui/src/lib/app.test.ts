import { describe, expect, it, vi, beforeEach } from "vitest";

// The IPC boundary is mocked: these tests check what the UI asks the shell to do.
vi.mock("../ipc", () => ({
  insideDesktopApp: () => true,
  onRouterStatus: vi.fn(async () => () => {}),
  getSettings: vi.fn(async () => ({ router_url: "http://127.0.0.1:7700", language: "zh-CN" })),
  getRouterStatus: vi.fn(async () => ({ url: "http://127.0.0.1:7700", state: "connected", version: "1", uptime_seconds: 1, last_error: null, attempt: 0, next_retry_ms: null })),
  saveSettings: vi.fn(async (s: unknown) => s),
}));

import * as ipc from "../ipc";
import { app, saveSettings, startApp, switchLanguage } from "./app.svelte";
import { language, setLanguage } from "../i18n/index.svelte";

describe("app state", () => {
  beforeEach(() => setLanguage("en"));

  it("loads settings and applies the remembered language", async () => {
    await startApp();
    expect(app.settings?.language).toBe("zh-CN");
    expect(language()).toBe("zh-CN");
    expect(app.status?.state).toBe("connected");
  });

  it("the language toggle applies at once and is saved", async () => {
    await startApp();
    await switchLanguage("en");
    expect(language()).toBe("en");
    expect(ipc.saveSettings).toHaveBeenCalledWith({ router_url: "http://127.0.0.1:7700", language: "en" });
  });

  it("the Settings page is made again after the language button, not after its own Save", async () => {
    await startApp();
    const epoch = app.settingsEpoch;
    await saveSettings({ ...app.settings!, language: "zh-CN" });
    expect(app.settingsEpoch).toBe(epoch);
    await switchLanguage("en");
    expect(app.settingsEpoch).toBe(epoch + 1);
  });
});
