//! Tones: a sine generator for headless agents and tests, and a Goertzel detector that tells
//! how much of a block's energy sits at a given frequency.

/// `n` samples of a sine at `freq` Hz, `rate` samples a second, peak `amplitude`, starting at
/// sample index `start` (so consecutive calls continue the same wave).
pub fn sine(freq: f64, rate: u32, amplitude: f64, start: u64, n: usize) -> Vec<i16> {
    (0..n as u64)
        .map(|i| {
            let t = (start + i) as f64 / f64::from(rate);
            (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

/// The share of the block's energy at `freq` (0 to about 1), by the Goertzel algorithm: a pure
/// tone at `freq` gives about 1, silence or other frequencies about 0.
pub fn energy_share(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    let mut total = 0f64;
    for &x in samples {
        let x = f64::from(x);
        total += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if total < 1.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // Parseval: a sine of amplitude A has total energy A²N/2 and Goertzel power (AN/2)².
    (power / (total * n as f64 / 2.0)).min(1.0)
}

/// Which of `candidates` dominates the signal: for each 50 ms block with real energy, the
/// candidate holding most of it (at least half); returns, per candidate, how many blocks it
/// won, and the number of blocks that had energy.
pub fn detect(samples: &[i16], rate: u32, candidates: &[f64]) -> (Vec<usize>, usize) {
    let mut wins = vec![0; candidates.len()];
    let mut loud = 0;
    for chunk in loud_blocks(samples, rate) {
        loud += 1;
        let shares: Vec<f64> = candidates
            .iter()
            .map(|&f| energy_share(chunk, rate, f))
            .collect();
        if let Some((i, s)) = shares.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
            if *s >= 0.5 {
                wins[i] += 1;
            }
        }
    }
    (wins, loud)
}

/// The 50 ms blocks of `samples` with real energy (RMS of at least 100).
fn loud_blocks(samples: &[i16], rate: u32) -> impl Iterator<Item = &[i16]> {
    blocks(samples, rate).filter(|b| loud(b))
}

/// 50 ms blocks.
fn blocks(samples: &[i16], rate: u32) -> std::slice::ChunksExact<'_, i16> {
    samples.chunks_exact(((rate / 20) as usize).max(1))
}

/// A block with real energy (RMS of 100 or more).
fn loud(b: &[i16]) -> bool {
    let energy = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    (energy / b.len() as f64).sqrt() >= 100.0
}

/// The longest run of quiet 50 ms blocks between two loud ones: how long the sound stopped
/// in the middle of a recording (a call on hold, a gap), leading and trailing quiet left out.
pub fn longest_gap(samples: &[i16], rate: u32) -> usize {
    let (mut longest, mut run, mut started) = (0, 0, false);
    for b in blocks(samples, rate) {
        if loud(b) {
            if started {
                longest = longest.max(run);
            }
            started = true;
            run = 0;
        } else {
            run += 1;
        }
    }
    longest
}

/// The longest break in a tone at `freq`: the longest run of 50 ms blocks that do not hold
/// most of their energy at `freq` between two that do (a party that went on hold, and came
/// back), and the longest run of quiet blocks inside that break (what the listener heard
/// meanwhile: music, or silence). `(0, 0)` when the tone never breaks off and comes back.
pub fn longest_break(samples: &[i16], rate: u32, freq: f64) -> (usize, usize) {
    let (mut best, mut run, mut seen) = ((0, 0), (0, 0, 0), false);
    for b in blocks(samples, rate) {
        let heard = loud(b);
        if heard && energy_share(b, rate, freq) >= 0.5 {
            if seen && run.0 > best.0 {
                best = (run.0, run.2);
            }
            seen = true;
            run = (0, 0, 0);
        } else {
            // (blocks, quiet run now, longest quiet run)
            run.0 += 1;
            run.1 = if heard { 0 } else { run.1 + 1 };
            run.2 = run.2.max(run.1);
        }
    }
    best
}

/// How many 50 ms blocks with real energy hold at least `share` of it at `freq`: how long a
/// tone was heard, in a mix too (a tone among others holds about its part).
pub fn blocks_holding(samples: &[i16], rate: u32, freq: f64, share: f64) -> usize {
    loud_blocks(samples, rate)
        .filter(|b| energy_share(b, rate, freq) >= share)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_the_quiet_between_sounds() {
        // 0.2 s quiet, 0.5 s tone, 1 s quiet, 0.5 s tone, 0.3 s quiet, 0.1 s tone, 2 s quiet.
        let rate = 8000;
        let tone = |n| sine(440.0, rate, 8000.0, 0, n);
        let quiet = |n| vec![0i16; n];
        let x: Vec<i16> = [
            quiet(1600),
            tone(4000),
            quiet(8000),
            tone(4000),
            quiet(2400),
            tone(800),
            quiet(16000),
        ]
        .concat();
        assert_eq!(longest_gap(&x, rate), 20);
        assert_eq!(longest_gap(&tone(8000), rate), 0);
        assert_eq!(longest_gap(&quiet(8000), rate), 0);
    }

    #[test]
    fn a_tone_is_found_and_others_are_not() {
        let x = sine(440.0, 8000, 8000.0, 0, 8000);
        assert!(energy_share(&x, 8000, 440.0) > 0.9);
        assert!(energy_share(&x, 8000, 1000.0) < 0.05);
        let (wins, loud) = detect(&x, 8000, &[440.0, 1000.0]);
        assert_eq!(loud, 20);
        assert_eq!(wins, vec![20, 0]);
        let silence = vec![0i16; 8000];
        assert_eq!(detect(&silence, 8000, &[440.0]), (vec![0], 0));
    }

    #[test]
    fn a_tone_in_a_mix_is_counted_in_the_blocks_that_hold_it() {
        // 1 s of 440 Hz alone, then 1 s of 440 Hz and 1000 Hz together, then 1 s of silence.
        let mut x = sine(440.0, 8000, 6000.0, 0, 16_000);
        let other = sine(1000.0, 8000, 6000.0, 8000, 8000);
        for (s, o) in x[8000..].iter_mut().zip(other) {
            *s = s.saturating_add(o);
        }
        x.extend(vec![0; 8000]);
        assert_eq!(blocks_holding(&x, 8000, 1000.0, 0.2), 20);
        assert_eq!(blocks_holding(&x, 8000, 440.0, 0.2), 40);
        assert_eq!(blocks_holding(&x, 8000, 700.0, 0.2), 0);
    }

    #[test]
    fn the_longest_break_in_a_tone_and_what_filled_it() {
        let rate = 8000;
        let tone = |n| sine(440.0, rate, 8000.0, 0, n);
        let music = |n| sine(300.0, rate, 8000.0, 0, n);
        let quiet = |n| vec![0i16; n];
        // Music before the tone is no break; then 1 s of music with 0.25 s of quiet in it,
        // a short 0.5 s of silence, and a break that never ends.
        let x: Vec<i16> = [
            music(8000),
            tone(4000),
            music(3200),
            quiet(2000),
            music(2800),
            tone(4000),
            quiet(4000),
            tone(4000),
            music(16_000),
        ]
        .concat();
        assert_eq!(longest_break(&x, rate, 440.0), (20, 5));
        assert_eq!(longest_break(&tone(8000), rate, 440.0), (0, 0));
        assert_eq!(longest_break(&music(8000), rate, 440.0), (0, 0));
        let silent_hold: Vec<i16> = [tone(4000), quiet(16_000), tone(4000)].concat();
        assert_eq!(longest_break(&silent_hold, rate, 440.0), (40, 40));
    }

    #[test]
    fn consecutive_blocks_continue_the_wave() {
        let a = sine(1000.0, 8000, 1000.0, 0, 160);
        let b = sine(1000.0, 8000, 1000.0, 160, 160);
        let whole = sine(1000.0, 8000, 1000.0, 0, 320);
        assert_eq!([a, b].concat(), whole);
    }
}
