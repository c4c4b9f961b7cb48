//! In-band DTMF detection: keypad digits heard in the audio itself, for trunks that do not
//! send them as RFC 4733 telephone-events.
//!
//! A key press is two sines at once, one from the low (row) group and one from the high
//! (column) group of ITU-T Q.23:
//!
//! | | 1209 Hz | 1336 Hz | 1477 Hz | 1633 Hz |
//! | --- | --- | --- | --- | --- |
//! | **697 Hz** | 1 | 2 | 3 | A |
//! | **770 Hz** | 4 | 5 | 6 | B |
//! | **852 Hz** | 7 | 8 | 9 | C |
//! | **941 Hz** | * | 0 | # | D |
//!
//! [`DtmfDetector`] measures the eight frequencies with Goertzel filters over blocks of 13 ms,
//! a new block every 6.5 ms (the blocks overlap by half), and calls a block a digit when it
//! meets the receiver criteria of ITU-T Q.24 and Telcordia GR-506 (level, twist, one clear peak
//! per group, and the two tones holding most of the energy). A digit seen in 4 consecutive
//! blocks is reported, once; the same key is reported again only after a pause (a different
//! key needs none).
//!
//! What the detector does with every key (tested; in brackets, where its answer changes, as
//! measured):
//!
//! | | reported | not reported |
//! | --- | --- | --- |
//! | duration | 40 ms (from about 32 ms) | 23 ms (to about 24 ms) |
//! | level, per tone | −25 dBm0, peak 1280 (from about 560) | −35 dBm0, peak 400 (to 490) |
//! | normal twist (row stronger) | 8 dB (up to about 9 dB) | 12 dB (above about 11.4 dB) |
//! | reverse twist (column stronger) | 4 dB (up to about 4.8 dB) | 7 dB (above about 6.2 dB) |
//! | frequency error | ±1.5 % (up to about ±1.8 %) | ±3.5 % (above about ±2.5 %) |
//! | white noise | the tones 15 dB above it | noise alone |
//! | a break in a press | 40 ms: the key again (from 28 ms) | 10 ms: bridged (up to 21 ms) |
//!
//! Duration, level, twist and frequency also pass at their limits all at once (a 40 ms tone,
//! the weaker tone at −25 dBm0, 1.5 % off, with 8 dB of normal or 4 dB of reverse twist).
//!
//! # Timing
//!
//! Q.24 and GR-506 ask that a tone of 40 ms or more be accepted and one of 23 ms or less be
//! rejected; in between is left to the receiver. A block only passes when the tone fills about
//! 70 % of it or more (see `MIN_TONE_ENERGY_SHARE`), so the blocks at the two ends of a tone
//! may or may not count, depending on where the tone falls against the block grid. With
//! 13 ms blocks every 6.5 ms and `ON_BLOCKS` = 4, a clean tone is reported, whatever its
//! alignment, from about 32 ms on, and never when it lasts 24 ms or less; that puts both Q.24
//! limits on the safe side. The tests check both at every alignment.
//!
//! Likewise a pause: `OFF_BLOCKS` = 5 blocks without the digit end a press, which happens
//! for every gap of about 28 ms or more (so a 40 ms inter-digit pause always separates two
//! presses of the same key) and never for a gap of 21 ms or less (so a dropout of 10 ms, the
//! break a receiver must bridge, keeps a long press one digit).

/// Low-group (row) frequencies, Hz (ITU-T Q.23).
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies, Hz (ITU-T Q.23).
const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad, `KEYS[row][column]`.
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The low (row) and high (column) frequencies of DTMF key `key` (`0`–`9`, `*`, `#`, `A`–`D`),
/// Hz; `None` for anything else.
pub fn key_frequencies(key: char) -> Option<(f64, f64)> {
    let key = key.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(r, keys)| {
        keys.iter()
            .position(|&k| k == key)
            .map(|c| (ROWS[r], COLUMNS[c]))
    })
}

/// Key `key` as the in-band tone pair a phone sends: `n` samples at `rate` from sample
/// `start` (to go on without a click from an earlier block), each tone at peak `amplitude`;
/// `None` for a character that is no DTMF key.
pub fn key_tone(key: char, rate: u32, amplitude: f64, start: u64, n: usize) -> Option<Vec<i16>> {
    let (low, high) = key_frequencies(key)?;
    let a = crate::tone::sine(low, rate, amplitude, start, n);
    let b = crate::tone::sine(high, rate, amplitude, start, n);
    Some(
        a.iter()
            .zip(&b)
            .map(|(x, y)| x.saturating_add(*y))
            .collect(),
    )
}

/// Length of an analysis block, seconds: 104 samples at 8 kHz, 208 at 16 kHz, 624 at 48 kHz.
///
/// The Goertzel filters resolve frequencies about 1 / 13 ms = 77 Hz apart, enough to tell the
/// closest DTMF frequencies (697 and 770 Hz, 73 Hz apart: a tone at one is 25 dB down at the
/// other), while keeping a block well under the 23 ms a digit may be too short to count.
///
/// The block length is scaled with the sample rate rather than the audio decimated to 8 kHz
/// first: the resolution and timing are then the same at every rate, no anti-aliasing filter
/// is needed (decimating without one would fold everything above 4 kHz into the band), and
/// sound above 4 kHz still counts in the block's total energy, which only makes the
/// energy-share test stricter. The cost is 18 filter steps per sample (8 Goertzel filters and
/// the energy sum, each sample lying in two overlapping blocks): under a million a second for
/// a 48 kHz call.
const BLOCK_SECONDS: f64 = 0.013;

/// The weakest tone, per frequency, that counts: a peak amplitude of 500 (of 32767) as seen by
/// the Goertzel filter, about −33 dBm0 (G.711's 0 dBm0 sine peaks 3.17 dB below full scale,
/// at about 22 700).
///
/// Q.24 and GR-506 receivers must work down to −25 dBm0 per frequency (peak about 1280; the
/// tests use 1200 and 1000): the 8 dB between that and this floor absorbs a tone 1.5 % off
/// frequency (up to 1.5 dB lower in its filter) and the blocks a tone only partly fills.
/// Silence and faint tones stay under it (tones at peak 400, −35 dBm0, or 100, −47 dBm0, are
/// ignored); noise is left to the other tests, which it fails whatever its level.
const MIN_TONE_AMPLITUDE: f64 = 500.0;

/// Normal twist limit, dB: how much weaker than the row tone the column tone may *measure*.
///
/// Twist is the level of the high (column) group against the low (row) group. GR-506 (and
/// the Q.24 figures the common receivers follow) has the receiver accept the high group from
/// 8 dB below the low group ("normal" or "standard" twist, row stronger: a long line loses
/// more at high frequencies) to 4 dB above it ("reverse" twist, column stronger).
///
/// A 13 ms block measures twist only to about ±2 dB: the stronger tone's sidelobes fall into
/// the weaker tone's filter (worst for 941 and 1209 Hz, 3.5 bins apart), adding to or taking
/// from it depending on phase. So the limit on the measured twist is the standard's 8 dB plus
/// 3 dB: every key at 8 dB normal twist is then accepted at every alignment, also 1.5 % off
/// frequency, and no key beyond about 11.5 dB is (the tests check both).
const MAX_NORMAL_TWIST_DB: f64 = 11.0;

/// Reverse twist limit, dB: how much stronger than the row tone the column tone may measure.
/// GR-506's figure is 4 dB (telephones send the high group about 2 dB louder to make up for
/// line loss, so a short line shows a little reverse twist); with the same measurement margin
/// as [`MAX_NORMAL_TWIST_DB`], 6 dB: every key at 4 dB is accepted, none beyond about 6.2 dB.
const MAX_REVERSE_TWIST_DB: f64 = 6.0;

/// Relative peak, dB: the strongest row must be at least this much above each other row, and
/// the strongest column above each other column. One clear tone per group: a tone between two
/// DTMF frequencies, two keys at once or a third tone in a group is not a digit. Not a figure
/// of the standards but a receiver design rule.
///
/// Common detectors use 6–8 dB; 4 dB here, because the same sidelobe leakage as in the twist
/// measurement leaves a genuine key with 8 dB normal twist and 1.5 % off frequency (the
/// corner of the Q.24 tolerances) only about 5 dB above its neighbours (key 0 is the worst).
/// Talk-off does not rest on this test but on [`MIN_TONE_ENERGY_SHARE`]: on 42 minutes of
/// synthetic speech (espeak-ng, ten voices, three levels, 8 and 48 kHz) neither 4 nor 6 dB
/// gave a single false digit.
const MIN_RELATIVE_PEAK_DB: f64 = 4.0;

/// Share of the block's total energy the two tones must hold: 70 %. This is the talk-off
/// guard: speech and music spread their energy over many frequencies and rarely put 70 % of
/// it in exactly one row and one column frequency, while a keypad tone, even with noise 15 dB
/// below it, puts over 90 % there (about 80 % when it is 1.5 % off frequency).
///
/// It also sets how much of a block a tone must fill for the block to count (a tone filling a
/// share `x` of the block, in silence, shows a share of about `x`), which the timing rests on
/// (see the module documentation). And it rejects tones 3.5 % or more off frequency, which
/// the narrow filters only see in part.
const MIN_TONE_ENERGY_SHARE: f64 = 0.7;

/// Consecutive valid blocks (one every 6.5 ms, each 13 ms long) before a digit is reported:
/// 4 blocks span 32.5 ms. See the module documentation for how this meets the 40 ms operate
/// and 23 ms non-operate limits.
const ON_BLOCKS: u32 = 4;

/// Consecutive blocks without the held digit that end a key press, so that the same key can
/// be reported again: 5 blocks, a pause of about 28 ms or more. Fewer missing blocks (a
/// dropout inside a long press, up to about 21 ms) are bridged.
const OFF_BLOCKS: u32 = 5;

/// An in-band DTMF detector for one direction of one call: mono 16-bit PCM in, key presses
/// out. Sans-IO and allocation-free after construction (apart from the digits returned by
/// [`DtmfDetector::push`]; [`DtmfDetector::push_into`] allocates nothing).
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    /// Samples per analysis block.
    block_len: usize,
    /// Samples between the starts of consecutive blocks (half a block).
    hop: usize,
    /// Goertzel coefficients `2 cos(2π f / rate)`: the four rows, then the four columns.
    coeffs: [f64; 8],
    /// The last `block_len` samples, a ring.
    window: Vec<i16>,
    /// Where the next sample goes in `window`: also the oldest sample, once it is full.
    head: usize,
    /// Samples in `window` so far (up to `block_len`).
    filled: usize,
    /// Samples since the last block was analysed.
    since_block: usize,
    /// The Goertzel power of a tone at [`MIN_TONE_AMPLITUDE`] over a whole block.
    floor_power: f64,
    /// The digit of the last valid blocks and how many of them there were in a row.
    run: Option<(char, u32)>,
    /// The digit reported and not yet released (the key still pressed).
    held: Option<char>,
    /// Consecutive blocks without the held digit.
    misses: u32,
}

impl DtmfDetector {
    /// A detector for mono 16-bit PCM at `rate` Hz: 8000, 16000 and 48000 are tested; any
    /// rate of 8000 or more works (the block is scaled to 13 ms at that rate).
    ///
    /// # Panics
    ///
    /// If `rate` is below 8000 Hz (the telephone band would not fit).
    pub fn new(rate: u32) -> Self {
        assert!(
            rate >= 8000,
            "DTMF detection needs 8000 Hz or more, not {rate}"
        );
        let rate = f64::from(rate);
        // Even, so that two half-block hops make a block.
        let hop = (rate * BLOCK_SECONDS / 2.0).round() as usize;
        let block_len = 2 * hop;
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / rate).cos();
        }
        // A sine of peak A over N samples gives a Goertzel magnitude of about A·N/2.
        let floor_power = (MIN_TONE_AMPLITUDE * block_len as f64 / 2.0).powi(2);
        DtmfDetector {
            block_len,
            hop,
            coeffs,
            window: vec![0; block_len],
            head: 0,
            filled: 0,
            since_block: 0,
            floor_power,
            run: None,
            held: None,
            misses: 0,
        }
    }

    /// Feeds `pcm` (any length: a 20 ms frame, a few samples, a whole file) and returns the
    /// digits reported in it, oldest first; usually none, so usually an empty `Vec` that has
    /// not allocated. A key press is reported once, by the call whose samples complete its
    /// fourth valid block: for a clean tone, 29–35 ms after it began.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<char> {
        let mut digits = Vec::new();
        self.push_into(pcm, &mut digits);
        digits
    }

    /// As [`DtmfDetector::push`], appending the digits to `digits` (which is not cleared):
    /// nothing is allocated unless `digits` has to grow.
    pub fn push_into(&mut self, pcm: &[i16], digits: &mut Vec<char>) {
        for &x in pcm {
            self.window[self.head] = x;
            self.head += 1;
            if self.head == self.block_len {
                self.head = 0;
            }
            self.filled = (self.filled + 1).min(self.block_len);
            self.since_block += 1;
            if self.filled == self.block_len && self.since_block >= self.hop {
                self.since_block = 0;
                let key = self.classify();
                if let Some(digit) = self.step(key) {
                    digits.push(digit);
                }
            }
        }
    }

    /// Forgets everything heard: a tone in progress, the key held. For a new stream (after a
    /// hold, a re-INVITE, a change of source).
    pub fn reset(&mut self) {
        self.window.fill(0);
        self.head = 0;
        self.filled = 0;
        self.since_block = 0;
        self.run = None;
        self.held = None;
        self.misses = 0;
    }

    /// The digit the current block holds, if it meets every criterion.
    fn classify(&self) -> Option<char> {
        let mut s1 = [0f64; 8];
        let mut s2 = [0f64; 8];
        let mut energy = 0f64;
        // Oldest sample first: the ring from `head` to its end, then from its start.
        let (newer, older) = self.window.split_at(self.head);
        for &x in older.iter().chain(newer) {
            let x = f64::from(x);
            energy += x * x;
            for i in 0..8 {
                let s0 = x + self.coeffs[i] * s1[i] - s2[i];
                s2[i] = s1[i];
                s1[i] = s0;
            }
        }
        let mut power = [0f64; 8];
        for i in 0..8 {
            power[i] = s1[i] * s1[i] + s2[i] * s2[i] - self.coeffs[i] * s1[i] * s2[i];
        }
        let (rows, columns) = power.split_at(4);
        let row = strongest(rows);
        let column = strongest(columns);
        let (row_power, column_power) = (rows[row], columns[column]);

        let loud_enough = row_power >= self.floor_power && column_power >= self.floor_power;
        let twist_ok = row_power <= column_power * db(MAX_NORMAL_TWIST_DB)
            && column_power <= row_power * db(MAX_REVERSE_TWIST_DB);
        let clear_peaks = clear_peak(rows, row) && clear_peak(columns, column);
        // A sine of magnitude |X| over N samples carries an energy of about 2|X|²/N.
        let tone_energy = 2.0 * (row_power + column_power) / self.block_len as f64;
        let dominant = tone_energy >= MIN_TONE_ENERGY_SHARE * energy;

        (loud_enough && twist_ok && clear_peaks && dominant).then_some(KEYS[row][column])
    }

    /// Takes one block's verdict; returns the digit to report, if this block completes one.
    fn step(&mut self, key: Option<char>) -> Option<char> {
        self.run = match (self.run, key) {
            (Some((digit, n)), Some(k)) if digit == k => Some((digit, n.saturating_add(1))),
            (_, k) => k.map(|k| (k, 1)),
        };
        if let Some(held) = self.held {
            if key == Some(held) {
                self.misses = 0;
            } else {
                self.misses += 1;
                if self.misses >= OFF_BLOCKS {
                    self.held = None;
                }
            }
        }
        match self.run {
            Some((digit, n)) if n >= ON_BLOCKS && self.held != Some(digit) => {
                self.held = Some(digit);
                self.misses = 0;
                Some(digit)
            }
            _ => None,
        }
    }
}

/// The power ratio of `decibels`.
fn db(decibels: f64) -> f64 {
    10f64.powf(decibels / 10.0)
}

/// The index of the largest of `powers` (the first, on a tie).
fn strongest(powers: &[f64]) -> usize {
    let mut best = 0;
    for (i, &p) in powers.iter().enumerate() {
        if p > powers[best] {
            best = i;
        }
    }
    best
}

/// Whether `powers[best]` stands [`MIN_RELATIVE_PEAK_DB`] above every other entry.
fn clear_peak(powers: &[f64], best: usize) -> bool {
    let margin = db(MIN_RELATIVE_PEAK_DB);
    powers
        .iter()
        .enumerate()
        .all(|(i, &p)| i == best || p * margin <= powers[best])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::sine;

    /// The two tones of `key` for `ms` milliseconds, row and column at the given peaks.
    fn key_tone(key: char, rate: u32, row_amp: f64, column_amp: f64, ms: u32) -> Vec<i16> {
        key_tone_shifted(key, rate, row_amp, column_amp, ms, 1.0)
    }

    /// As `key_tone`, both frequencies multiplied by `factor`.
    fn key_tone_shifted(
        key: char,
        rate: u32,
        row_amp: f64,
        column_amp: f64,
        ms: u32,
        factor: f64,
    ) -> Vec<i16> {
        let (row, column) = key_frequencies(key).expect("a keypad key");
        let n = samples(rate, ms);
        let low = sine(row * factor, rate, row_amp, 0, n);
        let high = sine(column * factor, rate, column_amp, 0, n);
        mix(&low, &high)
    }

    #[test]
    fn a_key_tone_is_the_keys_two_frequencies_and_is_heard_as_that_key() {
        assert_eq!(key_frequencies('1'), Some((697.0, 1209.0)));
        assert_eq!(key_frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(key_frequencies('d'), Some((941.0, 1633.0)));
        assert_eq!(key_frequencies('x'), None);
        assert_eq!(super::key_tone('e', 8000, 6000.0, 0, 160), None);
        for rate in [8000, 16000, 48000] {
            let n = samples(rate, 60);
            let mut pcm = silence(rate, 60);
            for key in "159#*0D".chars() {
                // In two halves, the second going on from the first.
                pcm.extend(super::key_tone(key, rate, 6000.0, 0, n / 2).unwrap());
                pcm.extend(super::key_tone(key, rate, 6000.0, (n / 2) as u64, n - n / 2).unwrap());
                pcm.extend(silence(rate, 60));
            }
            assert_eq!(detect(rate, &pcm), "159#*0D", "{rate} Hz");
            let half = super::key_tone('5', rate, 6000.0, 0, n).unwrap();
            let share = crate::tone::energy_share(&half, rate, 770.0)
                + crate::tone::energy_share(&half, rate, 1336.0);
            assert!(share > 0.9, "{rate} Hz: {share}");
        }
    }

    fn samples(rate: u32, ms: u32) -> usize {
        (rate as usize) * (ms as usize) / 1000
    }

    fn silence(rate: u32, ms: u32) -> Vec<i16> {
        vec![0; samples(rate, ms)]
    }

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x.saturating_add(y))
            .collect()
    }

    /// `keys` dialled at equal levels (peak `amp` per tone): `on_ms` of tone, `off_ms` of
    /// silence each, with `off_ms` of silence before the first.
    fn dial(keys: &str, rate: u32, amp: f64, on_ms: u32, off_ms: u32) -> Vec<i16> {
        let mut pcm = silence(rate, off_ms);
        for key in keys.chars() {
            pcm.extend(key_tone(key, rate, amp, amp, on_ms));
            pcm.extend(silence(rate, off_ms));
        }
        pcm
    }

    /// Everything the detector reports for `pcm`, fed in one call.
    fn detect(rate: u32, pcm: &[i16]) -> String {
        DtmfDetector::new(rate).push(pcm).into_iter().collect()
    }

    /// Deterministic white noise, uniform in ±`amp` (a 64-bit LCG, Knuth's MMIX constants).
    fn noise(n: usize, amp: f64, seed: u64) -> Vec<i16> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                (amp * (2.0 * unit - 1.0)).round() as i16
            })
            .collect()
    }

    /// A linear sweep from `from` to `to` Hz over `ms`, peak `amp`.
    fn sweep(rate: u32, from: f64, to: f64, amp: f64, ms: u32) -> Vec<i16> {
        let n = samples(rate, ms);
        let mut phase = 0f64;
        (0..n)
            .map(|i| {
                let f = from + (to - from) * i as f64 / n as f64;
                phase += 2.0 * std::f64::consts::PI * f / f64::from(rate);
                (amp * phase.sin()).round() as i16
            })
            .collect()
    }

    const ALL_KEYS: &str = "0123456789*#ABCD";

    #[test]
    fn sixteen_keys_at_8_khz() {
        assert_eq!(
            detect(8000, &dial(ALL_KEYS, 8000, 8000.0, 60, 60)),
            ALL_KEYS
        );
    }

    #[test]
    fn sixteen_keys_at_16_khz() {
        assert_eq!(
            detect(16000, &dial(ALL_KEYS, 16000, 8000.0, 60, 60)),
            ALL_KEYS
        );
    }

    #[test]
    fn sixteen_keys_at_48_khz() {
        assert_eq!(
            detect(48000, &dial(ALL_KEYS, 48000, 8000.0, 60, 60)),
            ALL_KEYS
        );
    }

    #[test]
    fn sixteen_keys_at_an_odd_rate() {
        assert_eq!(
            detect(44100, &dial(ALL_KEYS, 44100, 8000.0, 60, 60)),
            ALL_KEYS
        );
    }

    #[test]
    fn a_long_press_is_one_digit() {
        for rate in [8000, 16000, 48000] {
            assert_eq!(
                detect(rate, &dial("5", rate, 8000.0, 500, 60)),
                "5",
                "{rate} Hz"
            );
        }
    }

    #[test]
    fn the_same_key_twice_after_a_60_ms_gap_is_two_digits() {
        for rate in [8000, 16000, 48000] {
            assert_eq!(
                detect(rate, &dial("77", rate, 8000.0, 60, 60)),
                "77",
                "{rate} Hz"
            );
        }
    }

    #[test]
    fn a_40_ms_pause_separates_two_presses_whatever_the_alignment() {
        for lead in 0..104 {
            let mut pcm = silence(8000, 20);
            pcm.extend(vec![0; lead]);
            pcm.extend(key_tone('9', 8000, 8000.0, 8000.0, 60));
            pcm.extend(silence(8000, 40));
            pcm.extend(key_tone('9', 8000, 8000.0, 8000.0, 60));
            assert_eq!(detect(8000, &pcm), "99", "lead {lead}");
        }
    }

    #[test]
    fn a_10_ms_dropout_inside_a_long_press_is_bridged() {
        for lead in (0..104).step_by(3) {
            let mut pcm = vec![0; lead];
            pcm.extend(key_tone('3', 8000, 8000.0, 8000.0, 200));
            pcm.extend(silence(8000, 10));
            pcm.extend(key_tone('3', 8000, 8000.0, 8000.0, 200));
            assert_eq!(detect(8000, &pcm), "3", "lead {lead}");
        }
    }

    #[test]
    fn two_keys_without_a_pause_are_two_digits() {
        let mut pcm = key_tone('1', 8000, 8000.0, 8000.0, 60);
        pcm.extend(key_tone('2', 8000, 8000.0, 8000.0, 60));
        assert_eq!(detect(8000, &pcm), "12");
    }

    #[test]
    fn a_20_ms_tone_is_ignored_and_a_45_ms_tone_is_a_digit() {
        for rate in [8000, 16000, 48000] {
            assert_eq!(
                detect(rate, &dial(ALL_KEYS, rate, 8000.0, 20, 60)),
                "",
                "{rate} Hz"
            );
            assert_eq!(
                detect(rate, &dial(ALL_KEYS, rate, 8000.0, 45, 60)),
                ALL_KEYS
            );
        }
    }

    /// Q.24's limits at every position of the tone against the block grid: 40 ms is always
    /// a digit, 23 ms never.
    #[test]
    fn tones_of_40_ms_count_and_of_23_ms_do_not_whatever_the_alignment() {
        for (rate, step) in [(8000, 1), (16000, 3), (48000, 11)] {
            let block = DtmfDetector::new(rate).block_len;
            for lead in (0..block).step_by(step) {
                for key in ['1', '5', '#', 'D'] {
                    let mut pcm = vec![0; lead];
                    pcm.extend(key_tone(key, rate, 8000.0, 8000.0, 40));
                    pcm.extend(silence(rate, 60));
                    assert_eq!(
                        detect(rate, &pcm),
                        key.to_string(),
                        "{rate} Hz, lead {lead}"
                    );
                    let mut pcm = vec![0; lead];
                    pcm.extend(key_tone(key, rate, 8000.0, 8000.0, 23));
                    pcm.extend(silence(rate, 60));
                    assert_eq!(detect(rate, &pcm), "", "{rate} Hz, lead {lead}, 23 ms");
                }
            }
        }
    }

    #[test]
    fn the_digit_comes_29_to_35_ms_after_the_tone_begins() {
        let mut detector = DtmfDetector::new(8000);
        assert!(detector.push(&silence(8000, 50)).is_empty());
        let tone = key_tone('8', 8000, 8000.0, 8000.0, 100);
        let at = (1..=tone.len())
            .find(|&n| !detector.push(&tone[n - 1..n]).is_empty())
            .expect("the digit");
        assert!((229..=281).contains(&at), "reported after {at} samples");
    }

    #[test]
    fn twist_within_the_limits_is_accepted_and_beyond_them_is_not() {
        let base = 3000.0;
        let louder = |decibels: f64| base * 10f64.powf(decibels / 20.0);
        for rate in [8000, 16000, 48000] {
            let twisted = |row: f64, column: f64, ms: u32| {
                let mut pcm = silence(rate, 60);
                for key in ALL_KEYS.chars() {
                    pcm.extend(key_tone(key, rate, row, column, ms));
                    pcm.extend(silence(rate, 60));
                }
                detect(rate, &pcm)
            };
            for ms in [60, 500] {
                // Normal twist (row stronger): GR-506's 8 dB is accepted, 12 dB is not.
                assert_eq!(twisted(louder(6.0), base, ms), ALL_KEYS, "{rate} Hz");
                assert_eq!(twisted(louder(8.0), base, ms), ALL_KEYS, "{rate} Hz");
                assert_eq!(twisted(louder(12.0), base, ms), "", "{rate} Hz");
                // Reverse twist (column stronger): GR-506's 4 dB is accepted, 7 dB is not.
                assert_eq!(twisted(base, louder(4.0), ms), ALL_KEYS, "{rate} Hz");
                assert_eq!(twisted(base, louder(7.0), ms), "", "{rate} Hz");
                assert_eq!(twisted(base, louder(8.0), ms), "", "{rate} Hz");
            }
        }
    }

    /// Q.24's operate limits all at once: 40 ms, the weaker tone at −25 dBm0, 8 dB normal or
    /// 4 dB reverse twist, 1.5 % off frequency; every key, every 4th position against the
    /// blocks.
    #[test]
    fn every_key_is_heard_at_the_corners_of_the_tolerances() {
        let weak = 1280.0;
        for (row, column) in [
            (weak * 10f64.powf(0.4), weak),
            (weak, weak * 10f64.powf(0.2)),
        ] {
            for factor in [0.985, 1.015] {
                for lead in (0..104).step_by(4) {
                    for key in ALL_KEYS.chars() {
                        let mut pcm = vec![0; lead];
                        pcm.extend(key_tone_shifted(key, 8000, row, column, 40, factor));
                        pcm.extend(silence(8000, 60));
                        assert_eq!(
                            detect(8000, &pcm),
                            key.to_string(),
                            "row {row:.0}, column {column:.0}, × {factor}, lead {lead}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tones_down_to_minus_25_dbm0_count_and_faint_ones_do_not() {
        for rate in [8000, 48000] {
            assert_eq!(
                detect(rate, &dial(ALL_KEYS, rate, 1200.0, 60, 60)),
                ALL_KEYS
            );
            assert_eq!(
                detect(rate, &dial(ALL_KEYS, rate, 1000.0, 60, 60)),
                ALL_KEYS
            );
            assert_eq!(detect(rate, &dial(ALL_KEYS, rate, 400.0, 60, 60)), "");
            assert_eq!(detect(rate, &dial(ALL_KEYS, rate, 100.0, 60, 60)), "");
        }
        // The loudest a pair can be without clipping.
        assert_eq!(
            detect(8000, &dial(ALL_KEYS, 8000, 16000.0, 60, 60)),
            ALL_KEYS
        );
    }

    #[test]
    fn silence_and_white_noise_are_not_digits() {
        assert_eq!(detect(8000, &silence(8000, 2000)), "");
        for (rate, seed) in [(8000, 1), (8000, 2), (16000, 3), (48000, 4)] {
            let n = samples(rate, 2000);
            assert_eq!(detect(rate, &noise(n, 3000.0, seed)), "", "{rate} Hz");
            assert_eq!(detect(rate, &noise(n, 12000.0, seed)), "", "{rate} Hz");
        }
    }

    #[test]
    fn digits_in_noise_at_15_db_snr_are_heard() {
        // Two tones of peak A carry A² of power; uniform noise in ±B carries B²/3.
        let amp = 4000.0;
        let noise_amp = amp * 3f64.sqrt() * 10f64.powf(-15.0 / 20.0);
        for (rate, seed) in [(8000, 7), (16000, 8), (48000, 9)] {
            let clean = dial(ALL_KEYS, rate, amp, 60, 60);
            let noisy = mix(&clean, &noise(clean.len(), noise_amp, seed));
            assert_eq!(detect(rate, &noisy), ALL_KEYS, "{rate} Hz");
        }
    }

    #[test]
    fn a_single_tone_a_sweep_and_a_chord_are_not_digits() {
        for rate in [8000, 48000] {
            let n = samples(rate, 2000);
            assert_eq!(detect(rate, &sine(1000.0, rate, 8000.0, 0, n)), "", "1 kHz");
            assert_eq!(
                detect(rate, &sweep(rate, 300.0, 3400.0, 8000.0, 2000)),
                "",
                "sweep"
            );
            let chord = [440.0, 554.0, 659.0]
                .iter()
                .map(|&f| sine(f, rate, 6000.0, 0, n))
                .reduce(|a, b| mix(&a, &b))
                .expect("three notes");
            assert_eq!(detect(rate, &chord), "", "chord");
            for f in ROWS.iter().chain(&COLUMNS) {
                assert_eq!(
                    detect(rate, &sine(*f, rate, 8000.0, 0, n)),
                    "",
                    "{f} Hz alone"
                );
            }
        }
    }

    #[test]
    fn call_progress_tones_are_not_digits() {
        let n = samples(8000, 2000);
        // North American dial tone, ringback and busy; the European 425 Hz tone.
        for (a, b) in [
            (350.0, 440.0),
            (440.0, 480.0),
            (480.0, 620.0),
            (425.0, 425.0),
        ] {
            let pcm = mix(&sine(a, 8000, 6000.0, 0, n), &sine(b, 8000, 6000.0, 0, n));
            assert_eq!(detect(8000, &pcm), "", "{a} + {b} Hz");
        }
    }

    #[test]
    fn two_rows_or_two_columns_at_once_are_not_digits() {
        let n = samples(8000, 200);
        let two_rows = mix(
            &key_tone('1', 8000, 6000.0, 6000.0, 200),
            &sine(ROWS[2], 8000, 6000.0, 0, n),
        );
        assert_eq!(detect(8000, &two_rows), "");
        let two_columns = mix(
            &key_tone('1', 8000, 6000.0, 6000.0, 200),
            &sine(COLUMNS[2], 8000, 6000.0, 0, n),
        );
        assert_eq!(detect(8000, &two_columns), "");
    }

    #[test]
    fn frequencies_1_5_percent_off_count_and_3_5_percent_off_do_not() {
        for rate in [8000, 48000] {
            for (factor, expected) in [
                (1.015, ALL_KEYS),
                (0.985, ALL_KEYS),
                (1.035, ""),
                (0.965, ""),
            ] {
                let mut pcm = silence(rate, 60);
                for key in ALL_KEYS.chars() {
                    pcm.extend(key_tone_shifted(key, rate, 6000.0, 6000.0, 60, factor));
                    pcm.extend(silence(rate, 60));
                }
                assert_eq!(detect(rate, &pcm), expected, "{rate} Hz, × {factor}");
            }
        }
    }

    #[test]
    fn frames_of_any_size_give_the_same_digits() {
        let amp = 4000.0;
        let clean = dial(ALL_KEYS, 8000, amp, 45, 45);
        let pcm = mix(&clean, &noise(clean.len(), 1200.0, 11));
        let whole = detect(8000, &pcm);
        assert_eq!(whole, ALL_KEYS);
        for size in [1, 7, 13, 103, 104, 105, 160, 333] {
            let mut detector = DtmfDetector::new(8000);
            let mut digits = Vec::new();
            for chunk in pcm.chunks(size) {
                detector.push_into(chunk, &mut digits);
            }
            assert_eq!(
                digits.into_iter().collect::<String>(),
                whole,
                "frames of {size}"
            );
        }
        assert!(DtmfDetector::new(8000).push(&[]).is_empty());
    }

    #[test]
    fn reset_forgets_a_tone_in_progress_and_the_key_held() {
        let tone = key_tone('4', 8000, 8000.0, 8000.0, 200);
        let mut detector = DtmfDetector::new(8000);
        // 20 ms of tone, a reset, 20 ms more: never 40 ms in one go.
        assert!(detector.push(&tone[..160]).is_empty());
        detector.reset();
        assert!(detector.push(&tone[160..320]).is_empty());
        // A held key is reported again after a reset, with no pause.
        assert_eq!(detector.push(&tone), vec!['4']);
        detector.reset();
        assert_eq!(detector.push(&tone), vec!['4']);
    }

    #[test]
    #[should_panic(expected = "8000 Hz or more")]
    fn rates_below_8_khz_are_refused() {
        let _ = DtmfDetector::new(4000);
    }
}
