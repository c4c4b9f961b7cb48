//! SRTP (RFC 3711) keyed by SDES (RFC 4568): the `a=crypto` lines of the SDP carry each
//! side's master key and salt, and each side encrypts what it sends with its own key.
//!
//! The cipher work is webrtc-rs' `webrtc-srtp` (AES-CM with HMAC-SHA1, RFC 3711; AES-GCM,
//! RFC 7714). Around it this module adds what a call needs:
//!
//! - the `a=crypto` attribute: generating fresh keys, writing and reading `inline:` key
//!   parameters (lifetime accepted; MKI refused, the library has none);
//! - one context per direction, with replay protection on what we receive;
//! - packets from an SSRC that never authenticated (SRTP and SRTCP apart) are checked in a
//!   throw-away context first: the library keeps state per SSRC *before* it checks the tag,
//!   so a stream of forged packets with random SSRCs would otherwise grow its table without
//!   bound, and its replay window starts from the first index it is shown, forged or not (a
//!   forged first SRTCP packet with a high index made every genuine report look replayed —
//!   found by fuzz/media's srtp target).
//!
//! SDES does not carry the rollover counter (ROC): a receiver takes it to be 0 at the first
//! packet it authenticates. If a sender's sequence number wraps before any of its packets got
//! through, every later packet fails. Our sessions start SRTP streams below 2^15 so that this
//! would take half an hour of lost packets; a peer that starts near 2^16 and loses its first
//! packets is not recovered from (webrtc-srtp has no way to try the next ROC).

use std::collections::HashSet;

use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The crypto suites we offer and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// AES-128 counter mode with an 80-bit HMAC-SHA1 tag (RFC 4568 §6.2.1); what Direct
    /// Routing SBCs use.
    AesCm128HmacSha1_80,
    /// AES-128 GCM (RFC 7714 §14.2).
    AeadAes128Gcm,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm];

    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Self::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Self::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }

    fn key_len(self) -> usize {
        16
    }

    fn salt_len(self) -> usize {
        match self {
            Self::AesCm128HmacSha1_80 => 14,
            Self::AeadAes128Gcm => 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("unusable a=crypto line ({0})")]
    BadCrypto(String),
    #[error("the two a=crypto lines name different suites ({0} and {1})")]
    SuiteMismatch(&'static str, &'static str),
    #[error("SRTP authentication failed (the keys exchanged in SDP do not match, or the packet was altered)")]
    AuthFailed,
    #[error("an unencrypted RTCP packet on an SRTP call, dropped (some peers send their RTCP BYE in the clear as the call ends)")]
    Unencrypted,
    #[error("a replayed SRTP packet")]
    Replayed,
    #[error("malformed SRTP packet: {0}")]
    Malformed(String),
    #[error("SRTP: {0}")]
    Other(String),
}

/// One side's SDES key: the `a=crypto` tag, suite, master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    pub tag: u32,
    pub suite: Suite,
    key: Vec<u8>,
    salt: Vec<u8>,
}

impl std::fmt::Debug for SdesKey {
    // Keys never go to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdesKey")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SdesKey {
    /// A fresh random key and salt for `suite`.
    pub fn generate(tag: u32, suite: Suite) -> Self {
        let key: Vec<u8> = (0..suite.key_len()).map(|_| rand::random()).collect();
        let salt: Vec<u8> = (0..suite.salt_len()).map(|_| rand::random()).collect();
        Self {
            tag,
            suite,
            key,
            salt,
        }
    }

    /// The `a=crypto` value: `1 AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>`.
    pub fn to_attribute(&self) -> String {
        let mut material = self.key.clone();
        material.extend_from_slice(&self.salt);
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            base64::engine::general_purpose::STANDARD.encode(material)
        )
    }

    /// Reads an `a=crypto` value (RFC 4568 §9.1): `tag suite inline:KEY||SALT[|lifetime]
    /// [|MKI:length] [session params]`. Several key parameters and MKIs are refused (the
    /// SRTP library has no MKI); a lifetime is accepted (a call does not reach 2^31 packets).
    pub fn parse(value: &str) -> Result<Self, SrtpError> {
        let bad = |why: &str| SrtpError::BadCrypto(why.to_owned());
        let mut parts = value.split_whitespace();
        let tag = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t < 1_000_000_000)
            .ok_or_else(|| bad("the tag is not a number of up to 9 digits"))?;
        let suite_name = parts.next().ok_or_else(|| bad("no crypto suite"))?;
        let suite = Suite::from_name(suite_name)
            .ok_or_else(|| bad(&format!("suite {suite_name} is not supported")))?;
        let params = parts.next().ok_or_else(|| bad("no key parameters"))?;
        if params.contains(';') {
            return Err(bad("several master keys are not supported"));
        }
        let inline = params
            .strip_prefix("inline:")
            .ok_or_else(|| bad("the key method is not inline:"))?;
        let mut fields = inline.split('|');
        let b64 = fields.next().unwrap_or("");
        for f in fields {
            if f.contains(':') {
                return Err(bad("an MKI is not supported"));
            }
            let lifetime_ok = match f.strip_prefix("2^") {
                Some(exp) => exp.parse::<u32>().is_ok_and(|e| e <= 48),
                None => f.parse::<u64>().is_ok(),
            };
            if !lifetime_ok {
                return Err(bad("the key lifetime is malformed"));
            }
        }
        let material = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the key is not base64"))?;
        let (kl, sl) = (suite.key_len(), suite.salt_len());
        if material.len() != kl + sl {
            return Err(bad(&format!(
                "the key and salt are {} bytes, {} needs {}",
                material.len(),
                suite.name(),
                kl + sl
            )));
        }
        Ok(Self {
            tag,
            suite,
            key: material[..kl].to_vec(),
            salt: material[kl..].to_vec(),
        })
    }

    fn context(&self, replay: bool) -> Result<Context, SrtpError> {
        let (rtp, rtcp) = if replay {
            (
                Some(srtp_replay_protection(128)),
                Some(srtcp_replay_protection(128)),
            )
        } else {
            (None, None)
        };
        Context::new(&self.key, &self.salt, self.suite.profile(), rtp, rtcp)
            .map_err(|e| SrtpError::Other(e.to_string()))
    }
}

/// The SRTCP authentication tag of AES_CM_128_HMAC_SHA1_80 (RFC 3711 §5.2), in bytes.
const SRTCP_TAG_80: usize = 10;

/// SSRCs that authenticated, at most this many (a call sees one stream each way, a few more
/// after transfers).
const KNOWN_SSRCS: usize = 16;

/// Both directions of one call's SRTP.
pub struct Srtp {
    suite: Suite,
    tx: Context,
    rx: Context,
    remote: SdesKey,
    /// (SRTCP?, SSRC) pairs that authenticated.
    known: HashSet<(bool, u32)>,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srtp").field("suite", &self.suite).finish()
    }
}

fn map_err(e: webrtc_srtp::Error) -> SrtpError {
    use webrtc_srtp::Error as E;
    match e {
        E::ErrFailedToVerifyAuthTag
        | E::RtpFailedToVerifyAuthTag
        | E::RtcpFailedToVerifyAuthTag => SrtpError::AuthFailed,
        E::ErrDuplicated | E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) => {
            SrtpError::Replayed
        }
        // AES-GCM reports a bad tag as its one AEAD error.
        E::AesGcm(_) => SrtpError::AuthFailed,
        E::ErrTooShortRtp
        | E::ErrTooShortRtcp
        | E::RtcpInvalidLengthAuthTag(..)
        | E::SrtpTooSmall(..)
        | E::SrtcpTooSmall(..)
        | E::Util(_)
        | E::Rtcp(_) => SrtpError::Malformed(e.to_string()),
        other => SrtpError::Other(other.to_string()),
    }
}

/// Runs a decryption of the library's; a panic inside it (its parsers on input we did not
/// foresee) becomes a malformed packet instead of taking the call down. The library parses
/// before it changes any state, so the context stays usable.
fn guarded(
    f: impl FnOnce() -> Result<bytes::Bytes, webrtc_srtp::Error>,
) -> Result<bytes::Bytes, SrtpError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(SrtpError::Malformed(
            "a packet the SRTP library could not parse".into(),
        )),
    }
}

impl Srtp {
    /// From our `a=crypto` value (what we send with) and the peer's (what it sends with).
    pub fn new(local: &str, remote: &str) -> Result<Self, SrtpError> {
        let local = SdesKey::parse(local)?;
        let remote = SdesKey::parse(remote)?;
        if local.suite != remote.suite {
            return Err(SrtpError::SuiteMismatch(
                local.suite.name(),
                remote.suite.name(),
            ));
        }
        Ok(Self {
            suite: local.suite,
            tx: local.context(false)?,
            rx: remote.context(true)?,
            remote,
            known: HashSet::new(),
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts and authenticates an RTP or RTCP packet we send.
    pub fn protect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let out = if crate::rtcp::is_rtcp(packet) {
            self.tx.encrypt_rtcp(packet)
        } else {
            self.tx.encrypt_rtp(packet)
        };
        out.map(|b| b.to_vec()).map_err(map_err)
    }

    /// Checks and decrypts an SRTP or SRTCP packet that arrived.
    pub fn unprotect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let rtcp = crate::rtcp::is_rtcp(packet);
        let ssrc_at = if rtcp { 4 } else { 8 };
        let ssrc = packet
            .get(ssrc_at..ssrc_at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| SrtpError::Malformed(format!("{} bytes", packet.len())))?;
        if rtcp {
            // We never agree UNENCRYPTED_SRTCP, so every SRTCP packet must have its E flag
            // set. webrtc-srtp 0.17 does not hold to that: with AES-CM it hands back a packet
            // whose E flag is clear without checking its tag at all (RFC 3711 §3.4 makes
            // SRTCP authentication mandatory), and with AES-GCM it authenticates the flag as
            // if it were set (RFC 7714 §9.1 puts the real one in the AAD), so the bit can be
            // flipped unnoticed. Both found by fuzz/media's srtp target; refused here.
            let tag = match self.suite {
                Suite::AesCm128HmacSha1_80 => SRTCP_TAG_80,
                Suite::AeadAes128Gcm => 0,
            };
            let e_flag = packet
                .len()
                .checked_sub(tag + 4)
                .and_then(|i| packet.get(i));
            if e_flag.is_none_or(|b| b & 0x80 == 0) {
                return Err(clear_or_forged(packet));
            }
        }
        if !rtcp {
            // The library's RTP header parser (the `rtp` crate) panics on a header extension,
            // or an RFC 8285 element in one, that runs past the packet (found by fuzz/media's
            // srtp target): check the header with ours first.
            crate::rtp::check_extension_elements(packet)
                .map_err(|e| SrtpError::Malformed(e.to_string()))?;
        }
        if !self.known.contains(&(rtcp, ssrc)) {
            // A new SSRC: authenticate in a context of its own first (see the module docs).
            let mut probe = self.remote.context(false)?;
            guarded(|| {
                if rtcp {
                    probe.decrypt_rtcp(packet)
                } else {
                    probe.decrypt_rtp(packet)
                }
            })
            .map_err(|e| match e {
                SrtpError::AuthFailed if rtcp => clear_or_forged(packet),
                e => e,
            })?;
            if self.known.len() >= KNOWN_SSRCS {
                // Start over (the old streams are gone; replay state goes with them).
                self.rx = self.remote.context(true)?;
                self.known.clear();
            }
            self.known.insert((rtcp, ssrc));
        }
        let rx = &mut self.rx;
        guarded(|| {
            if rtcp {
                rx.decrypt_rtcp(packet)
            } else {
                rx.decrypt_rtp(packet)
            }
        })
        .map(|b| b.to_vec())
        .map_err(|e| match e {
            SrtpError::AuthFailed if rtcp => clear_or_forged(packet),
            e => e,
        })
    }
}

/// Why an RTCP packet that did not authenticate is refused: sent in the clear (baresip
/// sends its closing BYE and SDES so once it has dropped the call's keys), or forged or
/// keyed wrongly. Either way it is dropped; the two are counted apart so that a peer's
/// clear goodbye does not read as a key mismatch.
fn clear_or_forged(packet: &[u8]) -> SrtpError {
    if crate::rtcp::is_clear_compound(packet) {
        SrtpError::Unencrypted
    } else {
        SrtpError::AuthFailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{self, RtpHeader};

    fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
        rtp::build(
            &RtpHeader {
                payload_type: 0,
                marker: false,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc,
            },
            &[0x55; 160],
        )
    }

    #[test]
    fn rfc4568_example_line_is_read_and_its_mki_refused() {
        // RFC 4568 §4's example carries an MKI, which we refuse; without it, it is read.
        let with_mki =
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        assert!(matches!(
            SdesKey::parse(with_mki),
            Err(SrtpError::BadCrypto(m)) if m.contains("MKI")
        ));
        let k = SdesKey::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
        )
        .unwrap();
        assert_eq!(k.tag, 1);
        assert_eq!(k.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!(k.key.len() + k.salt.len(), 30);
        // Round trip, and keys never show in Debug.
        let g = SdesKey::generate(2, Suite::AeadAes128Gcm);
        assert_eq!(SdesKey::parse(&g.to_attribute()).unwrap(), g);
        assert!(!format!("{g:?}").contains(&g.to_attribute()[25..]));
    }

    #[test]
    fn bad_crypto_lines_are_refused_with_a_reason() {
        for (line, why) in [
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
            ("1 F8_128_HMAC_SHA1_80 inline:AAAA", "not supported"),
            ("1 AES_CM_128_HMAC_SHA1_80", "no key"),
            ("1 AES_CM_128_HMAC_SHA1_80 uri:x", "inline"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "base64"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "bytes"),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x",
                "lifetime",
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                "several",
            ),
        ] {
            match SdesKey::parse(line) {
                Err(SrtpError::BadCrypto(m)) => assert!(m.contains(why), "{line}: {m}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    fn pair(suite: Suite) -> (Srtp, Srtp) {
        let a = SdesKey::generate(1, suite).to_attribute();
        let b = SdesKey::generate(1, suite).to_attribute();
        (Srtp::new(&a, &b).unwrap(), Srtp::new(&b, &a).unwrap())
    }

    #[test]
    fn both_suites_carry_rtp_and_rtcp_and_refuse_alterations_and_replays() {
        for suite in Suite::ALL {
            let (mut alice, mut bob) = pair(suite);
            for seq in [65530u16, 65531, 65535, 0, 1, 2] {
                let plain = rtp_packet(seq, 7);
                let sealed = alice.protect(&plain).unwrap();
                assert_ne!(sealed[12..172], plain[12..], "{suite:?}: payload encrypted");
                assert_eq!(
                    bob.unprotect(&sealed).unwrap(),
                    plain,
                    "{suite:?} seq {seq}"
                );
                // The same packet again is a replay.
                assert_eq!(bob.unprotect(&sealed), Err(SrtpError::Replayed));
            }
            // An SRTCP packet with its E flag cleared (claiming to be unencrypted) is refused.
            let mut clear_flag = alice.protect(&crate::rtcp::build(7, None, None)).unwrap();
            let at = clear_flag.len()
                - match suite {
                    Suite::AesCm128HmacSha1_80 => 14,
                    Suite::AeadAes128Gcm => 4,
                };
            clear_flag[at] &= 0x7f;
            assert!(bob.unprotect(&clear_flag).is_err(), "{suite:?}");
            let mut altered = alice.protect(&rtp_packet(3, 7)).unwrap();
            altered[20] ^= 1;
            assert_eq!(
                bob.unprotect(&altered),
                Err(SrtpError::AuthFailed),
                "{suite:?}"
            );
            let report = crate::rtcp::build(7, None, None);
            let sealed = bob.protect(&report).unwrap();
            assert!(crate::rtcp::is_rtcp(&sealed));
            assert_eq!(alice.unprotect(&sealed).unwrap(), report, "{suite:?}");
        }
    }

    /// What baresip 1.0 sends on the RTCP port of an SRTP call once it has dropped the
    /// call's keys: a clear BYE ("Adjo") and SDES CNAME, captured from our interop test.
    const BARESIP_CLEAR_BYE: [u8; 52] = [
        0x81, 0xcb, 0x00, 0x03, 0x64, 0x93, 0xd4, 0xd2, 0x04, 0x41, 0x64, 0x6a, 0x6f, 0x00, 0x00,
        0x00, 0x81, 0xca, 0x00, 0x08, 0x64, 0x93, 0xd4, 0xd2, 0x01, 0x17, 0x73, 0x69, 0x70, 0x3a,
        0x62, 0x6f, 0x62, 0x40, 0x31, 0x32, 0x37, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31, 0x3a, 0x34,
        0x36, 0x35, 0x34, 0x30, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn clear_rtcp_on_an_srtp_call_is_refused_and_told_apart_from_a_key_mismatch() {
        assert!(crate::rtcp::is_clear_compound(&BARESIP_CLEAR_BYE));
        for suite in Suite::ALL {
            let (mut alice, mut bob) = pair(suite);
            assert_eq!(
                bob.unprotect(&BARESIP_CLEAR_BYE),
                Err(SrtpError::Unencrypted),
                "{suite:?}"
            );
            // So is a clear receiver report.
            let report = crate::rtcp::build(7, None, None);
            assert_eq!(bob.unprotect(&report), Err(SrtpError::Unencrypted));
            // Genuine SRTCP does not read as clear RTCP, and still decrypts afterwards.
            let sealed = alice.protect(&report).unwrap();
            assert!(!crate::rtcp::is_clear_compound(&sealed), "{suite:?}");
            assert_eq!(bob.unprotect(&sealed).unwrap(), report, "{suite:?}");
            // Sealed with another key: a key mismatch, not a clear packet.
            let (mut mallory, _) = pair(suite);
            let forged = mallory.protect(&crate::rtcp::build(9, None, None)).unwrap();
            assert_eq!(bob.unprotect(&forged), Err(SrtpError::AuthFailed));
        }
    }

    #[test]
    fn a_wrong_key_fails_authentication_and_forged_ssrcs_do_not_pile_up() {
        let ours = SdesKey::generate(1, Suite::AesCm128HmacSha1_80).to_attribute();
        let theirs = SdesKey::generate(1, Suite::AesCm128HmacSha1_80).to_attribute();
        let other = SdesKey::generate(1, Suite::AesCm128HmacSha1_80).to_attribute();
        let mut sender = Srtp::new(&theirs, &ours).unwrap();
        // We believe the peer's key is `other`.
        let mut receiver = Srtp::new(&ours, &other).unwrap();
        for ssrc in 0..1000u32 {
            let sealed = sender.protect(&rtp_packet(1, ssrc)).unwrap();
            assert_eq!(receiver.unprotect(&sealed), Err(SrtpError::AuthFailed));
        }
        assert!(receiver.known.is_empty());
        // A forged first report with a high SRTCP index does not move the replay window:
        // the genuine reports that follow still authenticate.
        let mut genuine = Srtp::new(&theirs, &ours).unwrap();
        let mut ok = Srtp::new(&ours, &theirs).unwrap();
        let mut forged = genuine.protect(&crate::rtcp::build(9, None, None)).unwrap();
        let at = forged.len() - 14;
        forged[at..at + 4].copy_from_slice(&[0x80, 0, 0x10, 0]);
        assert_eq!(ok.unprotect(&forged), Err(SrtpError::AuthFailed));
        for _ in 0..3 {
            let report = crate::rtcp::build(9, None, None);
            let sealed = genuine.protect(&report).unwrap();
            assert_eq!(ok.unprotect(&sealed).unwrap(), report);
        }
        // A header extension that runs past the packet (the library's parser would panic).
        let mut long_ext = rtp_packet(1, 1);
        long_ext[0] |= 0x10;
        long_ext[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x1c]);
        long_ext.truncate(28);
        assert!(matches!(
            receiver.unprotect(&long_ext),
            Err(SrtpError::Malformed(_))
        ));
        // Short and mixed-suite input is an error, not a panic.
        assert!(matches!(
            receiver.unprotect(&[0x80, 0, 0]),
            Err(SrtpError::Malformed(_))
        ));
        let gcm = SdesKey::generate(1, Suite::AeadAes128Gcm).to_attribute();
        assert!(matches!(
            Srtp::new(&ours, &gcm),
            Err(SrtpError::SuiteMismatch(..))
        ));
    }
}
