//! Sound devices through cpal: listing them, and live capture and playback for a call.
//!
//! cpal's streams are not `Send` on every platform and call back on the audio system's own
//! threads, so a [`DeviceAudio`] keeps them on a thread of its own. The callbacks only move
//! samples (mono `f32` at the device's rate) in and out of two bounded rings and keep the
//! level meters; the engine takes 20 ms frames at a codec's rate out of the capture ring and
//! puts mixed frames into the playback ring, converting rates with rubato ([`Rate`]).
//!
//! A device that fails (unplugged headset, PulseAudio restarted) is closed and the default
//! device opened instead; a device asked for by name that is missing falls back to the
//! default too; with no device at all the call goes on muted and the thread tries again every
//! two seconds. Each of these is a [`DeviceEvent`] the application shows. When no name was
//! given, a change of the system's default device is followed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub use crate::resample::Rate;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::FromSample;

/// What the application is told about its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// A stream is open on this device.
    Opened {
        kind: Direction,
        name: String,
        rate: u32,
    },
    /// The named device was not found or failed to open; the default is used instead.
    Fallback {
        kind: Direction,
        wanted: String,
        using: String,
        reason: String,
    },
    /// The device in use failed (unplugged, the sound server went away); reopening.
    Lost {
        kind: Direction,
        name: String,
        reason: String,
    },
    /// No device of this kind can be opened: the call goes on without it (muted or silent).
    Unavailable { kind: Direction, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// One device as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    /// The system's default for its direction.
    pub default: bool,
    pub channels: u16,
    pub sample_rate: u32,
}

/// The devices the system offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub inputs: Vec<DeviceInfo>,
    pub outputs: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot list sound devices: {0}")]
    List(String),
}

fn info(d: &cpal::Device, kind: Direction, default: Option<&str>) -> Option<DeviceInfo> {
    let name = d.name().ok()?;
    let config = match kind {
        Direction::Input => d.default_input_config().ok()?,
        Direction::Output => d.default_output_config().ok()?,
    };
    Some(DeviceInfo {
        default: default == Some(name.as_str()),
        name,
        channels: config.channels(),
        sample_rate: config.sample_rate().0,
    })
}

/// Lists input and output devices (those that have a usable default configuration).
pub fn list() -> Result<DeviceList, DeviceError> {
    let host = cpal::default_host();
    let err = |e: cpal::DevicesError| DeviceError::List(e.to_string());
    let default_in = host.default_input_device().and_then(|d| d.name().ok());
    let default_out = host.default_output_device().and_then(|d| d.name().ok());
    let inputs = host
        .input_devices()
        .map_err(err)?
        .filter_map(|d| info(&d, Direction::Input, default_in.as_deref()))
        .collect();
    let outputs = host
        .output_devices()
        .map_err(err)?
        .filter_map(|d| info(&d, Direction::Output, default_out.as_deref()))
        .collect();
    Ok(DeviceList { inputs, outputs })
}

/// A ring of mono samples shared with a callback, bounded: the oldest go when it is full.
#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<f32>,
    capacity: usize,
    /// Samples dropped for want of room, or made up (zeros) for want of data.
    overruns: u64,
    underruns: u64,
}

impl Ring {
    fn push(&mut self, s: impl IntoIterator<Item = f32>) {
        for x in s {
            if self.samples.len() >= self.capacity.max(1) {
                self.samples.pop_front();
                self.overruns += 1;
            }
            self.samples.push_back(x);
        }
    }
}

/// A level meter: the RMS of the last callback's block, in dBFS (as f32 bits).
#[derive(Debug)]
struct Meter(AtomicU32);

impl Meter {
    fn new() -> Self {
        Self(AtomicU32::new((-120.0f32).to_bits()))
    }
    fn set(&self, block: &[f32]) {
        if block.is_empty() {
            return;
        }
        let rms = (block.iter().map(|s| s * s).sum::<f32>() / block.len() as f32).sqrt();
        let db = if rms > 1e-6 {
            20.0 * rms.log10()
        } else {
            -120.0
        };
        self.0.store(db.to_bits(), Ordering::Relaxed);
    }
    fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// What the callbacks and the engine share.
#[derive(Debug)]
struct Shared {
    capture: Mutex<Ring>,
    playback: Mutex<Ring>,
    input_rate: AtomicU32,
    output_rate: AtomicU32,
    muted: AtomicBool,
    /// Output gain, 0.0–1.0 (f32 bits).
    volume: AtomicU32,
    input_level: Meter,
    output_level: Meter,
    stop: AtomicBool,
}

fn lock(m: &Mutex<Ring>) -> std::sync::MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which devices to open: by name, or `None` for the system's default (followed when it
/// changes). `input: false` opens no input (a ringing device).
#[derive(Debug, Clone, Default)]
pub struct DeviceChoice {
    pub input: Option<String>,
    pub output: Option<String>,
    pub open_input: bool,
    pub open_output: bool,
}

/// Live capture and playback on sound devices, for the calls of one agent.
pub struct DeviceAudio {
    shared: Arc<Shared>,
    events: mpsc::Receiver<DeviceEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Capture: device rate → the engine's 48 kHz.
    mic: Rate,
    /// Playback: 48 kHz → the device's rate.
    speaker: Rate,
}

impl std::fmt::Debug for DeviceAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAudio").finish_non_exhaustive()
    }
}

/// The rate frames go in and out of [`DeviceAudio`] at.
pub const ENGINE_RATE: u32 = 48_000;

impl DeviceAudio {
    /// Starts the device thread. Opening happens there; the outcome comes as events.
    pub fn open(choice: DeviceChoice) -> Self {
        let shared = Arc::new(Shared {
            capture: Mutex::new(Ring {
                capacity: 48_000 / 2,
                ..Ring::default()
            }),
            playback: Mutex::new(Ring {
                capacity: 48_000 / 5,
                ..Ring::default()
            }),
            input_rate: AtomicU32::new(ENGINE_RATE),
            output_rate: AtomicU32::new(ENGINE_RATE),
            muted: AtomicBool::new(false),
            volume: AtomicU32::new(1.0f32.to_bits()),
            input_level: Meter::new(),
            output_level: Meter::new(),
            stop: AtomicBool::new(false),
        });
        let (tx, events) = mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-audio-devices".into())
            .spawn(move || device_thread(&s, &choice, &tx))
            .ok();
        Self {
            shared,
            events,
            thread,
            mic: Rate::new(ENGINE_RATE, ENGINE_RATE),
            speaker: Rate::new(ENGINE_RATE, ENGINE_RATE),
        }
    }

    /// The next event, if any.
    pub fn try_event(&self) -> Option<DeviceEvent> {
        self.events.try_recv().ok()
    }

    /// 20 ms of microphone at 48 kHz mono (960 samples; silence when muted or while the
    /// device has not delivered enough).
    pub fn capture_frame(&mut self) -> Vec<f32> {
        let rate = self.shared.input_rate.load(Ordering::Relaxed);
        if self.mic.rates().0 != rate {
            self.mic = Rate::new(rate, ENGINE_RATE);
        }
        let got: Vec<f32> = lock(&self.shared.capture).samples.drain(..).collect();
        self.mic.push(&got);
        // More than 100 ms waiting means we fell behind (a stall): keep the newest.
        while self.mic.available() > 960 * 5 {
            let _ = self.mic.pull(960);
        }
        match self.mic.pull(960) {
            Some(f) if !self.shared.muted.load(Ordering::Relaxed) => f,
            Some(_) => vec![0.0; 960],
            None => {
                lock(&self.shared.capture).underruns += 1;
                vec![0.0; 960]
            }
        }
    }

    /// 20 ms to play at 48 kHz mono.
    pub fn play_frame(&mut self, frame: &[f32]) {
        let rate = self.shared.output_rate.load(Ordering::Relaxed);
        if self.speaker.rates().1 != rate {
            self.speaker = Rate::new(ENGINE_RATE, rate);
        }
        let gain = f32::from_bits(self.shared.volume.load(Ordering::Relaxed));
        let scaled: Vec<f32> = frame.iter().map(|s| s * gain).collect();
        self.speaker.push(&scaled);
        let n = self.speaker.available();
        if let Some(out) = self.speaker.pull(n) {
            lock(&self.shared.playback).push(out);
        }
    }

    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Output volume, 0.0–1.0.
    pub fn set_volume(&self, volume: f32) {
        self.shared
            .volume
            .store(volume.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// The microphone's level now, dBFS (−120 for silence).
    pub fn input_level(&self) -> f32 {
        self.shared.input_level.get()
    }

    /// What the speaker plays now, dBFS.
    pub fn output_level(&self) -> f32 {
        self.shared.output_level.get()
    }

    /// Samples lost to a full ring and made up for an empty one, capture then playback.
    pub fn xruns(&self) -> (u64, u64, u64, u64) {
        let c = lock(&self.shared.capture);
        let p = lock(&self.shared.playback);
        (c.overruns, c.underruns, p.overruns, p.underruns)
    }
}

impl Drop for DeviceAudio {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Finds a device by name, or the default.
fn find(
    host: &cpal::Host,
    kind: Direction,
    name: Option<&str>,
) -> Result<(cpal::Device, String), String> {
    let default = || match kind {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    };
    match name {
        None => {
            let d =
                default().ok_or_else(|| format!("the system has no {} device", kind.as_str()))?;
            let n = d.name().unwrap_or_else(|_| "default".into());
            Ok((d, n))
        }
        Some(wanted) => {
            let mut devices = match kind {
                Direction::Input => host.input_devices(),
                Direction::Output => host.output_devices(),
            }
            .map_err(|e| e.to_string())?;
            devices
                .find(|d| d.name().is_ok_and(|n| n == wanted))
                .map(|d| (d, wanted.to_owned()))
                .ok_or_else(|| format!("no {} device is named {wanted:?}", kind.as_str()))
        }
    }
}

/// Interleaved samples of any format → mono f32.
fn mono_from<T>(samples: &[T], channels: usize) -> Vec<f32>
where
    T: cpal::SizedSample,
    f32: cpal::FromSample<T>,
{
    samples
        .chunks(channels.max(1))
        .map(|c| c.iter().map(|&x| f32::from_sample_(x)).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Mono f32 → interleaved samples of the device's format (each channel the same; silence
/// where `mono` runs short).
fn fill<T>(out: &mut [T], mono: &[f32], channels: usize)
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    for (i, x) in out.iter_mut().enumerate() {
        let v = mono.get(i / channels.max(1)).copied().unwrap_or(0.0);
        *x = T::from_sample_(v.clamp(-1.0, 1.0));
    }
}

/// What the input callback got, as mono f32 (empty for formats we do not take).
fn data_to_mono(data: &cpal::Data, channels: usize) -> Vec<f32> {
    if let Some(s) = data.as_slice::<f32>() {
        mono_from(s, channels)
    } else if let Some(s) = data.as_slice::<i16>() {
        mono_from(s, channels)
    } else if let Some(s) = data.as_slice::<i32>() {
        mono_from(s, channels)
    } else if let Some(s) = data.as_slice::<u16>() {
        mono_from(s, channels)
    } else {
        Vec::new()
    }
}

fn mono_to_data(data: &mut cpal::Data, mono: &[f32], channels: usize) {
    if let Some(s) = data.as_slice_mut::<f32>() {
        fill(s, mono, channels);
    } else if let Some(s) = data.as_slice_mut::<i16>() {
        fill(s, mono, channels);
    } else if let Some(s) = data.as_slice_mut::<i32>() {
        fill(s, mono, channels);
    } else if let Some(s) = data.as_slice_mut::<u16>() {
        fill(s, mono, channels);
    }
}

/// Opens one stream; `failed` is raised from the error callback.
fn open_stream(
    shared: &Arc<Shared>,
    device: &cpal::Device,
    kind: Direction,
    failed: &Arc<Mutex<Option<String>>>,
) -> Result<(cpal::Stream, u32), String> {
    let default = match kind {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|e| e.to_string())?;
    // The engine's rate when the device takes it (no conversion on our side), else the
    // device's own.
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match kind {
        Direction::Input => device
            .supported_input_configs()
            .map(|r| r.collect())
            .unwrap_or_default(),
        Direction::Output => device
            .supported_output_configs()
            .map(|r| r.collect())
            .unwrap_or_default(),
    };
    let engine = cpal::SampleRate(ENGINE_RATE);
    let config = ranges
        .into_iter()
        .find(|r| {
            r.channels() == default.channels()
                && r.sample_format() == default.sample_format()
                && r.min_sample_rate() <= engine
                && engine <= r.max_sample_rate()
        })
        .map(|r| r.with_sample_rate(engine))
        .unwrap_or(default);
    let format = config.sample_format();
    let channels = usize::from(config.channels().max(1));
    let rate = config.sample_rate().0;
    let stream_config: cpal::StreamConfig = config.into();
    let on_error = {
        let failed = failed.clone();
        move |e: cpal::StreamError| {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
    };
    let s = shared.clone();
    let stream = match kind {
        Direction::Input => device.build_input_stream_raw(
            &stream_config,
            format,
            move |data: &cpal::Data, _: &cpal::InputCallbackInfo| {
                let mono = data_to_mono(data, channels);
                s.input_level.set(&mono);
                lock(&s.capture).push(mono);
            },
            on_error,
            None,
        ),
        Direction::Output => device.build_output_stream_raw(
            &stream_config,
            format,
            move |data: &mut cpal::Data, _: &cpal::OutputCallbackInfo| {
                let frames = data.len() / channels;
                let mono: Vec<f32> = {
                    let mut ring = lock(&s.playback);
                    let have = ring.samples.len().min(frames);
                    if have < frames {
                        ring.underruns += (frames - have) as u64;
                    }
                    ring.samples.drain(..have).collect()
                };
                s.output_level.set(&mono);
                mono_to_data(data, &mono, channels);
            },
            on_error,
            None,
        ),
    }
    .map_err(|e| e.to_string())?;
    stream.play().map_err(|e| e.to_string())?;
    Ok((stream, rate))
}

/// The device thread: opens what was asked, reopens on failure, follows the default.
fn device_thread(shared: &Arc<Shared>, choice: &DeviceChoice, events: &mpsc::Sender<DeviceEvent>) {
    struct Open {
        stream: Option<cpal::Stream>,
        name: Option<String>,
        failed: Arc<Mutex<Option<String>>>,
        retry_at: std::time::Instant,
        /// After a loss or fallback, a named device is not looked for again.
        wanted: Option<String>,
        enabled: bool,
        reported_unavailable: bool,
    }
    let host = cpal::default_host();
    let now = std::time::Instant::now();
    let mut sides = [
        (
            Direction::Input,
            Open {
                stream: None,
                name: None,
                failed: Arc::new(Mutex::new(None)),
                retry_at: now,
                wanted: choice.input.clone(),
                enabled: choice.open_input,
                reported_unavailable: false,
            },
        ),
        (
            Direction::Output,
            Open {
                stream: None,
                name: None,
                failed: Arc::new(Mutex::new(None)),
                retry_at: now,
                wanted: choice.output.clone(),
                enabled: choice.open_output,
                reported_unavailable: false,
            },
        ),
    ];
    let mut last_default_check = now;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        for (kind, side) in sides.iter_mut() {
            if !side.enabled {
                continue;
            }
            // A stream that failed: close it, say so, reopen the default.
            let failure = side.failed.lock().ok().and_then(|mut f| f.take());
            if let Some(reason) = failure {
                side.stream = None;
                let _ = events.send(DeviceEvent::Lost {
                    kind: *kind,
                    name: side.name.take().unwrap_or_default(),
                    reason,
                });
                side.wanted = None;
                side.retry_at = now;
            }
            if side.stream.is_some() || now < side.retry_at {
                continue;
            }
            let found = find(&host, *kind, side.wanted.as_deref()).or_else(|reason| {
                let wanted = side.wanted.take();
                let d = find(&host, *kind, None)?;
                if let Some(wanted) = wanted {
                    let _ = events.send(DeviceEvent::Fallback {
                        kind: *kind,
                        wanted,
                        using: d.1.clone(),
                        reason,
                    });
                }
                Ok::<_, String>(d)
            });
            let opened = found.and_then(|(device, name)| {
                open_stream(shared, &device, *kind, &side.failed).map(|(s, rate)| (s, name, rate))
            });
            match opened {
                Ok((stream, name, rate)) => {
                    match kind {
                        Direction::Input => shared.input_rate.store(rate, Ordering::Relaxed),
                        Direction::Output => shared.output_rate.store(rate, Ordering::Relaxed),
                    }
                    let _ = events.send(DeviceEvent::Opened {
                        kind: *kind,
                        name: name.clone(),
                        rate,
                    });
                    side.stream = Some(stream);
                    side.name = Some(name);
                    side.reported_unavailable = false;
                }
                Err(reason) => {
                    if !side.reported_unavailable {
                        let _ = events.send(DeviceEvent::Unavailable {
                            kind: *kind,
                            reason,
                        });
                        side.reported_unavailable = true;
                    }
                    side.retry_at = now + Duration::from_secs(2);
                }
            }
        }
        // Follow the system's default when no device was named (every 2 s).
        if now.duration_since(last_default_check) >= Duration::from_secs(2) {
            last_default_check = now;
            for (kind, side) in sides.iter_mut() {
                if !side.enabled || side.wanted.is_some() || side.stream.is_none() {
                    continue;
                }
                let default = match kind {
                    Direction::Input => host.default_input_device(),
                    Direction::Output => host.default_output_device(),
                }
                .and_then(|d| d.name().ok());
                if default.is_some() && default != side.name {
                    side.stream = None;
                    side.retry_at = now;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone;

    #[test]
    fn rate_conversion_keeps_a_tone_and_the_amount_of_audio() {
        for (from, to) in [
            (44_100, 48_000),
            (48_000, 8_000),
            (8_000, 48_000),
            (48_000, 48_000),
        ] {
            let mut r = Rate::new(from, to);
            let input: Vec<f32> = tone::sine(440.0, from, 16000.0, 0, from as usize)
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
            for chunk in input.chunks(333) {
                r.push(chunk);
            }
            let n = r.available();
            // One second in, one second out (less what the resampler still holds).
            assert!(
                n <= to as usize && n >= to as usize * 9 / 10,
                "{from}→{to}: {n}"
            );
            let out: Vec<i16> = r
                .pull(n)
                .unwrap()
                .iter()
                .map(|&s| (s * 32767.0) as i16)
                .collect();
            let (wins, loud) = tone::detect(&out, to, &[440.0, 1000.0]);
            assert!(
                loud > 10 && wins[0] == loud,
                "{from}→{to}: {wins:?} of {loud}"
            );
        }
    }

    #[test]
    fn rings_are_bounded_and_count_what_they_drop() {
        let mut r = Ring {
            capacity: 4,
            ..Ring::default()
        };
        r.push([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(r.samples, [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(r.overruns, 2);
        let m = Meter::new();
        m.set(&[0.5; 100]);
        assert!((m.get() + 6.02).abs() < 0.1, "{}", m.get());
        m.set(&[0.0; 10]);
        assert_eq!(m.get(), -120.0);
    }

    #[test]
    fn formats_convert_to_mono_f32_and_back() {
        assert_eq!(
            mono_from(&[0i16, 16384, -32768, 32767], 1),
            vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]
        );
        // Stereo is mixed down.
        assert_eq!(mono_from(&[0.5f32, -0.5, 1.0, 0.0], 2), vec![0.0, 0.5]);
        assert_eq!(mono_from(&[32768u16, 49152], 1), vec![0.0, 0.5]);
        // Mono to stereo: each sample twice; silence past the end.
        let mut out = [0i16; 6];
        fill(&mut out, &[0.5, -0.5], 2);
        assert_eq!(out[..4], [16384, 16384, -16384, -16384]);
        assert_eq!(out[4..], [0, 0]);
    }
}
