// The shapes that cross IPC, generated from the Rust types (ts-rs) into ./bindings.
// A Rust test fails when the bindings are stale, so the UI never guesses a shape.
export type { Settings } from "./bindings/Settings";
export type { Language } from "./bindings/Language";
export type { RouterStatus } from "./bindings/RouterStatus";
export type { ConnectionState } from "./bindings/ConnectionState";
export type { IpcError } from "./bindings/IpcError";
export type { AudioSettings } from "./bindings/AudioSettings";
export type { AudioDevice } from "./bindings/AudioDevice";
export type { AudioDevices } from "./bindings/AudioDevices";
export type { DeviceNotice } from "./bindings/DeviceNotice";
export type { MicLevel } from "./bindings/MicLevel";
export type { TestSound } from "./bindings/TestSound";
export type { SoundTestResult } from "./bindings/SoundTestResult";
export type { AccountInfo } from "./bindings/AccountInfo";
export type { DeviceCodeInfo } from "./bindings/DeviceCodeInfo";
export type { Person } from "./bindings/Person";
export type { PresenceInfo } from "./bindings/PresenceInfo";
export type { DirectoryQuery } from "./bindings/DirectoryQuery";
export type { WorkStateView } from "./bindings/WorkStateView";
export type { WorkStateKind } from "./bindings/WorkStateKind";
export type { TeamsSync } from "./bindings/TeamsSync";
export type { PersonPhoto } from "./bindings/PersonPhoto";
