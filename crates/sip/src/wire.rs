//! Checks on what we put on the wire. Every value a peer (or a person) gave us passes here
//! before it becomes part of a message we send: header names must be tokens (RFC 3261 §25.1),
//! header values and URIs may hold no CR, LF, NUL or other control character (HTAB aside),
//! so nothing can end a header line early and add one of its own.
//!
//! ```
//! use switchboard_sip::wire::{header_line, Replaces};
//! assert!(header_line("Referred-By", "<sip:alice@example.com>").is_ok());
//! assert!(header_line("Referred-By", "<sip:a@x>\r\nX-Evil: 1").is_err());
//! let r = Replaces::parse("425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
//! assert_eq!(r.to_string(), "425928@bobster.example.org;to-tag=7743;from-tag=6472");
//! ```

use std::fmt;

/// A value refused on its way to the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0:?} is not a valid SIP header name")]
    HeaderName(String),
    #[error("the value of header {0} holds a control character (CR, LF or another), which cannot go on the wire")]
    HeaderValue(String),
    #[error("{0:?} is not written like a SIP header (Name: value)")]
    HeaderLine(String),
    #[error("the URI {0:?} holds a space, a control character or <>\" and cannot go on the wire")]
    Uri(String),
    #[error("{0:?} is not a valid Replaces value (call-id;to-tag=…;from-tag=…, RFC 3891)")]
    Replaces(String),
    #[error("{0:?} is not a SIP method (a token, RFC 3261 §25.1)")]
    Method(String),
    #[error("{0} is not a SIP status code (100–699)")]
    Status(u16),
    #[error("{0} is written by the message builder from the body, not given as a header")]
    Computed(String),
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// RFC 3261 §25.1 `word` characters (a Call-ID).
fn is_word_char(c: char) -> bool {
    is_token_char(c) || "()<>:\\\"/[]?{}".contains(c)
}

/// Whether `s` is a non-empty RFC 3261 `token` (a header name, a method).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Whether `v` may stand in a header value: no control character but HTAB, except one escaped
/// by a backslash as a `quoted-pair` allows (RFC 3261 §25.1: `"\" (%x00-09 / %x0B-0C /
/// %x0E-7F)`, so RFC 4475's `intmeth` keeps its `\NUL`), and never CR or LF, escaped or not.
pub fn is_clean_value(v: &str) -> bool {
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            escaped = false;
            if c == '\r' || c == '\n' {
                return false;
            }
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c.is_control() && c != '\t' {
            return false;
        }
    }
    true
}

/// `Name: value` after checking both.
pub fn header_line(name: &str, value: &str) -> Result<String, WireError> {
    if !is_token(name) {
        return Err(WireError::HeaderName(name.to_owned()));
    }
    if !is_clean_value(value) {
        return Err(WireError::HeaderValue(name.to_owned()));
    }
    Ok(format!("{name}: {}", value.trim()))
}

/// Checks a whole `Name: value` line (the extra headers callers hand the user agent).
pub fn check_header_line(line: &str) -> Result<(), WireError> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(WireError::HeaderLine(line.chars().take(40).collect()));
    };
    header_line(name.trim_end(), value).map(|_| ())
}

/// Checks a URI we are about to write in a start line or a header.
pub fn check_uri(uri: &str) -> Result<(), WireError> {
    if uri.is_empty()
        || uri
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"".contains(c))
    {
        return Err(WireError::Uri(uri.chars().take(80).collect()));
    }
    Ok(())
}

/// An RFC 3891 `Replaces` value, taken apart so that only its checked parts are written back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    pub early_only: bool,
}

impl Replaces {
    /// Parses `call-id;to-tag=…;from-tag=…[;early-only]`; other parameters are dropped.
    pub fn parse(v: &str) -> Result<Self, WireError> {
        let bad = || WireError::Replaces(v.chars().take(80).collect());
        let mut parts = v.split(';');
        let call_id = parts.next().unwrap_or_default().trim();
        // callid = word [ "@" word ] (RFC 3261 §25.1).
        let words_ok = match call_id.split_once('@') {
            Some((a, b)) => [a, b]
                .iter()
                .all(|w| !w.is_empty() && w.chars().all(is_word_char)),
            None => !call_id.is_empty() && call_id.chars().all(is_word_char),
        };
        if !words_ok {
            return Err(bad());
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let p = p.trim();
            match p.split_once('=') {
                Some((k, val)) => {
                    let val = val.trim();
                    if val.is_empty() || !val.chars().all(is_token_char) {
                        return Err(bad());
                    }
                    match k.trim().to_ascii_lowercase().as_str() {
                        "to-tag" => to_tag = Some(val.to_owned()),
                        "from-tag" => from_tag = Some(val.to_owned()),
                        _ => {}
                    }
                }
                None if p.eq_ignore_ascii_case("early-only") => early_only = true,
                None if p.chars().all(is_token_char) => {}
                None => return Err(bad()),
            }
        }
        Ok(Self {
            call_id: call_id.to_owned(),
            to_tag: to_tag.ok_or_else(bad)?,
            from_tag: from_tag.ok_or_else(bad)?,
            early_only,
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        for v in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b", "a\x1bb"] {
            assert!(header_line("Referred-By", v).is_err(), "{v:?}");
        }
        assert!(header_line("Referred-By", "\"Bob\"\t<sip:bob@x>").is_ok());
        // A quoted-pair may escape a control character, but never CR or LF.
        assert!(is_clean_value("\"NUL:\\\0 DEL:\\\x7f\" <sip:x@y>"));
        for v in ["\"a\\\r\nX: 1\"", "\"a\\\nb\"", "a\\\\\0"] {
            assert!(!is_clean_value(v), "{v:?}");
        }
        for n in ["", "Bad Name", "X:Y", "X\r\n"] {
            assert!(header_line(n, "v").is_err(), "{n:?}");
        }
        assert!(check_header_line("Replaces: a;to-tag=1;from-tag=2").is_ok());
        assert!(check_header_line("no colon here").is_err());
        assert!(check_header_line("Referred-By: <sip:a@b>\r\nX-Evil: 1").is_err());
    }

    #[test]
    fn uris_with_spaces_or_controls_are_refused() {
        assert!(check_uri("sip:bob@example.com;transport=tcp").is_ok());
        for u in [
            "",
            "sip:bob@x\r\nX: 1",
            "sip:bob@x y",
            "sip:<bob>@x",
            "sip:\"b\"@x",
        ] {
            assert!(check_uri(u).is_err(), "{u:?}");
        }
    }

    #[test]
    fn replaces_rfc3891_examples_and_injections() {
        // RFC 3891 §6.1's example.
        let r = Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff").unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(
            r.to_string(),
            "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r"
        );
        let r = Replaces::parse("a@b;to-tag=1;from-tag=2;early-only").unwrap();
        assert!(r.early_only);
        for bad in [
            "a@b;to-tag=1;from-tag=2\r\nX-Evil: 1",
            "a@b;to-tag=1\r\nX-Evil: 1;from-tag=2",
            "a b;to-tag=1;from-tag=2",
            "a@b;to-tag=1",
            ";to-tag=1;from-tag=2",
        ] {
            assert!(Replaces::parse(bad).is_err(), "{bad:?}");
        }
    }
}
