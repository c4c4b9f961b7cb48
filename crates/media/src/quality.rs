//! Call quality as an estimated MOS from the ITU-T G.107 E-model, in the simplified form that
//! is standard for VoIP monitoring (Cole & Rosenbluth, "Voice over IP performance monitoring",
//! 2001): R = R0 − Id − Ie,eff with the default R0 − Is = 93.2, the delay impairment Id
//! approximated from the one-way mouth-to-ear delay, and the equipment impairment under loss
//! from G.113's Ie and Bpl per codec (G.107 §7.5, formula 7-29).

/// Codec figures of ITU-T G.113 Appendix I used by the E-model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment without loss.
    pub ie: f64,
    /// Packet-loss robustness.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet loss concealment (G.711 Appendix I): Ie 0, Bpl 25.1.
    pub const G711_PLC: Self = Self { ie: 0.0, bpl: 25.1 };
    /// Opus in its wideband voice modes has no G.113 entry; these are the values commonly
    /// used for it (Ie 0, Bpl 20). Used once Opus lands.
    pub const OPUS: Self = Self { ie: 0.0, bpl: 20.0 };
}

/// The transmission rating R (0–100) for a one-way delay in ms and a random loss share in
/// percent.
pub fn r_factor(one_way_delay_ms: f64, loss_percent: f64, codec: CodecImpairment) -> f64 {
    let d = one_way_delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss_percent.clamp(0.0, 100.0);
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (conversational quality, 1–4.5) from R (G.107 Annex B, formula B-4).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // No impairment: R 93.2, MOS about 4.41 — the E-model's ceiling for narrowband.
        let r = r_factor(0.0, 0.0, CodecImpairment::G711_PLC);
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos(r) - 4.41).abs() < 0.01, "{}", mos(r));
        // 150 ms one way, no loss: still "satisfied" (R > 80).
        assert!(r_factor(150.0, 0.0, CodecImpairment::G711_PLC) > 80.0);
        // 5 % loss on G.711 with PLC: Ie,eff = 95·5/30.1 ≈ 15.8.
        let r = r_factor(40.0, 5.0, CodecImpairment::G711_PLC);
        assert!((r - (93.2 - 0.96 - 15.78)).abs() < 0.1, "{r}");
        assert!(mos(r) > 3.5 && mos(r) < 4.0, "{}", mos(r));
        // Worse and worse, never out of range.
        let m: Vec<f64> = [0.0, 1.0, 5.0, 20.0, 100.0]
            .iter()
            .map(|l| mos(r_factor(60.0, *l, CodecImpairment::G711_PLC)))
            .collect();
        assert!(m.windows(2).all(|w| w[0] > w[1]), "{m:?}");
        assert!(m.iter().all(|x| (1.0..=4.5).contains(x)));
        assert_eq!(mos(-5.0), 1.0);
        assert_eq!(mos(120.0), 4.5);
        // Long delay alone costs a lot past 177 ms.
        assert!(r_factor(400.0, 0.0, CodecImpairment::G711_PLC) < 60.0);
    }
}
