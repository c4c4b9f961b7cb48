//! G.711 (ITU-T G.711, 1988): µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8),
//! 8 kHz, one byte a sample. Written here rather than taken from a crate: it is a page of
//! arithmetic from the Recommendation's segment tables, and the crates that offer it add
//! nothing but a dependency.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Linear 16-bit → µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// µ-law → linear 16-bit.
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0f);
    let s = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if u & 0x80 != 0 { -s } else { s }) as i16
}

/// Linear 16-bit → A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    let (exponent, mantissa) = if s >= 256 {
        let mut e = 7;
        let mut mask = 0x4000;
        while s & mask == 0 {
            e -= 1;
            mask >>= 1;
        }
        (e, (s >> (e + 3)) & 0x0f)
    } else {
        (0, s >> 4)
    };
    ((sign | (exponent << 4) | mantissa) ^ 0x55) as u8
}

/// A-law → linear 16-bit.
pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0f);
    let s = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if a & 0x80 != 0 { s } else { -s }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_sign_codes() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(alaw_decode(0xd5), 8);
        // The extremes stay in range and keep their sign.
        assert!(ulaw_decode(ulaw_encode(i16::MIN)) < -30000);
        assert!(ulaw_decode(ulaw_encode(i16::MAX)) > 30000);
        assert!(alaw_decode(alaw_encode(i16::MIN)) < -30000);
        assert!(alaw_decode(alaw_encode(i16::MAX)) > 30000);
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for c in 0..=255u8 {
            // µ-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            if c != 0x7f {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "µ-law {c:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#x}");
        }
    }

    #[test]
    fn a_sine_survives_with_the_expected_snr() {
        // G.711 gives about 38 dB SNR on a full-scale sine.
        for (enc, dec) in [
            (ulaw_encode as fn(i16) -> u8, ulaw_decode as fn(u8) -> i16),
            (alaw_encode, alaw_decode),
        ] {
            let (mut signal, mut noise) = (0f64, 0f64);
            for i in 0..8000 {
                let x = (10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin())
                    as i16;
                let y = dec(enc(x));
                signal += f64::from(x).powi(2);
                noise += f64::from(x - y).powi(2);
            }
            let snr = 10.0 * (signal / noise).log10();
            assert!(snr > 30.0, "SNR {snr:.1} dB");
        }
    }
}
