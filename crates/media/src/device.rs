//! Sound devices through cpal: listing them, and live capture and playback for a call.
//!
//! cpal's streams are not `Send` on every platform and call back on the audio system's own
//! threads, so a [`DeviceAudio`] keeps them on a thread of its own. The callbacks
//! ([`InputCallback`], [`OutputCallback`]) only move samples (mono `f32` at the device's
//! rate) in and out of two lock-free single-producer single-consumer rings (`rtrb`), apply
//! the volume and keep the level meters, through atomics: they allocate nothing, take no lock
//! and never wait, and what does not fit or is missing is counted, not waited for. The engine
//! takes 20 ms frames at 48 kHz out of the capture ring and puts mixed frames into the
//! playback ring ([`DeviceAudio::capture_into`], [`DeviceAudio::play_frame`]), converting
//! rates with rubato ([`Rate`]), also without allocating once running. Each stream opened
//! comes with rings of its own, sized for its rate; the device thread hands the engine its
//! ends. `tests/alloc.rs` counts the allocations of both sides in a steady state: none.
//!
//! A device that fails (unplugged headset, PulseAudio restarted) is closed and the default
//! device opened instead; a device asked for by name that is missing falls back to the
//! default too; with no device at all the call goes on muted and the thread tries again every
//! two seconds. Each of these is a [`DeviceEvent`] the application shows. When no name was
//! given, a change of the system's default device is followed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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

/// A level meter: the RMS of the last callback's block, in dBFS (as f32 bits).
#[derive(Debug)]
struct Meter(AtomicU32);

impl Meter {
    fn new() -> Self {
        Self(AtomicU32::new((-120.0f32).to_bits()))
    }
    /// From the sum of the squares of a block of `n` samples.
    fn set(&self, energy: f32, n: usize) {
        if n == 0 {
            return;
        }
        let rms = (energy / n as f32).sqrt();
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

/// What the callbacks and the engine share: atomics only, so that neither side ever waits
/// for the other.
#[derive(Debug)]
struct Shared {
    muted: AtomicBool,
    /// Output gain, 0.0–1.0 (f32 bits), applied in the output callback.
    volume: AtomicU32,
    input_level: Meter,
    output_level: Meter,
    /// Samples dropped for want of room in a ring, or made up (silence) for want of data.
    capture_overruns: AtomicU64,
    capture_underruns: AtomicU64,
    playback_overruns: AtomicU64,
    playback_underruns: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Self {
            muted: AtomicBool::new(false),
            volume: AtomicU32::new(1.0f32.to_bits()),
            input_level: Meter::new(),
            output_level: Meter::new(),
            capture_overruns: AtomicU64::new(0),
            capture_underruns: AtomicU64::new(0),
            playback_overruns: AtomicU64::new(0),
            playback_underruns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }
}

fn count(counter: &AtomicU64, n: usize) {
    if n > 0 {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The capture ring holds half a second at the device's rate, the playback ring 200 ms.
fn capture_capacity(rate: u32) -> usize {
    (rate as usize / 2).max(1)
}
fn playback_capacity(rate: u32) -> usize {
    (rate as usize / 5).max(1)
}

/// The most a callback converts at a time: larger blocks go through in pieces.
const SCRATCH_FRAMES: usize = 4096;

/// What an input stream's callback runs: the device's interleaved samples, of any format and
/// channel count, are mixed down to mono `f32` in a buffer made when the stream opened and
/// pushed into the capture ring; what does not fit is dropped and counted. It allocates
/// nothing, takes no lock and never waits: the audio system's thread must not.
pub struct InputCallback {
    ring: rtrb::Producer<f32>,
    scratch: Box<[f32]>,
    channels: usize,
    shared: Arc<Shared>,
}

// By hand: the scratch buffer is not worth printing.
impl std::fmt::Debug for InputCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputCallback")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl InputCallback {
    /// One block from the device, in whichever format it delivers (formats other than f32,
    /// i16, i32 and u16 are ignored).
    pub fn on_data(&mut self, data: &cpal::Data) {
        if let Some(s) = data.as_slice::<f32>() {
            self.on_input(s);
        } else if let Some(s) = data.as_slice::<i16>() {
            self.on_input(s);
        } else if let Some(s) = data.as_slice::<i32>() {
            self.on_input(s);
        } else if let Some(s) = data.as_slice::<u16>() {
            self.on_input(s);
        }
    }

    /// One block of interleaved samples.
    pub fn on_input<T>(&mut self, data: &[T])
    where
        T: cpal::SizedSample,
        f32: FromSample<T>,
    {
        let channels = self.channels.max(1);
        let mut energy = 0.0f32;
        let mut frames = 0;
        for block in data.chunks(channels * self.scratch.len()) {
            let mono = &mut self.scratch[..block.len() / channels];
            for (m, frame) in mono.iter_mut().zip(block.chunks_exact(channels)) {
                *m = frame.iter().map(|&x| f32::from_sample_(x)).sum::<f32>() / channels as f32;
                energy += *m * *m;
            }
            frames += mono.len();
            let (_, dropped) = self.ring.push_partial_slice(mono);
            count(&self.shared.capture_overruns, dropped.len());
        }
        self.shared.input_level.set(energy, frames);
    }
}

/// What an output stream's callback runs: mono `f32` from the playback ring, at the volume
/// set, into every channel of the device's buffer in its format; silence, counted, where the
/// ring runs short. Like [`InputCallback`], it allocates nothing, takes no lock and never
/// waits.
#[derive(Debug)]
pub struct OutputCallback {
    ring: rtrb::Consumer<f32>,
    channels: usize,
    shared: Arc<Shared>,
}

impl OutputCallback {
    /// One buffer for the device, in whichever format it takes (formats other than f32, i16,
    /// i32 and u16 are left as they are).
    pub fn on_data(&mut self, data: &mut cpal::Data) {
        if let Some(s) = data.as_slice_mut::<f32>() {
            self.on_output(s);
        } else if let Some(s) = data.as_slice_mut::<i16>() {
            self.on_output(s);
        } else if let Some(s) = data.as_slice_mut::<i32>() {
            self.on_output(s);
        } else if let Some(s) = data.as_slice_mut::<u16>() {
            self.on_output(s);
        }
    }

    /// One buffer of interleaved samples to fill.
    pub fn on_output<T>(&mut self, data: &mut [T])
    where
        T: cpal::SizedSample + FromSample<f32>,
    {
        let channels = self.channels.max(1);
        let frames = data.len() / channels;
        let gain = f32::from_bits(self.shared.volume.load(Ordering::Relaxed));
        let mut energy = 0.0f32;
        let mut out = data.chunks_exact_mut(channels);
        let have = frames.min(self.ring.slots());
        if let Ok(chunk) = self.ring.read_chunk(have) {
            let (a, b) = chunk.as_slices();
            // The ring's side first: zip stops there without taking a frame it cannot fill.
            for (&x, frame) in a.iter().chain(b).zip(&mut out) {
                let v = (x * gain).clamp(-1.0, 1.0);
                energy += v * v;
                frame.fill(T::from_sample_(v));
            }
            chunk.commit_all();
        }
        for frame in out {
            frame.fill(T::EQUILIBRIUM);
        }
        count(&self.shared.playback_underruns, frames - have);
        self.shared.output_level.set(energy, frames);
    }
}

/// A new ring end for the engine, sent by the device thread when it opens a stream, with the
/// stream's rate.
enum RingEnd {
    Capture(rtrb::Consumer<f32>, u32),
    Playback(rtrb::Producer<f32>, u32),
}

/// A capture ring for a stream of `channels` at `rate`: the callback's end and the engine's.
fn capture_ring(
    shared: &Arc<Shared>,
    rate: u32,
    channels: usize,
) -> (InputCallback, rtrb::Consumer<f32>) {
    let (ring, engine) = rtrb::RingBuffer::new(capture_capacity(rate));
    let callback = InputCallback {
        ring,
        scratch: vec![0.0; SCRATCH_FRAMES].into_boxed_slice(),
        channels: channels.max(1),
        shared: shared.clone(),
    };
    (callback, engine)
}

/// A playback ring for a stream of `channels` at `rate`: the callback's end and the engine's.
fn playback_ring(
    shared: &Arc<Shared>,
    rate: u32,
    channels: usize,
) -> (OutputCallback, rtrb::Producer<f32>) {
    let (engine, ring) = rtrb::RingBuffer::new(playback_capacity(rate));
    let callback = OutputCallback {
        ring,
        channels: channels.max(1),
        shared: shared.clone(),
    };
    (callback, engine)
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

/// A stream's shape, for [`DeviceAudio::detached`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShape {
    pub rate: u32,
    pub channels: usize,
}

/// Live capture and playback on sound devices, for the calls of one agent.
///
/// The engine's side ([`capture_into`](Self::capture_into), [`play_frame`](Self::play_frame))
/// allocates nothing once running either: its rings, resamplers and buffers are made when a
/// stream opens.
pub struct DeviceAudio {
    shared: Arc<Shared>,
    events: mpsc::Receiver<DeviceEvent>,
    /// The engine's ends of the rings of streams the device thread opened.
    rings: mpsc::Receiver<RingEnd>,
    thread: Option<std::thread::JoinHandle<()>>,
    capture: Option<rtrb::Consumer<f32>>,
    playback: Option<rtrb::Producer<f32>>,
    /// The most the capture ring may hold before the oldest is skipped (100 ms and a frame).
    capture_keep: usize,
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
    fn new(
        shared: Arc<Shared>,
        events: mpsc::Receiver<DeviceEvent>,
        rings: mpsc::Receiver<RingEnd>,
    ) -> Self {
        Self {
            shared,
            events,
            rings,
            thread: None,
            capture: None,
            playback: None,
            capture_keep: 0,
            mic: Rate::new(ENGINE_RATE, ENGINE_RATE),
            speaker: Rate::new(ENGINE_RATE, ENGINE_RATE),
        }
    }

    /// Starts the device thread. Opening happens there; the outcome comes as events.
    pub fn open(choice: DeviceChoice) -> Self {
        let shared = Arc::new(Shared::new());
        let (tx, events) = mpsc::channel();
        let (ring_tx, rings) = mpsc::channel();
        let s = shared.clone();
        let mut audio = Self::new(shared, events, rings);
        audio.thread = std::thread::Builder::new()
            .name("switchboard-audio-devices".into())
            .spawn(move || device_thread(&s, &choice, &tx, &ring_tx))
            .ok();
        audio
    }

    /// A `DeviceAudio` without devices, and the two callbacks a pair of streams of these
    /// shapes would run: whoever holds them plays the sound system (tests, a null device).
    pub fn detached(
        input: StreamShape,
        output: StreamShape,
    ) -> (Self, InputCallback, OutputCallback) {
        let shared = Arc::new(Shared::new());
        let (_, events) = mpsc::channel();
        let (ring_tx, rings) = mpsc::channel();
        let (mic, capture) = capture_ring(&shared, input.rate, input.channels);
        let (speaker, playback) = playback_ring(&shared, output.rate, output.channels);
        let _ = ring_tx.send(RingEnd::Capture(capture, input.rate));
        let _ = ring_tx.send(RingEnd::Playback(playback, output.rate));
        let mut audio = Self::new(shared, events, rings);
        audio.adopt_rings();
        (audio, mic, speaker)
    }

    /// Takes the rings of streams opened since the last frame (and the rate converters for
    /// them); the old ones go with the streams that closed.
    fn adopt_rings(&mut self) {
        while let Ok(end) = self.rings.try_recv() {
            match end {
                RingEnd::Capture(ring, rate) => {
                    self.capture = Some(ring);
                    self.capture_keep = rate as usize / 10 + rate as usize / 50;
                    self.mic = Rate::new(rate, ENGINE_RATE);
                }
                RingEnd::Playback(ring, rate) => {
                    self.playback = Some(ring);
                    self.speaker = Rate::new(ENGINE_RATE, rate);
                }
            }
        }
    }

    /// The next event, if any.
    pub fn try_event(&self) -> Option<DeviceEvent> {
        self.events.try_recv().ok()
    }

    /// Fills `out` with the microphone at 48 kHz mono (the engine takes 960 samples, 20 ms);
    /// how many samples are the microphone's: `out.len()`, or 0 when it is muted or the
    /// device has not delivered enough, and `out` is silence. Allocates nothing.
    pub fn capture_into(&mut self, out: &mut [f32]) -> usize {
        self.adopt_rings();
        if let Some(ring) = self.capture.as_mut() {
            // More than 100 ms waiting means we fell behind (a stall): keep the newest.
            let stale = ring.slots().saturating_sub(self.capture_keep);
            if let Ok(chunk) = ring.read_chunk(stale) {
                chunk.commit_all();
            }
            if let Ok(chunk) = ring.read_chunk(ring.slots()) {
                let (a, b) = chunk.as_slices();
                self.mic.push(a);
                self.mic.push(b);
                chunk.commit_all();
            }
        }
        self.mic.keep_newest(out.len() * 5);
        if !self.mic.pull_into(out) {
            count(&self.shared.capture_underruns, out.len());
            out.fill(0.0);
            return 0;
        }
        if self.shared.muted.load(Ordering::Relaxed) {
            out.fill(0.0);
            return 0;
        }
        out.len()
    }

    /// Audio to play, 48 kHz mono (the engine gives 20 ms at a time); what the playback ring
    /// cannot take is dropped and counted, and without an output device it goes nowhere.
    /// Allocates nothing.
    pub fn play_frame(&mut self, frame: &[f32]) {
        self.adopt_rings();
        self.speaker.push(frame);
        let n = self.speaker.available();
        match self.playback.as_mut() {
            Some(ring) if !ring.is_abandoned() => {
                let fit = n.min(ring.slots());
                if let Ok(chunk) = ring.write_chunk_uninit(fit) {
                    chunk.fill_from_iter(self.speaker.drain(fit));
                }
                count(&self.shared.playback_overruns, n - fit);
                self.speaker.skip(n - fit);
            }
            _ => self.speaker.skip(n),
        }
    }

    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Output volume, 0.0–1.0; applied in the output callback, so it is heard at once.
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
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.shared.capture_overruns),
            get(&self.shared.capture_underruns),
            get(&self.shared.playback_overruns),
            get(&self.shared.playback_underruns),
        )
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

/// Opens one stream; `failed` is raised from the error callback.
fn open_stream(
    shared: &Arc<Shared>,
    device: &cpal::Device,
    kind: Direction,
    failed: &Arc<Mutex<Option<String>>>,
    rings: &mpsc::Sender<RingEnd>,
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
    // The callbacks own their ends of fresh rings; the engine's ends go to it once the stream
    // plays (the closures only ever call `on_data`, which neither allocates nor locks).
    let (stream, engine_end) = match kind {
        Direction::Input => {
            let (mut callback, engine) = capture_ring(shared, rate, channels);
            let stream = device.build_input_stream_raw(
                &stream_config,
                format,
                move |data: &cpal::Data, _: &cpal::InputCallbackInfo| callback.on_data(data),
                on_error,
                None,
            );
            (stream, RingEnd::Capture(engine, rate))
        }
        Direction::Output => {
            let (mut callback, engine) = playback_ring(shared, rate, channels);
            let stream = device.build_output_stream_raw(
                &stream_config,
                format,
                move |data: &mut cpal::Data, _: &cpal::OutputCallbackInfo| callback.on_data(data),
                on_error,
                None,
            );
            (stream, RingEnd::Playback(engine, rate))
        }
    };
    let stream = stream.map_err(|e| e.to_string())?;
    stream.play().map_err(|e| e.to_string())?;
    let _ = rings.send(engine_end);
    Ok((stream, rate))
}

/// The device thread: opens what was asked, reopens on failure, follows the default.
fn device_thread(
    shared: &Arc<Shared>,
    choice: &DeviceChoice,
    events: &mpsc::Sender<DeviceEvent>,
    rings: &mpsc::Sender<RingEnd>,
) {
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
                // Dropping the stream stops its callbacks; its error callback may have fired
                // again meanwhile, of the same failure: not a new one.
                side.stream = None;
                if let Ok(mut f) = side.failed.lock() {
                    *f = None;
                }
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
                open_stream(shared, &device, *kind, &side.failed, rings)
                    .map(|(s, rate)| (s, name, rate))
            });
            match opened {
                Ok((stream, name, rate)) => {
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

    fn shape(rate: u32, channels: usize) -> StreamShape {
        StreamShape { rate, channels }
    }

    #[test]
    fn rings_are_bounded_and_count_what_they_drop() {
        let shared = Arc::new(Shared::new());
        // Capture: a full ring keeps what it has and counts what the callback could not put.
        let (mut mic, mut engine) = capture_ring(&shared, 8, 1);
        mic.on_input(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]);
        assert_eq!(engine.slots(), 4);
        assert_eq!(engine.pop(), Ok(0.1));
        assert_eq!(shared.capture_overruns.load(Ordering::Relaxed), 2);
        // Playback: an empty ring plays silence and counts it.
        let (mut speaker, mut engine) = playback_ring(&shared, 10, 2);
        engine.push(0.5).unwrap();
        let mut out = [1i16; 6];
        speaker.on_output(&mut out);
        assert_eq!(out, [16384, 16384, 0, 0, 0, 0]);
        assert_eq!(shared.playback_underruns.load(Ordering::Relaxed), 2);
        let m = Meter::new();
        m.set(0.25 * 100.0, 100);
        assert!((m.get() + 6.02).abs() < 0.1, "{}", m.get());
        m.set(0.0, 10);
        assert_eq!(m.get(), -120.0);
    }

    #[test]
    fn formats_convert_to_mono_f32_and_back() {
        let drain = |engine: &mut rtrb::Consumer<f32>| {
            std::iter::from_fn(|| engine.pop().ok()).collect::<Vec<f32>>()
        };
        let shared = Arc::new(Shared::new());
        let (mut mic, mut engine) = capture_ring(&shared, 48_000, 1);
        mic.on_input(&[0i16, 16384, -32768, 32767]);
        assert_eq!(drain(&mut engine), [0.0, 0.5, -1.0, 32767.0 / 32768.0]);
        mic.on_input(&[32768u16, 49152]);
        assert_eq!(drain(&mut engine), [0.0, 0.5]);
        // Stereo is mixed down.
        let (mut mic, mut engine) = capture_ring(&shared, 48_000, 2);
        mic.on_input(&[0.5f32, -0.5, 1.0, 0.0]);
        assert_eq!(drain(&mut engine), [0.0, 0.5]);
        // Blocks larger than the scratch buffer go through whole.
        let long = vec![0.25f32; 2 * SCRATCH_FRAMES + 6];
        mic.on_input(&long);
        assert_eq!(drain(&mut engine), vec![0.25; SCRATCH_FRAMES + 3]);
        // Mono to stereo: each sample twice, at the volume set; silence past the end.
        let (mut speaker, mut engine) = playback_ring(&shared, 48_000, 2);
        engine.push(0.5).unwrap();
        engine.push(-0.5).unwrap();
        let mut out = [7i16; 6];
        speaker.on_output(&mut out);
        assert_eq!(out[..4], [16384, 16384, -16384, -16384]);
        assert_eq!(out[4..], [0, 0]);
        shared.volume.store(0.5f32.to_bits(), Ordering::Relaxed);
        engine.push(1.0).unwrap();
        let mut out = [0u16; 2];
        speaker.on_output(&mut out);
        assert_eq!(out, [49152, 49152]);
    }

    #[test]
    fn the_engine_side_converts_rates_trims_stalls_and_mutes() {
        let (mut audio, mut mic, mut speaker) =
            DeviceAudio::detached(shape(44_100, 2), shape(16_000, 1));
        let mut frame = [0.0f32; 960];
        // Nothing yet: silence, counted.
        assert_eq!(audio.capture_into(&mut frame), 0);
        assert_eq!(audio.xruns().1, 960);
        // 400 ms at once (a stall), silence then a level: the frame comes from the newest
        // 100 ms.
        let tone: Vec<f32> = (0..17_640)
            .flat_map(|i| {
                let x = if i < 17_640 - 8_820 { 0.0 } else { 0.5 };
                [x, x]
            })
            .collect();
        mic.on_input(&tone);
        assert_eq!(audio.capture_into(&mut frame), 960);
        assert!(
            frame.iter().all(|&x| (x - 0.5).abs() < 0.05),
            "{:?}",
            &frame[..8]
        );
        audio.set_muted(true);
        mic.on_input(&tone[..1764]);
        assert_eq!(audio.capture_into(&mut frame), 0);
        assert!(frame.iter().all(|&x| x == 0.0));
        // 48 kHz in, 16 kHz out, and no more than 200 ms queued.
        for _ in 0..20 {
            audio.play_frame(&[0.25; 960]);
        }
        let mut out = [0.0f32; 16_000];
        speaker.on_output(&mut out);
        let played = out.iter().filter(|&&x| x > 0.2).count();
        assert!((2800..=3200).contains(&played), "{played}");
        assert_eq!(audio.xruns().3, 16_000 - 3_200);
        assert!(audio.xruns().2 > 0);
    }
}
