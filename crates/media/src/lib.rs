//! `switchboard-media`: the audio of a call, as sans-IO building blocks the agent engine and
//! the routing service drive with packets, frames and the time:
//!
//! - [`rtp`]: RTP packets (RFC 3550 §5): parsing with padding, CSRCs and header extensions,
//!   and building;
//! - [`rtcp`]: sender and receiver reports (RFC 3550 §6.4) and the round-trip time;
//! - [`g711`]: G.711 µ-law (PCMU) and A-law (PCMA), per ITU-T G.711 (Opus goes through
//!   libopus inside [`session`]);
//! - [`jitter`]: an adaptive jitter buffer, bounded in memory, that reorders, drops late and
//!   duplicate packets and asks for concealment where packets are missing;
//! - [`session`]: one call's media stream — encoding and packetising 20 ms frames, latching
//!   onto the peer's address, receiving into the jitter buffer, decoding or concealing, and
//!   the statistics of RFC 3550 (loss, interarrival jitter) behind the quality figures;
//! - [`wav`]: WAV files as a source (any rate and channel count, converted to the codec's
//!   rate with rubato) and as a sink, for headless agents and tests;
//! - [`tone`]: a tone generator and a Goertzel detector, to check which tones a call carried;
//! - [`dtmf`]: in-band DTMF detection (Goertzel, ITU-T Q.24 / GR-506 criteria), for trunks
//!   that send keypad digits as audio rather than RFC 4733 telephone-events;
//! - [`quality`]: the E-model (ITU-T G.107) R factor and MOS from delay and loss.
//!
//! - [`srtp`]: SRTP/SRTCP keyed by SDES `a=crypto` lines (RFC 3711, RFC 4568, RFC 7714).
//! - [`ice`]: the lite side of ICE (RFC 8445): STUN connectivity checks answered on a media
//!   port, a nominated pair reported (Teams media bypass).
//!
//! - [`device`]: sound devices through cpal — listing, live capture and playback on a thread
//!   of their own, fallback to the default device and reopening when one fails, level
//!   meters, mute and volume, streaming rate conversion;
//! - [`check`]: sounds outside a call (the ring on the ringing device, the Settings page's test
//!   sound) and the microphone test's live level.
#![forbid(unsafe_code)]

#[cfg(feature = "devices")]
pub mod check;
#[cfg(feature = "devices")]
pub mod device;
pub mod dtmf;
pub mod g711;
pub mod ice;
pub mod jitter;
pub mod quality;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;
pub mod tone;
pub mod wav;
