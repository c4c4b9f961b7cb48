import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import Board from "./Board.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { AgentStatus, BoardAgent, IpcError, QueueFigures, SupervisorBoard } from "../ipc";
import { boardSummary, matchesAgent, percent, seconds } from "./board";

const queue = (over: Partial<QueueFigures> = {}): QueueFigures => ({
  tenant: "contoso",
  queue: "billing",
  waiting: 0,
  consultations_waiting: 0,
  longest_wait_seconds: 0,
  agents: { ready: 1, not_ready: 1, ringing: 0, on_call: 1, wrap_up: 0, offline: 0 },
  offered: 10,
  answered: 8,
  answered_in_time: 7,
  abandoned: 1,
  abandoned_short: 0,
  overflowed: 1,
  service_level_seconds: 20,
  service_level: 70,
  asa_seconds: 12.4,
  aht_seconds: 181.6,
  abandonment_rate: 10,
  forecast: { arrivals_per_hour: 20, aht_seconds: 180, traffic_erlangs: 1, staffed: 2, wait_probability: 0.33, expected_asa_seconds: 60, expected_service_level: 70, service_level_target: 80, agents_needed: 3 },
  ...over,
});

const status = (over: Partial<AgentStatus> = {}): AgentStatus => ({
  agent: "AdeleV@contoso.example",
  tenant: "contoso",
  state: "ready",
  reason: null,
  registered: true,
  teams: "Available/Available",
  dispositions: [],
  consult: null,
  wrap_up_seconds_left: null,
  monitoring: null,
  ...over,
});

const agent = (name: string, over: Partial<AgentStatus>, rest: Partial<BoardAgent> = {}): BoardAgent => ({
  name,
  status: status(over),
  state_seconds: 65,
  queue: null,
  ...rest,
});

const board = (over: Partial<SupervisorBoard> = {}): SupervisorBoard => ({
  queues: [queue(), queue({ queue: "orders", waiting: 2, longest_wait_seconds: 95, agents: { ready: 0, not_ready: 2, ringing: 0, on_call: 0, wrap_up: 0, offline: 1 }, service_level: null, asa_seconds: null, aht_seconds: null, abandonment_rate: null })],
  agents: [
    agent("Adele Vance", { state: "on_call", consult: { with: "MeganB@contoso.example", state: "conference", conference: ["MeganB@contoso.example", "AlexW@contoso.example"] } }, { queue: "billing", state_seconds: 125 }),
    agent("Lynne Robbins", { agent: "LynneR@contoso.example", state: "not_ready", reason: "missed call" }),
    agent("Alex Wilber", { agent: "AlexW@contoso.example", state: "wrap_up", wrap_up_seconds_left: 14 }, { queue: "orders" }),
    agent("Diego Siciliani", { agent: "DiegoS@contoso.example", state: "offline", registered: false, teams: null }, { state_seconds: null }),
  ],
  ...over,
});

describe("the supervisors' board", () => {
  beforeEach(() => setLanguage("en"));

  it("shows every queue's figures and every agent's state, reason, time in state and call", async () => {
    const api = { supervisorBoard: vi.fn(async () => board()), supervisorSetState: vi.fn(async () => {}), supervisorMonitor: vi.fn(async () => "") };
    render(Board, { api });
    const rows = await screen.findAllByTestId("board-queue");
    expect(rows.map((r) => r.getAttribute("data-name"))).toEqual(["billing", "orders"]);
    expect(rows[0]!.textContent).toContain("70 %");
    expect(rows[0]!.textContent).toContain("8/10");
    expect(rows[0]!.textContent).toContain("12 s");
    // Callers waiting and nobody Ready: the row stands out; figures not known yet are "–".
    expect(rows[1]!.classList.contains("alert")).toBe(true);
    expect(rows[1]!.textContent).toContain("1:35");
    expect(rows[1]!.textContent).toContain("–");
    expect(screen.getByTestId("board-summary").textContent).toBe("2 waiting · 0 ready · 2 busy · 1 not ready");
    const agents = screen.getAllByTestId("board-agent");
    expect(agents.map((a) => a.getAttribute("data-state"))).toEqual(["on_call", "not_ready", "wrap_up", "offline"]);
    expect(agents[0]!.querySelector('[data-testid="board-agent-since"]')!.textContent).toBe("2:05");
    expect(agents[0]!.querySelector('[data-testid="board-agent-call"]')!.textContent).toContain("billing");
    expect(agents[0]!.querySelector('[data-testid="board-agent-call"]')!.textContent).toContain("conference of 4");
    expect(agents[1]!.querySelector('[data-testid="board-agent-reason"]')!.textContent).toContain("Missed call");
    expect(agents[2]!.textContent).toContain("14 s left");
    expect(agents[3]!.querySelector('[data-testid="board-agent-since"]')!.textContent).toBe("–");
    expect(api.supervisorBoard).toHaveBeenCalledTimes(1);
  });

  it("says when an agent's consultation of a queue waits in it", async () => {
    const waiting = board({
      queues: [queue(), queue({ queue: "orders", consultations_waiting: 1 })],
      agents: [agent("Adele Vance", { state: "on_call", consult: { with: "orders", state: "waiting", queue: "orders", conference: [] } }, { queue: "billing" })],
    });
    const api = { supervisorBoard: vi.fn(async () => waiting), supervisorSetState: vi.fn(async () => {}), supervisorMonitor: vi.fn(async () => "") };
    render(Board, { api });
    const [adele] = await screen.findAllByTestId("board-agent");
    expect(adele!.querySelector('[data-testid="board-agent-call"]')!.textContent).toContain("consulting queue orders, waiting");
    // The queue's row counts it apart from its callers.
    const [billing, orders] = screen.getAllByTestId("board-queue");
    expect(billing!.querySelector('[data-testid="board-queue-consults"]')).toBeNull();
    expect(orders!.querySelector('[data-testid="board-queue-consults"]')!.textContent).toBe("consults waiting: 1");
    expect(orders!.querySelector('[data-testid="board-queue-waiting"]')!.textContent).toBe("0");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(adele!.textContent).toContain("正在咨询队列 orders，等待中"));
    expect(orders!.querySelector('[data-testid="board-queue-consults"]')!.textContent).toBe("等待中的咨询：1");
  });

  it("filters agents by name, address, state or reason", async () => {
    const api = { supervisorBoard: vi.fn(async () => board()), supervisorSetState: vi.fn(async () => {}), supervisorMonitor: vi.fn(async () => "") };
    render(Board, { api });
    await screen.findAllByTestId("board-agent");
    await fireEvent.input(screen.getByTestId("board-search"), { target: { value: "missed" } });
    await vi.waitFor(() => expect(screen.getAllByTestId("board-agent").map((a) => a.getAttribute("data-upn"))).toEqual(["LynneR@contoso.example"]));
    await fireEvent.input(screen.getByTestId("board-search"), { target: { value: "nobody" } });
    await screen.findByTestId("board-no-agents");
  });

  it("refreshes every 2 s and counts the time in state on between reads", async () => {
    vi.useFakeTimers();
    try {
      let n = 0;
      const api = { supervisorBoard: vi.fn(async () => board({ queues: [queue({ waiting: n++ })] })), supervisorSetState: vi.fn(async () => {}), supervisorMonitor: vi.fn(async () => "") };
      render(Board, { api });
      await vi.advanceTimersByTimeAsync(0);
      expect(screen.getAllByTestId("board-queue-waiting")[0]!.textContent).toBe("0");
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getAllByTestId("board-agent-since")[1]!.textContent).toBe("1:06");
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getAllByTestId("board-queue-waiting")[0]!.textContent).toBe("1");
      expect(api.supervisorBoard).toHaveBeenCalledTimes(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("says plainly that the board is for Supervisors when the router refuses, in English and Chinese", async () => {
    const refused: IpcError = { code: "router_forbidden", message: "403 Forbidden: …" };
    const api = { supervisorBoard: vi.fn(async () => Promise.reject(refused)), supervisorSetState: vi.fn(async () => {}), supervisorMonitor: vi.fn(async () => "") };
    render(Board, { api });
    expect((await screen.findByTestId("board-error")).textContent).toContain("Supervisor role");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("board-error").textContent).toContain("主管角色"));
    expect(screen.queryByTestId("board-queues")).toBeNull();
  });

  it("sets an agent Ready or Not ready from their row, and says a refusal there", async () => {
    const api = {
      supervisorBoard: vi.fn(async () => board()),
      supervisorSetState: vi.fn(async () => {}),
      supervisorMonitor: vi.fn(async () => ""),
    };
    render(Board, { api });
    const rows = await screen.findAllByTestId("board-agent");
    // Offline and on-call agents have no state to set here.
    expect(rows.map((r) => r.querySelector('[data-testid="board-set-state"]') !== null)).toEqual([false, true, false, false]);
    const lynne = rows[1]!.querySelector('[data-testid="board-set-state"]') as HTMLSelectElement;
    expect(Array.from(lynne.options).map((o) => o.value)).toContain("ready");
    await fireEvent.change(lynne, { target: { value: "ready" } });
    expect(api.supervisorSetState).toHaveBeenLastCalledWith("LynneR@contoso.example", "ready", null);
    await vi.waitFor(() => expect(api.supervisorBoard).toHaveBeenCalledTimes(2));
    const again = screen.getAllByTestId("board-agent")[1]!.querySelector('[data-testid="board-set-state"]') as HTMLSelectElement;
    await fireEvent.change(again, { target: { value: "not_ready:coaching" } });
    expect(api.supervisorSetState).toHaveBeenLastCalledWith("LynneR@contoso.example", "not_ready", "coaching");
    api.supervisorSetState.mockImplementationOnce(async () => Promise.reject({ code: "router_not_an_agent", message: "404" }));
    const third = screen.getAllByTestId("board-agent")[1]!.querySelector('[data-testid="board-set-state"]') as HTMLSelectElement;
    await fireEvent.change(third, { target: { value: "not_ready:break" } });
    expect((await screen.findByTestId("board-set-error")).textContent).toContain("not an agent");
  });

  it("listens in on an on-call agent, whispers, barges in and stops from their row", async () => {
    const megan = (mode: "listen" | "whisper" | "barge", answered: boolean) =>
      agent("Megan Bowen", { agent: "MeganB@contoso.example", state: "on_call", monitoring: { agent: "AdeleV@contoso.example", mode, answered } });
    let current: BoardAgent | null = null;
    const api = {
      supervisorBoard: vi.fn(async () => {
        const b = board();
        if (current) b.agents.push(current);
        return b;
      }),
      supervisorSetState: vi.fn(async () => {}),
      supervisorMonitor: vi.fn(async () => "step"),
    };
    render(Board, { api });
    const rows = await screen.findAllByTestId("board-agent");
    // Only agents on a call can be listened in on.
    expect(rows.map((r) => r.querySelector('[data-testid="board-monitor"]') !== null)).toEqual([true, false, false, false]);
    const pick = () => screen.getAllByTestId("board-agent")[0]!.querySelector('[data-testid="board-monitor"]') as HTMLSelectElement;
    expect(Array.from(pick().options).map((o) => o.value)).toEqual(["", "listen", "whisper", "barge"]);
    current = megan("listen", false);
    await fireEvent.change(pick(), { target: { value: "listen" } });
    expect(api.supervisorMonitor).toHaveBeenLastCalledWith("AdeleV@contoso.example", "listen");
    // Their phone rings: the row says so, and how to go on.
    expect((await screen.findByTestId("board-monitor-note")).textContent).toContain("answer it to listen in");
    expect(screen.getByTestId("board-agent-monitored").textContent).toContain("ringing Megan Bowen");
    current = megan("listen", true);
    // The board's next read (every 2 s) finds her phone answered.
    await vi.waitFor(() => expect(screen.getByTestId("board-agent-monitored").textContent).toContain("Megan Bowen listening in"), { timeout: 3000 });
    expect(screen.queryByTestId("board-monitor-note")).toBeNull();
    // The supervisor's own row says whose call they are on and offers no listen-in.
    const own = screen.getAllByTestId("board-agent")[4]!;
    expect(own.querySelector('[data-testid="board-agent-monitoring"]')!.textContent).toContain("on Adele Vance's call");
    expect(own.querySelector('[data-testid="board-monitor"]')).toBeNull();
    await vi.waitFor(() => expect(Array.from(pick().options).map((o) => o.value)).toEqual(["", "whisper", "barge", "stop"]));
    current = megan("whisper", true);
    await fireEvent.change(pick(), { target: { value: "whisper" } });
    expect(api.supervisorMonitor).toHaveBeenLastCalledWith("AdeleV@contoso.example", "whisper");
    await vi.waitFor(() => expect(screen.getByTestId("board-agent-monitored").getAttribute("data-mode")).toBe("whisper"));
    current = null;
    await fireEvent.change(pick(), { target: { value: "stop" } });
    expect(api.supervisorMonitor).toHaveBeenLastCalledWith("AdeleV@contoso.example", null);
    await vi.waitFor(() => expect(screen.queryByTestId("board-agent-monitored")).toBeNull());
    // A refusal is said on the row, in Chinese too.
    api.supervisorMonitor.mockImplementationOnce(async () => Promise.reject({ code: "router_refused", message: "409: your phone cannot take a call now" }));
    await fireEvent.change(pick(), { target: { value: "barge" } });
    expect(await screen.findByTestId("board-set-error")).toBeTruthy();
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(pick().getAttribute("aria-label")).toBe("监听 Adele Vance 的通话"));
  });

  it("sums and shows figures", () => {
    expect(boardSummary(board())).toEqual({ waiting: 2, ready: 0, busy: 2, away: 1 });
    expect(matchesAgent("WILBER", board().agents[2]!)).toBe(true);
    expect(matchesAgent("wrap up", board().agents[2]!)).toBe(true);
    expect(matchesAgent("orders", board().agents[1]!)).toBe(false);
    expect(percent(null)).toBe("–");
    expect(percent(66.66)).toBe("67 %");
    expect(seconds(12.5)).toBe("13 s");
  });
});
