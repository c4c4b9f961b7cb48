// Typed wrappers around the desktop shell's commands and events. Screens call these, never
// `invoke` directly; outside the desktop app (a plain browser) they fail with a clear IpcError.
import { invoke, isTauri } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  AccountInfo,
  AudioDevices,
  CallQuality,
  ConsultStep,
  DeviceCodeInfo,
  HistoryEntry,
  DirectoryQuery,
  IpcError,
  LinkHandler,
  MicLevel,
  MonitorMode,
  Person,
  PhoneSettings,
  PhoneSettingsView,
  PhoneView,
  PersonPhoto,
  PresenceInfo,
  RouterStatus,
  Settings,
  SoundTestResult,
  SupervisorBoard,
  TestSound,
  TransferTargets,
  WorkStateKind,
  WorkStateView,
} from "./types";

export type * from "./types";

/** True inside the Switchboard desktop app. */
export function insideDesktopApp(): boolean {
  return isTauri();
}

const notInApp: IpcError = {
  code: "not_in_desktop_app",
  message: "Not running inside the Switchboard desktop app.",
};

function toIpcError(e: unknown): IpcError {
  if (e && typeof e === "object" && "code" in e && "message" in e) {
    const o = e as { code: unknown; message: unknown };
    return { code: String(o.code), message: String(o.message) };
  }
  return { code: "ipc_failed", message: e instanceof Error ? e.message : String(e) };
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  if (!insideDesktopApp()) throw notInApp;
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toIpcError(e);
  }
}

export const getSettings = (): Promise<Settings> => call("get_settings");
export const saveSettings = (settings: Settings): Promise<Settings> => call("save_settings", { settings });
/** Settings → Phone: the account the phone uses, and whether a password is kept (never the password). */
export const getPhoneSettings = (): Promise<PhoneSettingsView> => call("get_phone_settings");
/** Saves Settings → Phone; `password` null keeps the one kept. The phone then starts again on the account chosen. */
export const savePhoneSettings = (phone: PhoneSettings, password: string | null): Promise<PhoneSettingsView> =>
  call("save_phone_settings", { phone, password });
/** Forgets the plain SIP account's kept password (the account stays); the phone goes back to the router's account. */
export const forgetSipPassword = (): Promise<PhoneSettingsView> => call("forget_sip_password");
/** Settings → Links: whether the app opens tel:, sip: and sips: links. */
export const getLinkHandler = (): Promise<LinkHandler> => call("link_handler");
/** Settings → Links: makes the app the one for those links (`on`), or not. */
export const setLinkHandler = (on: boolean): Promise<LinkHandler> => call("set_link_handler", { on });
export const getRouterStatus = (): Promise<RouterStatus> => call("get_router_status");
export const appVersion = (): Promise<string> => call("app_version");
/** Tells the shell the first frame is painted (start-up benchmark). */
export const uiReady = (): Promise<void> => call("ui_ready");

export const listAudioDevices = (): Promise<AudioDevices> => call("list_audio_devices");
/** Opens the microphone and starts `mic-level` events; returns the test's number. */
export const startMicTest = (device: string | null): Promise<number> => call("start_mic_test", { device });
export const stopMicTest = (test: number | null): Promise<void> => call("stop_mic_test", { test });
/** Plays the chime or a ring on `device` (null: the default) and resolves once it has played. */
export const playTestSound = (sound: TestSound, device: string | null, volume: number): Promise<SoundTestResult> =>
  call("play_test_sound", { sound, device, volume });

/** The signed-in Microsoft account, or null. */
export const getAccount = (): Promise<AccountInfo | null> => call("get_account");
/** Signs in in the system browser; resolves once the browser came back. */
export const signIn = (): Promise<AccountInfo> => call("sign_in");
export const startDeviceCode = (): Promise<DeviceCodeInfo> => call("start_device_code");
/** Waits for the person to enter the code shown; resolves signed in. */
export const finishDeviceCode = (): Promise<AccountInfo> => call("finish_device_code");
export const cancelSignIn = (): Promise<void> => call("cancel_sign_in");
export const signOut = (): Promise<void> => call("sign_out");
export const getMyPresence = (): Promise<PresenceInfo> => call("get_my_presence");
/** The person's chosen status; null resets it to what Teams works out. */
export const setMyPresence = (availability: string | null): Promise<PresenceInfo> => call("set_my_presence", { availability });
export const setStatusMessage = (text: string): Promise<void> => call("set_status_message", { text });
export const searchDirectory = (query: DirectoryQuery): Promise<Person[]> => call("search_directory", { query });
export const getPresences = (ids: string[]): Promise<PresenceInfo[]> => call("get_presences", { ids });
/** Photos of the people shown (`data:` URLs; null: draw initials), fetched in batches. */
export const getPhotos = (ids: string[]): Promise<PersonPhoto[]> => call("get_photos", { ids });
export const setFavourite = (id: string, on: boolean): Promise<void> => call("set_favourite", { id, on });

/** The contact-center state and how it shows in Teams. */
export const getWorkState = (): Promise<WorkStateView> => call("get_work_state");
/** Ready, not ready (with a reason) or off duty; during a call or wrap-up, what follows it. */
export const setWorkState = (state: WorkStateKind, reason: string | null): Promise<WorkStateView> =>
  call("set_work_state", { state, reason });

/** Calls `handler` with each change of the contact-center state; returns the unsubscribe function. */
export async function onWorkState(handler: (v: WorkStateView) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<WorkStateView>("work-state", (e) => handler(e.payload));
}

/** Calls `handler` with each reading of the microphone test; returns the unsubscribe function. */
export async function onMicLevel(handler: (l: MicLevel) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<MicLevel>("mic-level", (e) => handler(e.payload));
}

/** Calls `handler` with each Teams presence change the router sends; returns the unsubscribe function. */
export async function onPresence(handler: (p: PresenceInfo) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<PresenceInfo>("presence", (e) => handler(e.payload));
}

/** Calls `handler` with every router status change; returns the unsubscribe function. */
export async function onRouterStatus(handler: (s: RouterStatus) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<RouterStatus>("router-status", (e) => handler(e.payload));
}

/** The phone: registration, the call ringing or up, the wrap-up, the last problem. */
export const phoneStatus = (): Promise<PhoneView> => call("phone_status");
/** New SIP credentials from the router and a fresh start of the phone. */
export const phoneConnect = (): Promise<PhoneView> => call("phone_connect");
/** Calls a number, or a colleague, queue, attendant or expert group by name, through the router. */
export const phoneDial = (target: string): Promise<number> => call("phone_dial", { target });
/** Whom and where the agent may transfer or consult now. */
export const phoneTargets = (): Promise<TransferTargets> => call("phone_targets");
/** A blind transfer of the call up; resolves with the router's step. */
export const phoneTransfer = (target: string): Promise<string> => call("phone_transfer", { target });
/** Consults a colleague or an expert group while the caller waits. */
export const phoneConsult = (target: string): Promise<string> => call("phone_consult", { target });
/** Completes, conferences or cancels the consultation. */
export const phoneConsultStep = (step: ConsultStep): Promise<string> => call("phone_consult_step", { step });
/** The supervisors' board: every queue's live figures and every agent (Supervisors and Admins). */
export const supervisorBoard = (): Promise<SupervisorBoard> => call("supervisor_board");
/** From the board: an agent Ready, or Not ready for a reason (Supervisors and Admins). */
export const supervisorSetState = (upn: string, state: "ready" | "not_ready", reason: string | null): Promise<void> =>
  call("supervisor_set_state", { upn, state, reason });
/** From the board: listen in on an agent's call, whisper or barge in, or stop (null); this phone is rung first. The router's step. */
export const supervisorMonitor = (upn: string, mode: MonitorMode | null): Promise<string> => call("supervisor_monitor", { upn, mode });
/** The agent's calls (the router's records and the phone's own), newest first. */
export const phoneHistory = (limit: number | null): Promise<HistoryEntry[]> => call("phone_history", { limit });
export const phoneAnswer = (callId: number): Promise<void> => call("phone_answer", { call: callId });
export const phoneReject = (callId: number): Promise<void> => call("phone_reject", { call: callId });
export const phoneTransferAnswer = (callId: number, follow: boolean): Promise<void> =>
  call("phone_transfer_answer", { call: callId, follow });
export const phoneHangup = (callId: number): Promise<void> => call("phone_hangup", { call: callId });
export const phoneHold = (callId: number, on: boolean): Promise<void> => call("phone_hold", { call: callId, on });
export const phoneMute = (on: boolean): Promise<void> => call("phone_mute", { on });
/** One keypad key (0–9, *, #, A–D) into the call. */
export const phoneDtmf = (callId: number, key: string): Promise<void> => call("phone_dtmf", { call: callId, key });
/** The call volume, 0–100 %. */
export const phoneVolume = (percent: number): Promise<void> => call("phone_volume", { percent });
/** The call's audio figures so far (loss, jitter, estimated MOS). */
export const phoneQuality = (callId: number): Promise<CallQuality> => call("phone_quality", { call: callId });
/** Ends the wrap-up at the router with the disposition code and the agent's notes (at most 2,000 characters). */
export const phoneWrapUp = (disposition: string | null, notes: string | null): Promise<void> =>
  call("phone_wrap_up", { disposition, notes });

/** The `tel:`/`sip:` link the app was opened with and the window has not taken yet, once. */
export const takeLink = (): Promise<string | null> => call("take_link");

/** Calls `handler` with what each `tel:`/`sip:` link opened in the app asks to call. */
export async function onLink(handler: (target: string) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<string>("dial-link", (e) => handler(e.payload));
}

/** Calls `handler` with each change of the phone; returns the unsubscribe function. */
export async function onPhone(handler: (v: PhoneView) => void): Promise<UnlistenFn> {
  if (!insideDesktopApp()) return () => {};
  return listen<PhoneView>("phone", (e) => handler(e.payload));
}
