//! SIP messages behind our own type. Parsing goes through `rsip` (its last release is from
//! 2022, so it stays behind [`Message`] to be replaceable in one place) after a normalising pass
//! of our own for what rsip does not handle: header line folding (RFC 3261 §7.3.1), compact
//! header names (§7.3.3, plus the compact forms registered later), and the framing rule that
//! `Content-Length` bounds the body (§18.3). Serialising always writes a correct
//! `Content-Length`.

use bytes::Bytes;

/// Largest message we accept (a UDP datagram cannot be larger; TCP framing uses the same cap).
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("no blank line ends the headers")]
    NoHeaderEnd,
    #[error("the headers are not UTF-8")]
    NotUtf8,
    #[error("Content-Length {declared} but the body has {actual} bytes")]
    ShortBody { declared: usize, actual: usize },
    #[error("Content-Length is not a number: {0:?}")]
    BadContentLength(String),
    #[error("a mandatory header is missing: {0}")]
    Missing(&'static str),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Compact header names (RFC 3261 §7.3.3 and the IANA SIP parameters registry).
fn expand_compact(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "a" => "Accept-Contact",
        "b" => "Referred-By",
        "c" => "Content-Type",
        "d" => "Request-Disposition",
        "e" => "Content-Encoding",
        "f" => "From",
        "i" => "Call-ID",
        "j" => "Reject-Contact",
        "k" => "Supported",
        "l" => "Content-Length",
        "m" => "Contact",
        "n" => "Identity-Info",
        "o" => "Event",
        "r" => "Refer-To",
        "s" => "Subject",
        "t" => "To",
        "u" => "Allow-Events",
        "v" => "Via",
        "x" => "Session-Expires",
        "y" => "Identity",
        _ => return None,
    })
}

/// A parsed SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    start_line: String,
    /// (name as written, or expanded from compact; value trimmed), in order.
    headers: Vec<(String, String)>,
    body: Bytes,
    /// The request method as written (requests only).
    method: Option<String>,
    inner: rsip::SipMessage,
}

/// Methods `rsip` parses itself.
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

impl Message {
    /// Parses one message. Bytes after `Content-Length` (a second message on a stream) are
    /// not part of it; use [`Message::frame_len`] to split a stream first.
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        // Leading CRLFs are keep-alives (RFC 5626 §4.4.1) or noise before a message: skip them.
        let start = data
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(data.len());
        let data = &data[start..];
        let head_end = find(data, b"\r\n\r\n").ok_or(ParseError::NoHeaderEnd)?;
        let head = std::str::from_utf8(&data[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let rest = &data[head_end + 4..];

        // Unfold: a line starting with SP/HT continues the previous one.
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let has_header = lines.len() > 1;
                match lines.last_mut() {
                    Some(prev) if has_header => {
                        prev.push(' ');
                        prev.push_str(line.trim());
                    }
                    _ => {
                        return Err(ParseError::Malformed(
                            "continuation line before any header".into(),
                        ))
                    }
                }
            } else {
                lines.push(line.to_owned());
            }
        }
        let mut it = lines.into_iter();
        let start_line = it
            .next()
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| ParseError::Malformed("empty start line".into()))?;
        let mut headers = Vec::new();
        for line in it {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                ParseError::Malformed(format!("header line without a colon: {line:?}"))
            })?;
            let name = name.trim_end();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(ParseError::Malformed(format!("bad header name {name:?}")));
            }
            let name = expand_compact(name)
                .map(str::to_owned)
                .unwrap_or_else(|| name.to_owned());
            headers.push((name, value.trim().to_owned()));
        }

        let declared = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.clone());
        let body = match declared {
            Some(v) => {
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::BadContentLength(v.clone()))?;
                if rest.len() < n {
                    return Err(ParseError::ShortBody {
                        declared: n,
                        actual: rest.len(),
                    });
                }
                Bytes::copy_from_slice(&rest[..n])
            }
            // Without Content-Length (allowed over UDP) the body is the rest of the datagram.
            None => Bytes::copy_from_slice(rest),
        };

        for (mandatory, label) in [
            ("Via", "Via"),
            ("Call-ID", "Call-ID"),
            ("CSeq", "CSeq"),
            ("From", "From"),
            ("To", "To"),
        ] {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(mandatory))
            {
                return Err(ParseError::Missing(label));
            }
        }

        // Extension methods (RFC 3261 §7.1: any token) are valid SIP that rsip does not know:
        // rsip sees a stand-in method and we keep the real one, so the UA can answer 501/405.
        let first = start_line.split(' ').next().unwrap_or("");
        let method = (!first.starts_with("SIP/")).then(|| first.to_owned());
        if let Some(m) = &method {
            if m.is_empty() || !m.bytes().all(is_token_char) {
                return Err(ParseError::Malformed(format!("bad method {m:?}")));
            }
        }
        let canonical = match &method {
            Some(m) if !KNOWN_METHODS.iter().any(|k| k.eq_ignore_ascii_case(m)) => {
                let line = format!("OPTIONS{}", &start_line[m.len()..]);
                render(&line, &headers, &body)
            }
            _ => render(&start_line, &headers, &body),
        };
        let inner = rsip::SipMessage::try_from(canonical.as_ref())
            .map_err(|e| ParseError::Malformed(e.to_string()))?;
        Ok(Self {
            start_line,
            headers,
            body,
            method,
            inner,
        })
    }

    /// On a stream transport: the length of the first complete message in `buf`, leading
    /// CRLF keep-alives included, or `None` when more bytes are needed (§18.3).
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let skipped = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        if skipped == buf.len() {
            return Ok(None);
        }
        let buf_all = buf;
        let buf = &buf[skipped..];
        let Some(head_end) = find(buf, b"\r\n\r\n") else {
            return if buf.len() > MAX_MESSAGE_BYTES {
                Err(ParseError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let mut len = 0usize;
        for line in head.split("\r\n") {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
                    len = value
                        .trim()
                        .parse()
                        .map_err(|_| ParseError::BadContentLength(value.trim().into()))?;
                }
            }
        }
        // Checked before adding: a peer may declare any Content-Length (found by fuzzing).
        if len > MAX_MESSAGE_BYTES || head_end + 4 + len > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        let total = skipped + head_end + 4 + len;
        Ok((buf_all.len() >= total).then_some(total))
    }

    pub fn is_request(&self) -> bool {
        self.inner.is_request()
    }

    /// The request method (`INVITE`, …), for requests.
    pub fn method(&self) -> Option<String> {
        match &self.inner {
            rsip::SipMessage::Request(r) => Some(
                self.method
                    .as_ref()
                    .map(|m| m.to_ascii_uppercase())
                    .unwrap_or_else(|| r.method().to_string()),
            ),
            rsip::SipMessage::Response(_) => None,
        }
    }

    /// The Request-URI as written, for requests.
    pub fn request_uri(&self) -> Option<String> {
        match &self.inner {
            rsip::SipMessage::Request(r) => Some(r.uri().to_string()),
            rsip::SipMessage::Response(_) => None,
        }
    }

    /// The status code, for responses.
    pub fn status(&self) -> Option<u16> {
        match &self.inner {
            rsip::SipMessage::Response(r) => Some(r.status_code().code()),
            rsip::SipMessage::Request(_) => None,
        }
    }

    /// The reason phrase, for responses.
    pub fn reason(&self) -> Option<&str> {
        if self.is_request() {
            return None;
        }
        self.start_line.splitn(3, ' ').nth(2).map(str::trim)
    }

    /// Every value of a header (case-insensitive name; compact forms were expanded), in order.
    /// Comma-joined values in one line stay one value.
    pub fn headers(&self, name: &str) -> impl Iterator<Item = &str> {
        let full = expand_compact(name).unwrap_or(name).to_owned();
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&full))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).next()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut parts = v.split_whitespace();
        let n = parts.next()?.parse().ok()?;
        Some((n, parts.next()?.to_ascii_uppercase()))
    }

    /// The `branch` parameter of the topmost Via (the transaction key, §17.1.3).
    pub fn top_via_branch(&self) -> Option<&str> {
        let via = self.header("Via")?;
        let first = via.split(',').next()?;
        first.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("branch").then(|| v.trim())
        })
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The message on the wire, with full header names and a correct Content-Length.
    pub fn to_bytes(&self) -> Bytes {
        render(&self.start_line, &self.headers, &self.body)
    }
}

/// Splits a header value that lists several entries (`<a>;p=1, "B, b" <b>`) on the commas
/// outside quotes and angle brackets (RFC 3261 §7.3.1).
pub fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The URI of a name-addr (`"Bob" <sip:bob@h>;tag=1` → `sip:bob@h`) or of an addr-spec (up to
/// the first `;`, whose parameters then belong to the header, §20.10).
pub fn value_uri(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if b > a => v[a + 1..b].trim(),
        _ => v.split(';').next().unwrap_or("").trim(),
    }
}

/// A numeric header parameter (one after the URI), e.g. a Contact's `expires`.
pub fn header_param_u32(v: &str, name: &str) -> Option<u32> {
    let after = v
        .rfind('>')
        .map(|i| &v[i + 1..])
        .unwrap_or_else(|| v.split_once(';').map(|(_, p)| p).unwrap_or(""));
    after.split(';').find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().parse().ok())?
    })
}

fn render(start_line: &str, headers: &[(String, String)], body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(start_line.trim_end().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn rfc3261_invite_parses() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method().as_deref(), Some("INVITE"));
        assert_eq!(
            m.request_uri().as_deref(),
            Some("sip:bob@biloxi.example.com")
        );
        assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
        assert_eq!(m.cseq(), Some((314159, "INVITE".into())));
        assert_eq!(m.top_via_branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.body().as_ref(), b"v=0\n");
    }

    #[test]
    fn compact_folded_and_case_insensitive_headers() {
        let raw = "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-a\r\n\
VIA: SIP/2.0/UDP host2.example.com;branch=z9hG4bK-b\r\n\
t: <sip:carol@chicago.example.com>\r\n\
f: <sip:alice@atlanta.example.com>\r\n  ;tag=abc\r\n\
i: call-1@host1\r\n\
cseq: 8\r\n   OPTIONS\r\n\
l: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.headers("via").count(), 2);
        assert_eq!(m.top_via_branch(), Some("z9hG4bK-a"));
        assert_eq!(
            m.header("From"),
            Some("<sip:alice@atlanta.example.com> ;tag=abc")
        );
        assert_eq!(m.header("i"), Some("call-1@host1"));
        assert_eq!(m.cseq(), Some((8, "OPTIONS".into())));
        let out = String::from_utf8(m.to_bytes().to_vec()).unwrap();
        assert!(
            out.contains("\r\nCall-ID: call-1@host1\r\n")
                && out.ends_with("Content-Length: 0\r\n\r\n"),
            "{out}"
        );
        // What we write parses back to the same thing.
        let again = Message::parse(out.as_bytes()).unwrap();
        assert_eq!(again.to_bytes(), m.to_bytes());
    }

    #[test]
    fn responses_and_tel_uris() {
        let raw = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <tel:+14085551212>;tag=9\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(486));
        assert_eq!(m.reason(), Some("Busy Here"));
        assert_eq!(m.header("To"), Some("<tel:+14085551212>;tag=9"));
    }

    #[test]
    fn a_huge_content_length_on_a_stream_is_too_large_not_an_overflow() {
        // Found by fuzz/sip: usize::MAX - 3 used to overflow the frame length.
        let raw = b"OP\0\x11\0\0w\r\nl: 0018446744073709551612\r\n\r\n";
        assert!(matches!(Message::frame_len(raw), Err(ParseError::TooLarge)));
        let _ = Message::parse(raw);
    }

    #[test]
    fn content_length_is_corrected_on_output_and_enforced_on_input() {
        // A stated length shorter than the datagram: the rest is not body.
        let raw = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.body().as_ref(), b"v=");
        // Longer than what arrived: refused (§18.3).
        let raw = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert_eq!(
            Message::parse(raw.as_bytes()).unwrap_err(),
            ParseError::ShortBody {
                declared: 40,
                actual: 4
            }
        );
        let raw = INVITE.replace("Content-Length: 4", "Content-Length: four");
        assert!(matches!(
            Message::parse(raw.as_bytes()),
            Err(ParseError::BadContentLength(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"INVITE sip:x SIP/2.0\r\n".to_vec(),
            b"INVITE sip:x SIP/2.0\r\n  folded-first\r\n\r\n".to_vec(),
            b"INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n".to_vec(),
            b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n".to_vec(),
            vec![0xff, 0xfe, b'\r', b'\n', b'\r', b'\n'],
            vec![b'A'; MAX_MESSAGE_BYTES + 1],
            INVITE
                .replace(
                    "INVITE sip:bob@biloxi.example.com SIP/2.0",
                    "INVITE  SIP/2.0 what",
                )
                .into_bytes(),
        ];
        for c in cases {
            assert!(
                Message::parse(&c).is_err(),
                "{:?}",
                String::from_utf8_lossy(&c[..c.len().min(60)])
            );
        }
        // Every prefix of a valid message: never a panic.
        for i in 0..INVITE.len() {
            let _ = Message::parse(&INVITE.as_bytes()[..i]);
            let _ = Message::frame_len(&INVITE.as_bytes()[..i]);
        }
    }

    #[test]
    fn stream_framing_splits_back_to_back_messages() {
        let two = format!("\r\n\r\n{INVITE}{INVITE}");
        let b = two.as_bytes();
        let first = Message::frame_len(b).unwrap().unwrap();
        assert_eq!(first, 4 + INVITE.len());
        assert_eq!(Message::frame_len(&b[first..]).unwrap(), Some(INVITE.len()));
        assert_eq!(Message::frame_len(&b[..first - 1]).unwrap(), None);
    }
}
