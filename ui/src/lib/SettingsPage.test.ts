import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import SettingsPage from "./SettingsPage.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { Settings } from "../ipc";

const audio = { input_device: null, output_device: null, ringing_device: null, output_volume: 100, ring_volume: 100 };
const settings: Settings = { router_url: "http://127.0.0.1:7700", language: "en", audio };

describe("SettingsPage", () => {
  beforeEach(() => setLanguage("en"));

  it("refuses an ftp address without saving", async () => {
    const save = vi.fn();
    render(SettingsPage, { settings, save });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: "ftp://x" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(screen.getByTestId("settings-url-error").textContent).toContain("Only http:// and https://");
    expect(save).not.toHaveBeenCalled();
  });

  it("refuses an empty address", async () => {
    const save = vi.fn();
    render(SettingsPage, { settings, save });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: "" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(screen.getByTestId("settings-url-error").textContent).toBe("Enter the routing service address.");
    expect(save).not.toHaveBeenCalled();
  });

  it("saves the trimmed address and the chosen language", async () => {
    const save = vi.fn(async (s: Settings) => s);
    render(SettingsPage, { settings, save });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: " https://router.contoso.com " } });
    await fireEvent.change(screen.getByTestId("settings-language"), { target: { value: "zh-CN" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(screen.getByTestId("settings-saved")).toBeTruthy());
    expect(save).toHaveBeenCalledWith({ router_url: "https://router.contoso.com", language: "zh-CN", audio });
  });

  it("shows the shell's refusal in the person's language", async () => {
    setLanguage("zh-CN");
    const save = vi.fn(async () => {
      throw { code: "settings_unwritable", message: "cannot save the settings to /x: EACCES" };
    });
    render(SettingsPage, { settings, save });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(screen.getByTestId("settings-save-error").textContent).toContain("无法保存设置"));
  });
});
