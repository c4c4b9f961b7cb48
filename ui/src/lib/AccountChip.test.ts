import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import AccountChip from "./AccountChip.svelte";
import { setLanguage, t } from "../i18n/index.svelte";
import type { AccountInfo, PresenceInfo } from "../ipc";
import type { AccountApi } from "./account";

const adele: AccountInfo = {
  id: "oid.tid",
  username: "AdeleV@contoso.example",
  name: "Adele Vance",
  oid: "oid",
  tid: "tid",
  key_storage: "keychain",
  key_warning: null,
  reads_skills: true,
};

const presence = (availability: string, activity = availability): PresenceInfo => ({
  id: "oid",
  availability,
  activity,
  status_message: null,
  transferable: availability === "Available",
});

function fakeApi(over: Partial<AccountApi> = {}): AccountApi {
  return {
    getAccount: vi.fn(async () => null),
    signIn: vi.fn(async () => adele),
    startDeviceCode: vi.fn(async () => ({ user_code: "ABCD-EFGH", verification_uri: "https://microsoft.com/devicelogin", message: null, expires_in_seconds: 900 })),
    finishDeviceCode: vi.fn(async () => adele),
    cancelSignIn: vi.fn(async () => {}),
    signOut: vi.fn(async () => {}),
    getMyPresence: vi.fn(async () => presence("Available")),
    setMyPresence: vi.fn(async (a: string | null) => presence(a ?? "Available")),
    setStatusMessage: vi.fn(async () => {}),
    searchDirectory: vi.fn(async () => []),
    getPresences: vi.fn(async () => []),
    setFavourite: vi.fn(async () => {}),
    onPresence: vi.fn(async () => () => {}),
    getPhotos: vi.fn(async () => []),
    ...over,
  };
}

describe("the account chip", () => {
  beforeEach(() => setLanguage("en"));

  it("signs in through the browser and shows the person with their presence", async () => {
    const api = fakeApi();
    const onchange = vi.fn();
    render(AccountChip, { api, onchange });
    await fireEvent.click(await screen.findByTestId("sign-in"));
    await fireEvent.click(screen.getByTestId("sign-in-browser"));
    expect((await screen.findByTestId("account-name")).textContent).toContain("Adele Vance");
    await vi.waitFor(() => expect(screen.getByTestId("my-presence").dataset.availability).toBe("Available"));
    expect(onchange).toHaveBeenLastCalledWith(adele);
  });

  it("shows the device code and signs in when it is entered elsewhere", async () => {
    let finish: (a: AccountInfo) => void = () => {};
    const api = fakeApi({ finishDeviceCode: vi.fn(() => new Promise<AccountInfo>((r) => (finish = r))) });
    render(AccountChip, { api });
    await fireEvent.click(await screen.findByTestId("sign-in"));
    await fireEvent.click(screen.getByTestId("sign-in-code"));
    expect((await screen.findByTestId("device-code")).textContent).toContain("ABCD-EFGH");
    finish(adele);
    expect(await screen.findByTestId("account-chip")).toBeTruthy();
    expect(screen.queryByTestId("sign-in-dialog")).toBeNull();
  });

  it("says why a sign-in failed, in the person's language", async () => {
    setLanguage("zh-CN");
    const api = fakeApi({ signIn: vi.fn(async () => Promise.reject({ code: "ask_admin", message: "AADSTS700016" })) });
    render(AccountChip, { api });
    await fireEvent.click(await screen.findByTestId("sign-in"));
    await fireEvent.click(screen.getByTestId("sign-in-browser"));
    expect((await screen.findByTestId("account-error")).textContent).toContain(t("error.ask_admin"));
    expect(screen.getByTestId("sign-in-browser")).toBeTruthy();
  });

  it("says that no tenant is configured, in both languages (#13 item 24)", async () => {
    for (const lang of ["en", "zh-CN"] as const) {
      setLanguage(lang);
      const api = fakeApi({
        getAccount: vi.fn(async () => Promise.reject({ code: "no_tenant", message: "no Microsoft 365 tenant is configured" })),
      });
      const { unmount } = render(AccountChip, { api });
      const error = await screen.findByTestId("account-error");
      expect(error.textContent).toContain(t("error.no_tenant"));
      expect(t("error.no_tenant")).toContain("tenant.toml");
      unmount();
    }
  });

  it("changes the status, warns about a file key, and signs out", async () => {
    const api = fakeApi({ getAccount: vi.fn(async () => ({ ...adele, key_storage: "file" })) });
    const onchange = vi.fn();
    render(AccountChip, { api, onchange });
    await fireEvent.click(await screen.findByTestId("account-chip"));
    expect(screen.getByTestId("key-warning")).toBeTruthy();
    await fireEvent.change(screen.getByTestId("presence-select"), { target: { value: "DoNotDisturb" } });
    expect(api.setMyPresence).toHaveBeenCalledWith("DoNotDisturb");
    await vi.waitFor(() => expect(screen.getByTestId("my-presence").dataset.availability).toBe("DoNotDisturb"));
    await fireEvent.change(screen.getByTestId("presence-select"), { target: { value: "reset" } });
    expect(api.setMyPresence).toHaveBeenLastCalledWith(null);
    await fireEvent.click(screen.getByTestId("sign-out"));
    expect(await screen.findByTestId("sign-in")).toBeTruthy();
    expect(onchange).toHaveBeenLastCalledWith(null);
  });

  it("offers to sign in again when Microsoft wants the person back", async () => {
    // Graph's claims challenge after the session was revoked: the shell reports sign_in_again.
    const api = fakeApi({
      getAccount: vi.fn(async () => adele),
      getMyPresence: vi.fn(async () => Promise.reject({ code: "sign_in_again", message: "claims challenge" })),
    });
    render(AccountChip, { api });
    expect((await screen.findByTestId("account-error")).textContent).toContain(t("error.sign_in_again"));
    await fireEvent.click(screen.getByTestId("sign-in-again"));
    await fireEvent.click(screen.getByTestId("sign-in-browser"));
    expect(api.signIn).toHaveBeenCalled();
    expect(await screen.findByTestId("account-name")).toBeTruthy();
  });

  it("shows an availability it does not know as unknown", async () => {
    const api = fakeApi({ getAccount: vi.fn(async () => adele), getMyPresence: vi.fn(async () => presence("Sleepy")) });
    render(AccountChip, { api });
    await vi.waitFor(() => expect(screen.getByTestId("my-presence").dataset.availability).toBe("Unknown"));
  });
});
