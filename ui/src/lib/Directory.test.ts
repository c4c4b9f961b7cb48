import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import Directory from "./Directory.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { DirectoryQuery, Person, PresenceInfo } from "../ipc";
import type { AccountApi } from "./account";

const presence = (id: string, availability: string, transferable: boolean): PresenceInfo => ({
  id,
  availability,
  activity: availability,
  status_message: null,
  transferable,
});

const person = (id: string, name: string, p: PresenceInfo, favourite = false): Person => ({
  id,
  display_name: name,
  username: `${id}@contoso.example`,
  department: "Billing",
  job_title: "Expert",
  skills: ["billing", "german"],
  phones: [],
  favourite,
  presence: p,
});

function fakeApi(people: Person[], over: Partial<AccountApi> = {}): AccountApi {
  return {
    getAccount: vi.fn(async () => null),
    signIn: vi.fn(),
    startDeviceCode: vi.fn(),
    finishDeviceCode: vi.fn(),
    cancelSignIn: vi.fn(),
    signOut: vi.fn(),
    getMyPresence: vi.fn(),
    setMyPresence: vi.fn(),
    setStatusMessage: vi.fn(),
    searchDirectory: vi.fn(async (_q: DirectoryQuery) => people),
    getPresences: vi.fn(async () => []),
    setFavourite: vi.fn(async () => {}),
    onPresence: vi.fn(async () => () => {}),
    getPhotos: vi.fn(async (ids: string[]) => ids.map((id) => ({ id, data_url: null }))),
    ...over,
  } as AccountApi;
}

describe("the directory", () => {
  beforeEach(() => setLanguage("en"));

  it("calls a colleague by name, or one of their numbers, from their row", async () => {
    const megan = { ...person("MeganB", "Megan Bowen", presence("MeganB", "Available", true)), phones: ["+1 425 555 0109"] };
    const oncall = vi.fn();
    render(Directory, { api: fakeApi([megan]), signedIn: true, oncall });
    await fireEvent.click(await screen.findByTestId("person-call"));
    expect(oncall).toHaveBeenLastCalledWith("MeganB@contoso.example");
    const number = screen.getByTestId("person-call-number");
    expect(number.textContent).toBe("+1 425 555 0109");
    await fireEvent.click(number);
    expect(oncall).toHaveBeenLastCalledWith("+1 425 555 0109");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("person-call").textContent).toBe("呼叫"));
  });

  it("offers no Call buttons where there is no phone to call with", async () => {
    render(Directory, { api: fakeApi([person("lynne", "Lynne Robbins", presence("lynne", "Available", true))]), signedIn: true });
    await screen.findAllByTestId("person");
    expect(screen.queryByTestId("person-call")).toBeNull();
  });

  it("asks to sign in first", () => {
    render(Directory, { api: fakeApi([]), signedIn: false });
    expect(screen.getByTestId("directory-signed-out")).toBeTruthy();
  });

  it("searches by name, department and skill and shows presence dots and skills", async () => {
    const api = fakeApi([person("lynne", "Lynne Robbins", presence("lynne", "Available", true))]);
    render(Directory, { api, signedIn: true });
    const [row] = await screen.findAllByTestId("person");
    expect(row?.dataset.name).toBe("Lynne Robbins");
    expect(row?.querySelector('[data-testid="presence-dot"]')?.getAttribute("data-availability")).toBe("Available");
    expect(row?.textContent).toContain("german");
    await fireEvent.input(screen.getByTestId("dir-skill"), { target: { value: "german" } });
    await fireEvent.input(screen.getByTestId("dir-department"), { target: { value: "Billing" } });
    await vi.waitFor(() =>
      expect(api.searchDirectory).toHaveBeenLastCalledWith({ text: null, department: "Billing", skill: "german", available_only: false, favourites_only: false }),
    );
  });

  it("turns the skill filter off, saying why, where the tenant reads no skills", async () => {
    const api = fakeApi([person("lynne", "Lynne Robbins", presence("lynne", "Available", true))]);
    render(Directory, { api, signedIn: true, readsSkills: false });
    await screen.findAllByTestId("person");
    expect((screen.getByTestId("dir-skill") as HTMLInputElement).disabled).toBe(true);
    expect(screen.getByTestId("dir-skills-off").textContent).toContain("User.Read.All");
    await fireEvent.input(screen.getByTestId("dir-department"), { target: { value: "Billing" } });
    await vi.waitFor(() =>
      expect(api.searchDirectory).toHaveBeenLastCalledWith({ text: null, department: "Billing", skill: null, available_only: false, favourites_only: false }),
    );
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("dir-skills-off").textContent).toContain("技能"));
  });

  it("refreshes dots, filters to who can take a transfer, and marks favourites", async () => {
    vi.useFakeTimers();
    try {
      const alex = person("a", "Alex Wilber", presence("a", "Available", true));
      const megan = person("m", "Megan Bowen", presence("m", "Available", true));
      const api = fakeApi([], {
        // Megan starts presenting after the first search; the shell filters on its side.
        searchDirectory: vi.fn(async (q: DirectoryQuery) => (q.available_only ? [alex] : [alex, megan])),
        getPresences: vi.fn(async () => [presence("m", "DoNotDisturb", false)]),
      });
      render(Directory, { api, signedIn: true });
      await vi.waitFor(() => expect(screen.getAllByTestId("person")).toHaveLength(2));
      await vi.advanceTimersByTimeAsync(6000);
      await vi.waitFor(() => {
        const megan = screen.getAllByTestId("person").find((r) => r.dataset.id === "m");
        expect(megan?.querySelector('[data-testid="presence-dot"]')?.getAttribute("data-availability")).toBe("DoNotDisturb");
      });
      await fireEvent.click(screen.getByTestId("dir-available"));
      await vi.waitFor(() => expect(screen.getAllByTestId("person").map((r) => r.dataset.id)).toEqual(["a"]));
      await fireEvent.click(screen.getByTestId("favourite"));
      expect(api.setFavourite).toHaveBeenCalledWith("a", true);
      await vi.waitFor(() => expect(screen.getByTestId("favourite").getAttribute("aria-pressed")).toBe("true"));
    } finally {
      vi.useRealTimers();
    }
  });

  it("changes a dot the moment the router pushes a change", async () => {
    let push: (p: PresenceInfo) => void = () => {};
    const off = vi.fn();
    const api = fakeApi([person("m", "Megan Bowen", presence("m", "Available", true))], {
      onPresence: vi.fn(async (h: (p: PresenceInfo) => void) => {
        push = h;
        return off;
      }),
    });
    const view = render(Directory, { api, signedIn: true });
    const dot = async () =>
      (await screen.findAllByTestId("person"))[0]?.querySelector('[data-testid="presence-dot"]')?.getAttribute("data-availability");
    expect(await dot()).toBe("Available");
    push(presence("someone-else", "Away", true));
    push({ ...presence("m", "Busy", true), activity: "InACall", status_message: "back at 3" });
    await vi.waitFor(async () => expect(await dot()).toBe("Busy"));
    expect(screen.getByTestId("person-state").textContent).toContain("back at 3");
    expect(api.getPresences).not.toHaveBeenCalled();
    view.unmount();
    expect(off).toHaveBeenCalled();
  });

  it("shows photos where there are, initials where not, and asks once per person", async () => {
    const api = fakeApi(
      [
        person("lynne", "Lynne Robbins", presence("lynne", "Available", true)),
        person("oscar", "Oscar Ward", presence("oscar", "Away", true)),
      ],
      {
        getPhotos: vi.fn(async (ids: string[]) =>
          ids.map((id) => ({ id, data_url: id === "lynne" ? "data:image/png;base64,iVBORw0KGgo=" : null })),
        ),
      },
    );
    render(Directory, { api, signedIn: true });
    await vi.waitFor(() => expect(screen.getAllByTestId("person-photo")).toHaveLength(1));
    expect(screen.getByTestId("person-photo").getAttribute("src")).toContain("data:image/png");
    expect(screen.getByTestId("person-initials").textContent).toBe("OW");
    expect(api.getPhotos).toHaveBeenCalledWith(["lynne", "oscar"]);
    await fireEvent.input(screen.getByTestId("dir-search"), { target: { value: "o" } });
    await vi.waitFor(() => expect(api.searchDirectory).toHaveBeenCalledTimes(2));
    expect(api.getPhotos).toHaveBeenCalledTimes(1);
  });

  it("says when nobody matches and shows errors", async () => {
    const api = fakeApi([], { searchDirectory: vi.fn(async () => []) });
    render(Directory, { api, signedIn: true });
    expect(await screen.findByTestId("directory-empty")).toBeTruthy();
    const failing = fakeApi([], { searchDirectory: vi.fn(async () => Promise.reject({ code: "sign_in_again", message: "x" })) });
    render(Directory, { api: failing, signedIn: true });
    expect((await screen.findByTestId("directory-error")).textContent).toContain("Sign in with Microsoft again");
  });
});
