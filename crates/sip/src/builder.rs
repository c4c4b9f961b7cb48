//! Every SIP message we send is built here (#13 item 17): a start line and headers written
//! through typed calls, each value checked as it is written, and `Content-Length` counted from
//! the body. Nothing a peer or a person gave us can end a line early: a value with CR, LF, NUL
//! or another control character (HTAB aside), a header name that is not a token, a URI with a
//! space, a method that is not a token, or a status outside 100–699 makes [`MessageBuilder::build`]
//! fail with the first such error, and then nothing is sent at all.
//!
//! Values we copy from a parsed message need the check as much as our own: the parser splits
//! lines on CRLF only, so a lone LF or a NUL inside a peer's Call-ID would otherwise reach
//! every response we copy it into.
//!
//! ```
//! use switchboard_sip::builder::MessageBuilder;
//! use switchboard_sip::message::Message;
//!
//! let mut m = MessageBuilder::request("OPTIONS", "sip:carol@chicago.example.com");
//! m.via("UDP", "pc33.atlanta.example.com", "z9hG4bKhjhs8ass877")
//!     .header("Max-Forwards", 70)
//!     .header("To", "<sip:carol@chicago.example.com>")
//!     .header("From", "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
//!     .header("Call-ID", "a84b4c76e66710")
//!     .cseq(63104, "OPTIONS");
//! let bytes = m.build().unwrap();
//! assert!(Message::parse(&bytes).is_ok());
//!
//! // A value with a line break never reaches the wire.
//! let mut m = MessageBuilder::request("REFER", "sip:bob@example.com");
//! m.header("Referred-By", "<sip:a@x>\r\nX-Evil: 1");
//! assert!(m.build().is_err());
//! ```

use std::fmt::{self, Write as _};

use bytes::Bytes;

use crate::wire::{check_uri, is_clean_value, is_token, WireError};

/// Headers the builder writes itself from what it is given; [`MessageBuilder::header`] refuses
/// them so that no message carries two.
const COMPUTED: [&str; 3] = ["Content-Length", "Content-Type", "l"];

/// A SIP request or response under construction. Calls chain on `&mut self`; the first bad
/// value is remembered and returned by [`MessageBuilder::build`], later calls do nothing.
#[derive(Debug)]
pub struct MessageBuilder {
    head: String,
    body: Option<(String, Bytes)>,
    error: Option<WireError>,
}

impl MessageBuilder {
    fn with_capacity() -> Self {
        Self {
            head: String::with_capacity(512),
            body: None,
            error: None,
        }
    }

    fn fail(&mut self, e: WireError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// `METHOD uri SIP/2.0` (RFC 3261 §7.1): the method must be a token, the URI must hold no
    /// space, control character or `<>"`.
    pub fn request(method: &str, uri: &str) -> Self {
        let mut b = Self::with_capacity();
        if !is_token(method) {
            b.fail(WireError::Method(method.chars().take(40).collect()));
        } else if let Err(e) = check_uri(uri) {
            b.fail(e);
        } else {
            let _ = write!(b.head, "{method} {uri} SIP/2.0\r\n");
        }
        b
    }

    /// `SIP/2.0 status reason` (RFC 3261 §7.2): status 100–699, a reason phrase without control
    /// characters.
    pub fn response(status: u16, reason: &str) -> Self {
        let mut b = Self::with_capacity();
        if !(100..=699).contains(&status) {
            b.fail(WireError::Status(status));
        } else if !is_clean_value(reason) {
            b.fail(WireError::HeaderValue("the reason phrase".into()));
        } else {
            let _ = write!(b.head, "SIP/2.0 {status} {reason}\r\n");
        }
        b
    }

    /// `Name: value`. The name must be a token and not one the builder computes
    /// (`Content-Length`, `Content-Type`: see [`MessageBuilder::body`]); the value is written
    /// as it displays, then checked.
    pub fn header(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        if !is_token(name) {
            self.fail(WireError::HeaderName(name.chars().take(40).collect()));
            return self;
        }
        if COMPUTED.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            self.fail(WireError::Computed(name.to_owned()));
            return self;
        }
        let line_start = self.head.len();
        let _ = write!(self.head, "{name}: ");
        let value_start = self.head.len();
        let _ = write!(self.head, "{value}");
        if !is_clean_value(&self.head[value_start..]) {
            self.head.truncate(line_start);
            self.fail(WireError::HeaderValue(name.to_owned()));
            return self;
        }
        self.head.push_str("\r\n");
        self
    }

    /// The header only when there is a value.
    pub fn header_opt(&mut self, name: &str, value: Option<impl fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.header(name, v);
        }
        self
    }

    /// One header per value, in order (Route, Record-Route, Via).
    pub fn headers<V: fmt::Display>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for v in values {
            self.header(name, v);
        }
        self
    }

    /// A whole `Name: value` line, as callers of the user agent hand in their extra headers;
    /// it is split and checked like any other header.
    pub fn header_line(&mut self, line: &str) -> &mut Self {
        match line.split_once(':') {
            Some((name, value)) => self.header(name.trim_end(), value.trim()),
            None => {
                self.fail(WireError::HeaderLine(line.chars().take(40).collect()));
                self
            }
        }
    }

    /// `Via: SIP/2.0/<transport> <sent-by>;branch=<branch>;rport` (RFC 3261 §8.1.1.7, RFC 3581).
    pub fn via(&mut self, transport: &str, sent_by: &str, branch: &str) -> &mut Self {
        self.header(
            "Via",
            format_args!("SIP/2.0/{transport} {sent_by};branch={branch};rport"),
        )
    }

    /// `CSeq: <n> <METHOD>` (§8.1.1.5).
    pub fn cseq(&mut self, n: u32, method: &str) -> &mut Self {
        if !is_token(method) {
            self.fail(WireError::Method(method.chars().take(40).collect()));
            return self;
        }
        self.header("CSeq", format_args!("{n} {method}"))
    }

    /// The body and its `Content-Type`; `Content-Length` is always written, 0 without a body.
    pub fn body(&mut self, content_type: &str, body: Bytes) -> &mut Self {
        if content_type.is_empty() || !is_clean_value(content_type) {
            self.fail(WireError::HeaderValue("Content-Type".into()));
            return self;
        }
        self.body = Some((content_type.to_owned(), body));
        self
    }

    /// The message's bytes, or the first value that could not go on the wire.
    pub fn build(self) -> Result<Bytes, WireError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut head = self.head;
        let body = match self.body {
            Some((ct, b)) => {
                let _ = write!(head, "Content-Type: {ct}\r\n");
                b
            }
            None => Bytes::new(),
        };
        let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
        let mut data = head.into_bytes();
        data.extend_from_slice(&body);
        Ok(Bytes::from(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn options() -> MessageBuilder {
        let mut m = MessageBuilder::request("OPTIONS", "sip:bob@example.com");
        m.via("UDP", "192.0.2.1:5060", "z9hG4bK1")
            .header("From", "<sip:a@example.com>;tag=1")
            .header("To", "<sip:bob@example.com>")
            .header("Call-ID", "x@y")
            .cseq(1, "OPTIONS");
        m
    }

    #[test]
    fn a_built_message_parses_and_counts_its_body() {
        let mut m = options();
        m.body("application/sdp", Bytes::from_static(b"v=0\r\n"));
        let bytes = m.build().unwrap();
        let msg = Message::parse(&bytes).unwrap();
        assert_eq!(msg.header("Content-Length"), Some("5"));
        assert_eq!(msg.header("Content-Type"), Some("application/sdp"));
        assert_eq!(&msg.body()[..], b"v=0\r\n");
        assert_eq!(msg.header("Max-Forwards"), None);
    }

    #[test]
    fn no_value_can_add_a_line() {
        for bad in [
            "a\r\nX-Evil: 1",
            "a\nX-Evil: 1",
            "a\rb",
            "a\0b",
            "a\x0bb",
            "a\x7fb",
        ] {
            let mut m = options();
            m.header("Subject", bad);
            assert_eq!(
                m.build(),
                Err(WireError::HeaderValue("Subject".into())),
                "{bad:?}"
            );
            let mut m = options();
            m.header_line(&format!("Subject: {bad}"));
            assert!(m.build().is_err(), "{bad:?}");
            let mut m = MessageBuilder::response(200, bad);
            m.header("Call-ID", "x");
            assert!(m.build().is_err(), "{bad:?}");
        }
        // HTAB is linear white space, allowed.
        let mut m = options();
        m.header("Subject", "a\tb");
        assert!(m.build().is_ok());
    }

    #[test]
    fn names_methods_uris_and_statuses_are_checked() {
        for name in [
            "",
            "X Y",
            "X:Y",
            "X\r\nY",
            "Content-Length",
            "content-type",
            "l",
        ] {
            let mut m = options();
            m.header(name, "1");
            assert!(m.build().is_err(), "{name:?}");
        }
        for (method, uri) in [
            ("INV ITE", "sip:b@x"),
            ("INVITE\r\n", "sip:b@x"),
            ("", "sip:b@x"),
            ("INVITE", "sip:b@x SIP/2.0\r\nX: 1"),
            ("INVITE", "sip:<b>@x"),
            ("INVITE", ""),
        ] {
            assert!(
                MessageBuilder::request(method, uri).build().is_err(),
                "{method:?} {uri:?}"
            );
        }
        for status in [0, 99, 700, 1000] {
            assert_eq!(
                MessageBuilder::response(status, "X").build(),
                Err(WireError::Status(status))
            );
        }
        let mut m = options();
        m.cseq(2, "BAD METHOD");
        assert!(m.build().is_err());
        let mut m = options();
        m.body("application/sdp\r\nX: 1", Bytes::new());
        assert!(m.build().is_err());
    }

    #[test]
    fn the_first_error_is_kept() {
        let mut m = options();
        m.header("X A", "1").header("Subject", "\r\n");
        assert_eq!(m.build(), Err(WireError::HeaderName("X A".into())));
    }
}
