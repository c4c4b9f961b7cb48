//! SIP messages behind our own type, parsed by our own code (RFC 3261 §7, §25): header line
//! folding (§7.3.1), compact header names (§7.3.3, plus the compact forms registered later),
//! `Content-Length` framing (§18.3), a strict start line (one SP between elements, a scheme
//! on the Request-URI, no headers in a sip: Request-URI, a three-digit status code), single-
//! valued headers that appear once, balanced quotes in From/To and well-formed Vias. Header
//! values stay text: the modules that need a header's structure read it themselves.
//!
//! We used `rsip` underneath at first. It refused valid messages of RFC 4475 (unusual but
//! legal Request-URIs, an empty reason phrase) and accepted invalid ones, and its last release
//! is from 2022, so the start line is now ours and rsip is gone (docs/decisions.md).
//! [`error_response`] builds the 400/505 a malformed request gets.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::builder::MessageBuilder;

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
    #[error("SIP version {0:?} is not supported")]
    Version(String),
}

/// Why a request line is malformed, kept short: errors end up in logs and reason phrases.
fn malformed(what: &str, text: &str) -> ParseError {
    let shown: String = text.chars().take(60).collect();
    ParseError::Malformed(format!("{what}: {shown:?}"))
}

/// RFC 3261 §25.1 `scheme`: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

/// Checks a Request-URI: `scheme:rest` with no whitespace or angle brackets (RFC 4475
/// §3.1.2.7, §3.1.2.8), and for sip:/sips: no escaped headers (§19.1.1's table; RFC 4475
/// §3.1.2.11), which may only follow the host part (a `?` in the user part is legal).
pub(crate) fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(malformed("Request-URI without a scheme", uri));
    };
    if !is_scheme(scheme) || rest.is_empty() {
        return Err(malformed("bad Request-URI", uri));
    }
    if uri
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'<' || b == b'>')
    {
        return Err(malformed("bad characters in the Request-URI", uri));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
        if host_part.contains('?') {
            return Err(malformed("headers in the Request-URI", uri));
        }
        if host_part.is_empty() || host_part.starts_with([';', ':']) {
            return Err(malformed("Request-URI without a host", uri));
        }
    }
    Ok(())
}

/// `SIP/2.0` (case-insensitive, §7.1); another `SIP/x.y` is [`ParseError::Version`].
fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    match v.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("SIP/") && v.len() < 16 => {
            Err(ParseError::Version(v.to_owned()))
        }
        _ => Err(malformed("bad SIP version", v)),
    }
}

/// Parses the start line (§7.1, §7.2): exactly one SP between the Request-Line's elements
/// and nothing after the version (RFC 4475 §3.1.2.9, §3.1.2.10); a three-digit status code
/// (§3.1.2.19) and a reason phrase that may be empty or any UTF-8 (§3.1.1.12, §3.1.1.13).
fn parse_start_line(line: &str) -> Result<Kind, ParseError> {
    if line.starts_with("SIP/") || line.starts_with("sip/") {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        check_version(version)?;
        let code = parts.next().unwrap_or("");
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("bad status code", code));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| malformed("bad status code", code))?;
        if !(100..=699).contains(&status) {
            return Err(malformed("status code out of range", code));
        }
        if parts
            .next()
            .is_some_and(|r| r.chars().any(|c| c.is_control() && c != '\t'))
        {
            return Err(malformed("control characters in the reason phrase", line));
        }
        return Ok(Kind::Response { status });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(malformed(
            "the Request-Line needs exactly: method SP Request-URI SP SIP/2.0",
            line,
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(malformed("bad method", method));
    }
    check_request_uri(uri)?;
    check_version(version)?;
    Ok(Kind::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

/// Quotes must balance and `<` must close in a From/To/Contact-like value (RFC 4475
/// §3.1.2.6 quotbal).
fn check_name_addr(name: &str, value: &str) -> Result<(), ParseError> {
    let (mut quoted, mut escaped, mut depth) = (false, false, 0i32);
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(malformed(&format!("unbalanced <> in {name}"), value));
        }
    }
    if quoted {
        return Err(malformed(
            &format!("unterminated quoted string in {name}"),
            value,
        ));
    }
    if depth != 0 {
        return Err(malformed(&format!("unclosed < in {name}"), value));
    }
    Ok(())
}

/// Each Via entry: `SIP / 2.0 / transport sent-by *( ; param )` with no empty parameter
/// (RFC 4475 §3.1.2.1 badinv01), LWS allowed around the slashes (§3.1.1.1 wsinv).
fn check_via(value: &str) -> Result<(), ParseError> {
    for entry in split_list(value) {
        let mut params = entry.split(';');
        let head = params.next().unwrap_or("");
        let proto: String = head.chars().filter(|c| !c.is_whitespace()).collect();
        let ok_proto = proto.len() > 8
            && proto
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/2.0/"));
        if !ok_proto {
            return Err(malformed("bad Via", &entry));
        }
        if params.any(|p| p.split('=').next().unwrap_or("").trim().is_empty()) {
            return Err(malformed("empty Via parameter", &entry));
        }
    }
    if value.trim().is_empty() || value.trim_end().ends_with(',') {
        return Err(malformed("empty Via entry", value));
    }
    Ok(())
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
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Request { method: String, uri: String },
    Response { status: u16 },
}

/// Headers a message carries at most once (RFC 3261 §7.3.1: only headers defined as
/// comma-separated lists may repeat). Two of these is a malformed message (RFC 4475
/// §3.3.8 multi01, §3.3.9 mcl01).
const SINGLE_VALUED: &[&str] = &[
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
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
        if !crate::wire::is_clean_value(&start_line) {
            return Err(ParseError::Malformed(
                "a control character in the start line".into(),
            ));
        }
        let mut headers = Vec::new();
        for line in it {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                ParseError::Malformed(format!("header line without a colon: {line:?}"))
            })?;
            let name = name.trim_end();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(ParseError::Malformed(format!("bad header name {name:?}")));
            }
            // RFC 3261 §25.1 has no control character in a header value but HTAB (a
            // quoted-pair may escape one; nobody does). Lines are split on CRLF only, so a lone
            // CR or LF, or a NUL, would otherwise stay in a value we copy into our responses.
            if !crate::wire::is_clean_value(value) {
                return Err(ParseError::Malformed(format!(
                    "a control character in the value of {name}"
                )));
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

        // The start line first: a request of another SIP version is a 505, whatever else.
        let kind = parse_start_line(&start_line)?;
        for single in SINGLE_VALUED {
            if headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(single))
                .count()
                > 1
            {
                return Err(ParseError::Malformed(format!(
                    "more than one {single} header"
                )));
            }
        }
        for (n, v) in &headers {
            if ["From", "To"].iter().any(|h| n.eq_ignore_ascii_case(h)) {
                check_name_addr(n, v)?;
            } else if n.eq_ignore_ascii_case("Via") {
                check_via(v)?;
            }
        }
        Ok(Self {
            start_line,
            headers,
            body,
            kind,
        })
    }

    /// On a stream transport: the length of the first complete message in `buf`, leading
    /// CRLF keep-alives included, or `None` when more bytes are needed (§18.3). Stateless: a
    /// reader that calls it after every read should keep a [`Framer`] instead, which does not
    /// scan the same bytes again.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
        Framer::default().next_len(buf)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// The request method as written (`INVITE`, …; method names are case-sensitive, §7.1).
    pub fn method(&self) -> Option<String> {
        match &self.kind {
            Kind::Request { method, .. } => Some(method.clone()),
            Kind::Response { .. } => None,
        }
    }

    /// The Request-URI as written, for requests.
    pub fn request_uri(&self) -> Option<String> {
        match &self.kind {
            Kind::Request { uri, .. } => Some(uri.clone()),
            Kind::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::Response { status } => Some(status),
            Kind::Request { .. } => None,
        }
    }

    /// The reason phrase, for responses.
    pub fn reason(&self) -> Option<&str> {
        if self.is_request() {
            return None;
        }
        Some(
            self.start_line
                .splitn(3, ' ')
                .nth(2)
                .map(str::trim)
                .unwrap_or(""),
        )
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

    /// Every header whose name starts with `prefix` (case-insensitive), as (name as sent,
    /// value), in order: the application's own headers (`X-`), which RFC 3261 leaves to it.
    pub fn headers_starting(&self, prefix: &str) -> impl Iterator<Item = (&str, &str)> {
        let prefix = prefix.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(n, _)| n.to_ascii_lowercase().starts_with(&prefix))
            .map(|(n, v)| (n.as_str(), v.as_str()))
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
        Some((n, parts.next()?.to_owned()))
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

/// RFC 3261 §18.2.1 and RFC 3581 §4: add `received` when the source differs from sent-by,
/// and fill an empty `rport` with the source port.
pub fn via_with_source(via: &str, source: SocketAddr) -> String {
    let mut parts: Vec<String> = via.split(';').map(|p| p.trim().to_owned()).collect();
    let sent_by_host = parts
        .first()
        .and_then(|p| p.split_whitespace().nth(1))
        .map(|hp| {
            let hp = hp.trim();
            if let Some(v6) = hp.strip_prefix('[') {
                v6.split(']').next().unwrap_or("").to_owned()
            } else {
                hp.rsplit_once(':').map(|(h, _)| h).unwrap_or(hp).to_owned()
            }
        })
        .unwrap_or_default();
    let mut has_rport = false;
    for p in parts.iter_mut().skip(1) {
        if p.eq_ignore_ascii_case("rport") {
            *p = format!("rport={}", source.port());
            has_rport = true;
        } else if p.to_ascii_lowercase().starts_with("rport=") {
            has_rport = true;
        }
    }
    let ip = source.ip().to_string();
    if has_rport || sent_by_host != ip {
        parts.retain(|p| !p.to_ascii_lowercase().starts_with("received="));
        parts.push(format!("received={ip}"));
    }
    parts.join(";")
}

/// A stateless answer to bytes that look like a request but do not parse (§8.2, §21.4.1;
/// RFC 4475's invalid messages): 505 for another SIP version, else 400 with the reason in a
/// Warning. `None` when nothing can be answered — a response, an ACK, or no Via to route the
/// answer by — and then the bytes are dropped, as §18.1.2/§18.2.1 say.
pub fn error_response(data: &[u8], err: &ParseError, source: SocketAddr) -> Option<Bytes> {
    let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let data = &data[start..data.len().min(start + MAX_MESSAGE_BYTES)];
    let head_end = find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..head_end]);
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match lines.last_mut() {
            Some(prev) if line.starts_with([' ', '\t']) => {
                prev.push(' ');
                prev.push_str(line.trim());
            }
            _ => lines.push(line.to_owned()),
        }
    }
    let first = lines.first()?;
    let method = first.split(' ').next().unwrap_or("");
    if method.is_empty()
        || !method.bytes().all(is_token_char)
        || method.eq_ignore_ascii_case("ACK")
        || first
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        return None;
    }
    let mut vias = Vec::new();
    let mut copied: Vec<(&'static str, String)> = Vec::new();
    for line in lines.iter().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let name = expand_compact(name).unwrap_or(name);
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("Via") {
            vias.extend(split_list(&value));
            continue;
        }
        for wanted in ["From", "To", "Call-ID", "CSeq"] {
            if name.eq_ignore_ascii_case(wanted) && !copied.iter().any(|(n, _)| *n == wanted) {
                copied.push((wanted, value.clone()));
            }
        }
    }
    // Empty parameters (`;;`, RFC 4475 badinv01) are dropped, so the answer itself is valid.
    let vias: Vec<String> = vias
        .iter()
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(";")
        })
        .filter(|v| v.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("SIP")))
        .collect();
    let top = vias.first()?;
    let (status, reason) = match err {
        ParseError::Version(_) => (505, "Version Not Supported"),
        _ => (400, "Bad Request"),
    };
    let mut r = MessageBuilder::response(status, reason);
    r.header("Via", via_with_source(top, source));
    r.headers("Via", &vias[1..]);
    for (name, value) in &copied {
        if *name == "To" && !value.contains(";tag=") && !value.contains(";TAG=") {
            r.header(
                "To",
                format_args!("{value};tag={:08x}", rand::random::<u32>()),
            );
        } else {
            r.header(name, value);
        }
    }
    // The reason goes in a Warning (RFC 3261 §20.43) as printable text without quotes.
    let why: String = err
        .to_string()
        .chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .take(120)
        .collect();
    r.header("Warning", format_args!("399 switchboard \"{why}\""));
    // A copied value with a control character (the very reason of some refusals) leaves
    // nothing we could answer safely: drop, as for a message without a Via.
    r.build().ok()
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

/// Splits a stream into messages (RFC 3261 §18.3) without scanning any byte twice: it
/// remembers how far it looked for the end of the header, and the message's length once the
/// header is read, so a peer that sends a 64 KiB header a byte at a time costs 64 KiB of
/// scanning, not 2 GiB. Call [`Framer::next_len`] after each read with the whole unconsumed
/// buffer, and [`Framer::consumed`] when a frame is taken off its front.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    /// Leading CR/LF keep-alive bytes before the message, once a byte of the message came.
    skipped: Option<usize>,
    /// How many leading CR/LF bytes have been looked at so far.
    lead: usize,
    /// How many bytes after `skipped` have been searched for CRLFCRLF.
    searched: usize,
    /// The message's whole length (`skipped` included), once its header has been read.
    total: Option<usize>,
    /// Bytes looked at since the last [`Framer::consumed`] (for tests of the bound above).
    pub examined: usize,
}

impl Framer {
    /// The length of the first complete message in `buf`, or `None` until it has arrived.
    pub fn next_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        if let Some(total) = self.total {
            return Ok((buf.len() >= total).then_some(total));
        }
        let skipped = match self.skipped {
            Some(s) => s,
            None => {
                let rest = &buf[self.lead..];
                let Some(s) = rest.iter().position(|&b| b != b'\r' && b != b'\n') else {
                    self.examined += rest.len();
                    self.lead = buf.len();
                    return if buf.len() > MAX_MESSAGE_BYTES {
                        Err(ParseError::TooLarge)
                    } else {
                        Ok(None)
                    };
                };
                self.examined += s + 1;
                let s = self.lead + s;
                self.skipped = Some(s);
                s
            }
        };
        let body = &buf[skipped..];
        // Resume three bytes back: the terminator may straddle the previous read.
        let from = self.searched.saturating_sub(3);
        let found = find(&body[from..], b"\r\n\r\n").map(|i| from + i);
        self.examined += body.len() - from;
        let Some(head_end) = found else {
            self.searched = body.len();
            return if body.len() > MAX_MESSAGE_BYTES {
                Err(ParseError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let head = std::str::from_utf8(&body[..head_end]).map_err(|_| ParseError::NotUtf8)?;
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
        self.total = Some(total);
        Ok((buf.len() >= total).then_some(total))
    }

    /// Whether part of a message is waiting for the rest (not just keep-alive CRLFs).
    pub fn in_message(&self) -> bool {
        self.skipped.is_some()
    }

    /// The frame [`Framer::next_len`] reported was taken off the buffer: start afresh.
    pub fn consumed(&mut self) {
        *self = Self::default();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #13 item 17: lines are split on CRLF, so a lone LF, a lone CR or an unescaped NUL
    /// inside a value would otherwise survive the parser and be copied into our responses.
    #[test]
    fn control_characters_in_values_are_refused_escaped_ones_kept() {
        for bad in [
            "Call-ID: a\nX-Evil: 1",
            "Call-ID: a\rX-Evil: 1",
            "Call-ID: a\0b",
            "Subject: a\x1b[31m",
        ] {
            let raw = format!(
                "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCSeq: 1 OPTIONS\r\n{}\r\n{bad}\r\nContent-Length: 0\r\n\r\n",
                if bad.starts_with("Call-ID") { "Max-Forwards: 70" } else { "Call-ID: ok" }
            );
            assert!(Message::parse(raw.as_bytes()).is_err(), "{bad:?}");
        }
        let raw = "OPTIONS sip:x@example.com\n SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert!(Message::parse(raw.as_bytes()).is_err());
        // A quoted-pair may escape one (RFC 4475 intmeth).
        let raw = "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: \"NUL:\\\0\" <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert!(Message::parse(raw.as_bytes()).is_ok());
    }

    /// #13 item 20: a header trickled in a byte at a time is scanned once, not once per read,
    /// and the framer finds the same frames as the stateless function.
    #[test]
    fn a_trickled_header_is_scanned_once() {
        let mut head = String::from("OPTIONS sip:x@example.com SIP/2.0\r\n");
        while head.len() < 60_000 {
            head.push_str(
                "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let msg = format!("\r\n{head}Content-Length: 5\r\n\r\nhello");
        let bytes = msg.as_bytes();
        let mut f = Framer::default();
        let mut got = None;
        for end in 1..=bytes.len() {
            if let Some(n) = f.next_len(&bytes[..end]).unwrap() {
                got = Some((end, n));
                break;
            }
        }
        assert_eq!(got, Some((bytes.len(), bytes.len())));
        assert_eq!(Message::frame_len(bytes).unwrap(), Some(bytes.len()));
        // Linear: every byte looked at a bounded number of times (the old scan: ~n²/2).
        assert!(
            f.examined < 5 * bytes.len(),
            "{} for {}",
            f.examined,
            bytes.len()
        );
        f.consumed();
        assert!(!f.in_message());
        assert_eq!(f.next_len(b"\r\n").unwrap(), None);
        assert!(!f.in_message());
    }

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
            // Found by fuzz/sip ua: a multi-byte character where "SIP/2.0/" should end.
            INVITE
                .replace(
                    "SIP/2.0/UDP pc33.atlanta.example.com",
                    "SIP/2.0\u{46b}DP 127.0.0.1",
                )
                .into_bytes(),
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
