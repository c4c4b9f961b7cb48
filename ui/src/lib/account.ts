// What the account chip and the directory need from the shell, as one object so tests can
// stand in for it; and how presence looks.
import * as ipc from "../ipc";
import type { AccountInfo, DeviceCodeInfo, DirectoryQuery, Person, PersonPhoto, PresenceInfo } from "../ipc";
import type { MessageKey } from "../i18n/index.svelte";
import en from "../i18n/en";

export type AccountApi = {
  getAccount: () => Promise<AccountInfo | null>;
  signIn: () => Promise<AccountInfo>;
  startDeviceCode: () => Promise<DeviceCodeInfo>;
  finishDeviceCode: () => Promise<AccountInfo>;
  cancelSignIn: () => Promise<void>;
  signOut: () => Promise<void>;
  getMyPresence: () => Promise<PresenceInfo>;
  setMyPresence: (availability: string | null) => Promise<PresenceInfo>;
  setStatusMessage: (text: string) => Promise<void>;
  searchDirectory: (q: DirectoryQuery) => Promise<Person[]>;
  getPresences: (ids: string[]) => Promise<PresenceInfo[]>;
  setFavourite: (id: string, on: boolean) => Promise<void>;
  getPhotos: (ids: string[]) => Promise<PersonPhoto[]>;
  /** Presence changes pushed by the router; returns the unsubscribe function. */
  onPresence: (handler: (p: PresenceInfo) => void) => Promise<() => void>;
};

export const shellAccount: AccountApi = {
  getAccount: ipc.getAccount,
  signIn: ipc.signIn,
  startDeviceCode: ipc.startDeviceCode,
  finishDeviceCode: ipc.finishDeviceCode,
  cancelSignIn: ipc.cancelSignIn,
  signOut: ipc.signOut,
  getMyPresence: ipc.getMyPresence,
  setMyPresence: ipc.setMyPresence,
  setStatusMessage: ipc.setStatusMessage,
  searchDirectory: ipc.searchDirectory,
  getPresences: ipc.getPresences,
  setFavourite: ipc.setFavourite,
  getPhotos: ipc.getPhotos,
  onPresence: ipc.onPresence,
};

/** Statuses a person can choose, in Teams' order. */
export const CHOOSABLE = ["Available", "Busy", "DoNotDisturb", "BeRightBack", "Away", "Offline"] as const;

/** Whether the window has a label for an availability (the shell sends Graph's values, and
 * `Unknown` for any it does not know; this guards against anything else). */
function known(availability: string): boolean {
  return availability !== "Unknown" && `presence.${availability}` in en;
}

/** The availability to show: one we know, else Unknown. */
export function shownAvailability(p: PresenceInfo | null | undefined): string {
  if (!p) return "Unknown";
  return known(p.availability) ? p.availability : "Unknown";
}

/** The colour class of a presence dot (Teams' colours: green, red, yellow, grey). */
export function dotClass(availability: string): "available" | "busy" | "away" | "offline" {
  switch (availability) {
    case "Available":
    case "AvailableIdle":
      return "available";
    case "Busy":
    case "BusyIdle":
    case "DoNotDisturb":
      return "busy";
    case "Away":
    case "BeRightBack":
      return "away";
    default:
      return "offline";
  }
}

/** The label key of an availability. */
export function availabilityKey(availability: string): MessageKey {
  const a = known(availability) ? availability : "Unknown";
  return `presence.${a}` as MessageKey;
}

/** How often the window refreshes presence dots (ms). */
export const PRESENCE_POLL_MS = 5000;

/** Up to two initials of a name, for a person without a photo. */
export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const first = parts[0]?.[0] ?? "";
  const last = parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? "") : "";
  return (first + last).toUpperCase() || "?";
}
