// What the phone panels need from the shell, as one object so tests can stand in for it.
import * as ipc from "../ipc";
import type { CallQuality, ConsultStep, HistoryEntry, PhoneView, TransferTargets } from "../ipc";

export type PhoneApi = {
  phoneStatus: () => Promise<PhoneView>;
  onPhone: (handler: (v: PhoneView) => void) => Promise<() => void>;
  phoneConnect: () => Promise<PhoneView>;
  phoneDial: (target: string) => Promise<number>;
  phoneTargets: () => Promise<TransferTargets>;
  phoneTransfer: (target: string) => Promise<string>;
  phoneConsult: (target: string) => Promise<string>;
  phoneConsultStep: (step: ConsultStep) => Promise<string>;
  phoneHistory: (limit: number | null) => Promise<HistoryEntry[]>;
  phoneAnswer: (call: number) => Promise<void>;
  phoneReject: (call: number) => Promise<void>;
  phoneHangup: (call: number) => Promise<void>;
  /** Follows or declines the transfer the other party asked for. */
  phoneTransferAnswer: (call: number, follow: boolean) => Promise<void>;
  phoneHold: (call: number, on: boolean) => Promise<void>;
  phoneMute: (on: boolean) => Promise<void>;
  phoneDtmf: (call: number, key: string) => Promise<void>;
  phoneVolume: (percent: number) => Promise<void>;
  phoneQuality: (call: number) => Promise<CallQuality>;
  phoneWrapUp: (disposition: string | null, notes: string | null) => Promise<void>;
  /** A `tel:`/`sip:` link opened before the window listened (once). */
  takeLink: () => Promise<string | null>;
  /** Each `tel:`/`sip:` link opened in the app: what it asks to call. */
  onLink: (handler: (target: string) => void) => Promise<() => void>;
};

export const shellPhone: PhoneApi = {
  phoneStatus: ipc.phoneStatus,
  onPhone: ipc.onPhone,
  phoneConnect: ipc.phoneConnect,
  takeLink: ipc.takeLink,
  onLink: ipc.onLink,
  phoneDial: ipc.phoneDial,
  phoneTargets: ipc.phoneTargets,
  phoneTransfer: ipc.phoneTransfer,
  phoneConsult: ipc.phoneConsult,
  phoneConsultStep: ipc.phoneConsultStep,
  phoneHistory: ipc.phoneHistory,
  phoneAnswer: ipc.phoneAnswer,
  phoneReject: ipc.phoneReject,
  phoneHangup: ipc.phoneHangup,
  phoneTransferAnswer: ipc.phoneTransferAnswer,
  phoneHold: ipc.phoneHold,
  phoneMute: ipc.phoneMute,
  phoneDtmf: ipc.phoneDtmf,
  phoneVolume: ipc.phoneVolume,
  phoneQuality: ipc.phoneQuality,
  phoneWrapUp: ipc.phoneWrapUp,
};

/** The keypad, in its usual order. */
export const KEYPAD = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"] as const;

/**
 * Keyboard shortcuts (documented in the pop-up and in docs/desktop.md):
 * Ctrl+Shift+A answers the call ringing; Ctrl+Shift+H hangs up (or rejects a call ringing);
 * Ctrl+Shift+M mutes or unmutes.
 */
export type Shortcut = "answer" | "hangup" | "mute";

export function shortcutOf(e: { ctrlKey: boolean; shiftKey: boolean; altKey: boolean; metaKey: boolean; key: string }): Shortcut | null {
  if (!e.ctrlKey || !e.shiftKey || e.altKey || e.metaKey) return null;
  switch (e.key.toLowerCase()) {
    case "a":
      return "answer";
    case "h":
      return "hangup";
    case "m":
      return "mute";
    default:
      return null;
  }
}

/** What a dial box may hold: a number or a name, without anything else (the shell checks too). */
export function dialable(typed: string): boolean {
  const t = typed.trim();
  return t.length > 0 && t.length <= 128 && /^[\w+().@:\- ]+$/.test(t);
}

/** Whether any of `fields` contains every word of `search` (any case); an empty search matches. */
export function matches(search: string, ...fields: (string | null | undefined)[]): boolean {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const text = fields.filter(Boolean).join(" ").toLowerCase();
  return words.every((w) => text.includes(w));
}

/** The agent's calls that started on `day`'s local date (missed offers left out), and how many were answered. */
export function todaysCalls(history: HistoryEntry[], day: Date): { calls: number; answered: number } {
  const same = (ms: number) => new Date(ms).toDateString() === day.toDateString();
  const mine = history.filter((e) => same(e.started_unix_ms) && e.outcome !== "missed");
  return { calls: mine.length, answered: mine.filter((e) => e.outcome === "answered").length };
}

/** `m:ss` (or `h:mm:ss`) of a number of seconds. */
/**
 * What the router's `X-Switchboard-Monitor` says of a call it rings a supervisor with
 * (`listen adele@contoso.example`): the mode and the agent, or null for anything else (it is
 * only shown, never acted on).
 */
export function monitorOffer(v: string | null | undefined): { mode: "listen" | "whisper" | "barge"; agent: string } | null {
  const m = /^(listen|whisper|barge) (\S+)$/.exec((v ?? "").trim());
  return m ? { mode: m[1] as "listen" | "whisper" | "barge", agent: m[2]! } : null;
}

export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Wrap-up notes hold at most this many characters (the router's limit). */
export const NOTES_MAX = 2000;

/** People a conference holds besides the agent and the caller (the router mixes eight legs). */
export const CONFERENCE_OTHERS = 6;

/** Characters as the router counts them (code points, so an emoji is one, not two). */
export function charCount(text: string): number {
  return [...text].length;
}

/** Whole seconds from `now` to `ends` (Unix ms), rounded up, never below 0. */
export function secondsLeft(ends: number, now: number): number {
  return Math.max(0, Math.ceil((ends - now) / 1000));
}

/** `mm:ss` of a countdown (minutes grow past 99 rather than wrap). */
export function countdown(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Packets lost as a share of those expected, in %, one decimal. */
export function lossPercent(q: CallQuality): number {
  const expected = q.packets_received + q.packets_lost;
  return expected > 0 ? Math.round((q.packets_lost / expected) * 1000) / 10 : 0;
}
