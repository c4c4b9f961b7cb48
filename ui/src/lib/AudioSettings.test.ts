import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import SettingsPage from "./SettingsPage.svelte";
import { setLanguage, t } from "../i18n/index.svelte";
import type { AudioDevices, MicLevel, Settings } from "../ipc";
import { type AudioApi, deviceOptions, meterPercent } from "./audio";

const devices: AudioDevices = {
  inputs: [
    { name: "default", is_default: true, channels: 2, sample_rate: 48000 },
    { name: "Jabra Evolve2 65", is_default: false, channels: 1, sample_rate: 16000 },
  ],
  outputs: [
    { name: "default", is_default: true, channels: 2, sample_rate: 48000 },
    { name: "Jabra Evolve2 65", is_default: false, channels: 2, sample_rate: 48000 },
    { name: "Laptop speakers", is_default: false, channels: 2, sample_rate: 44100 },
  ],
};

const settings: Settings = {
  router_url: "http://127.0.0.1:7700",
  language: "en",
  audio: { input_device: null, output_device: null, ringing_device: "USB speakerphone", output_volume: 100, ring_volume: 80 },
  phone: { source: "router", sip_account: null },
  close_to_tray: true,
};

/** A stand-in shell: records calls and lets the test push microphone readings. */
function fakeApi(over: Partial<AudioApi> = {}) {
  let push: ((l: MicLevel) => void) | null = null;
  const api: AudioApi = {
    listDevices: vi.fn(async () => devices),
    startMicTest: vi.fn(async () => 7),
    stopMicTest: vi.fn(async () => {}),
    playTestSound: vi.fn(async () => ({ device: "Laptop speakers", notices: [] })),
    onMicLevel: vi.fn(async (h: (l: MicLevel) => void) => {
      push = h;
      return () => (push = null);
    }),
    ...over,
  };
  return { api, level: (l: Partial<MicLevel>) => push?.({ test: 7, level_db: -120, peak_db: -120, notices: [], ...l }) };
}

describe("Settings → Audio", () => {
  beforeEach(() => setLanguage("en"));

  it("lists the devices, keeps a chosen one that is unplugged, and saves the choices", async () => {
    const { api } = fakeApi();
    const save = vi.fn(async (s: Settings) => s);
    render(SettingsPage, { settings, save, audioApi: api });
    await vi.waitFor(() => expect(screen.getByTestId("audio-input").querySelectorAll("option").length).toBe(3));
    const mic = screen.getByTestId("audio-input") as HTMLSelectElement;
    expect(mic.options[0]?.textContent).toBe("System default (default)");
    const ringer = screen.getByTestId("audio-ringer") as HTMLSelectElement;
    expect(ringer.value).toBe("USB speakerphone");
    expect(ringer.selectedOptions[0]?.textContent).toBe("USB speakerphone (not connected)");

    await fireEvent.change(mic, { target: { value: "Jabra Evolve2 65" } });
    await fireEvent.change(screen.getByTestId("audio-output"), { target: { value: "Jabra Evolve2 65" } });
    await fireEvent.change(ringer, { target: { value: "Laptop speakers" } });
    await fireEvent.input(screen.getByTestId("audio-volume"), { target: { value: "60" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await vi.waitFor(() => expect(save).toHaveBeenCalled());
    expect(save.mock.calls[0]?.[0].audio).toEqual({
      input_device: "Jabra Evolve2 65",
      output_device: "Jabra Evolve2 65",
      ringing_device: "Laptop speakers",
      output_volume: 60,
      ring_volume: 80,
    });
  });

  it("tests the chosen microphone with a live meter, warns when it stays silent, and stops", async () => {
    const { api, level } = fakeApi();
    render(SettingsPage, { settings: { ...settings, audio: { ...settings.audio, input_device: "Jabra Evolve2 65" } }, save: vi.fn(), audioApi: api });
    await fireEvent.click(screen.getByTestId("mic-test"));
    await vi.waitFor(() => expect(api.startMicTest).toHaveBeenCalledWith("Jabra Evolve2 65"));
    await vi.waitFor(() => expect(screen.getByTestId("mic-meter")).toBeTruthy());
    level({ level_db: -20, peak_db: -12 });
    await vi.waitFor(() => expect(screen.getByTestId("mic-meter").getAttribute("data-level")).toBe("-20"));
    // A reading of another (older) test is ignored.
    level({ test: 6, level_db: -3 });
    expect(screen.getByTestId("mic-meter").getAttribute("data-level")).toBe("-20");
    expect(screen.getByTestId("mic-hint").textContent).toBe(t("settings.micHint"));
    await fireEvent.click(screen.getByTestId("mic-test-stop"));
    expect(api.stopMicTest).toHaveBeenCalledWith(7);
    expect(screen.queryByTestId("mic-meter")).toBeNull();

    // Silent for 3 s of readings: the person is told to check the microphone.
    await fireEvent.click(screen.getByTestId("mic-test"));
    await vi.waitFor(() => expect(screen.getByTestId("mic-meter")).toBeTruthy());
    for (let i = 0; i < 50; i++) level({ level_db: -90, peak_db: -85 });
    await vi.waitFor(() => expect(screen.getByTestId("mic-hint").textContent).toContain("No sound from the microphone"));
  });

  it("shows device notices in the person's language", async () => {
    setLanguage("zh-CN");
    const { api, level } = fakeApi();
    render(SettingsPage, { settings, save: vi.fn(), audioApi: api });
    await fireEvent.click(screen.getByTestId("mic-test"));
    await vi.waitFor(() => expect(screen.getByTestId("mic-meter")).toBeTruthy());
    level({ notices: [{ kind: "fallback", direction: "input", device: "default", wanted: "Jabra", reason: "gone" }] });
    await vi.waitFor(() => expect(screen.getByTestId("audio-notice").textContent).toBe("Jabra 不可用，已改用 default。"));
    expect(screen.getByTestId("audio-notice").getAttribute("data-kind")).toBe("fallback");
  });

  it("plays the test sound and the ring on their own devices and volumes, and reports failure", async () => {
    const { api } = fakeApi();
    render(SettingsPage, { settings, save: vi.fn(), audioApi: api });
    await fireEvent.click(screen.getByTestId("play-ring"));
    await vi.waitFor(() => expect(screen.getByTestId("audio-played").textContent).toBe("Played on Laptop speakers."));
    expect(api.playTestSound).toHaveBeenCalledWith("ring", "USB speakerphone", 80);

    const failing = fakeApi({
      playTestSound: vi.fn(async () => {
        throw { code: "sound_device_unavailable", message: "no output device can be opened" };
      }),
    }).api;
    document.body.innerHTML = "";
    render(SettingsPage, { settings, save: vi.fn(), audioApi: failing });
    await fireEvent.click(screen.getByTestId("play-chime"));
    await vi.waitFor(() => expect(screen.getByTestId("audio-play-error").textContent).toContain("No speaker can be opened"));
    expect(failing.playTestSound).toHaveBeenCalledWith("chime", null, 100);
  });

  it("says when the devices cannot be listed", async () => {
    const { api } = fakeApi({
      listDevices: vi.fn(async () => {
        throw { code: "sound_devices_unlisted", message: "ALSA lib: no such file" };
      }),
    });
    render(SettingsPage, { settings, save: vi.fn(), audioApi: api });
    await vi.waitFor(() => expect(screen.getByTestId("audio-error").textContent).toContain("could not be listed"));
  });
});

describe("audio helpers", () => {
  it("maps dBFS onto the meter", () => {
    expect(meterPercent(-120)).toBe(0);
    expect(meterPercent(-30)).toBe(50);
    expect(meterPercent(0)).toBe(100);
    expect(meterPercent(6)).toBe(100);
    expect(meterPercent(Number.NaN)).toBe(0);
  });

  it("names the default device when the system says which it is", () => {
    expect(deviceOptions([], null, t).map((o) => o.label)).toEqual(["System default"]);
  });
});
