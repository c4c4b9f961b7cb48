//! Tones for the window's calls: WAVs to play, and Goertzel checks of what was heard
//! (`switchboard_media::tone`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use switchboard_media::{tone, wav};

/// A WAV of a `hz` tone, `seconds` long, mono at `rate`.
pub fn tone_wav(path: &Path, hz: f64, rate: u32, seconds: usize) -> Result<()> {
    let mut sink = wav::WavSink::create(path, rate)?;
    sink.write(&tone::sine(hz, rate, 8000.0, 0, rate as usize * seconds))?;
    sink.finish()?;
    Ok(())
}

/// Fails unless in `path` more than `min_loud` 50 ms blocks are loud and `hz` beats `other`
/// in more than half of them; returns how many were loud.
pub fn heard(path: &Path, hz: f64, other: f64, min_loud: usize, what: &str) -> Result<usize> {
    let (samples, rate) = wav::read_mono(path).with_context(|| format!("{}", path.display()))?;
    let (wins, loud) = tone::detect(&samples, rate, &[hz, other]);
    let share = wins[0] as f64 / loud.max(1) as f64;
    eprintln!("{what}: {hz} Hz in {share:.2} of {loud} loud blocks");
    if loud <= min_loud || share <= 0.5 {
        bail!("{what}: {hz} Hz in {share:.2} of {loud} loud blocks");
    }
    Ok(loud)
}

/// The 50 ms blocks of `path` that are loud and hold at least `share` of their energy at
/// `hz` (a tone among others in a mix holds about its part).
pub fn blocks_with(path: &Path, hz: f64, share: f64) -> Result<usize> {
    let (samples, rate) = wav::read_mono(path).with_context(|| format!("{}", path.display()))?;
    Ok(tone::blocks_holding(&samples, rate, hz, share))
}

/// The level of `path` where it sounds: the 90th percentile of its 50 ms blocks' RMS (silence
/// around the sound does not pull it down).
pub fn level(path: &Path) -> Result<f64> {
    let (samples, rate) = wav::read_mono(path).with_context(|| format!("{}", path.display()))?;
    let n = (rate / 20) as usize;
    let mut rms: Vec<f64> = samples
        .chunks_exact(n.max(1))
        .map(|b| (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n as f64).sqrt())
        .collect();
    if rms.is_empty() {
        bail!("{}: no audio", path.display());
    }
    rms.sort_by(f64::total_cmp);
    Ok(rms[rms.len() * 9 / 10])
}
