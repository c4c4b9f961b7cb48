//! `switchboard-sip`: SIP for Switchboard's desktop agent and routing service, as sans-IO
//! building blocks — each is a state machine that takes inputs (bytes, commands, the current
//! `Instant`) and returns outputs (bytes to send, when to wake it next, events); sockets live in
//! thin adapters outside the core. Modules mirror the RFCs:
//!
//! - [`message`]: parsing and serialising SIP messages (RFC 3261 §7, §25) with our own parser
//!   (tested with every message of RFC 4475), and the 400/505 a malformed request gets;
//! - [`transaction`]: the four transaction state machines of RFC 3261 §17 with timers A–K;
//! - [`builder`] and [`wire`]: every message we send is built through a typed builder that
//!   refuses CR, LF and other control characters in any value;
//! - [`auth`]: HTTP digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and SHA-256, qop=auth.
//!
//! The tokio transports, DNS, the phone loop and the standalone registrar's UDP loop are
//! adapters behind the `io` feature (on by default): `default-features = false` builds the core
//! alone, as the fuzz targets do.
//!
//! ```
//! use switchboard_sip::auth::{Algorithm, Challenge, Credentials};
//! let challenge = Challenge::parse(
//!     r#"Digest realm="sip.example.com", nonce="abc", qop="auth", algorithm=SHA-256"#,
//! ).unwrap();
//! assert_eq!(challenge.algorithm, Algorithm::Sha256);
//! let creds = Credentials { username: "alice".into(), password: "secret".into() };
//! let header = challenge.authorize(&creds, "REGISTER", "sip:sip.example.com", 1, "0a4f113b");
//! assert!(header.starts_with("Digest username=\"alice\""));
//! ```
#![forbid(unsafe_code)]

// The sans-IO core: no sockets, no runtime, no clock but the `Instant` it is given.
pub mod auth;
pub mod b2bua;
pub mod builder;
pub mod message;
pub mod registrar;
pub mod registration;
pub mod sdp;
pub mod transaction;
pub mod ua;
pub mod wire;

// The I/O adapters around it (feature "io", on by default).
#[cfg(feature = "io")]
pub mod dns;
#[cfg(feature = "io")]
pub mod phone;
#[cfg(feature = "io")]
pub mod registrar_udp;
#[cfg(feature = "io")]
pub mod transport;
#[cfg(feature = "io")]
pub mod udp;
