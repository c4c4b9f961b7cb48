//! Streaming sample-rate conversion of mono audio, for devices (48 kHz) and for bridges
//! between calls whose codecs run at different rates (Opus 48 kHz, G.711 8 kHz). Kept apart
//! from [`crate::device`] so that programs without sound devices (the router) need no cpal.

use std::collections::VecDeque;

use rubato::{FftFixedIn, Resampler};

/// Streaming sample-rate conversion of mono audio with rubato (FFT-based, fixed input
/// chunks); a plain copy when the rates are equal.
///
/// Its buffers are made in [`Rate::new`] and grow, if ever, to the largest amount that
/// waits at once: in a steady stream neither [`push`](Self::push) nor
/// [`pull_into`](Self::pull_into) allocates (rubato's `process_into_buffer` writes into a
/// buffer of ours).
pub struct Rate {
    from: u32,
    to: u32,
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    /// One converted chunk, before it joins `out`.
    chunk: Vec<Vec<f32>>,
    out: VecDeque<f32>,
}

impl std::fmt::Debug for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rate({} → {} Hz)", self.from, self.to)
    }
}

impl Rate {
    pub fn new(from: u32, to: u32) -> Self {
        // 10 ms chunks; two sub-chunks keep the added delay near 10 ms.
        let inner = (from != to)
            .then(|| FftFixedIn::new(from as usize, to as usize, (from / 100) as usize, 2, 1).ok())
            .flatten();
        let chunk = inner
            .as_ref()
            .map(|r| r.output_buffer_allocate(true))
            .unwrap_or_default();
        // Room for 100 ms each way before anything grows.
        Self {
            from,
            to,
            inner,
            pending: Vec::with_capacity(from as usize / 10),
            chunk,
            out: VecDeque::with_capacity(to as usize / 10),
        }
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Samples at the input rate.
    pub fn push(&mut self, samples: &[f32]) {
        let Some(r) = self.inner.as_mut() else {
            self.out.extend(samples);
            return;
        };
        self.pending.extend_from_slice(samples);
        let mut used = 0;
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - used < need {
                break;
            }
            let input = [&self.pending[used..used + need]];
            match r.process_into_buffer(&input, self.chunk.as_mut_slice(), None) {
                Ok((_, written)) => self.out.extend(&self.chunk[0][..written]),
                Err(_) => {
                    used = self.pending.len();
                    break;
                }
            }
            used += need;
        }
        self.pending.drain(..used);
    }

    /// Samples at the output rate waiting.
    pub fn available(&self) -> usize {
        self.out.len()
    }

    /// `n` samples at the output rate, if there are that many.
    pub fn pull(&mut self, n: usize) -> Option<Vec<f32>> {
        (self.out.len() >= n).then(|| self.out.drain(..n).collect())
    }

    /// Fills `out` with the next samples at the output rate if there are that many (true),
    /// else leaves it as it is.
    pub fn pull_into(&mut self, out: &mut [f32]) -> bool {
        if self.out.len() < out.len() {
            return false;
        }
        let n = out.len();
        for (o, x) in out.iter_mut().zip(self.out.drain(..n)) {
            *o = x;
        }
        true
    }

    /// The next `n` samples at the output rate (fewer if fewer wait), taken out as they are
    /// read.
    pub fn drain(&mut self, n: usize) -> impl Iterator<Item = f32> + '_ {
        self.out.drain(..n.min(self.out.len()))
    }

    /// Throws away the next `n` samples at the output rate.
    pub fn skip(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Keeps the newest `max` samples waiting, no more (after a stall, or while nobody reads).
    pub fn keep_newest(&mut self, max: usize) {
        self.skip(self.out.len().saturating_sub(max));
    }
}
