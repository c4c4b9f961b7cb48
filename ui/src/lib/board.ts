// The supervisors' board's helpers: what it asks the shell, and how it sums and shows figures.
import * as ipc from "../ipc";
import type { BoardAgent, MonitorMode, SupervisorBoard } from "../ipc";

/** What the board needs of the shell (a fake in tests). */
export interface BoardApi {
  supervisorBoard: () => Promise<SupervisorBoard>;
  supervisorSetState: (upn: string, state: "ready" | "not_ready", reason: string | null) => Promise<void>;
  /** Listen in, whisper or barge in on an agent's call (this phone is rung), or stop (null). */
  supervisorMonitor: (upn: string, mode: MonitorMode | null) => Promise<string>;
}

export const shellBoard: BoardApi = {
  supervisorBoard: ipc.supervisorBoard,
  supervisorSetState: ipc.supervisorSetState,
  supervisorMonitor: ipc.supervisorMonitor,
};

/** The ways a supervisor takes part in a call, in the order the board offers them. */
export const MONITOR_MODES: readonly MonitorMode[] = ["listen", "whisper", "barge"];

/** Who on the board takes part in agent `upn`'s call as a supervisor, if anyone. */
export function monitoredBy(b: SupervisorBoard, upn: string): BoardAgent | null {
  return b.agents.find((a) => a.status.monitoring?.agent.toLowerCase() === upn.toLowerCase()) ?? null;
}

/** The line above the tables: callers waiting in all queues, and agents by what they can do. */
export function boardSummary(b: SupervisorBoard): { waiting: number; ready: number; busy: number; away: number } {
  const count = (f: (a: BoardAgent) => boolean) => b.agents.filter(f).length;
  return {
    waiting: b.queues.reduce((n, q) => n + q.waiting, 0),
    ready: count((a) => a.status.state === "ready"),
    busy: count((a) => ["ringing", "on_call", "wrap_up"].includes(a.status.state)),
    away: count((a) => a.status.state === "not_ready"),
  };
}

/** Whether the agent matches the search (name, UPN, state or reason; any case). */
export function matchesAgent(search: string, a: BoardAgent): boolean {
  const s = search.trim().toLowerCase();
  if (!s) return true;
  return [a.name, a.status.agent, a.status.state.replace("_", " "), a.status.reason ?? "", a.queue ?? ""].some((x) =>
    x.toLowerCase().includes(s),
  );
}

/** A percentage as the board shows it: none yet is "–". */
export const percent = (p: number | null): string => (p === null ? "–" : `${Math.round(p)} %`);

/** Seconds as the board shows them: none yet is "–". */
export const seconds = (s: number | null): string => (s === null ? "–" : `${Math.round(s)} s`);
