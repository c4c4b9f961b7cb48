import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import History from "./History.svelte";
import MyFigures from "./MyFigures.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { HistoryEntry } from "../ipc";
import { todaysCalls, type PhoneApi } from "./phone";
import { targets } from "./fixtures.test-data";

const entry = (over: Partial<HistoryEntry>): HistoryEntry => ({
  id: "r-1",
  started_unix_ms: Date.now() - 60_000,
  outgoing: false,
  who: "+15551230000",
  queue: "billing",
  outcome: "answered",
  reason: null,
  talk_seconds: 65,
  disposition: "resolved",
  call_back: "+15551230000",
  source: "router",
  ...over,
});

const entries = [
  entry({}),
  entry({ id: "r-2", outgoing: true, who: "MeganB", queue: null, call_back: "MeganB", disposition: null }),
  entry({ id: "phone-1", outgoing: true, who: "nobody", outcome: "refused", reason: "404 Not Found", talk_seconds: null, source: "phone", call_back: "nobody" }),
  entry({ id: "r-old", started_unix_ms: Date.now() - 3 * 86_400_000, who: "Anonymous", call_back: null }),
];

function api(): PhoneApi {
  return {
    phoneHistory: vi.fn(async () => entries),
    phoneDial: vi.fn(async () => 3),
    phoneTargets: vi.fn(async () => targets),
  } as unknown as PhoneApi;
}

describe("the call history", () => {
  beforeEach(() => setLanguage("en"));

  it("lists the agent's calls, searches them, and calls back", async () => {
    const a = api();
    render(History, { api: a });
    const rows = await screen.findAllByTestId("history-entry");
    expect(rows.map((r) => r.dataset.id)).toEqual(["r-1", "r-2", "phone-1", "r-old"]);
    expect(rows[0]!.textContent).toContain("talked 1:05");
    expect(rows[0]!.textContent).toContain("resolved");
    expect(rows[2]!.textContent).toContain("Refused");
    expect(rows[2]!.textContent).toContain("404 Not Found");
    expect(rows[2]!.textContent).toContain("this phone only");
    expect(rows[3]!.querySelector('[data-testid="call-back"]')).toBeNull();
    await fireEvent.click(rows[1]!.querySelector('[data-testid="call-back"]')!);
    expect(a.phoneDial).toHaveBeenCalledWith("MeganB");
    await fireEvent.input(screen.getByTestId("history-search"), { target: { value: "refused" } });
    await vi.waitFor(() => expect(screen.getAllByTestId("history-entry").map((r) => r.dataset.id)).toEqual(["phone-1"]));
    await fireEvent.input(screen.getByTestId("history-search"), { target: { value: "nothing like it" } });
    expect((await screen.findByTestId("history-empty")).textContent).toBe("No call matches.");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("history-refresh").textContent).toBe("刷新"));
  });

  it("says when the router's records cannot be read", async () => {
    const a = { phoneHistory: vi.fn(async () => { throw { code: "router_unreachable", message: "x" }; }) } as unknown as PhoneApi;
    render(History, { api: a });
    expect((await screen.findByTestId("history-error")).textContent).toContain("cannot be reached");
  });
});

describe("my figures", () => {
  beforeEach(() => setLanguage("en"));

  it("counts today's calls, missed offers left out", () => {
    const missed = entry({ id: "m", outcome: "missed" });
    expect(todaysCalls([...entries, missed], new Date())).toEqual({ calls: 3, answered: 2 });
  });

  it("shows callers waiting in my queues and my calls today", async () => {
    render(MyFigures, { api: api() });
    await vi.waitFor(() => expect(screen.getByTestId("figures-waiting").textContent).toBe("2"));
    await vi.waitFor(() => expect(screen.getByTestId("figures-calls-today").textContent).toBe("3"));
    expect(screen.getByTestId("figures-answered-today").textContent).toBe("2");
    expect(screen.getAllByTestId("figures-queue").map((q) => q.dataset.name)).toEqual(["billing"]);
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByText("我的队列")).toBeTruthy());
  });
});
