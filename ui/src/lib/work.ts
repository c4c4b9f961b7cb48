// What the contact-center state selector needs from the shell, as one object so tests can
// stand in for it.
import * as ipc from "../ipc";
import type { WorkStateKind, WorkStateView } from "../ipc";

export type WorkApi = {
  getWorkState: () => Promise<WorkStateView>;
  setWorkState: (state: WorkStateKind, reason: string | null) => Promise<WorkStateView>;
  onWorkState: (handler: (v: WorkStateView) => void) => Promise<() => void>;
};

export const shellWork: WorkApi = {
  getWorkState: ipc.getWorkState,
  setWorkState: ipc.setWorkState,
  onWorkState: ipc.onWorkState,
};

/** The not-ready reasons offered in the window (others, from the CLI, show as typed). */
export const REASONS = ["break", "lunch", "personal", "admin_work", "meeting", "training", "coaching"] as const;
