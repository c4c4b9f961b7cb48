//! Streaming sample-rate conversion of mono audio, for devices (48 kHz) and for bridges
//! between calls whose codecs run at different rates (Opus 48 kHz, G.711 8 kHz). Kept apart
//! from [`crate::device`] so that programs without sound devices (the router) need no cpal.

use std::collections::VecDeque;

use rubato::{FftFixedIn, Resampler};

/// Streaming sample-rate conversion of mono audio with rubato (FFT-based, fixed input
/// chunks); a plain copy when the rates are equal.
pub struct Rate {
    from: u32,
    to: u32,
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
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
        Self {
            from,
            to,
            inner,
            pending: Vec::new(),
            out: VecDeque::new(),
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
        loop {
            let need = r.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            match r.process(&[&self.pending[..need]], None) {
                Ok(mut o) => self.out.extend(o.pop().unwrap_or_default()),
                Err(_) => {
                    self.pending.clear();
                    break;
                }
            }
            self.pending.drain(..need);
        }
    }

    /// Samples at the output rate waiting.
    pub fn available(&self) -> usize {
        self.out.len()
    }

    /// `n` samples at the output rate, if there are that many.
    pub fn pull(&mut self, n: usize) -> Option<Vec<f32>> {
        (self.out.len() >= n).then(|| self.out.drain(..n).collect())
    }
}
