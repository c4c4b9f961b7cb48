//! Sounds played outside a call and the microphone test: the ring on the ringing device, the
//! Settings page's test sound, and a live input level for "test your microphone".
//!
//! Each runs a [`DeviceAudio`] of its own on a thread that feeds or drains it in 20 ms steps,
//! so the device goes back to the system as soon as the handle is dropped, and a device that is
//! missing or fails is reported through the same [`DeviceEvent`]s as in a call.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::device::{DeviceAudio, DeviceChoice, DeviceEvent, ENGINE_RATE};

const FRAME: usize = ENGINE_RATE as usize / 50;

/// A tone of several partials with a short fade at both ends (no clicks), at 48 kHz.
fn tone(partials: &[(f64, f64)], seconds: f64, decay: bool) -> Vec<f32> {
    let n = (seconds * f64::from(ENGINE_RATE)) as usize;
    let fade = (0.01 * f64::from(ENGINE_RATE)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(ENGINE_RATE);
            let s: f64 = partials
                .iter()
                .map(|&(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            let edge = (i.min(n - 1 - i) as f64 / fade as f64).min(1.0);
            let env = if decay {
                (-3.0 * t / seconds).exp()
            } else {
                1.0
            };
            (s * edge * env) as f32
        })
        .collect()
}

fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * f64::from(ENGINE_RATE)) as usize]
}

/// One cycle of the ring, 6 s: two 0.4 s bursts of 440 + 480 Hz 0.2 s apart, then 5 s of
/// silence — a double ring that reads as "incoming call" and is unlike Teams' own tone, so an
/// agent can tell the two apart.
pub fn ring_cycle() -> Vec<f32> {
    let burst = tone(&[(440.0, 0.25), (480.0, 0.25)], 0.4, false);
    let mut v = burst.clone();
    v.extend(silence(0.2));
    v.extend(burst);
    v.extend(silence(5.0));
    v
}

/// The Settings page's test sound, 1.2 s: three rising notes (C5, E5, G5) with a soft decay.
pub fn test_sound() -> Vec<f32> {
    let mut v = Vec::new();
    for f in [523.25, 659.25, 783.99] {
        v.extend(tone(&[(f, 0.35), (2.0 * f, 0.08)], 0.4, true));
    }
    v
}

/// Frequencies a detector can look for in [`test_sound`] and [`ring_cycle`].
pub const TEST_SOUND_HZ: [f64; 3] = [523.25, 659.25, 783.99];
pub const RING_HZ: [f64; 2] = [440.0, 480.0];

/// Frames of silence before a sound (20 ms each).
const LEAD_IN_FRAMES: usize = 25;

/// How long silence follows a sound played once, so the device plays all of it.
const PLAY_OUT: Duration = Duration::from_millis(500);

/// How long to wait for a device to open before a sound starts anyway.
const OPEN_WAIT: Duration = Duration::from_secs(3);

struct Shared {
    stop: AtomicBool,
    done: AtomicBool,
    /// Input level, dBFS (f32 bits).
    level: AtomicU32,
    /// Highest input level since it was last read (f32 bits).
    peak: AtomicU32,
}

/// Keeps a loop to 20 ms steps on the wall clock; a loop held up for long (a suspended
/// machine) starts afresh instead of rushing to catch up.
struct Pace(Instant);

impl Pace {
    fn new() -> Self {
        Self(Instant::now())
    }
    fn wait(&mut self) {
        self.0 += Duration::from_millis(20);
        let now = Instant::now();
        if self.0 > now {
            std::thread::sleep(self.0 - now);
        } else if now - self.0 > Duration::from_millis(200) {
            self.0 = now;
        }
    }
}

/// A device opened on a thread of its own, run by `body` until stopped or done.
struct Worker {
    shared: Arc<Shared>,
    events: mpsc::Receiver<DeviceEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn spawn(
        name: &str,
        choice: DeviceChoice,
        body: impl FnOnce(&mut DeviceAudio, &Shared, &mpsc::Sender<DeviceEvent>) + Send + 'static,
    ) -> Self {
        let silent = (-120.0f32).to_bits();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            level: AtomicU32::new(silent),
            peak: AtomicU32::new(silent),
        });
        let (tx, events) = mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut audio = DeviceAudio::open(choice);
                body(&mut audio, &s, &tx);
                s.done.store(true, Ordering::Relaxed);
            })
            .ok();
        if thread.is_none() {
            shared.done.store(true, Ordering::Relaxed);
        }
        Self {
            shared,
            events,
            thread,
        }
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.halt();
    }
}

fn forward(audio: &DeviceAudio, tx: &mpsc::Sender<DeviceEvent>) {
    while let Some(e) = audio.try_event() {
        let _ = tx.send(e);
    }
}

/// A sound playing on an output device: stopped when dropped.
pub struct Player(Worker);

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player").finish_non_exhaustive()
    }
}

impl Player {
    /// Plays `clip` (48 kHz mono) on the output device named (else the default) at `volume`
    /// (0.0–1.0), once or over and over until stopped.
    pub fn start(device: Option<String>, clip: Vec<f32>, volume: f32, repeat: bool) -> Self {
        let choice = DeviceChoice {
            output: device,
            open_output: true,
            ..DeviceChoice::default()
        };
        Self(Worker::spawn(
            "switchboard-sound",
            choice,
            move |audio, s, tx| {
                audio.set_volume(volume);
                let stopped = || s.stop.load(Ordering::Relaxed);
                // Start when the device is open (or has failed), so the first notes are not
                // lost to a ring that nobody reads yet.
                let waited = Instant::now();
                let mut opened = false;
                while !opened && waited.elapsed() < OPEN_WAIT && !stopped() {
                    while let Some(e) = audio.try_event() {
                        opened |= !matches!(e, DeviceEvent::Lost { .. });
                        let _ = tx.send(e);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut pace = Pace::new();
                // A lead-in of silence: through ALSA's pulse plugin (how cpal reaches PulseAudio
                // and PipeWire) the first few hundred milliseconds of a new stream were lost in
                // our tests, which would cut the first note or ring.
                for _ in 0..LEAD_IN_FRAMES {
                    if stopped() {
                        return;
                    }
                    audio.play_frame(&[0.0; FRAME]);
                    pace.wait();
                }
                let mut pos = 0;
                while !stopped() {
                    if pos >= clip.len() {
                        if !repeat || clip.is_empty() {
                            break;
                        }
                        pos = 0;
                    }
                    let end = (pos + FRAME).min(clip.len());
                    let mut frame = [0.0; FRAME];
                    frame[..end - pos].copy_from_slice(&clip[pos..end]);
                    pos = end;
                    audio.play_frame(&frame);
                    forward(audio, tx);
                    pace.wait();
                }
                // Let the device play out what is queued: our ring (at most 200 ms) and the
                // sound system's own buffer, which closing the stream would throw away. cpal
                // cannot drain, so silence follows.
                let tail = Instant::now();
                while !stopped() && tail.elapsed() < PLAY_OUT {
                    audio.play_frame(&[0.0; FRAME]);
                    pace.wait();
                }
            },
        ))
    }

    /// The next device event, if any.
    pub fn try_event(&self) -> Option<DeviceEvent> {
        self.0.events.try_recv().ok()
    }

    /// True once a sound played once has ended (or could not start).
    pub fn finished(&self) -> bool {
        self.0.shared.done.load(Ordering::Relaxed)
    }

    /// Stops the sound and gives the device back; the events seen until then.
    pub fn stop(mut self) -> Vec<DeviceEvent> {
        self.0.halt();
        self.0.events.try_iter().collect()
    }

    /// Waits for a sound played once to end (at most `limit`); the device events seen.
    pub fn wait(mut self, limit: Duration) -> Vec<DeviceEvent> {
        let start = Instant::now();
        while !self.finished() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0.halt();
        self.0.events.try_iter().collect()
    }
}

/// Level of 20 ms of audio, dBFS (−120 for silence).
pub fn level_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let rms = (frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32).sqrt();
    if rms > 1e-6 {
        (20.0 * rms.log10()).max(-120.0)
    } else {
        -120.0
    }
}

/// The microphone test: an input device opened on its own, its level read live; closed when
/// dropped.
pub struct MicTest(Worker);

impl std::fmt::Debug for MicTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicTest").finish_non_exhaustive()
    }
}

impl MicTest {
    /// Opens the input device named (else the default) and measures it until dropped.
    pub fn start(device: Option<String>) -> Self {
        let choice = DeviceChoice {
            input: device,
            open_input: true,
            ..DeviceChoice::default()
        };
        Self(Worker::spawn(
            "switchboard-mic-test",
            choice,
            |audio, s, tx| {
                let mut pace = Pace::new();
                let mut frame = [0.0; FRAME];
                while !s.stop.load(Ordering::Relaxed) {
                    // Measured on what the engine takes in (after rate conversion), the same
                    // audio a call would send.
                    audio.capture_into(&mut frame);
                    let db = level_dbfs(&frame);
                    s.level.store(db.to_bits(), Ordering::Relaxed);
                    if db > f32::from_bits(s.peak.load(Ordering::Relaxed)) {
                        s.peak.store(db.to_bits(), Ordering::Relaxed);
                    }
                    forward(audio, tx);
                    pace.wait();
                }
            },
        ))
    }

    /// The level of the latest 20 ms, dBFS.
    pub fn level(&self) -> f32 {
        f32::from_bits(self.0.shared.level.load(Ordering::Relaxed))
    }

    /// The highest level since the last call (a meter's peak hold), dBFS.
    pub fn take_peak(&self) -> f32 {
        f32::from_bits(
            self.0
                .shared
                .peak
                .swap((-120.0f32).to_bits(), Ordering::Relaxed),
        )
    }

    /// The next device event, if any.
    pub fn try_event(&self) -> Option<DeviceEvent> {
        self.0.events.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_i16(v: &[f32]) -> Vec<i16> {
        v.iter().map(|s| (s * 32767.0) as i16).collect()
    }

    #[test]
    fn the_test_sound_carries_its_three_notes_in_order() {
        let s = test_sound();
        assert_eq!(s.len(), 48_000 * 12 / 10);
        assert!(s.iter().all(|x| x.abs() <= 1.0));
        for (i, f) in TEST_SOUND_HZ.iter().enumerate() {
            let note = to_i16(&s[i * 19_200..i * 19_200 + 9_600]);
            let (wins, loud) = crate::tone::detect(&note, ENGINE_RATE, &TEST_SOUND_HZ);
            assert!(loud >= 3, "note {i} is audible");
            assert_eq!(wins[i], loud, "note {i} is {f} Hz throughout: {wins:?}");
        }
    }

    #[test]
    fn the_ring_is_two_bursts_then_silence() {
        let r = ring_cycle();
        assert_eq!(r.len(), 48_000 * 6);
        let burst = to_i16(&r[960..18_000]);
        assert!(crate::tone::energy_share(&burst, ENGINE_RATE, 440.0) > 0.3);
        assert!(crate::tone::energy_share(&burst, ENGINE_RATE, 480.0) > 0.3);
        // The gap and the tail are silent, and there are no clicks at the edges.
        assert!(r[19_300..28_700].iter().all(|&x| x == 0.0));
        assert!(r[48_000..].iter().all(|&x| x == 0.0));
        assert!(r[0].abs() < 1e-3 && r[19_199].abs() < 0.01);
    }

    #[test]
    fn level_is_rms_in_dbfs() {
        assert_eq!(level_dbfs(&[]), -120.0);
        assert_eq!(level_dbfs(&[0.0; 960]), -120.0);
        let full: Vec<f32> = (0..960)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!(level_dbfs(&full).abs() < 0.01);
        let half = vec![0.5f32; 960];
        assert!((level_dbfs(&half) + 6.02).abs() < 0.01);
    }
}
