//! SDP (RFC 8866, formerly RFC 4566) and the offer/answer model (RFC 3264) for one audio
//! stream, which is what a contact-center call carries.
//!
//! Parsing is lenient where RFC 8866 §5 lets a receiver be (unknown lines and attributes are
//! kept and ignored; `\n` line ends are accepted) and strict where a wrong guess would send
//! audio to the wrong place (`c=`, `m=`, port, payload types). Negotiation follows RFC 3264:
//! the answer keeps the offer's media lines in order, rejects what it cannot carry with port 0,
//! lists the offered payload types it accepts, and answers the direction with its mirror
//! (§6.1); hold is `sendonly` (§8.4), with RFC 2543's `c=0.0.0.0` understood as well.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why a body is not usable SDP, or why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP line {line} is malformed: {text:?}")]
    Malformed { line: usize, text: String },
    #[error("the SDP has no v=0 line")]
    NoVersion,
    #[error("the SDP has no origin (o=) line")]
    NoOrigin,
    #[error("no connection address (c=) for the audio stream")]
    NoConnection,
    #[error("the SDP offers no audio stream")]
    NoAudio,
    #[error("none of the offered codecs ({offered}) is one we support")]
    NoCommonCodec { offered: String },
    #[error("the answer does not match the offer: {0}")]
    AnswerMismatch(String),
    #[error("the SDP is not UTF-8")]
    NotUtf8,
    #[error("plain RTP was offered, and this side requires SRTP")]
    SrtpRequired,
    #[error("SRTP was offered with crypto suites we do not share ({offered})")]
    NoCommonCrypto { offered: String },
}

/// Media direction attributes (RFC 3264 §5.1, RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }
    /// The direction an answerer answers with when it wants `local` (RFC 3264 §6.1).
    pub fn answer(offered: Self, local: Self) -> Self {
        let remote_sends = matches!(offered, Self::SendRecv | Self::SendOnly);
        let remote_recvs = matches!(offered, Self::SendRecv | Self::RecvOnly);
        let we_send = remote_recvs && matches!(local, Self::SendRecv | Self::SendOnly);
        let we_recv = remote_sends && matches!(local, Self::SendRecv | Self::RecvOnly);
        match (we_send, we_recv) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// `o=` (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub version: u64,
    pub address: String,
}

/// One `m=` section with its own lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Payload types (or formats) in preference order.
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    /// `a=` lines as (name, value).
    pub attributes: Vec<(String, Option<String>)>,
    /// `b=` lines, kept as written.
    pub bandwidth: Vec<String>,
}

impl MediaSection {
    /// The value of the first `a=name:value`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    fn attributes_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| v.as_deref())
    }

    fn has_flag(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|(n, v)| v.is_none() && n.eq_ignore_ascii_case(name))
    }

    /// `a=rtpmap` for a payload type, or the static assignment of RFC 3551 Table 4.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        for v in self.attributes_named("rtpmap") {
            let Some((p, rest)) = v.split_once(' ') else {
                continue;
            };
            if p.trim().parse::<u8>().ok() != Some(pt) {
                continue;
            }
            let mut parts = rest.trim().split('/');
            let encoding = parts.next().unwrap_or("").to_owned();
            let Some(clock_rate) = parts.next().and_then(|c| c.parse().ok()) else {
                continue;
            };
            let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            return Some(RtpMap {
                encoding,
                clock_rate,
                channels,
            });
        }
        static_rtpmap(pt)
    }

    /// `a=fmtp` parameters for a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes_named("fmtp").find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            (p.trim().parse::<u8>().ok() == Some(pt)).then_some(rest.trim())
        })
    }

    /// The stream's direction, `None` when it does not say (the session level then decides).
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .filter(|(_, v)| v.is_none())
            .find_map(|(n, _)| Direction::parse(&n.to_ascii_lowercase()))
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime").and_then(|v| v.trim().parse().ok())
    }

    /// `a=crypto` lines (RFC 4568), as written.
    pub fn crypto(&self) -> Vec<&str> {
        self.attributes_named("crypto").collect()
    }

    /// Whether RTP and RTCP share the port (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.has_flag("rtcp-mux")
    }

    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }
}

/// An `a=rtpmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
}

fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (encoding, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(RtpMap {
        encoding: encoding.into(),
        clock_rate,
        channels: 1,
    })
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<IpAddr>,
    pub attributes: Vec<(String, Option<String>)>,
    pub media: Vec<MediaSection>,
}

fn parse_connection(v: &str, line: usize) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1 (a multicast TTL suffix "/127" is dropped)
    let bad = || SdpError::Malformed {
        line,
        text: format!("c={v}"),
    };
    let mut parts = v.split_whitespace();
    let (Some("IN"), Some(_ty), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    addr.split('/')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| bad())
}

impl Sdp {
    /// Parses an SDP body.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut saw_version = false;
        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaSection> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.trim().is_empty() {
                continue;
            }
            let bad = || SdpError::Malformed {
                line,
                text: raw.chars().take(120).collect(),
            };
            let (key, value) = raw.split_once('=').ok_or_else(bad)?;
            if key.len() != 1 {
                return Err(bad());
            }
            match key {
                "v" => {
                    if value.trim() != "0" {
                        return Err(bad());
                    }
                    saw_version = true;
                }
                "o" => {
                    let p: Vec<&str> = value.split_whitespace().collect();
                    if p.len() != 6 {
                        return Err(bad());
                    }
                    origin = Some(Origin {
                        username: p[0].into(),
                        session_id: p[1].into(),
                        version: p[2].parse().map_err(|_| bad())?,
                        address: p[5].into(),
                    });
                }
                "s" => session_name = value.to_owned(),
                "c" => {
                    let addr = parse_connection(value, line)?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => connection = Some(addr),
                    }
                }
                "m" => {
                    let p: Vec<&str> = value.split_whitespace().collect();
                    if p.len() < 3 {
                        return Err(bad());
                    }
                    let port = p[1].split('/').next().unwrap_or("");
                    media.push(MediaSection {
                        kind: p[0].to_ascii_lowercase(),
                        port: port.parse().map_err(|_| bad())?,
                        proto: p[2].into(),
                        formats: p[3..].iter().map(|s| (*s).to_owned()).collect(),
                        connection: None,
                        attributes: Vec::new(),
                        bandwidth: Vec::new(),
                    });
                }
                "a" => {
                    let (n, v) = match value.split_once(':') {
                        Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                        None => (value.to_owned(), None),
                    };
                    match media.last_mut() {
                        Some(m) => m.attributes.push((n, v)),
                        None => attributes.push((n, v)),
                    }
                }
                "b" => {
                    if let Some(m) = media.last_mut() {
                        m.bandwidth.push(value.to_owned());
                    }
                }
                // i, u, e, p, t, r, z, k: not needed for a call; tolerated.
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::NoVersion);
        }
        Ok(Self {
            origin: origin.ok_or(SdpError::NoOrigin)?,
            session_name,
            connection,
            attributes,
            media,
        })
    }

    /// The first audio section and its index.
    pub fn audio(&self) -> Option<(usize, &MediaSection)> {
        self.media
            .iter()
            .enumerate()
            .find(|(_, m)| m.kind == "audio" && m.port != 0)
    }

    /// Effective direction of a section (its own attribute, else the session's).
    pub fn direction_of(&self, m: &MediaSection) -> Direction {
        m.direction()
            .or_else(|| {
                self.attributes
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .find_map(|(n, _)| Direction::parse(&n.to_ascii_lowercase()))
            })
            .unwrap_or_default()
    }

    /// Connection address of a section (its own `c=`, else the session's).
    pub fn connection_of(&self, m: &MediaSection) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }

    /// The body on the wire (CRLF line ends, RFC 8866 §5).
    pub fn to_bytes(&self) -> bytes::Bytes {
        let mut s = String::with_capacity(256);
        let ip = |a: &IpAddr| match a {
            IpAddr::V4(v) => format!("IN IP4 {v}"),
            IpAddr::V6(v) => format!("IN IP6 {v}"),
        };
        let oaddr_type = if self.origin.address.contains(':') {
            "IP6"
        } else {
            "IP4"
        };
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            self.origin.username,
            self.origin.session_id,
            self.origin.version,
            oaddr_type,
            self.origin.address,
            if self.session_name.is_empty() {
                "-"
            } else {
                &self.session_name
            }
        );
        if let Some(c) = &self.connection {
            let _ = write!(s, "c={}\r\n", ip(c));
        }
        s.push_str("t=0 0\r\n");
        let attr = |s: &mut String, (n, v): &(String, Option<String>)| {
            let _ = match v {
                Some(v) => write!(s, "a={n}:{v}\r\n"),
                None => write!(s, "a={n}\r\n"),
            };
        };
        for a in &self.attributes {
            attr(&mut s, a);
        }
        for m in &self.media {
            let _ = write!(s, "m={} {} {}", m.kind, m.port, m.proto);
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            s.push_str("\r\n");
            if let Some(c) = &m.connection {
                let _ = write!(s, "c={}\r\n", ip(c));
            }
            for b in &m.bandwidth {
                let _ = write!(s, "b={b}\r\n");
            }
            for a in &m.attributes {
                attr(&mut s, a);
            }
        }
        bytes::Bytes::from(s)
    }
}

/// A codec we can carry, as we offer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    /// Encoding name as in `a=rtpmap` (`opus`, `PCMU`, `PCMA`).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
    /// Payload type we use when we offer it (static for G.711, dynamic otherwise).
    pub payload_type: u8,
    pub fmtp: Option<String>,
}

impl CodecSpec {
    pub fn opus() -> Self {
        Self {
            encoding: "opus".into(),
            clock_rate: 48_000,
            channels: 2,
            payload_type: 111,
            fmtp: Some("minptime=10;useinbandfec=1".into()),
        }
    }
    pub fn pcmu() -> Self {
        Self {
            encoding: "PCMU".into(),
            clock_rate: 8000,
            channels: 1,
            payload_type: 0,
            fmtp: None,
        }
    }
    pub fn pcma() -> Self {
        Self {
            encoding: "PCMA".into(),
            clock_rate: 8000,
            channels: 1,
            payload_type: 8,
            fmtp: None,
        }
    }
    fn matches(&self, m: &RtpMap) -> bool {
        self.encoding.eq_ignore_ascii_case(&m.encoding) && self.clock_rate == m.clock_rate
    }
}

/// What we can do, to offer or answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address and port where we receive RTP.
    pub address: IpAddr,
    pub port: u16,
    /// In our order of preference.
    pub codecs: Vec<CodecSpec>,
    /// Offer/accept RFC 4733 telephone-event at 8 kHz (and 48 kHz alongside Opus).
    pub telephone_event: bool,
    pub ptime: u32,
    pub direction: Direction,
    /// `a=crypto` values (RFC 4568) we offer, and answer an SRTP offer with; empty for
    /// plain RTP only.
    pub crypto: Vec<String>,
    /// Offer plain RTP although `crypto` has keys (they then only answer SRTP offers).
    pub plain_offer: bool,
    /// Refuse plain RTP: a plain offer is not acceptable (488), an answer without a key
    /// to our SRTP offer is an error.
    pub require_srtp: bool,
    /// ICE-lite (RFC 8445 §2.5) on this stream: our credentials, with `address:port` as our
    /// one host candidate. Offered as is; in an answer only when the offer has ICE.
    pub ice: Option<IceLite>,
}

/// An ICE-lite agent's credentials for a stream (RFC 8839 §5.4): `ice-ufrag` and `ice-pwd`.
/// A lite agent never checks; it answers the full agent's checks, whose USERNAME begins with
/// our `ufrag` and whose MESSAGE-INTEGRITY is keyed with our `pwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceLite {
    pub ufrag: String,
    pub pwd: String,
}

/// The characters `ice-ufrag` and `ice-pwd` are made of (RFC 8839 §5.4 `ice-char`).
fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

impl IceLite {
    /// Fresh random credentials: 8 characters of user fragment (48 bits) and 24 of password
    /// (144 bits; RFC 8445 §5.3 asks for at least 24 and 128).
    pub fn generate() -> Self {
        use rand::Rng;
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
                .collect()
        };
        Self {
            ufrag: pick(8),
            pwd: pick(24),
        }
    }
}

/// ICE as agreed on a stream: both sides' credentials. The peer is the full agent and
/// controls; we answer its checks (USERNAME `local_ufrag:remote_ufrag`) and send media to
/// the pair it nominates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceAgreed {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
}

/// The priority of our one host candidate (RFC 8445 §5.1.2.1: type preference 126, local
/// preference 65535, component 1).
pub const ICE_HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | (256 - 1);

/// A stream's `ice-ufrag` and `ice-pwd` (media level, else session level), when both are
/// there and well formed (RFC 8839 §5.4: 4–256 and 22–256 `ice-char`s).
pub fn ice_credentials(sdp: &Sdp, m: &MediaSection) -> Option<(String, String)> {
    let find = |name: &str| -> Option<String> {
        m.attribute(name)
            .or_else(|| {
                sdp.attributes
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_deref())
            })
            .map(|v| v.trim().to_owned())
    };
    let ufrag = find("ice-ufrag")?;
    let pwd = find("ice-pwd")?;
    let ok = |v: &str, min: usize| (min..=256).contains(&v.len()) && v.chars().all(is_ice_char);
    (ok(&ufrag, 4) && ok(&pwd, 22)).then_some((ufrag, pwd))
}

/// Whether `offer` restarts ICE on a stream agreed as `agreed` (RFC 8839 §4.4.1.1.1: new
/// credentials), or starts it where there was none.
pub fn ice_restarts(offer: &Sdp, agreed: Option<&Negotiated>) -> bool {
    let Some((_, m)) = offer.audio() else {
        return false;
    };
    let Some((ufrag, pwd)) = ice_credentials(offer, m) else {
        return false;
    };
    match agreed.and_then(|n| n.ice.as_ref()) {
        Some(a) => a.remote_ufrag != ufrag || a.remote_pwd != pwd,
        None => true,
    }
}

/// Our ICE-lite lines: `a=ice-lite` for the session, credentials and the one candidate for
/// the stream.
fn add_ice_lines(
    sdp: &mut Sdp,
    attributes: &mut Vec<(String, Option<String>)>,
    local: &LocalMedia,
) {
    let Some(ice) = &local.ice else { return };
    sdp.attributes.push(("ice-lite".into(), None));
    attributes.push(("ice-ufrag".into(), Some(ice.ufrag.clone())));
    attributes.push(("ice-pwd".into(), Some(ice.pwd.clone())));
    attributes.push((
        "candidate".into(),
        Some(format!(
            "1 1 UDP {ICE_HOST_PRIORITY} {} {} typ host",
            local.address, local.port
        )),
    ));
}

impl LocalMedia {
    /// Opus, PCMU, PCMA and telephone-event, 20 ms, send and receive.
    pub fn new(address: IpAddr, port: u16) -> Self {
        Self {
            address,
            port,
            codecs: vec![CodecSpec::opus(), CodecSpec::pcmu(), CodecSpec::pcma()],
            telephone_event: true,
            ptime: 20,
            direction: Direction::SendRecv,
            crypto: Vec::new(),
            plain_offer: false,
            require_srtp: false,
            ice: None,
        }
    }

    /// After an offer/answer, later offers on the call (hold, resume, refresh) keep what was
    /// agreed: the same SRTP suite and key (RFC 4568 §7.1.4 lets a re-offer keep them), or
    /// plain RTP when the call is plain.
    pub fn keep_agreed_crypto(&mut self, agreed: &Negotiated) {
        self.crypto = agreed.local_crypto.iter().cloned().collect();
        self.plain_offer = false;
    }

    fn offers_srtp(&self) -> bool {
        !self.crypto.is_empty() && !self.plain_offer
    }
}

/// The result of a completed offer/answer: what to send where and what to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer receives our RTP; `None` when the stream is rejected or the peer holds
    /// with `c=0.0.0.0`.
    pub remote: Option<SocketAddr>,
    /// The codec both ends send with (the first the answer lists).
    pub codec: NegotiatedCodec,
    /// The telephone-event payload type, when both sides support RFC 4733.
    pub telephone_event: Option<u8>,
    /// Our direction as agreed (whether we send / receive).
    pub direction: Direction,
    pub ptime: u32,
    /// The peer's chosen `a=crypto` line, when SRTP was agreed.
    pub remote_crypto: Option<String>,
    /// Our `a=crypto` line matching it.
    pub local_crypto: Option<String>,
    pub rtcp_mux: bool,
    /// ICE, when both sides had it (we are the lite agent); boxed, as most calls have none.
    pub ice: Option<Box<IceAgreed>>,
}

/// A payload type and its codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
    pub fmtp: Option<String>,
}

fn session_header(origin_user: &str, session_id: &str, version: u64, addr: IpAddr) -> Sdp {
    Sdp {
        origin: Origin {
            username: origin_user.to_owned(),
            session_id: session_id.to_owned(),
            version,
            address: addr.to_string(),
        },
        session_name: "Switchboard".into(),
        connection: Some(addr),
        attributes: Vec::new(),
        media: Vec::new(),
    }
}

/// Builds an offer. `session_id` stays the same for the life of the session; `version` goes
/// up by one with every new offer or answer that changes something (RFC 3264 §8).
pub fn offer(local: &LocalMedia, session_id: &str, version: u64) -> Sdp {
    let mut sdp = session_header("switchboard", session_id, version, local.address);
    let mut formats: Vec<String> = local
        .codecs
        .iter()
        .map(|c| c.payload_type.to_string())
        .collect();
    let mut attributes = Vec::new();
    for c in &local.codecs {
        let rtpmap = if c.channels > 1 {
            format!(
                "{} {}/{}/{}",
                c.payload_type, c.encoding, c.clock_rate, c.channels
            )
        } else {
            format!("{} {}/{}", c.payload_type, c.encoding, c.clock_rate)
        };
        attributes.push(("rtpmap".to_owned(), Some(rtpmap)));
        if let Some(f) = &c.fmtp {
            attributes.push(("fmtp".into(), Some(format!("{} {f}", c.payload_type))));
        }
    }
    if local.telephone_event {
        let mut rates: Vec<u32> = vec![8000];
        if local.codecs.iter().any(|c| c.clock_rate == 48_000) {
            rates.insert(0, 48_000);
        }
        for (i, rate) in rates.into_iter().enumerate() {
            let pt = if rate == 48_000 { 101 } else { 101 + i as u8 };
            formats.push(pt.to_string());
            attributes.push((
                "rtpmap".into(),
                Some(format!("{pt} telephone-event/{rate}")),
            ));
            attributes.push(("fmtp".into(), Some(format!("{pt} 0-16"))));
        }
    }
    if local.offers_srtp() {
        for c in &local.crypto {
            attributes.push(("crypto".into(), Some(c.clone())));
        }
    }
    attributes.push(("ptime".into(), Some(local.ptime.to_string())));
    // RTP and RTCP on one port (RFC 5761): when the answer does not take it, RTCP is left out
    // rather than sent to a port we do not listen on.
    attributes.push(("rtcp-mux".into(), None));
    attributes.push((local.direction.as_str().into(), None));
    add_ice_lines(&mut sdp, &mut attributes, local);
    let proto = if local.offers_srtp() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    sdp.media.push(MediaSection {
        kind: "audio".into(),
        port: local.port,
        proto: proto.into(),
        formats,
        connection: None,
        attributes,
        bandwidth: Vec::new(),
    });
    sdp
}

fn remote_addr(sdp: &Sdp, m: &MediaSection) -> Result<Option<SocketAddr>, SdpError> {
    let ip = sdp.connection_of(m).ok_or(SdpError::NoConnection)?;
    // RFC 2543 hold: c=0.0.0.0 means "do not send".
    if ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) || m.port == 0 {
        return Ok(None);
    }
    Ok(Some(SocketAddr::new(ip, m.port)))
}

fn telephone_event_pt(m: &MediaSection, rate: u32) -> Option<u8> {
    m.payload_types().find(|&pt| {
        m.rtpmap(pt).is_some_and(|r| {
            r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == rate
        })
    })
}

fn describe_offered(m: &MediaSection) -> String {
    m.payload_types()
        .map(|pt| match m.rtpmap(pt) {
            Some(r) => format!("{}/{}", r.encoding, r.clock_rate),
            None => format!("PT {pt}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Answers an offer (RFC 3264 §6): the offer's first audio stream is accepted with the first
/// codec in *our* preference order that the offer lists (RFC 3264 lets the answerer choose; an
/// agent's headset prefers Opus), other streams are rejected with port 0.
pub fn answer(
    offer: &Sdp,
    local: &LocalMedia,
    session_id: &str,
    version: u64,
) -> Result<(Sdp, Negotiated), SdpError> {
    let (audio_idx, m) = offer.audio().ok_or(SdpError::NoAudio)?;
    let offered_srtp = m.proto.eq_ignore_ascii_case("RTP/SAVP");
    if local.require_srtp && !offered_srtp {
        return Err(SdpError::SrtpRequired);
    }
    let mut chosen: Option<NegotiatedCodec> = None;
    'outer: for ours in &local.codecs {
        for pt in m.payload_types() {
            if let Some(map) = m.rtpmap(pt) {
                if ours.matches(&map) {
                    chosen = Some(NegotiatedCodec {
                        payload_type: pt,
                        encoding: ours.encoding.clone(),
                        clock_rate: map.clock_rate,
                        channels: map.channels,
                        fmtp: m.fmtp(pt).map(str::to_owned),
                    });
                    break 'outer;
                }
            }
        }
    }
    let codec = chosen.ok_or_else(|| SdpError::NoCommonCodec {
        offered: describe_offered(m),
    })?;
    let te = local
        .telephone_event
        .then(|| telephone_event_pt(m, codec.clock_rate).or_else(|| telephone_event_pt(m, 8000)))
        .flatten();
    let offered_dir = offer.direction_of(m);
    let remote = remote_addr(offer, m)?;
    // c=0.0.0.0 is an old-style hold: the peer does not want media from us.
    let offered_dir = if remote.is_none() && offered_dir == Direction::SendRecv {
        Direction::SendOnly
    } else {
        offered_dir
    };
    let our_dir = Direction::answer(offered_dir, local.direction);
    // SRTP: take the first offered crypto suite we also have.
    let (remote_crypto, local_crypto) = if offered_srtp {
        let mut pick = None;
        for theirs in m.crypto() {
            let suite = theirs.split_whitespace().nth(1).unwrap_or("");
            if let Some(ours) = local
                .crypto
                .iter()
                .find(|c| c.split_whitespace().nth(1) == Some(suite))
            {
                // Our line answers with the offer's tag (RFC 4568 §5.1.2).
                let tag = theirs.split_whitespace().next().unwrap_or("1");
                let rest: Vec<&str> = ours.split_whitespace().skip(1).collect();
                pick = Some((theirs.to_owned(), format!("{tag} {}", rest.join(" "))));
                break;
            }
        }
        match pick {
            Some((r, l)) => (Some(r), Some(l)),
            None => {
                let offered: Vec<&str> = m
                    .crypto()
                    .iter()
                    .filter_map(|c| c.split_whitespace().nth(1))
                    .collect();
                return Err(SdpError::NoCommonCrypto {
                    offered: if offered.is_empty() {
                        "none".to_owned()
                    } else {
                        offered.join(", ")
                    },
                });
            }
        }
    } else {
        (None, None)
    };

    // ICE only where the offer has it (RFC 8839 §4.3.3).
    let theirs = ice_credentials(offer, m);
    let ice = match (&local.ice, &theirs) {
        (Some(l), Some((ufrag, pwd))) => Some(Box::new(IceAgreed {
            local_ufrag: l.ufrag.clone(),
            local_pwd: l.pwd.clone(),
            remote_ufrag: ufrag.clone(),
            remote_pwd: pwd.clone(),
        })),
        _ => None,
    };
    let mut sdp = session_header("switchboard", session_id, version, local.address);
    for (i, om) in offer.media.iter().enumerate() {
        if i != audio_idx {
            sdp.media.push(MediaSection {
                kind: om.kind.clone(),
                port: 0,
                proto: om.proto.clone(),
                formats: om.formats.iter().take(1).cloned().collect(),
                connection: None,
                attributes: Vec::new(),
                bandwidth: Vec::new(),
            });
            continue;
        }
        let mut formats = vec![codec.payload_type.to_string()];
        let mut attributes = Vec::new();
        let rtpmap = if codec.channels > 1 {
            format!(
                "{} {}/{}/{}",
                codec.payload_type, codec.encoding, codec.clock_rate, codec.channels
            )
        } else {
            format!(
                "{} {}/{}",
                codec.payload_type, codec.encoding, codec.clock_rate
            )
        };
        attributes.push(("rtpmap".into(), Some(rtpmap)));
        if let Some(f) = local
            .codecs
            .iter()
            .find(|c| c.encoding.eq_ignore_ascii_case(&codec.encoding))
            .and_then(|c| c.fmtp.clone())
        {
            attributes.push(("fmtp".into(), Some(format!("{} {f}", codec.payload_type))));
        }
        if let Some(pt) = te {
            formats.push(pt.to_string());
            let rate = m.rtpmap(pt).map(|r| r.clock_rate).unwrap_or(8000);
            attributes.push((
                "rtpmap".into(),
                Some(format!("{pt} telephone-event/{rate}")),
            ));
            attributes.push(("fmtp".into(), Some(format!("{pt} 0-16"))));
        }
        if let Some(l) = &local_crypto {
            attributes.push(("crypto".into(), Some(l.clone())));
        }
        attributes.push(("ptime".into(), Some(local.ptime.to_string())));
        if m.rtcp_mux() {
            attributes.push(("rtcp-mux".into(), None));
        }
        attributes.push((our_dir.as_str().into(), None));
        if ice.is_some() {
            add_ice_lines(&mut sdp, &mut attributes, local);
        }
        sdp.media.push(MediaSection {
            kind: "audio".into(),
            port: local.port,
            proto: m.proto.clone(),
            formats,
            connection: None,
            attributes,
            bandwidth: Vec::new(),
        });
    }
    let neg = Negotiated {
        remote,
        codec,
        telephone_event: te,
        direction: our_dir,
        ptime: m.ptime().unwrap_or(local.ptime),
        remote_crypto,
        local_crypto,
        rtcp_mux: m.rtcp_mux(),
        ice,
    };
    Ok((sdp, neg))
}

/// Reads the answer to our offer (RFC 3264 §7).
pub fn accept_answer(offer: &Sdp, answer: &Sdp) -> Result<Negotiated, SdpError> {
    let (idx, om) = offer.audio().ok_or(SdpError::NoAudio)?;
    let am = answer.media.get(idx).ok_or_else(|| {
        SdpError::AnswerMismatch(format!(
            "the offer has {} media lines, the answer {}",
            offer.media.len(),
            answer.media.len()
        ))
    })?;
    if am.kind != "audio" {
        return Err(SdpError::AnswerMismatch(format!(
            "media line {} is {} in the answer",
            idx + 1,
            am.kind
        )));
    }
    if am.port == 0 {
        return Err(SdpError::NoCommonCodec {
            offered: describe_offered(om),
        });
    }
    // The first payload type of the answer that is a codec (not telephone-event or CN).
    let codec = am
        .payload_types()
        .find_map(|pt| {
            let map = am.rtpmap(pt).or_else(|| om.rtpmap(pt))?;
            let e = map.encoding.to_ascii_lowercase();
            (e != "telephone-event" && e != "cn").then(|| NegotiatedCodec {
                payload_type: pt,
                encoding: map.encoding.clone(),
                clock_rate: map.clock_rate,
                channels: map.channels,
                fmtp: am.fmtp(pt).map(str::to_owned),
            })
        })
        .ok_or_else(|| SdpError::AnswerMismatch("the answer lists no codec".into()))?;
    let te = telephone_event_pt(am, codec.clock_rate).or_else(|| telephone_event_pt(am, 8000));
    let their_dir = answer.direction_of(am);
    let our_offer_dir = offer.direction_of(om);
    // What we may do is limited by both: we send if we offered to send and they receive.
    let direction = match (
        our_offer_dir.sends() && their_dir.receives(),
        our_offer_dir.receives() && their_dir.sends(),
    ) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    };
    let remote_crypto = am.crypto().first().map(|s| (*s).to_owned());
    let local_crypto = remote_crypto.as_ref().and_then(|rc| {
        let tag = rc.split_whitespace().next()?;
        om.crypto()
            .into_iter()
            .find(|c| c.split_whitespace().next() == Some(tag))
            .map(str::to_owned)
    });
    if om.proto.eq_ignore_ascii_case("RTP/SAVP") && local_crypto.is_none() {
        // RFC 4568 §7.1.3: the answer must take one of the offered keys by its tag.
        return Err(SdpError::AnswerMismatch(
            "the answer to our SRTP offer accepts none of our a=crypto keys".into(),
        ));
    }
    Ok(Negotiated {
        remote: remote_addr(answer, am)?,
        codec,
        telephone_event: te,
        direction,
        ptime: am.ptime().or(om.ptime()).unwrap_or(20),
        remote_crypto,
        local_crypto,
        rtcp_mux: am.rtcp_mux() && om.rtcp_mux(),
        ice: match (ice_credentials(offer, om), ice_credentials(answer, am)) {
            (Some((lu, lp)), Some((ru, rp))) => Some(Box::new(IceAgreed {
                local_ufrag: lu,
                local_pwd: lp,
                remote_ufrag: ru,
                remote_pwd: rp,
            })),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3264 §10.1, Alice's offer (audio part and a video stream we do not carry).
    const RFC3264_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\n\
s=\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 97\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 iLBC/8000\r\n\
m=video 51372 RTP/AVP 31 32\r\n\
a=rtpmap:31 H261/90000\r\n\
a=rtpmap:32 MPV/90000\r\n";

    fn local() -> LocalMedia {
        LocalMedia::new("192.0.2.55".parse().unwrap(), 40000)
    }

    #[test]
    fn parses_the_rfc_3264_offer() {
        let sdp = Sdp::parse(RFC3264_OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.origin.username, "alice");
        assert_eq!(sdp.origin.version, 2890844526);
        assert_eq!(sdp.media.len(), 2);
        let (i, a) = sdp.audio().unwrap();
        assert_eq!(i, 0);
        assert_eq!(a.port, 49170);
        assert_eq!(a.formats, ["0", "8", "97"]);
        assert_eq!(a.rtpmap(97).unwrap().encoding, "iLBC");
        assert_eq!(sdp.connection_of(a), Some("192.0.2.101".parse().unwrap()));
        assert_eq!(sdp.direction_of(a), Direction::SendRecv);
    }

    #[test]
    fn answers_with_our_preferred_common_codec_and_rejects_video() {
        let offer = Sdp::parse(RFC3264_OFFER.as_bytes()).unwrap();
        let (ans, neg) = answer(&offer, &local(), "1", 1).unwrap();
        assert_eq!(neg.codec.encoding, "PCMU");
        assert_eq!(neg.codec.payload_type, 0);
        assert_eq!(neg.remote, Some("192.0.2.101:49170".parse().unwrap()));
        assert_eq!(
            neg.telephone_event, None,
            "the offer has no telephone-event"
        );
        assert_eq!(ans.media.len(), 2, "one answer line per offer line (§6)");
        assert_eq!(ans.media[1].port, 0, "video rejected with port 0");
        let text = String::from_utf8(ans.to_bytes().to_vec()).unwrap();
        assert!(text.contains("m=audio 40000 RTP/AVP 0\r\n"), "{text}");
        assert!(text.contains("a=sendrecv"));
        // The offerer reads the same result back from the answer.
        let back = accept_answer(&offer, &Sdp::parse(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(back.codec.encoding, "PCMU");
        assert_eq!(back.remote, Some("192.0.2.55:40000".parse().unwrap()));
    }

    #[test]
    fn offer_and_answer_round_trip_with_opus_and_telephone_event() {
        let ours = offer(&local(), "42", 1);
        let text = ours.to_bytes();
        let parsed = Sdp::parse(&text).unwrap();
        assert_eq!(parsed, ours);
        let other = LocalMedia::new("192.0.2.77".parse().unwrap(), 50000);
        let (ans, neg) = answer(&parsed, &other, "9", 1).unwrap();
        assert_eq!(neg.codec.encoding, "opus");
        assert_eq!(neg.codec.clock_rate, 48_000);
        assert_eq!(neg.codec.channels, 2);
        assert_eq!(neg.telephone_event, Some(101));
        let back = accept_answer(&parsed, &ans).unwrap();
        assert_eq!(back.codec.payload_type, 111);
        assert_eq!(back.telephone_event, Some(101));
        assert_eq!(back.direction, Direction::SendRecv);
    }

    #[test]
    fn hold_and_resume_directions() {
        // RFC 3264 §8.4: sendonly offered → recvonly answered.
        assert_eq!(
            Direction::answer(Direction::SendOnly, Direction::SendRecv),
            Direction::RecvOnly
        );
        assert_eq!(
            Direction::answer(Direction::Inactive, Direction::SendRecv),
            Direction::Inactive
        );
        assert_eq!(
            Direction::answer(Direction::RecvOnly, Direction::SendRecv),
            Direction::SendOnly
        );
        let mut held = local();
        held.direction = Direction::SendOnly;
        let o = offer(&held, "1", 2);
        let (a, neg) = answer(&o, &local(), "2", 2).unwrap();
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(
            accept_answer(&o, &a).unwrap().direction,
            Direction::SendOnly
        );
        // RFC 2543 style hold: c=0.0.0.0.
        let old = RFC3264_OFFER.replace("c=IN IP4 192.0.2.101", "c=IN IP4 0.0.0.0");
        let (_, neg) = answer(&Sdp::parse(old.as_bytes()).unwrap(), &local(), "1", 1).unwrap();
        assert_eq!(neg.remote, None);
        assert_eq!(neg.direction, Direction::RecvOnly);
    }

    #[test]
    fn no_common_codec_names_what_was_offered() {
        let g729 = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 18\n";
        let err = answer(&Sdp::parse(g729.as_bytes()).unwrap(), &local(), "1", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the offered codecs (G729/8000) is one we support"
        );
    }

    #[test]
    fn srtp_sdes_is_answered_with_the_offers_tag() {
        let mut a = local();
        a.crypto = vec![
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz".into(),
        ];
        let o = offer(&a, "1", 1);
        assert_eq!(o.media[0].proto, "RTP/SAVP");
        let mut b = LocalMedia::new("192.0.2.9".parse().unwrap(), 6000);
        b.crypto = vec![
            "7 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR".into(),
        ];
        let (ans, neg) = answer(&o, &b, "2", 1).unwrap();
        assert!(neg
            .local_crypto
            .as_deref()
            .unwrap()
            .starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:PS1u"));
        let back = accept_answer(&o, &ans).unwrap();
        assert!(back.remote_crypto.unwrap().contains("PS1u"));
        assert!(back.local_crypto.unwrap().contains("WVNf"));
        // Offering SRTP to a side without keys fails clearly.
        assert_eq!(
            answer(&o, &local(), "2", 1).unwrap_err().to_string(),
            "SRTP was offered with crypto suites we do not share (AES_CM_128_HMAC_SHA1_80)"
        );
        // A side that requires SRTP refuses a plain offer; an answer without our key fails.
        let mut strict = b.clone();
        strict.require_srtp = true;
        assert_eq!(
            answer(&offer(&local(), "1", 1), &strict, "2", 1).unwrap_err(),
            SdpError::SrtpRequired
        );
        let (plain_answer, _) = answer(&offer(&local(), "1", 1), &local(), "2", 1).unwrap();
        assert!(matches!(
            accept_answer(&o, &plain_answer),
            Err(SdpError::AnswerMismatch(_))
        ));
        // Keys kept for answers only: the offer is plain, and a plain answer agrees no SRTP.
        a.plain_offer = true;
        let plain = offer(&a, "1", 2);
        assert_eq!(plain.media[0].proto, "RTP/AVP");
        assert!(plain.media[0].crypto().is_empty());
        let (ans, neg) = answer(&plain, &b, "2", 2).unwrap();
        assert_eq!(neg.local_crypto, None);
        let agreed = accept_answer(&plain, &ans).unwrap();
        assert_eq!(agreed.remote_crypto, None);
        // Re-offers keep what was agreed: plain stays plain, SRTP keeps its one key.
        a.keep_agreed_crypto(&agreed);
        assert_eq!(offer(&a, "1", 3).media[0].proto, "RTP/AVP");
        a.keep_agreed_crypto(&back_agreed(&b));
        let again = offer(&a, "1", 4);
        assert_eq!(again.media[0].proto, "RTP/SAVP");
        assert_eq!(again.media[0].crypto().len(), 1);
    }

    /// An SRTP agreement where we offered two suites and the answer took the second.
    fn back_agreed(answerer: &LocalMedia) -> Negotiated {
        let mut a = local();
        a.crypto = vec![
            "1 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==".into(),
            "2 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz".into(),
        ];
        let o = offer(&a, "1", 1);
        let (ans, _) = answer(&o, answerer, "2", 1).unwrap();
        let n = accept_answer(&o, &ans).unwrap();
        assert!(n.local_crypto.as_deref().unwrap().starts_with("2 AES_CM"));
        n
    }

    #[test]
    fn malformed_sdp_is_an_error_not_a_panic() {
        for bad in [
            "",
            "v=1\r\n",
            "v=0\r\no=x\r\n",
            "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio\r\n",
            "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio port RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 not-an-ip\r\n",
            "v=0\r\nxx=1\r\n",
            "garbage",
        ] {
            assert!(Sdp::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Sdp::parse(&[0xff, 0xfe]).is_err());
        // Offer with audio but no c= anywhere.
        let noc = "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        assert_eq!(
            answer(&Sdp::parse(noc.as_bytes()).unwrap(), &local(), "1", 1).unwrap_err(),
            SdpError::NoConnection
        );
    }

    // RFC 5245 §15.1: the full agent's offer, credentials at session level,
    // a host and a server-reflexive candidate, the default address that of the latter.
    const RFC5245_OFFER: &str = "v=0\r\n\
o=jdoe 2890844526 2890842807 IN IP4 10.0.1.1\r\n\
s=\r\n\
c=IN IP4 192.0.2.3\r\n\
t=0 0\r\n\
a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=ice-ufrag:8hhY\r\n\
m=audio 45664 RTP/AVP 0\r\n\
b=RS:0\r\n\
b=RR:0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=candidate:1 1 UDP 2130706431 10.0.1.1 8998 typ host\r\n\
a=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.1.1 rport 8998\r\n";

    fn lite() -> LocalMedia {
        let mut l = local();
        l.ice = Some(IceLite {
            ufrag: "9uB6".into(),
            pwd: "YH75Fviy6338Vbrhrlp8Yh".into(),
        });
        l
    }

    fn lines(sdp: &Sdp) -> String {
        String::from_utf8(sdp.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn an_ice_lite_offer_has_one_host_candidate_and_our_credentials() {
        let text = lines(&offer(&lite(), "1", 1));
        assert!(text.contains("a=ice-lite\r\n"), "{text}");
        // Session level: before the m= line.
        assert!(text.find("a=ice-lite").unwrap() < text.find("m=audio").unwrap());
        assert!(text.contains("a=ice-ufrag:9uB6\r\n"), "{text}");
        assert!(
            text.contains("a=ice-pwd:YH75Fviy6338Vbrhrlp8Yh\r\n"),
            "{text}"
        );
        assert!(
            text.contains("a=candidate:1 1 UDP 2130706431 192.0.2.55 40000 typ host\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("a=candidate").count(), 1);
        // Without ICE nothing of it.
        let plain = lines(&offer(&local(), "1", 1));
        assert!(
            !plain.contains("ice") && !plain.contains("candidate"),
            "{plain}"
        );
        // Our own offer reads back as ICE agreed once answered with credentials.
        let o = offer(&lite(), "1", 1);
        let mut full = local();
        full.ice = Some(IceLite {
            ufrag: "8hhY".into(),
            pwd: "asd88fgpdd777uzjYhagZg".into(),
        });
        let (a, _) = answer(&o, &full, "2", 1).unwrap();
        let n = accept_answer(&o, &a).unwrap();
        assert_eq!(
            n.ice.as_deref(),
            Some(&IceAgreed {
                local_ufrag: "9uB6".into(),
                local_pwd: "YH75Fviy6338Vbrhrlp8Yh".into(),
                remote_ufrag: "8hhY".into(),
                remote_pwd: "asd88fgpdd777uzjYhagZg".into(),
            })
        );
    }

    #[test]
    fn the_rfc_5245_offer_is_answered_as_a_lite_agent() {
        let o = Sdp::parse(RFC5245_OFFER.as_bytes()).unwrap();
        let (a, n) = answer(&o, &lite(), "1", 1).unwrap();
        let text = lines(&a);
        assert!(text.contains("a=ice-lite\r\n"), "{text}");
        assert!(text.contains("a=ice-ufrag:9uB6\r\n"), "{text}");
        assert!(
            text.contains("a=candidate:1 1 UDP 2130706431 192.0.2.55 40000 typ host\r\n"),
            "{text}"
        );
        // Media goes to the default candidate (c=/m=) until the full agent nominates a pair.
        assert_eq!(n.remote, Some("192.0.2.3:45664".parse().unwrap()));
        let ice = n.ice.unwrap();
        assert_eq!(ice.remote_ufrag, "8hhY");
        assert_eq!(ice.remote_pwd, "asd88fgpdd777uzjYhagZg");
        assert_eq!(ice.local_ufrag, "9uB6");
    }

    #[test]
    fn an_offer_without_ice_gets_no_ice_in_the_answer() {
        let o = Sdp::parse(RFC3264_OFFER.as_bytes()).unwrap();
        let (a, n) = answer(&o, &lite(), "1", 1).unwrap();
        let text = lines(&a);
        assert!(
            !text.contains("ice-") && !text.contains("candidate"),
            "{text}"
        );
        assert_eq!(n.ice, None);
        // Credentials that break RFC 8839's grammar count as none: a password of 21.
        let short = RFC5245_OFFER.replace("asd88fgpdd777uzjYhagZg", "asd88fgpdd777uzjYhagZ");
        let (_, n) = answer(&Sdp::parse(short.as_bytes()).unwrap(), &lite(), "1", 1).unwrap();
        assert_eq!(n.ice, None);
        let odd = RFC5245_OFFER.replace("8hhY", "8h;Y");
        let (_, n) = answer(&Sdp::parse(odd.as_bytes()).unwrap(), &lite(), "1", 1).unwrap();
        assert_eq!(n.ice, None);
    }

    #[test]
    fn new_credentials_in_an_offer_restart_ice() {
        let o = Sdp::parse(RFC5245_OFFER.as_bytes()).unwrap();
        let (_, n) = answer(&o, &lite(), "1", 1).unwrap();
        assert!(!ice_restarts(&o, Some(&n)));
        assert!(ice_restarts(&o, None));
        let again = RFC5245_OFFER.replace("8hhY", "Zq9w");
        assert!(ice_restarts(
            &Sdp::parse(again.as_bytes()).unwrap(),
            Some(&n)
        ));
        let pwd = RFC5245_OFFER.replace("asd88fgpdd777uzjYhagZg", "bsd88fgpdd777uzjYhagZg");
        assert!(ice_restarts(&Sdp::parse(pwd.as_bytes()).unwrap(), Some(&n)));
        let none = Sdp::parse(RFC3264_OFFER.as_bytes()).unwrap();
        assert!(!ice_restarts(&none, Some(&n)));
    }

    #[test]
    fn generated_credentials_follow_the_grammar_and_differ() {
        let a = IceLite::generate();
        let b = IceLite::generate();
        assert_ne!(a, b);
        for c in [&a, &b] {
            assert_eq!(c.ufrag.len(), 8);
            assert_eq!(c.pwd.len(), 24);
            assert!(c.ufrag.chars().chain(c.pwd.chars()).all(is_ice_char));
        }
    }
}
