import { describe, expect, it, beforeEach } from "vitest";
import { render, screen } from "@testing-library/svelte";
import StatusBar from "./StatusBar.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { RouterStatus } from "../ipc";

const base: RouterStatus = {
  url: "http://127.0.0.1:7700",
  state: "connected",
  version: "0.1.0",
  uptime_seconds: 5,
  last_error: null,
  attempt: 0,
  next_retry_ms: null,
  presence: false,
};

describe("StatusBar", () => {
  beforeEach(() => setLanguage("en"));

  const cases: [RouterStatus["state"], string, string][] = [
    ["connecting", "Connecting…", "正在连接…"],
    ["connected", "Connected", "已连接"],
    ["reconnecting", "Reconnecting…", "正在重新连接…"],
    ["unreachable", "Unreachable", "无法连接"],
    ["sign_in_required", "Sign-in required", "需要登录"],
  ];
  for (const [state, en, zh] of cases) {
    it(`shows ${state} in both languages`, () => {
      const { unmount } = render(StatusBar, { status: { ...base, state } });
      const el = screen.getByTestId("router-state");
      expect(el.dataset.state).toBe(state);
      expect(el.textContent).toBe(en);
      unmount();
      setLanguage("zh-CN");
      render(StatusBar, { status: { ...base, state } });
      expect(screen.getByTestId("router-state").textContent).toBe(zh);
    });
  }

  it("shows url and version when connected", () => {
    render(StatusBar, { status: base });
    expect(screen.getByTestId("router-url").textContent).toBe("http://127.0.0.1:7700");
    expect(screen.getByTestId("router-version").textContent).toBe("v0.1.0");
  });

  it("shows the retry countdown and the error while reconnecting", () => {
    render(StatusBar, {
      status: { ...base, state: "reconnecting", attempt: 3, next_retry_ms: 1900, last_error: "the router closed the event stream", version: null },
    });
    expect(screen.getByTestId("router-retry").textContent).toContain("attempt 3, next try in 2 s");
    expect(screen.getByTestId("router-error").textContent).toBe("the router closed the event stream");
    expect(screen.queryByTestId("router-version")).toBeNull();
  });

  it("shows connecting before the first status arrives", () => {
    render(StatusBar, { status: null });
    expect(screen.getByTestId("router-state").dataset.state).toBe("connecting");
  });

  it("shows the phone's registration, and why it fails in the person's language", async () => {
    const phone = {
      agent: "AdeleV@contoso.example",
      registration: { state: "registered" as const, aor: "sip:agent-x@contoso.example" },
      call: null,
      wrap_up: null,
      problem: null,
      volume: 100,
      consult: null,
      source: "router" as const,
      device: null,
    };
    const { unmount } = render(StatusBar, { status: base, phone });
    const reg = screen.getByTestId("phone-registration");
    expect(reg.dataset.state).toBe("registered");
    expect(reg.textContent).toBe("Phone: registered");
    unmount();
    const failing = { ...phone, registration: { state: "failing" as const, code: "registrar_unreachable", reason: "no answer" } };
    render(StatusBar, { status: base, phone: failing });
    expect(screen.getByTestId("phone-registration").textContent).toContain("does not answer the phone");
    expect(screen.getByTestId("phone-registration").title).toBe("no answer");
    setLanguage("zh-CN");
    await Promise.resolve();
    expect(screen.getByTestId("phone-registration").textContent).toContain("电话：未注册");
  });
});
