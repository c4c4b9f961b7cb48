// What Settings → Audio needs from the shell, as one object so tests can stand in for it.
import * as ipc from "../ipc";
import type { AudioDevice, AudioDevices, DeviceNotice, MicLevel, SoundTestResult, TestSound } from "../ipc";
import type { MessageKey } from "../i18n/index.svelte";

export type AudioApi = {
  listDevices: () => Promise<AudioDevices>;
  startMicTest: (device: string | null) => Promise<number>;
  stopMicTest: (test: number | null) => Promise<void>;
  playTestSound: (sound: TestSound, device: string | null, volume: number) => Promise<SoundTestResult>;
  onMicLevel: (handler: (l: MicLevel) => void) => Promise<() => void>;
};

export const shellAudio: AudioApi = {
  listDevices: ipc.listAudioDevices,
  startMicTest: ipc.startMicTest,
  stopMicTest: ipc.stopMicTest,
  playTestSound: ipc.playTestSound,
  onMicLevel: ipc.onMicLevel,
};

/** Where a dBFS level sits on the meter, 0–100 % (−60 dBFS and below is empty). */
export function meterPercent(db: number): number {
  if (!Number.isFinite(db)) return 0;
  return Math.round(Math.min(100, Math.max(0, ((db + 60) / 60) * 100)));
}

/** Below this the microphone is taken as silent (room noise of a muted or absent mic). */
export const SILENT_DB = -55;

/** A device notice as a message key and its parameters. */
export function noticeText(n: DeviceNotice, t: (k: MessageKey, p?: Record<string, string | number>) => string): string {
  // A device lost, and what took over once it is known.
  const key = (n.kind === "lost" && n.device ? "device.lostNow" : `device.${n.kind}`) as MessageKey;
  const direction = t(n.direction === "input" ? "device.input" : "device.output");
  return t(key, { device: n.device ?? "", wanted: n.wanted ?? "", direction });
}

/** The options of a device list: the system default first (named when known), then each
 *  device; a chosen device that is not connected stays listed, marked as such. */
export function deviceOptions(
  list: AudioDevice[],
  chosen: string | null,
  t: (k: MessageKey, p?: Record<string, string | number>) => string,
): { value: string; label: string }[] {
  const def = list.find((d) => d.is_default);
  const out = [{ value: "", label: def ? t("settings.systemDefaultNamed", { name: def.name }) : t("settings.systemDefault") }];
  for (const d of list) out.push({ value: d.name, label: d.name });
  if (chosen && !list.some((d) => d.name === chosen)) out.push({ value: chosen, label: t("settings.missingDevice", { name: chosen }) });
  return out;
}
