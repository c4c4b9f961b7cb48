// What the contact-center state selector needs from the shell, as one object so tests can
// stand in for it.
import * as ipc from "../ipc";
import type { WorkStateKind, WorkStateView } from "../ipc";
import { t, type MessageKey } from "../i18n/index.svelte";

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

/**
 * A Not-ready reason as the window names it: its own reasons and the router's "missed call"
 * (after a ring-no-answer) in the person's language, any other as it was typed.
 */
export function reasonLabel(r: string): string {
  if (r === "missed call") return t("work.reasonMissedCall");
  return (REASONS as readonly string[]).includes(r) ? t(`work.reason.${r}` as MessageKey) : r;
}
