//! An adaptive jitter buffer for fixed-duration frames (20 ms here). Packets go in as they
//! arrive, in any order; one frame comes out per frame period. It
//!
//! - waits for `target` frames before it starts playing, and again after a long gap;
//! - reorders by (extended) sequence number, drops duplicates and packets that come too late;
//! - answers [`Playout::Missing`] for a lost frame so the decoder conceals it;
//! - adapts `target` to the measured interarrival jitter (RFC 3550 §6.4.1's estimate, given
//!   by the session) between `min_frames` and `max_frames`, and drops a frame when more than
//!   two frames above target have piled up (clock drift, a burst after a stall), so delay
//!   does not creep up;
//! - holds at most `capacity` packets: memory is bounded whatever a peer sends.

use std::collections::BTreeMap;

/// What to play for the next frame period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame's payload.
    Frame(Vec<u8>),
    /// This frame is lost or late: conceal it.
    Missing,
    /// Nothing is playing yet (buffering): play silence, not concealment.
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    pub late: u64,
    pub duplicates: u64,
    /// Frames dropped to bring the delay back down to target.
    pub dropped_for_delay: u64,
    /// Packets refused because the buffer was full.
    pub overflow: u64,
    /// Times playout stepped back to a stream it had run ahead of.
    pub resyncs: u64,
    pub concealed: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, Vec<u8>>,
    /// Extended sequence number of the next frame to play, once playing.
    next: Option<u64>,
    /// Highest extended sequence number seen, to extend 16-bit numbers.
    highest: Option<u64>,
    target: usize,
    min_frames: usize,
    max_frames: usize,
    capacity: usize,
    /// Consecutive periods with nothing to play.
    starved: u32,
    /// The frame the last pop reported missing.
    lost: Option<u64>,
    /// Play one made-up frame to deepen the buffer (after the minimum was raised, or a
    /// packet came too late).
    stretch: bool,
    /// A floor under the target raised by packets that came too late (our playout clock
    /// and the sender's drift, the scheduler delayed us): lowered again by one frame after
    /// every 10 s without a late packet.
    late_floor: usize,
    since_late: u32,
    pub stats: JitterStats,
}

impl JitterBuffer {
    /// `min_frames`..=`max_frames` of delay (e.g. 1..=10 for 20–200 ms at 20 ms frames).
    pub fn new(min_frames: usize, max_frames: usize) -> Self {
        let min_frames = min_frames.max(1);
        let max_frames = max_frames.max(min_frames);
        Self {
            packets: BTreeMap::new(),
            next: None,
            highest: None,
            target: min_frames + 1,
            min_frames,
            max_frames,
            capacity: max_frames * 4 + 8,
            starved: 0,
            lost: None,
            stretch: false,
            late_floor: 0,
            since_late: 0,
            stats: JitterStats::default(),
        }
    }

    /// Frames of delay the buffer aims for now.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Sets the target from the interarrival jitter (in frames): about twice the jitter plus
    /// one frame, within the bounds.
    pub fn adapt(&mut self, jitter_frames: f64) {
        self.since_late += 1;
        if self.since_late >= 500 && self.late_floor > 0 {
            self.late_floor -= 1;
            self.since_late = 0;
        }
        let t = (2.0 * jitter_frames + 1.0).ceil() as usize;
        self.target = t.clamp(self.min_frames.max(self.late_floor), self.max_frames);
    }

    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 16),
            Some(h) => {
                // The candidate closest to the highest seen (RFC 3550 A.1's wrap handling).
                let base = h & !0xffff;
                let candidates = [
                    base.wrapping_sub(1 << 16) | u64::from(seq),
                    base | u64::from(seq),
                    (base + (1 << 16)) | u64::from(seq),
                ];
                *candidates
                    .iter()
                    .min_by_key(|c| c.abs_diff(h))
                    .unwrap_or(&(base | u64::from(seq)))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// A packet came after its turn: one frame more of delay from now on, once per episode
    /// (a stall that makes several packets late at once is one event); `stretch` plays a
    /// made-up frame to deepen the buffer at once.
    fn late_episode(&mut self, stretch: bool) {
        if self.since_late >= 25 || self.late_floor == 0 {
            self.late_floor = (self.target + 1).min(self.max_frames);
            self.target = self.late_floor;
            self.stretch |= stretch;
        }
        self.since_late = 0;
    }

    /// A packet arrived.
    pub fn push(&mut self, seq: u16, payload: Vec<u8>) {
        let ext = self.extend(seq);
        if let Some(n) = self.next.filter(|&n| ext < n) {
            if self.packets.is_empty() && n - ext <= self.max_frames as u64 {
                // Nothing queued and the packet only a little behind: playout ran ahead of
                // the stream (a stall bunched our frame clock, or the sender's). Step back to
                // the stream instead of concealing every frame from here on: this packet
                // plays next, a little more delay from now on.
                self.stats.resyncs += 1;
                self.next = Some(ext);
                self.packets.insert(ext, payload);
                self.late_episode(false);
                return;
            }
            self.stats.late += 1;
            // Its frame was concealed already: one frame more of delay from now on — once
            // per episode (a stall that makes several packets late at once is one event; a
            // frame per packet would pile up delay for a single hiccup).
            self.late_episode(true);
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.packets.len() >= self.capacity {
            self.stats.overflow += 1;
            return;
        }
        self.packets.insert(ext, payload);
    }

    /// After a [`Playout::Missing`] for a lost frame, the packet that follows it if it is
    /// here already (Opus rebuilds the lost frame from that packet's in-band FEC).
    pub fn peek_next(&self) -> Option<&[u8]> {
        self.packets.get(&(self.lost? + 1)).map(Vec::as_slice)
    }

    /// Raises the least delay to `frames` (never lowers it). A playing buffer grows by one
    /// made-up frame ([`Playout::Missing`]) when it holds less than that.
    pub fn set_min_frames(&mut self, frames: usize) {
        if frames > self.min_frames {
            self.min_frames = frames.min(self.max_frames);
            self.target = self.target.max(self.min_frames);
            self.stretch = self.next.is_some();
        }
    }

    /// The next frame period.
    pub fn pop(&mut self) -> Playout {
        self.lost = None;
        if self.stretch && self.next.is_some() && self.packets.len() < self.target {
            self.stretch = false;
            self.stats.concealed += 1;
            return Playout::Missing;
        }
        let Some(next) = self.next else {
            // Buffering: start once `target` frames are in.
            if self.packets.len() >= self.target {
                if let Some((&first, _)) = self.packets.iter().next() {
                    self.next = Some(first);
                    return self.pop();
                }
            }
            return Playout::Idle;
        };
        // Too much delay piled up: skip the oldest frames down to target + 1.
        while self.packets.len() > self.target + 2 {
            if let Some((&k, _)) = self.packets.iter().next() {
                self.packets.remove(&k);
                self.stats.dropped_for_delay += 1;
                self.next = Some(k + 1);
            }
        }
        let next = self.next.unwrap_or(next);
        // Drop anything older than what we play now (left behind by a skip).
        while let Some((&k, _)) = self.packets.iter().next() {
            if k < next {
                self.packets.remove(&k);
            } else {
                break;
            }
        }
        self.next = Some(next + 1);
        match self.packets.remove(&next) {
            Some(p) => {
                self.starved = 0;
                Playout::Frame(p)
            }
            None => {
                self.starved += 1;
                if self.packets.is_empty() && self.starved > 25 {
                    // Half a second of nothing (the peer holds, or stopped): buffer afresh.
                    self.next = None;
                    self.starved = 0;
                    return Playout::Idle;
                }
                self.stats.concealed += 1;
                self.lost = Some(next);
                Playout::Missing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(jb: &mut JitterBuffer, n: usize) -> Vec<Playout> {
        (0..n).map(|_| jb.pop()).collect()
    }

    #[test]
    fn playout_that_ran_ahead_steps_back_to_the_stream() {
        let mut jb = JitterBuffer::new(1, 10);
        jb.push(1, vec![1]);
        jb.push(2, vec![2]);
        assert_eq!(jb.pop(), Playout::Frame(vec![1]));
        assert_eq!(jb.pop(), Playout::Frame(vec![2]));
        // A burst of our frame clock: three frames played before their packets came.
        for _ in 0..3 {
            assert_eq!(jb.pop(), Playout::Missing);
        }
        // The stream goes on at its own pace: 3 plays next, then 4, not three late drops.
        jb.push(3, vec![3]);
        assert_eq!(jb.stats.resyncs, 1);
        assert_eq!(jb.pop(), Playout::Frame(vec![3]));
        jb.push(4, vec![4]);
        assert_eq!(jb.pop(), Playout::Frame(vec![4]));
        assert_eq!(jb.stats.late, 0);
    }

    #[test]
    fn a_raised_minimum_deepens_the_buffer_once_and_peek_follows_a_loss() {
        let mut jb = JitterBuffer::new(1, 10);
        jb.adapt(0.0);
        assert_eq!(jb.target(), 1);
        jb.push(1, vec![1]);
        assert_eq!(jb.pop(), Playout::Frame(vec![1]));
        // 2 is lost; 3 arrives after 2's turn: plain concealment, nothing to peek at.
        assert_eq!(jb.pop(), Playout::Missing);
        assert_eq!(jb.peek_next(), None);
        jb.push(3, vec![3]);
        assert_eq!(jb.pop(), Playout::Frame(vec![3]));
        // Now one packet ahead is kept: one made-up frame, then the stream a frame later.
        jb.set_min_frames(2);
        jb.push(4, vec![4]);
        assert_eq!(jb.pop(), Playout::Missing);
        assert_eq!(jb.peek_next(), None, "a stretch is not a loss");
        jb.push(5, vec![5]);
        assert_eq!(jb.pop(), Playout::Frame(vec![4]));
        // 6 lost, 7 here in time: the lost frame's successor is there to rebuild it from.
        jb.push(7, vec![7]);
        assert_eq!(jb.pop(), Playout::Frame(vec![5]));
        jb.push(8, vec![8]);
        assert_eq!(jb.pop(), Playout::Missing);
        assert_eq!(jb.peek_next(), Some(&[7u8][..]));
        assert_eq!(jb.pop(), Playout::Frame(vec![7]));
    }

    #[test]
    fn buffers_then_plays_in_order_and_reorders() {
        let mut jb = JitterBuffer::new(2, 10);
        assert_eq!(jb.target(), 3);
        jb.push(11, vec![11]);
        jb.push(10, vec![10]);
        assert_eq!(jb.pop(), Playout::Idle);
        jb.push(12, vec![12]);
        assert_eq!(
            frames(&mut jb, 3),
            vec![
                Playout::Frame(vec![10]),
                Playout::Frame(vec![11]),
                Playout::Frame(vec![12])
            ]
        );
    }

    #[test]
    fn losses_are_concealed_late_and_duplicate_packets_dropped() {
        let mut jb = JitterBuffer::new(1, 10);
        for s in [100u16, 101, 103] {
            jb.push(s, vec![s as u8]);
        }
        assert_eq!(jb.pop(), Playout::Frame(vec![100]));
        assert_eq!(jb.pop(), Playout::Frame(vec![101]));
        assert_eq!(jb.pop(), Playout::Missing);
        jb.push(102, vec![102]); // too late now
        jb.push(103, vec![103]); // duplicate
                                 // A late packet deepens the buffer by a frame: one made-up frame, then on.
        let before = jb.target();
        assert_eq!(jb.pop(), Playout::Missing);
        assert_eq!(jb.pop(), Playout::Frame(vec![103]));
        assert_eq!(jb.stats.late, 1);
        assert_eq!(jb.stats.duplicates, 1);
        assert_eq!(jb.stats.concealed, 2);
        jb.adapt(0.0);
        assert_eq!(jb.target(), before, "the floor holds");
        for _ in 0..500 {
            jb.adapt(0.0);
        }
        assert_eq!(
            jb.target(),
            before - 1,
            "and comes down after 10 s without lateness"
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut jb = JitterBuffer::new(1, 10);
        for s in [65534u16, 65535, 0, 1] {
            jb.push(s, vec![s as u8]);
        }
        let got: Vec<_> = frames(&mut jb, 4);
        assert_eq!(
            got,
            [254u8, 255, 0, 1]
                .iter()
                .map(|b| Playout::Frame(vec![*b]))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn delay_is_trimmed_and_memory_bounded() {
        let mut jb = JitterBuffer::new(1, 4);
        jb.adapt(0.0);
        assert_eq!(jb.target(), 1);
        for s in 0..1000u16 {
            jb.push(s, vec![0; 160]);
        }
        assert!(jb.len() <= 4 * 4 + 8, "bounded: {}", jb.len());
        assert!(jb.stats.overflow > 0);
        let _ = jb.pop();
        assert!(jb.len() <= jb.target() + 2);
        jb.adapt(3.0);
        assert_eq!(jb.target(), 4, "clamped to max");
    }

    #[test]
    fn a_long_silence_starts_buffering_again() {
        let mut jb = JitterBuffer::new(1, 10);
        jb.push(1, vec![1]);
        jb.push(2, vec![2]);
        let _ = frames(&mut jb, 2);
        let out = frames(&mut jb, 40);
        assert!(out.contains(&Playout::Idle));
    }
}
