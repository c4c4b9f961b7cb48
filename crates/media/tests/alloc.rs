//! The sound callbacks and the engine's side of the rings allocate nothing in a call's steady
//! state.
//!
//! A counting global allocator wraps the system's and counts, on the current thread while a
//! flag is up, every allocation, reallocation and free. The test plays the sound system
//! itself: it runs the very functions the cpal closures call ([`InputCallback::on_input`],
//! [`OutputCallback::on_output`]; the closures' `on_data` only picks the format) with
//! synthetic device buffers, interleaved with the engine's 20 ms frames
//! ([`DeviceAudio::capture_into`], [`DeviceAudio::play_frame`]) as the clock would, for f32
//! and i16, mono and stereo, at the engine's rate and at 44.1 kHz (rate conversion), with
//! device blocks that do and do not line up with the engine's frames. After a warm-up, 1,000
//! callbacks each way must cost nothing: no allocation and no free.
#![cfg(feature = "devices")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::thread::LocalKey;

use cpal::{FromSample, SizedSample};
use switchboard_media::device::{
    DeviceAudio, InputCallback, OutputCallback, StreamShape, ENGINE_RATE,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
}

fn note(counter: &'static LocalKey<Cell<u64>>) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call goes straight to the system allocator; the counting touches only
// constant-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCATIONS);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&FREES);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` counting the allocations and frees on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCATIONS.with(|c| c.set(0));
    FREES.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.with(Cell::get), FREES.with(Cell::get))
}

/// A device, a call's engine and a clock: the engine takes and gives a 20 ms frame whenever
/// the device's callbacks have moved that much audio.
struct Bench<T> {
    audio: DeviceAudio,
    mic: InputCallback,
    speaker: OutputCallback,
    input: Vec<T>,
    output: Vec<T>,
    frame: Vec<f32>,
    tone: Vec<f32>,
    rate: u32,
    /// Frames in a device block.
    block: usize,
    device_frames: u64,
    engine_frames: u64,
}

/// What one run moved.
#[derive(Debug, Default)]
struct Moved {
    /// Engine frames that carried the microphone.
    captured: usize,
    /// Device samples played that were not silence.
    played: usize,
}

impl<T> Bench<T>
where
    T: SizedSample + FromSample<f32> + PartialEq,
    f32: FromSample<T>,
{
    fn new(rate: u32, channels: usize, block: usize) -> Self {
        let shape = StreamShape { rate, channels };
        let (audio, mic, speaker) = DeviceAudio::detached(shape, shape);
        // The microphone hears a 440 Hz tone at half scale, the same in every channel.
        let input = (0..block)
            .flat_map(|i| {
                let x = 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin();
                std::iter::repeat_n(T::from_sample(x), channels)
            })
            .collect();
        let tone = (0..960)
            .map(|i| 0.5 * (i as f32 * 1000.0 * std::f32::consts::TAU / 48_000.0).sin())
            .collect();
        Self {
            audio,
            mic,
            speaker,
            input,
            output: vec![T::EQUILIBRIUM; block * channels],
            frame: vec![0.0; 960],
            tone,
            rate,
            block,
            device_frames: 0,
            engine_frames: 0,
        }
    }

    /// `callbacks` device blocks each way, with the engine's frames in between.
    fn run(&mut self, callbacks: usize) -> Moved {
        let mut moved = Moved::default();
        for _ in 0..callbacks {
            self.mic.on_input(&self.input);
            self.device_frames += self.block as u64;
            // The engine's clock: a frame every 20 ms of device time.
            while self.engine_frames * u64::from(self.rate) / 50 <= self.device_frames {
                self.engine_frames += 1;
                if self.audio.capture_into(&mut self.frame) == self.frame.len() {
                    moved.captured += 1;
                }
                self.audio.play_frame(&self.tone);
            }
            self.speaker.on_output(&mut self.output);
            moved.played += self.output.iter().filter(|&&x| x != T::EQUILIBRIUM).count();
        }
        moved
    }
}

fn steady_state_allocates_nothing<T>(rate: u32, channels: usize, block: usize)
where
    T: SizedSample + FromSample<f32> + PartialEq,
    f32: FromSample<T>,
{
    let case = format!(
        "{} {rate} Hz, {channels} channel(s), {block}-frame blocks",
        std::any::type_name::<T>()
    );
    let mut bench = Bench::<T>::new(rate, channels, block);
    // Warm-up: the first second fills the rings and the converters' buffers.
    bench.run(rate as usize / block);
    let (moved, allocations, frees) = counted(|| bench.run(1000));
    assert_eq!(
        (allocations, frees),
        (0, 0),
        "{case}: allocations and frees in 1,000 callbacks each way"
    );
    // And audio did move both ways, so nothing was skipped.
    let frames = 1000 * block * 50 / rate as usize;
    assert!(
        moved.captured + 2 >= frames,
        "{case}: {} of {frames} engine frames carried the microphone",
        moved.captured
    );
    assert!(
        moved.played >= 1000 * block * channels * 9 / 10,
        "{case}: {} samples played",
        moved.played
    );
    assert!(
        bench.audio.input_level() > -10.0 && bench.audio.output_level() > -10.0,
        "{case}: levels {} / {}",
        bench.audio.input_level(),
        bench.audio.output_level()
    );
}

#[test]
fn f32_mono_at_the_engine_rate() {
    steady_state_allocates_nothing::<f32>(ENGINE_RATE, 1, 480);
}

#[test]
fn f32_stereo_in_blocks_that_do_not_line_up() {
    steady_state_allocates_nothing::<f32>(ENGINE_RATE, 2, 512);
}

#[test]
fn i16_mono_at_the_engine_rate() {
    steady_state_allocates_nothing::<i16>(ENGINE_RATE, 1, 480);
}

#[test]
fn i16_stereo_at_44_1_khz_through_the_rate_converters() {
    steady_state_allocates_nothing::<i16>(44_100, 2, 441);
}

#[test]
fn f32_stereo_at_44_1_khz_in_odd_blocks() {
    steady_state_allocates_nothing::<f32>(44_100, 2, 256);
}

/// The counter does see an allocation where there is one (so a zero above means something).
#[test]
fn the_counter_counts() {
    let ((), allocations, frees) = counted(|| {
        let v: Vec<f32> = std::hint::black_box(vec![0.0; 960]);
        drop(v);
    });
    assert_eq!((allocations, frees), (1, 1));
}
