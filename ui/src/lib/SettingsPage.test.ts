import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import SettingsPage from "./SettingsPage.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { IpcError, LinkHandler, PhoneSettings, PhoneSettingsView, PhoneView, Settings } from "../ipc";
import { registrarProblem, sipAccountProblems } from "./sipAccount";

const audio = { input_device: null, output_device: null, ringing_device: null, output_volume: 100, ring_volume: 100 };
const routerPhone: PhoneSettings = { source: "router", sip_account: null };
const settings: Settings = { router_url: "http://127.0.0.1:7700", language: "en", audio, phone: routerPhone, close_to_tray: true };

const view = (phone: PhoneSettings, password_saved = false): PhoneSettingsView => ({
  phone,
  password_saved,
  password_place: "the encrypted file /home/a/.local/share/switchboard/sip-password.bin (its key in the system keychain)",
  keychain_problem: null,
});

/** A stand-in shell for Settings → Phone: answers `get` with `initial` and echoes what is saved. */
function phoneApi(initial: PhoneSettingsView) {
  return {
    get: vi.fn(async () => initial),
    save: vi.fn(async (phone: PhoneSettings, password: string | null) => view(phone, password !== null || initial.password_saved)),
    forget: vi.fn(async () => view({ ...initial.phone, source: "router" }, false)),
  };
}

const idlePhone = (registration: PhoneView["registration"]): PhoneView => ({
  agent: null,
  registration,
  call: null,
  wrap_up: null,
  problem: null,
  volume: 100,
  consult: null,
  source: "sip_account",
  device: null,
});

describe("SettingsPage", () => {
  beforeEach(() => setLanguage("en"));

  it("refuses an ftp address without saving", async () => {
    const save = vi.fn();
    render(SettingsPage, { settings, save, phoneApi: phoneApi(view(routerPhone)) });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: "ftp://x" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(screen.getByTestId("settings-url-error").textContent).toContain("Only http:// and https://");
    expect(save).not.toHaveBeenCalled();
  });

  it("refuses an empty address", async () => {
    const save = vi.fn();
    render(SettingsPage, { settings, save, phoneApi: phoneApi(view(routerPhone)) });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: "" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(screen.getByTestId("settings-url-error").textContent).toBe("Enter the routing service address.");
    expect(save).not.toHaveBeenCalled();
  });

  it("saves the trimmed address and the chosen language", async () => {
    const save = vi.fn(async (s: Settings) => s);
    render(SettingsPage, { settings, save, phoneApi: phoneApi(view(routerPhone)) });
    await fireEvent.input(screen.getByTestId("settings-router-url"), { target: { value: " https://router.contoso.com " } });
    await fireEvent.change(screen.getByTestId("settings-language"), { target: { value: "zh-CN" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(screen.getByTestId("settings-saved")).toBeTruthy());
    expect(save).toHaveBeenCalledWith({ router_url: "https://router.contoso.com", language: "zh-CN", audio, phone: routerPhone, close_to_tray: true });
  });

  it("saves closing to the tray turned off", async () => {
    const save = vi.fn(async (s: Settings) => s);
    render(SettingsPage, { settings, save, phoneApi: phoneApi(view(routerPhone)) });
    const box = screen.getByTestId("settings-close-to-tray") as HTMLInputElement;
    expect(box.checked).toBe(true);
    await fireEvent.click(box);
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(screen.getByTestId("settings-saved")).toBeTruthy());
    expect(save).toHaveBeenCalledWith({ ...settings, close_to_tray: false });
  });

  it("shows the shell's refusal in the person's language", async () => {
    setLanguage("zh-CN");
    const save = vi.fn(async () => {
      throw { code: "settings_unwritable", message: "cannot save the settings to /x: EACCES" };
    });
    render(SettingsPage, { settings, save, phoneApi: phoneApi(view(routerPhone)) });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(screen.getByTestId("settings-save-error").textContent).toContain("无法保存设置"));
  });

  describe("Phone", () => {
    const account = { registrar: "sip:sip.example.com", user: "alice", auth_user: null, display_name: null, transport: "udp" as const };

    it("checks the registrar as the library does", () => {
      expect(registrarProblem("", "udp")).toBe("error.sip_registrar_empty");
      expect(registrarProblem("sip.example.com", "udp")).toBe("error.sip_registrar_scheme");
      expect(registrarProblem("sips:sip.example.com", "udp")).toBe("error.sip_registrar_tls");
      expect(registrarProblem("sip:alice@sip.example.com", "udp")).toBe("error.sip_registrar_host");
      expect(registrarProblem("sip:sip.example.com:0", "udp")).toBe("error.sip_registrar_port");
      expect(registrarProblem("sip:sip.example.com:70000", "udp")).toBe("error.sip_registrar_port");
      expect(registrarProblem("sip:[::1", "udp")).toBe("error.sip_registrar_host");
      expect(registrarProblem(" sip:sip.example.com ", "udp")).toBeNull();
      expect(registrarProblem("sips:sip.example.com:5061", "tls")).toBeNull();
      expect(registrarProblem("sip:sip.example.com;transport=tcp", "udp")).toBe("error.sip_registrar_transport");
      expect(registrarProblem("sip:sip.example.com:5061;transport=TLS", "tcp")).toBe("error.sip_registrar_transport");
      expect(registrarProblem("sip:sip.example.com;transport=ws", "udp")).toBe("error.sip_registrar_transport");
      expect(registrarProblem("sip:sip.example.com;lr;Transport=TCP", "tcp")).toBeNull();
      expect(registrarProblem("sip:sip.example.com;transport=udp", "udp")).toBeNull();
      expect(registrarProblem("sip:[::1]:5070", "tcp")).toBeNull();
      expect(sipAccountProblems({ ...account, user: "alice smith" }, "pw", false).user).toBe("error.sip_user_invalid");
      expect(sipAccountProblems({ ...account, display_name: 'A "B"' }, "pw", false).display_name).toBe("error.sip_name_invalid");
      expect(sipAccountProblems(account, "", false).password).toBe("error.sip_password_needed");
      expect(sipAccountProblems(account, "", true)).toEqual({});
      expect(sipAccountProblems(account, "a\nb", true).password).toBe("error.sip_password_invalid");
    });

    it("refuses a bad account with its reasons, in Chinese too, and saves nothing", async () => {
      setLanguage("zh-CN");
      const api = phoneApi(view(routerPhone));
      render(SettingsPage, { settings, save: vi.fn(), phoneApi: api });
      await vi.waitFor(() => expect(api.get).toHaveBeenCalled());
      await fireEvent.click(screen.getByTestId("phone-source-sip"));
      await fireEvent.input(screen.getByTestId("sip-registrar"), { target: { value: "sip.example.com" } });
      await fireEvent.click(screen.getByTestId("phone-save"));
      expect(screen.getByTestId("sip-registrar-error").textContent).toContain("sip: 或 sips:");
      expect(screen.getByTestId("sip-user-error").textContent).toContain("SIP 用户名");
      expect(screen.getByTestId("sip-password-error").textContent).toContain("密码");
      expect(api.save).not.toHaveBeenCalled();
    });

    it("saves the account and the password with the right payload, and never shows the password again", async () => {
      const api = phoneApi(view(routerPhone));
      render(SettingsPage, { settings, save: vi.fn(), phoneApi: api });
      await vi.waitFor(() => expect(api.get).toHaveBeenCalled());
      await fireEvent.click(screen.getByTestId("phone-source-sip"));
      await fireEvent.input(screen.getByTestId("sip-registrar"), { target: { value: " sips:pbx.example.com:5061 " } });
      await fireEvent.change(screen.getByTestId("sip-transport"), { target: { value: "tls" } });
      await fireEvent.input(screen.getByTestId("sip-user"), { target: { value: " 1001 " } });
      await fireEvent.input(screen.getByTestId("sip-auth-user"), { target: { value: "  " } });
      await fireEvent.input(screen.getByTestId("sip-display-name"), { target: { value: "Alice Liddell" } });
      await fireEvent.input(screen.getByTestId("sip-password"), { target: { value: "s3cret pass" } });
      await fireEvent.click(screen.getByTestId("phone-save"));
      await vi.waitFor(() => expect(screen.getByTestId("phone-saved")).toBeTruthy());
      expect(api.save).toHaveBeenCalledWith(
        {
          source: "sip_account",
          sip_account: { registrar: "sips:pbx.example.com:5061", user: "1001", auth_user: null, display_name: "Alice Liddell", transport: "tls" },
        },
        "s3cret pass",
      );
      // The field is emptied; the page says a password is kept, and nowhere shows it.
      expect((screen.getByTestId("sip-password") as HTMLInputElement).value).toBe("");
      expect(screen.getByTestId("sip-password-kept")).toBeTruthy();
      expect(document.body.innerHTML).not.toContain("s3cret");
    });

    it("keeps the kept password when the field is left empty, and switches back to the router keeping the account", async () => {
      const sip: PhoneSettings = { source: "sip_account", sip_account: { ...account, registrar: "sip:sip.example.com:5060" } };
      const api = phoneApi(view(sip, true));
      render(SettingsPage, { settings: { ...settings, phone: sip }, save: vi.fn(), phoneApi: api });
      await vi.waitFor(() => expect((screen.getByTestId("sip-user") as HTMLInputElement).value).toBe("alice"));
      expect((screen.getByTestId("sip-password") as HTMLInputElement).value).toBe("");
      await fireEvent.input(screen.getByTestId("sip-display-name"), { target: { value: "Alice" } });
      await fireEvent.click(screen.getByTestId("phone-save"));
      await vi.waitFor(() => expect(api.save).toHaveBeenCalledTimes(1));
      expect(api.save).toHaveBeenLastCalledWith(
        { source: "sip_account", sip_account: { ...account, registrar: "sip:sip.example.com:5060", display_name: "Alice" } },
        null,
      );
      await fireEvent.click(screen.getByTestId("phone-source-router"));
      expect(screen.queryByTestId("sip-registrar")).toBeNull();
      await fireEvent.click(screen.getByTestId("phone-save"));
      await vi.waitFor(() => expect(api.save).toHaveBeenCalledTimes(2));
      expect(api.save).toHaveBeenLastCalledWith(
        { source: "router", sip_account: { ...account, registrar: "sip:sip.example.com:5060", display_name: "Alice" } },
        null,
      );
    });

    it("forgets the kept password: the phone back on the router's account, the account kept, in Chinese too", async () => {
      const sip: PhoneSettings = { source: "sip_account", sip_account: { ...account, registrar: "sip:sip.example.com:5060" } };
      const api = phoneApi(view(sip, true));
      render(SettingsPage, { settings: { ...settings, phone: sip }, save: vi.fn(), phoneApi: api });
      await vi.waitFor(() => expect(screen.getByTestId("sip-password-forget")).toBeTruthy());
      await fireEvent.click(screen.getByTestId("sip-password-forget"));
      await vi.waitFor(() => expect(screen.getByTestId("sip-password-forgotten").textContent).toContain("The password is forgotten"));
      expect(api.forget).toHaveBeenCalledTimes(1);
      expect(api.save).not.toHaveBeenCalled();
      expect((screen.getByTestId("phone-source-router") as HTMLInputElement).checked).toBe(true);
      expect(screen.queryByTestId("sip-password-forget")).toBeNull();
      // Back to the account: its fields are there, the password must be entered again.
      await fireEvent.click(screen.getByTestId("phone-source-sip"));
      expect((screen.getByTestId("sip-user") as HTMLInputElement).value).toBe("alice");
      expect(screen.queryByTestId("sip-password-kept")).toBeNull();
      expect(screen.queryByTestId("sip-password-forgotten")).toBeNull();
      setLanguage("zh-CN");
      await fireEvent.click(screen.getByTestId("phone-save"));
      await vi.waitFor(() => expect(screen.getByTestId("sip-password-error")).toBeTruthy());
      expect(api.save).not.toHaveBeenCalled();
    });

    it("shows the registration, and the shell's refusal, in the person's language", async () => {
      const api = phoneApi(view(routerPhone));
      api.save.mockRejectedValueOnce({ code: "invalid_sip_registrar", message: "the SIP account's registrar is not valid" });
      const refused = idlePhone({
        state: "failing",
        code: "sip_account_refused",
        reason: "SIP registration refused by sip:sip.example.com:5060: 403 Forbidden — check the user name, authentication user and password in Settings → Phone",
      });
      render(SettingsPage, { settings, save: vi.fn(), phoneApi: api, phone: refused });
      const status = screen.getByTestId("phone-settings-status");
      expect(status.dataset.state).toBe("failing");
      expect(status.textContent).toContain("refused the registration");
      await vi.waitFor(() => expect(api.get).toHaveBeenCalled());
      await fireEvent.click(screen.getByTestId("phone-source-sip"));
      await fireEvent.input(screen.getByTestId("sip-registrar"), { target: { value: "sip:sip.example.com" } });
      await fireEvent.input(screen.getByTestId("sip-user"), { target: { value: "alice" } });
      await fireEvent.input(screen.getByTestId("sip-password"), { target: { value: "pw" } });
      await fireEvent.click(screen.getByTestId("phone-save"));
      await vi.waitFor(() => expect(screen.getByTestId("phone-save-error").textContent).toContain("registrar is not valid"));
    });

    it("shows a registered plain account's address", () => {
      render(SettingsPage, {
        settings,
        save: vi.fn(),
        phoneApi: phoneApi(view(routerPhone)),
        phone: idlePhone({ state: "registered", aor: "sip:alice@sip.example.com" }),
      });
      expect(screen.getByTestId("phone-settings-status").textContent).toBe("Registration: registered as sip:alice@sip.example.com");
    });
  });

  describe("Links", () => {
    const all = ["tel", "sip", "sips"];
    /** A stand-in shell for Settings → Links: starts at `schemes`, follows what is set. */
    function linksApi(schemes: string[], can_change = true, refusal: IpcError | null = null) {
      let now: LinkHandler = { can_change, schemes };
      return {
        get: vi.fn(async () => now),
        set: vi.fn(async (on: boolean) => {
          if (refusal) throw refusal;
          now = { can_change, schemes: on ? all : [] };
          return now;
        }),
      };
    }
    const page = (api: ReturnType<typeof linksApi>) =>
      render(SettingsPage, { settings, save: vi.fn(), phoneApi: phoneApi(view(routerPhone)), linksApi: api });

    it("says another app opens links, makes Switchboard the one when asked, then stops", async () => {
      const api = linksApi(["tel"]);
      page(api);
      // One scheme of three is not "Switchboard opens them".
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-status").dataset.state).toBe("other"));
      expect(api.set).not.toHaveBeenCalled();
      await fireEvent.click(screen.getByTestId("link-handler-toggle"));
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-status").dataset.state).toBe("ours"));
      expect(api.set).toHaveBeenLastCalledWith(true);
      expect(screen.getByTestId("link-handler-status").textContent).toContain("Switchboard opens tel: and sip: links");
      expect(screen.getByTestId("link-handler-toggle").textContent).toContain("Stop opening");
      await fireEvent.click(screen.getByTestId("link-handler-toggle"));
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-status").dataset.state).toBe("other"));
      expect(api.set).toHaveBeenLastCalledWith(false);
    });

    it("offers no button where the system's settings choose the app", async () => {
      page(linksApi([], false));
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-status").dataset.state).toBe("system"));
      expect(screen.queryByTestId("link-handler-toggle")).toBeNull();
    });

    it("says why the change failed, in English and in Chinese", async () => {
      const refusal = { code: "link_handler_failed", message: "xdg-mime: not found" };
      page(linksApi([], true, refusal));
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-toggle")).toBeTruthy());
      await fireEvent.click(screen.getByTestId("link-handler-toggle"));
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-error").textContent).toContain("needs xdg-utils"));
      expect(screen.getByTestId("link-handler-status").dataset.state).toBe("other");
      setLanguage("zh-CN");
      await vi.waitFor(() => expect(screen.getByTestId("link-handler-error").textContent).toContain("xdg-utils"));
      expect(screen.getByTestId("link-handler-error").textContent).toContain("无法更改");
      expect(screen.getByTestId("link-handler-toggle").textContent).toContain("用 Switchboard 打开");
    });
  });
});
