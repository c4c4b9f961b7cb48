import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import WorkState from "./WorkState.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { WorkStateKind, WorkStateView } from "../ipc";
import type { WorkApi } from "./work";

const view = (over: Partial<WorkStateView> = {}): WorkStateView => ({
  state: "off_duty",
  reason: null,
  after: "off_duty",
  since_unix_ms: 0,
  wrap_up_seconds_left: null,
  teams: { availability: null, activity: null, synced: true, error: null, error_code: null },
  ...over,
});

function fakeApi(first: WorkStateView) {
  let push: (v: WorkStateView) => void = () => {};
  const api: WorkApi = {
    getWorkState: vi.fn(async () => first),
    setWorkState: vi.fn(async (state: WorkStateKind, reason: string | null) =>
      view({ state, after: state, reason, teams: { availability: null, activity: null, synced: false, error: null, error_code: null } }),
    ),
    onWorkState: vi.fn(async (h: (v: WorkStateView) => void) => {
      push = h;
      return () => {};
    }),
  };
  return { api, push: (v: WorkStateView) => push(v) };
}

describe("the contact-center state", () => {
  beforeEach(() => setLanguage("en"));

  it("chooses ready and a not-ready reason, and shows what Teams shows", async () => {
    const { api, push } = fakeApi(view());
    render(WorkState, { api });
    // The selector is made anew when the chosen state changes: look it up each time.
    const select = () => screen.getByTestId("work-state") as HTMLSelectElement;
    await screen.findByTestId("work-state");
    expect(select().value).toBe("off_duty");
    await fireEvent.change(select(), { target: { value: "ready" } });
    expect(api.setWorkState).toHaveBeenLastCalledWith("ready", null);
    await vi.waitFor(() => expect(select().value).toBe("ready"));
    await fireEvent.change(select(), { target: { value: "not_ready:lunch" } });
    expect(api.setWorkState).toHaveBeenLastCalledWith("not_ready", "lunch");
    push(view({ state: "not_ready", after: "not_ready", reason: "lunch", teams: { availability: "Away", activity: "Away", synced: true, error: null, error_code: null } }));
    await vi.waitFor(() => expect(screen.getByTestId("work-teams").textContent).toContain("Teams: Away"));
    expect(select().value).toBe("not_ready:lunch");
    expect(screen.getByTestId("work").dataset.state).toBe("not_ready");
  });

  it("shows the router's Not ready after a missed call, in English and Chinese", async () => {
    const { api, push } = fakeApi(view({ state: "not_ready", after: "not_ready", reason: "missed call" }));
    render(WorkState, { api });
    const select = () => screen.getByTestId("work-state") as HTMLSelectElement;
    await vi.waitFor(() => expect(select().value).toBe("not_ready:missed call"));
    expect(select().selectedOptions[0]!.textContent).toBe("Not ready — Missed call");
    // Ready again from the selector (a fresh one: WebKit would not say the same pick twice).
    await fireEvent.change(select(), { target: { value: "ready" } });
    expect(api.setWorkState).toHaveBeenLastCalledWith("ready", null);
    await vi.waitFor(() => expect(select().value).toBe("ready"));
    setLanguage("zh-CN");
    push(view({ state: "not_ready", after: "not_ready", reason: "missed call" }));
    await vi.waitFor(() => expect(select().selectedOptions[0]!.textContent).toContain("未接来电"));
  });

  it("counts wrap-up down, ends it with Done, and says when Teams could not be set", async () => {
    const { api, push } = fakeApi(view({ state: "wrap_up", after: "ready", wrap_up_seconds_left: 75 }));
    render(WorkState, { api });
    expect((await screen.findByTestId("work-now")).textContent?.replace(/\s+/g, " ")).toContain("Wrap-up 1:15");
    await fireEvent.click(screen.getByTestId("work-done"));
    expect(api.setWorkState).toHaveBeenLastCalledWith("ready", null);
    push(view({ state: "ready", after: "ready", teams: { availability: "Available", activity: "Available", synced: false, error: "not signed in", error_code: "not_signed_in" } }));
    await vi.waitFor(() => expect(screen.getByTestId("work-teams-error").textContent).toContain("You are not signed in"));
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("work-teams-error").textContent).toContain("未在 Teams 中显示"));
  });

  it("keeps an event that overtook the answer of the change", async () => {
    const { api, push } = fakeApi(view());
    let answer: (v: WorkStateView) => void = () => {};
    api.setWorkState = vi.fn(() => new Promise<WorkStateView>((r) => (answer = r)));
    render(WorkState, { api });
    await fireEvent.change(await screen.findByTestId("work-state"), { target: { value: "ready" } });
    // Teams was set before the command's answer came back.
    push(view({ state: "ready", after: "ready", teams: { availability: "Available", activity: "Available", synced: true, error: null, error_code: null } }));
    answer(view({ state: "ready", after: "ready", teams: { availability: null, activity: null, synced: false, error: null, error_code: null } }));
    await vi.waitFor(() => expect(screen.getByTestId("work-teams").dataset.availability).toBe("Available"));
    await new Promise((r) => setTimeout(r, 20));
    expect(screen.getByTestId("work-teams").dataset.availability).toBe("Available");
  });

  it("shows a refused change", async () => {
    const { api } = fakeApi(view());
    api.setWorkState = vi.fn(async () => Promise.reject({ code: "invalid_reason", message: "x" }));
    render(WorkState, { api });
    await fireEvent.change(await screen.findByTestId("work-state"), { target: { value: "ready" } });
    expect((await screen.findByTestId("work-error")).textContent).toContain("Choose a reason");
  });
});
