//! Digest authentication for SIP: RFC 3261 §22 on RFC 7616 (HTTP digest) with RFC 8760's
//! SHA-256 for SIP. Client side: answer a `WWW-Authenticate`/`Proxy-Authenticate` challenge.
//! Server side (the registrar): issue challenges with self-verifying nonces and check answers.
//!
//! Time is a parameter (`now`, seconds since the Unix epoch): no clock is read here.

use std::collections::HashMap;
use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest algorithms we speak (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    /// The token as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Self::Sha256 | Self::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }
}

/// Why a digest header could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the header is not a Digest header")]
    NotDigest,
    #[error("the Digest header is malformed: {0}")]
    Malformed(String),
    #[error("the Digest header lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?} (we speak MD5 and SHA-256)")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (we speak auth)")]
    UnsupportedQop(String),
}

/// Splits `Digest a=b, c="d \" e"` into lower-cased names and unquoted values.
fn parse_params(header: &str) -> Result<HashMap<String, String>, AuthError> {
    let rest = header.trim_start();
    let scheme_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if !rest[..scheme_end].eq_ignore_ascii_case("digest") {
        return Err(AuthError::NotDigest);
    }
    let mut out = HashMap::new();
    let mut chars = rest[scheme_end..].chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(AuthError::Malformed(format!(
                "parameter {name:?} has no value"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(e) = chars.next() {
                            value.push(e);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(AuthError::Malformed(format!(
                    "unterminated quoted value of {name:?}"
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if name.is_empty() {
            return Err(AuthError::Malformed("empty parameter name".into()));
        }
        out.insert(name.to_ascii_lowercase(), value);
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether the server offered `qop=auth` (we then use it, as RFC 7616 asks).
    pub qop_auth: bool,
    /// The previous nonce expired; the credentials were fine (retry without asking the person).
    pub stale: bool,
}

/// A username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Challenge {
    /// Parses a challenge header value.
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        let p = parse_params(header)?;
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => {
                Algorithm::parse(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.clone()))?
            }
        };
        let qop_auth = match p.get("qop") {
            None => false,
            Some(q) => {
                let auth = q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth"));
                if !auth {
                    return Err(AuthError::UnsupportedQop(q.clone()));
                }
                true
            }
        };
        Ok(Self {
            realm: p.get("realm").cloned().ok_or(AuthError::Missing("realm"))?,
            nonce: p.get("nonce").cloned().ok_or(AuthError::Missing("nonce"))?,
            opaque: p.get("opaque").cloned(),
            algorithm,
            qop_auth,
            stale: p
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The `response` value for these inputs (RFC 7616 §3.4.1).
    pub fn response(
        &self,
        creds: &Credentials,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hash(&format!(
            "{}:{}:{}",
            creds.username, self.realm, creds.password
        ));
        if alg.is_sess() {
            ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        if self.qop_auth {
            alg.hash(&format!(
                "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
                self.nonce
            ))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        }
    }

    /// The `Authorization` / `Proxy-Authorization` header value answering this challenge.
    /// `nc` counts the requests sent with this nonce (1 for the first).
    pub fn authorize(
        &self,
        creds: &Credentials,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let response = self.response(creds, method, uri, nc, cnonce);
        let mut h = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
            quote(&creds.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.as_str()
        );
        if self.qop_auth {
            let _ = write!(h, ", qop=auth, nc={nc:08x}, cnonce={}", quote(cnonce));
        }
        if let Some(o) = &self.opaque {
            let _ = write!(h, ", opaque={}", quote(o));
        }
        h
    }
}

/// A parsed `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub nc: Option<u32>,
    pub qop_auth: bool,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The response is a password equivalent for offline guessing: never print it.
        f.debug_struct("Authorization")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("response", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Authorization {
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        let p = parse_params(header)?;
        let get = |k: &'static str| p.get(k).cloned().ok_or(AuthError::Missing(k));
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => {
                Algorithm::parse(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.clone()))?
            }
        };
        let qop_auth = match p.get("qop") {
            None => false,
            Some(q) if q.eq_ignore_ascii_case("auth") => true,
            Some(q) => return Err(AuthError::UnsupportedQop(q.clone())),
        };
        let nc = match p.get("nc") {
            None => None,
            Some(n) => Some(
                u32::from_str_radix(n, 16)
                    .map_err(|_| AuthError::Malformed(format!("nc {n:?} is not hex")))?,
            ),
        };
        if qop_auth && (nc.is_none() || !p.contains_key("cnonce")) {
            return Err(AuthError::Missing("nc and cnonce (required with qop)"));
        }
        Ok(Self {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?,
            algorithm,
            cnonce: p.get("cnonce").cloned(),
            nc,
            qop_auth,
        })
    }
}

/// Why a server refused an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no usable Authorization header: {0}")]
    Unusable(#[from] AuthError),
    #[error("the answer is for realm {0:?}, not ours")]
    WrongRealm(String),
    #[error("the nonce was not issued by us")]
    ForeignNonce,
    #[error("the nonce has expired")]
    Stale,
    #[error("the nonce count did not increase (replay)")]
    Replay,
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for {0:?}")]
    WrongPassword(String),
    #[error("the answer uses algorithm {0}, not the one we asked for")]
    WrongAlgorithm(&'static str),
    #[error("the answer has no qop=auth (we ask for it; without it nothing stops a replay)")]
    QopMissing,
    #[error("the answer's uri {0:?} is not the request's Request-URI")]
    WrongUri(String),
}

impl Refusal {
    /// A stale nonce is answered with a fresh challenge marked `stale=true` (the client retries
    /// on its own); everything else is a plain 401/403.
    pub fn is_stale(&self) -> bool {
        matches!(self, Refusal::Stale)
    }
}

/// The registrar's side: challenges with nonces it can verify without storing them
/// (`<issued-at>.<random>.<hash(secret, issued-at, random)>`: unique per challenge, so two
/// clients challenged in the same second never share a nonce count), and answers checked in
/// constant time. The server chooses: the algorithm it named and `qop=auth` are required (no
/// downgrade to MD5, no answer without a nonce count), and the answer's `uri` must be the
/// request's Request-URI (RFC 2617 §3.2.2.5).
///
/// Nonce counts are tracked per user, for the [`PER_USER_NONCES`] nonces each used last: one
/// account can only ever push out its own record, and a nonce pushed out is refused from then
/// on (with a fresh challenge), never taken as new.
pub struct DigestServer {
    realm: String,
    secret: [u8; 32],
    /// Seconds a nonce stays valid.
    pub nonce_lifetime: u64,
    algorithm: Algorithm,
    seen: HashMap<String, UsedNonces>,
    /// When `seen` was last swept of users whose nonces have all expired.
    swept_at: u64,
    /// Counts the nonces issued: with the issue time it orders them, so a nonce pushed out of
    /// a user's record refuses only nonces issued before it.
    issued: std::sync::atomic::AtomicU64,
}

/// How many nonces of one user we track nonce counts for.
pub const PER_USER_NONCES: usize = 16;

/// When a nonce was issued: its time and its number.
type Issued = (u64, u64);

/// One user's nonces in use (nonce, when issued, last nonce count), oldest first, and the
/// issue up to which nonces not in the list are refused (they were pushed out).
#[derive(Default)]
struct UsedNonces {
    live: std::collections::VecDeque<(String, Issued, u32)>,
    floor: Option<Issued>,
}

impl DigestServer {
    pub fn new(realm: impl Into<String>, secret: [u8; 32], algorithm: Algorithm) -> Self {
        Self {
            realm: realm.into(),
            secret,
            nonce_lifetime: 300,
            algorithm,
            seen: HashMap::new(),
            swept_at: 0,
            issued: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn sign(&self, issued: u64, salt: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.to_be_bytes());
        h.update(salt.as_bytes());
        h.update(self.realm.as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// A `WWW-Authenticate` value issued at `now`.
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let salt = format!("{n:x}-{:016x}", rand::random::<u64>());
        let nonce = format!("{now:x}.{salt}.{}", self.sign(now, &salt));
        let mut h = format!(
            "Digest realm={}, nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
            quote(&self.realm),
            self.algorithm.as_str()
        );
        if stale {
            h.push_str(", stale=true");
        }
        h
    }

    /// Checks an `Authorization` value for a request of `method` to `request_uri` at `now`;
    /// `password_of` looks the user up. Returns the authenticated username.
    pub fn verify(
        &mut self,
        header: &str,
        method: &str,
        request_uri: &str,
        now: u64,
        password_of: impl FnOnce(&str) -> Option<String>,
    ) -> Result<String, Refusal> {
        let a = Authorization::parse(header)?;
        if a.realm != self.realm {
            return Err(Refusal::WrongRealm(a.realm));
        }
        if a.algorithm != self.algorithm {
            return Err(Refusal::WrongAlgorithm(a.algorithm.as_str()));
        }
        let Some(nc) = a.nc.filter(|_| a.qop_auth) else {
            return Err(Refusal::QopMissing);
        };
        if !same_uri(&a.uri, request_uri) {
            return Err(Refusal::WrongUri(a.uri));
        }
        let mut parts = a.nonce.splitn(3, '.');
        let (Some(issued_hex), Some(salt), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::ForeignNonce);
        };
        let issued = u64::from_str_radix(issued_hex, 16).map_err(|_| Refusal::ForeignNonce)?;
        if !ct_eq(sig.as_bytes(), self.sign(issued, salt).as_bytes()) {
            return Err(Refusal::ForeignNonce);
        }
        // Signed, so ours: its number is in the salt.
        let number = salt
            .split_once('-')
            .and_then(|(n, _)| u64::from_str_radix(n, 16).ok())
            .unwrap_or(0);
        let order: Issued = (issued, number);
        let password =
            password_of(&a.username).ok_or_else(|| Refusal::UnknownUser(a.username.clone()))?;
        let challenge = Challenge {
            realm: self.realm.clone(),
            nonce: a.nonce.clone(),
            opaque: None,
            algorithm: a.algorithm,
            qop_auth: true,
            stale: false,
        };
        let creds = Credentials {
            username: a.username.clone(),
            password,
        };
        let expected = challenge.response(
            &creds,
            method,
            &a.uri,
            nc,
            a.cnonce.as_deref().unwrap_or(""),
        );
        if !ct_eq(
            expected.as_bytes(),
            a.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(Refusal::WrongPassword(a.username));
        }
        // Correct answer; now freshness.
        if now.saturating_sub(issued) > self.nonce_lifetime || issued > now.saturating_add(60) {
            return Err(Refusal::Stale);
        }
        self.sweep(now);
        let lifetime = self.nonce_lifetime;
        let used = self.seen.entry(a.username.clone()).or_default();
        used.live
            .retain(|(_, (i, _), _)| now.saturating_sub(*i) <= lifetime);
        if let Some(entry) = used.live.iter_mut().find(|(n, _, _)| *n == a.nonce) {
            if nc <= entry.2 {
                return Err(Refusal::Replay);
            }
            entry.2 = nc;
        } else if used.floor.is_some_and(|f| order <= f) {
            // Pushed out of the record (or issued before one that was): its count is unknown.
            return Err(Refusal::Replay);
        } else {
            used.live.push_back((a.nonce.clone(), order, nc));
            if used.live.len() > PER_USER_NONCES {
                if let Some((_, old, _)) = used.live.pop_front() {
                    used.floor = Some(used.floor.map_or(old, |f| f.max(old)));
                }
            }
        }
        Ok(a.username)
    }

    /// Forgets users whose nonces have all expired, at most once a nonce lifetime.
    fn sweep(&mut self, now: u64) {
        if now.saturating_sub(self.swept_at) < self.nonce_lifetime {
            return;
        }
        self.swept_at = now;
        let lifetime = self.nonce_lifetime;
        self.seen.retain(|_, u| {
            u.live
                .retain(|(_, (i, _), _)| now.saturating_sub(*i) <= lifetime);
            // A floor still inside the lifetime must be kept: it refuses pushed-out nonces.
            !u.live.is_empty()
                || u.floor
                    .is_some_and(|(f, _)| now.saturating_sub(f) <= lifetime)
        });
    }

    /// How many users' nonce counts are tracked (for tests and metrics).
    pub fn tracked_users(&self) -> usize {
        self.seen.len()
    }
}

/// Whether the `uri` of a digest answer names the Request-URI: the same text, or the same URI
/// with scheme and host in other case.
fn same_uri(answer: &str, request_uri: &str) -> bool {
    if answer == request_uri {
        return true;
    }
    // sip:user@Host;params — user part and parameters compare exactly, scheme and host not.
    let split = |u: &str| {
        let (scheme, rest) = u.split_once(':')?;
        let (user, hostpart) = match rest.rsplit_once('@') {
            Some((user, h)) => (Some(user.to_owned()), h.to_owned()),
            None => (None, rest.to_owned()),
        };
        let (host, params) = match hostpart.find([';', '?']) {
            Some(i) => (hostpart[..i].to_owned(), hostpart[i..].to_owned()),
            None => (hostpart, String::new()),
        };
        Some((
            scheme.to_ascii_lowercase(),
            user,
            host.to_ascii_lowercase(),
            params,
        ))
    };
    matches!((split(answer), split(request_uri)), (Some(a), Some(b)) if a == b)
}

/// Constant-time equality (length is not secret here).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mufasa() -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            password: "Circle of Life".into(),
        }
    }

    /// RFC 7616 §3.9.1, MD5 and SHA-256.
    #[test]
    fn rfc7616_examples() {
        for (alg, want) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let c = Challenge::parse(&format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            ))
            .unwrap();
            let r = c.response(
                &mufasa(),
                "GET",
                "/dir/index.html",
                1,
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            );
            assert_eq!(r, want, "{alg}");
        }
    }

    /// RFC 2617 §3.5.
    #[test]
    fn rfc2617_example() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        // RFC 2617 spells the password "Circle Of Life" (RFC 7616 lower-cases the "of").
        let creds = Credentials {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
        };
        let h = c.authorize(&creds, "GET", "/dir/index.html", 1, "0a4f113b");
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(
            h.contains("nc=00000001") && h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#),
            "{h}"
        );
        let back = Authorization::parse(&h).unwrap();
        assert_eq!(back.nc, Some(1));
        assert_eq!(back.cnonce.as_deref(), Some("0a4f113b"));
    }

    #[test]
    fn challenge_parsing_edge_cases() {
        let c = Challenge::parse(r#"digest REALM="a \"quoted\" realm",nonce=xyz , stale=TRUE"#)
            .unwrap();
        assert_eq!(c.realm, r#"a "quoted" realm"#);
        assert_eq!(c.nonce, "xyz");
        assert!(c.stale && !c.qop_auth);
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(Challenge::parse("Basic realm=x"), Err(AuthError::NotDigest));
        assert_eq!(
            Challenge::parse(r#"Digest nonce="n""#),
            Err(AuthError::Missing("realm"))
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512"#),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(AuthError::UnsupportedQop(_))
        ));
        assert!(matches!(
            Challenge::parse(r#"Digest realm="unterminated"#),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn server_accepts_a_correct_answer_and_refuses_the_rest() {
        let mut s = DigestServer::new("sip.example.com", [7; 32], Algorithm::Sha256);
        let pw = |u: &str| (u == "alice").then(|| "wonderland".to_string());
        let now = 1_700_000_000;
        let c = Challenge::parse(&s.challenge(now, false)).unwrap();
        let alice = Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        };
        let h1 = c.authorize(&alice, "REGISTER", "sip:sip.example.com", 1, "c1");
        assert_eq!(
            s.verify(&h1, "REGISTER", "sip:sip.example.com", now + 1, pw),
            Ok("alice".into())
        );
        // Same nc again: replay.
        assert_eq!(
            s.verify(&h1, "REGISTER", "sip:sip.example.com", now + 2, pw),
            Err(Refusal::Replay)
        );
        // Next nc: fine.
        let h2 = c.authorize(&alice, "REGISTER", "sip:sip.example.com", 2, "c1");
        assert_eq!(
            s.verify(&h2, "REGISTER", "sip:sip.example.com", now + 3, pw),
            Ok("alice".into())
        );
        // Wrong password.
        let bad = c.authorize(
            &Credentials {
                username: "alice".into(),
                password: "x".into(),
            },
            "REGISTER",
            "sip:sip.example.com",
            3,
            "c1",
        );
        assert_eq!(
            s.verify(&bad, "REGISTER", "sip:sip.example.com", now + 4, pw),
            Err(Refusal::WrongPassword("alice".into()))
        );
        // Answer made for another method.
        let h4 = c.authorize(&alice, "INVITE", "sip:sip.example.com", 4, "c1");
        assert!(matches!(
            s.verify(&h4, "REGISTER", "sip:sip.example.com", now + 5, pw),
            Err(Refusal::WrongPassword(_))
        ));
        // Unknown user.
        let bob = c.authorize(
            &Credentials {
                username: "bob".into(),
                password: "x".into(),
            },
            "REGISTER",
            "sip:sip.example.com",
            1,
            "c1",
        );
        assert_eq!(
            s.verify(&bob, "REGISTER", "sip:sip.example.com", now + 6, pw),
            Err(Refusal::UnknownUser("bob".into()))
        );
        // Expired nonce: stale, with a correct answer.
        let h5 = c.authorize(&alice, "REGISTER", "sip:sip.example.com", 5, "c1");
        let r = s.verify(&h5, "REGISTER", "sip:sip.example.com", now + 301, pw);
        assert!(r.as_ref().is_err_and(Refusal::is_stale), "{r:?}");
        assert!(s.challenge(now, true).ends_with("stale=true"));
        // Two challenges in the same second differ.
        assert_ne!(
            Challenge::parse(&s.challenge(now, false)).unwrap().nonce,
            Challenge::parse(&s.challenge(now, false)).unwrap().nonce
        );
    }

    /// #13 item 21: the server chooses — its algorithm, qop=auth with a nonce count, and the
    /// Request-URI the answer was made for.
    #[test]
    fn the_server_chooses_the_algorithm_and_qop_and_checks_the_uri() {
        let mut s = DigestServer::new("sip.example.com", [7; 32], Algorithm::Sha256);
        let pw = |_: &str| Some("wonderland".to_string());
        let now = 1_700_000_000;
        let ours = Challenge::parse(&s.challenge(now, false)).unwrap();
        assert_eq!(ours.algorithm, Algorithm::Sha256);
        assert!(ours.qop_auth);
        let alice = Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        };
        let uri = "sip:sip.example.com";
        // Downgraded to MD5 by the client (same nonce): refused.
        let md5 = Challenge {
            algorithm: Algorithm::Md5,
            ..ours.clone()
        };
        let h = md5.authorize(&alice, "REGISTER", uri, 1, "c");
        assert_eq!(
            s.verify(&h, "REGISTER", uri, now, pw),
            Err(Refusal::WrongAlgorithm("MD5"))
        );
        // Without qop (RFC 2069 style, no nonce count to stop a replay): refused.
        let bare = Challenge {
            qop_auth: false,
            ..ours.clone()
        };
        let h = bare.authorize(&alice, "REGISTER", uri, 1, "c");
        assert!(!h.contains("qop"), "{h}");
        assert_eq!(
            s.verify(&h, "REGISTER", uri, now, pw),
            Err(Refusal::QopMissing)
        );
        // An answer made for another URI (captured elsewhere): refused.
        let h = ours.authorize(&alice, "REGISTER", "sip:other.example.com", 1, "c");
        assert_eq!(
            s.verify(&h, "REGISTER", uri, now, pw),
            Err(Refusal::WrongUri("sip:other.example.com".into()))
        );
        // The same URI with the host in other case is the same URI.
        let h = ours.authorize(&alice, "REGISTER", "sip:SIP.example.com", 1, "c");
        assert_eq!(s.verify(&h, "REGISTER", uri, now, pw), Ok("alice".into()));
        assert!(!same_uri("sip:alice@x.example", "sip:bob@x.example"));
        assert!(!same_uri("sip:x.example;transport=tcp", "sip:x.example"));
    }

    /// #13 item 21: one account answering many challenges pushes out only its own nonce record,
    /// and a nonce pushed out is refused afterwards (never taken as new and replayable).
    #[test]
    fn one_account_cannot_clear_the_replay_record() {
        let mut s = DigestServer::new("sip.example.com", [7; 32], Algorithm::Sha256);
        let pw = |_: &str| Some("pw".to_string());
        let uri = "sip:sip.example.com";
        let who = |u: &str| Credentials {
            username: u.into(),
            password: "pw".into(),
        };
        let now = 1_700_000_000;
        // Bob registers once; his answer is recorded.
        let bob_ch = Challenge::parse(&s.challenge(now, false)).unwrap();
        let bob = bob_ch.authorize(&who("bob"), "REGISTER", uri, 1, "b");
        assert_eq!(s.verify(&bob, "REGISTER", uri, now, pw), Ok("bob".into()));
        // Mallory answers a thousand fresh challenges within a nonce lifetime (the old record
        // was cleared whole at 100,000 entries; it now holds PER_USER_NONCES per user).
        let mut first = None;
        for i in 0..1_000u64 {
            let t = now + i / 20;
            let ch = Challenge::parse(&s.challenge(t, false)).unwrap();
            let h = ch.authorize(&who("mallory"), "REGISTER", uri, 1, "m");
            assert_eq!(s.verify(&h, "REGISTER", uri, t, pw), Ok("mallory".into()));
            first.get_or_insert(h);
        }
        assert_eq!(s.tracked_users(), 2);
        // Bob's replay is still refused; so is Mallory's first, long pushed out.
        assert_eq!(
            s.verify(&bob, "REGISTER", uri, now + 100, pw),
            Err(Refusal::Replay)
        );
        assert_eq!(
            s.verify(&first.unwrap(), "REGISTER", uri, now + 100, pw),
            Err(Refusal::Replay)
        );
        // Bob goes on with his nonce.
        let bob2 = bob_ch.authorize(&who("bob"), "REGISTER", uri, 2, "b");
        assert_eq!(
            s.verify(&bob2, "REGISTER", uri, now + 100, pw),
            Ok("bob".into())
        );
        // Users whose nonces all expired are forgotten.
        let later = now + 10_000;
        let ch = Challenge::parse(&s.challenge(later, false)).unwrap();
        let h = ch.authorize(&who("carol"), "REGISTER", uri, 1, "c");
        assert_eq!(s.verify(&h, "REGISTER", uri, later, pw), Ok("carol".into()));
        assert_eq!(s.tracked_users(), 1);
    }

    #[test]
    fn server_refuses_forged_nonces_and_other_realms() {
        let mut s = DigestServer::new("sip.example.com", [7; 32], Algorithm::Md5);
        let pw = |_: &str| Some("pw".to_string());
        let alice = Credentials {
            username: "alice".into(),
            password: "pw".into(),
        };
        let forged = Challenge {
            realm: "sip.example.com".into(),
            nonce: "65f00000.0011223344556677.00112233445566778899aabbccddeeff".into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
        };
        let h = forged.authorize(&alice, "REGISTER", "sip:x", 1, "c");
        assert_eq!(
            s.verify(&h, "REGISTER", "sip:x", 0x65f0_0000, pw),
            Err(Refusal::ForeignNonce)
        );
        let other = Challenge {
            realm: "evil".into(),
            ..forged
        };
        let h = other.authorize(&alice, "REGISTER", "sip:x", 1, "c");
        assert_eq!(
            s.verify(&h, "REGISTER", "sip:x", 0, pw),
            Err(Refusal::WrongRealm("evil".into()))
        );
        assert!(matches!(
            s.verify("Digest username=\"a\"", "REGISTER", "sip:x", 0, pw),
            Err(Refusal::Unusable(_))
        ));
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let d = format!("{:?}", mufasa());
        assert!(!d.contains("Circle"), "{d}");
        let a = Authorization::parse(
            r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="deadbeef""#,
        )
        .unwrap();
        assert!(!format!("{a:?}").contains("deadbeef"));
    }
}
