//! The registrar building block for the routing service (RFC 3261 §10.3): it authenticates
//! REGISTER with digest (§22), keeps bindings per address of record with their expiry, and
//! answers with the current bindings. Sans-IO: a request and the time in, a response out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::{Algorithm, DigestServer, Refusal};
use crate::builder::MessageBuilder;
use crate::message::{header_param_u32, split_list, value_uri, Message};

/// One contact bound to an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI (without `<>` and header parameters).
    pub contact: String,
    pub expires_at: Instant,
    call_id: String,
    cseq: u32,
}

/// Registrar limits.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub realm: String,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Bindings one AOR may hold; more are refused with 403 (a flood stays bounded).
    pub max_bindings_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            realm: "switchboard".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings_per_aor: 10,
        }
    }
}

/// Bindings and the digest server.
pub struct Registrar {
    cfg: RegistrarConfig,
    digest: DigestServer,
    bindings: HashMap<String, Vec<Binding>>,
}

/// `scheme:user@host` lower-cased where case does not matter (§10.3 step 5, §19.1.4).
pub fn address_of_record(to_value: &str) -> Option<String> {
    let uri = value_uri(to_value).split(';').next()?.split('?').next()?;
    let (scheme, rest) = uri.split_once(':')?;
    let (user, host) = rest
        .rsplit_once('@')
        .map(|(u, h)| (Some(u), h))
        .unwrap_or((None, rest));
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match user {
        Some(u) => format!("{}:{}@{}", scheme.to_ascii_lowercase(), u, host),
        None => format!("{}:{}", scheme.to_ascii_lowercase(), host),
    })
}

fn uri_user(aor: &str) -> Option<&str> {
    aor.split_once(':')?.1.rsplit_once('@').map(|(u, _)| u)
}

impl Registrar {
    pub fn new(cfg: RegistrarConfig, secret: [u8; 32], algorithm: Algorithm) -> Self {
        let digest = DigestServer::new(cfg.realm.clone(), secret, algorithm);
        Self {
            cfg,
            digest,
            bindings: HashMap::new(),
        }
    }

    /// Current, unexpired bindings of an AOR.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Puts back a binding kept across a restart of the registrar's owner, until
    /// `expires_at`; the phone's next refresh replaces it (another Call-ID replaces a
    /// contact's binding, §10.3).
    pub fn restore(&mut self, aor: &str, contact: &str, expires_at: Instant) {
        let list = self.bindings.entry(aor.to_owned()).or_default();
        list.retain(|b| b.contact != contact);
        if list.len() < self.cfg.max_bindings_per_aor {
            list.push(Binding {
                contact: contact.to_owned(),
                expires_at,
                call_id: String::new(),
                cseq: 0,
            });
        }
    }

    /// Drops expired bindings (call now and then).
    pub fn purge(&mut self, now: Instant) {
        self.bindings.retain(|_, v| {
            v.retain(|b| b.expires_at > now);
            !v.is_empty()
        });
    }

    /// Answers one REGISTER. `now_unix` dates nonces; `password_of` finds a user's password.
    pub fn handle_register(
        &mut self,
        req: &Message,
        now: Instant,
        now_unix: u64,
        password_of: impl FnOnce(&str) -> Option<String>,
    ) -> Option<Bytes> {
        if req.method().as_deref() != Some("REGISTER") {
            return response(req, 405, "Method Not Allowed", &["Allow: REGISTER"]);
        }
        let Some(aor) = req.header("To").and_then(address_of_record) else {
            return response(req, 400, "Bad To Header", &[]);
        };
        let challenge = |digest: &DigestServer, stale: bool| {
            let www = format!("WWW-Authenticate: {}", digest.challenge(now_unix, stale));
            response(req, 401, "Unauthorized", &[&www])
        };
        let Some(auth) = req.header("Authorization") else {
            return challenge(&self.digest, false);
        };
        let request_uri = req.request_uri().unwrap_or_default();
        match self
            .digest
            .verify(auth, "REGISTER", &request_uri, now_unix, password_of)
        {
            Ok(user) => {
                // §10.3 step 3: the authenticated user may only register its own AOR.
                if uri_user(&aor) != Some(user.as_str()) {
                    return response(req, 403, "Forbidden", &[]);
                }
            }
            // A nonce count used before is a replayed request or a retransmission the transport
            // layer did not absorb; neither proves a wrong password. Like an expired nonce it
            // gets a fresh stale challenge: a client retries without asking its user, and a
            // replayer cannot answer it.
            Err(Refusal::Stale | Refusal::Replay) => return challenge(&self.digest, true),
            Err(Refusal::UnknownUser(_) | Refusal::WrongPassword(_)) => {
                return response(req, 403, "Forbidden", &[]);
            }
            // RFC 2617 §3.2.2.5: an answer made for another URI is a bad request.
            Err(Refusal::WrongUri(_)) => return response(req, 400, "Digest URI Mismatch", &[]),
            Err(_) => return challenge(&self.digest, false),
        }
        let Some((cseq, _)) = req.cseq() else {
            return response(req, 400, "Bad CSeq", &[]);
        };
        let call_id = req.call_id().unwrap_or("").to_owned();
        let header_expires = req
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok());
        let contacts: Vec<String> = req.headers("Contact").flat_map(split_list).collect();

        // §10.3 step 6: "*" only alone and with Expires: 0.
        if contacts.iter().any(|c| c == "*") {
            if contacts.len() != 1 || header_expires != Some(0) {
                return response(req, 400, "Invalid Wildcard", &[]);
            }
            self.bindings.remove(&aor);
            return response(req, 200, "OK", &[]);
        }
        let mut updates = Vec::new();
        for c in &contacts {
            let uri = value_uri(c);
            if uri.is_empty() {
                return response(req, 400, "Bad Contact", &[]);
            }
            let e = header_param_u32(c, "expires")
                .or(header_expires)
                .unwrap_or(self.cfg.default_expires);
            if e != 0 && e < self.cfg.min_expires {
                return response(
                    req,
                    423,
                    "Interval Too Brief",
                    &[&format!("Min-Expires: {}", self.cfg.min_expires)],
                );
            }
            updates.push((uri.to_owned(), e.min(self.cfg.max_expires)));
        }
        let list = self.bindings.entry(aor.clone()).or_default();
        list.retain(|b| b.expires_at > now);
        for (uri, e) in updates {
            let existing = list
                .iter()
                .position(|b| b.contact.eq_ignore_ascii_case(&uri));
            if let Some(i) = existing {
                // §10.3 step 7: an older or repeated request from the same Call-ID changes nothing.
                if list[i].call_id == call_id && cseq <= list[i].cseq {
                    continue;
                }
                if e == 0 {
                    list.remove(i);
                } else {
                    list[i] = Binding {
                        contact: uri,
                        expires_at: now + Duration::from_secs(e.into()),
                        call_id: call_id.clone(),
                        cseq,
                    };
                }
            } else if e != 0 {
                if list.len() >= self.cfg.max_bindings_per_aor {
                    return response(req, 403, "Too Many Bindings", &[]);
                }
                list.push(Binding {
                    contact: uri,
                    expires_at: now + Duration::from_secs(e.into()),
                    call_id: call_id.clone(),
                    cseq,
                });
            }
        }
        let current: Vec<String> = list
            .iter()
            .map(|b| {
                format!(
                    "Contact: <{}>;expires={}",
                    b.contact,
                    b.expires_at.saturating_duration_since(now).as_secs()
                )
            })
            .collect();
        if list.is_empty() {
            self.bindings.remove(&aor);
        }
        let refs: Vec<&str> = current.iter().map(String::as_str).collect();
        response(req, 200, "OK", &refs)
    }
}

/// A response to `req` copying Via, From, To (with a tag), Call-ID and CSeq (§8.2.6.2).
/// `None` when a value cannot go on the wire (see [`crate::builder`]); then nothing is sent.
pub fn response(req: &Message, status: u16, reason: &str, extra: &[&str]) -> Option<Bytes> {
    let mut r = MessageBuilder::response(status, reason);
    r.headers("Via", req.headers("Via"))
        .header_opt("From", req.header("From"));
    if let Some(t) = req.header("To") {
        let has_tag = t
            .split(';')
            .skip(1)
            .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="));
        if has_tag || status == 100 {
            r.header("To", t);
        } else {
            r.header(
                "To",
                format_args!("{t};tag=sb{:08x}", rand::random::<u32>()),
            );
        }
    }
    r.header_opt("Call-ID", req.header("Call-ID"))
        .header_opt("CSeq", req.header("CSeq"));
    for e in extra {
        r.header_line(e);
    }
    r.header("Server", "Switchboard");
    // Every value here passed the parser's control-character check or is ours.
    r.build()
        .map_err(|e| tracing::warn!(error = %e, "registrar response not sent"))
        .ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::Credentials;
    use crate::registration::{Registration, RegistrationConfig, RegistrationEvent};
    use crate::transaction::{Reliability, Timers};

    pub(crate) fn users(u: &str) -> Option<String> {
        match u {
            "alice" => Some("wonderland".into()),
            "bob" => Some("builder".into()),
            _ => None,
        }
    }

    pub(crate) fn client(user: &str, password: &str, expires: u32, port: u16) -> Registration {
        Registration::new(RegistrationConfig {
            registrar: "sip:switchboard.test".into(),
            aor: format!("sip:{user}@switchboard.test"),
            contact: format!("sip:{user}@127.0.0.1:{port};transport=udp"),
            via_sent_by: format!("127.0.0.1:{port}"),
            via_transport: "UDP",
            reliability: Reliability::Unreliable,
            credentials: Credentials {
                username: user.into(),
                password: password.into(),
            },
            expires,
            timers: Timers::default(),
            user_agent: "test".into(),
        })
    }

    /// Runs the client against the registrar until the client reports something.
    fn exchange(
        c: &mut Registration,
        r: &mut Registrar,
        now: Instant,
        unix: u64,
    ) -> RegistrationEvent {
        for _ in 0..10 {
            if let Some(e) = c.poll_event() {
                return e;
            }
            let req = Message::parse(&c.poll_transmit().expect("client sends")).unwrap();
            let resp = r.handle_register(&req, now, unix, users).unwrap();
            c.handle_message(&Message::parse(&resp).unwrap(), now);
        }
        panic!("no outcome");
    }

    /// Bindings kept across a restart come back until they expire, one per contact, within
    /// the per-AOR cap.
    #[test]
    fn restored_bindings_last_until_they_expire() {
        let mut r = registrar();
        let now = Instant::now();
        let aor = "sip:alice@example.com";
        r.restore(
            aor,
            "sip:alice@192.0.2.1:5070",
            now + Duration::from_secs(60),
        );
        r.restore(
            aor,
            "sip:alice@192.0.2.1:5070",
            now + Duration::from_secs(90),
        );
        let b = r.lookup(aor, now);
        assert_eq!(b.len(), 1, "one binding per contact");
        assert_eq!(b[0].expires_at, now + Duration::from_secs(90));
        assert!(r.lookup(aor, now + Duration::from_secs(91)).is_empty());
        for i in 0..20 {
            r.restore(
                aor,
                &format!("sip:alice@192.0.2.{i}:5070"),
                now + Duration::from_secs(60),
            );
        }
        assert_eq!(r.lookup(aor, now).len(), 10, "the per-AOR cap holds");
    }

    pub(crate) fn registrar() -> Registrar {
        Registrar::new(
            RegistrarConfig {
                realm: "switchboard.test".into(),
                ..Default::default()
            },
            [3; 32],
            Algorithm::Sha256,
        )
    }

    #[test]
    fn our_client_registers_with_our_registrar_and_leaves() {
        let t0 = Instant::now();
        let mut r = registrar();
        let mut c = client("alice", "wonderland", 600, 5062);
        c.start(t0);
        match exchange(&mut c, &mut r, t0, 1000) {
            RegistrationEvent::Registered { expires, bindings } => {
                assert_eq!(expires, 600);
                assert_eq!(
                    bindings,
                    vec!["<sip:alice@127.0.0.1:5062;transport=udp>;expires=600".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.lookup("sip:alice@switchboard.test", t0).len(), 1);
        // A second device for the same AOR.
        let mut c2 = client("alice", "wonderland", 600, 5064);
        c2.start(t0);
        assert!(
            matches!(exchange(&mut c2, &mut r, t0, 1000), RegistrationEvent::Registered { ref bindings, .. } if bindings.len() == 2)
        );
        c.unregister(t0);
        assert_eq!(
            exchange(&mut c, &mut r, t0, 1001),
            RegistrationEvent::Unregistered
        );
        let left = r.lookup("sip:alice@switchboard.test", t0);
        assert_eq!(left.len(), 1);
        assert!(left[0].contact.contains(":5064"));
        // Expiry.
        assert!(r
            .lookup("sip:alice@switchboard.test", t0 + Duration::from_secs(601))
            .is_empty());
        r.purge(t0 + Duration::from_secs(601));
        assert!(r.bindings.is_empty());
    }

    #[test]
    fn wrong_password_unknown_user_and_foreign_aor_are_forbidden() {
        let t0 = Instant::now();
        let mut r = registrar();
        let mut c = client("alice", "nope", 600, 5062);
        c.start(t0);
        assert_eq!(
            exchange(&mut c, &mut r, t0, 1000),
            RegistrationEvent::Refused {
                status: 403,
                reason: "Forbidden".into()
            }
        );
        let mut c = client("mallory", "x", 600, 5062);
        c.start(t0);
        assert_eq!(
            exchange(&mut c, &mut r, t0, 1000),
            RegistrationEvent::Refused {
                status: 403,
                reason: "Forbidden".into()
            }
        );
        // bob's credentials for alice's AOR.
        let mut c = Registration::new(RegistrationConfig {
            aor: "sip:alice@switchboard.test".into(),
            credentials: Credentials {
                username: "bob".into(),
                password: "builder".into(),
            },
            ..cfg_of("bob")
        });
        c.start(t0);
        assert_eq!(
            exchange(&mut c, &mut r, t0, 1000),
            RegistrationEvent::Refused {
                status: 403,
                reason: "Forbidden".into()
            }
        );
        assert!(r.bindings.is_empty());
    }

    /// Alice's REGISTER with her answer to the registrar's challenge (issued at 1000).
    fn answered_challenge(r: &mut Registrar, t0: Instant) -> String {
        let mut c = client("alice", "wonderland", 600, 5063);
        c.start(t0);
        let first = Message::parse(&c.poll_transmit().unwrap()).unwrap();
        let challenge = r.handle_register(&first, t0, 1000, users).unwrap();
        c.handle_message(&Message::parse(&challenge).unwrap(), t0);
        String::from_utf8(c.poll_transmit().unwrap().to_vec()).unwrap()
    }

    /// #13 item 21: an answer made for another Request-URI (a REGISTER captured on its way to
    /// another registrar) is a bad request, not a registration.
    #[test]
    fn an_answer_for_another_request_uri_is_refused() {
        let t0 = Instant::now();
        let mut r = registrar();
        let authorised = answered_challenge(&mut r, t0);
        let uri = Message::parse(authorised.as_bytes())
            .unwrap()
            .request_uri()
            .unwrap();
        let moved = authorised.replacen(
            &format!("REGISTER {uri} "),
            "REGISTER sip:elsewhere.example ",
            1,
        );
        let answer = Message::parse(
            &r.handle_register(&Message::parse(moved.as_bytes()).unwrap(), t0, 1001, users)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(answer.status(), Some(400));
        assert!(r.bindings.is_empty());
        // The untouched request registers.
        let ok = Message::parse(
            &r.handle_register(
                &Message::parse(authorised.as_bytes()).unwrap(),
                t0,
                1002,
                users,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.status(), Some(200));
    }

    #[test]
    fn a_replayed_register_is_challenged_afresh_not_forbidden() {
        let t0 = Instant::now();
        let mut r = registrar();
        let authorised = answered_challenge(&mut r, t0);
        let authorised = Message::parse(authorised.as_bytes()).unwrap();
        let ok = Message::parse(&r.handle_register(&authorised, t0, 1001, users).unwrap()).unwrap();
        assert_eq!(ok.status(), Some(200));
        let again =
            Message::parse(&r.handle_register(&authorised, t0, 1002, users).unwrap()).unwrap();
        assert_eq!(again.status(), Some(401));
        let www = again.header("WWW-Authenticate").unwrap();
        assert!(www.contains("stale=true"), "{www}");
    }

    fn cfg_of(user: &str) -> RegistrationConfig {
        RegistrationConfig {
            registrar: "sip:switchboard.test".into(),
            aor: format!("sip:{user}@switchboard.test"),
            contact: format!("sip:{user}@127.0.0.1:5066;transport=udp"),
            via_sent_by: "127.0.0.1:5066".into(),
            via_transport: "UDP",
            reliability: Reliability::Unreliable,
            credentials: Credentials {
                username: user.into(),
                password: "builder".into(),
            },
            expires: 600,
            timers: Timers::default(),
            user_agent: "test".into(),
        }
    }

    #[test]
    fn too_brief_expiry_gets_423_and_the_client_retries_with_min_expires() {
        let t0 = Instant::now();
        let mut r = registrar();
        let mut c = client("bob", "builder", 20, 5070);
        c.start(t0);
        assert!(matches!(
            exchange(&mut c, &mut r, t0, 1000),
            RegistrationEvent::Registered { expires: 60, .. }
        ));
    }

    #[test]
    fn stale_nonces_are_rechallenged_and_the_client_follows() {
        let t0 = Instant::now();
        let mut r = registrar();
        let mut c = client("bob", "builder", 600, 5070);
        c.start(t0);
        assert!(matches!(
            exchange(&mut c, &mut r, t0, 1000),
            RegistrationEvent::Registered { .. }
        ));
        // The refresh comes after the nonce lifetime (300 s): stale=true, then success.
        let later = t0 + Duration::from_secs(480);
        c.handle_timeout(later);
        assert!(matches!(
            exchange(&mut c, &mut r, later, 1480),
            RegistrationEvent::Registered { .. }
        ));
    }

    #[test]
    fn wildcard_removes_all_and_is_checked() {
        let t0 = Instant::now();
        let mut r = registrar();
        let mut c = client("bob", "builder", 600, 5070);
        c.start(t0);
        exchange(&mut c, &mut r, t0, 1000);
        // Build an authenticated "*" REGISTER by hand.
        let ch = crate::auth::Challenge::parse(&r.digest.challenge(1000, false)).unwrap();
        let creds = Credentials {
            username: "bob".into(),
            password: "builder".into(),
        };
        let mk = |expires: &str, nc: u32| {
            let auth = ch.authorize(&creds, "REGISTER", "sip:switchboard.test", nc, "cn");
            Message::parse(format!("REGISTER sip:switchboard.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKw{nc}\r\nFrom: <sip:bob@switchboard.test>;tag=w\r\nTo: <sip:bob@switchboard.test>\r\nCall-ID: wild\r\nCSeq: {nc} REGISTER\r\nContact: *\r\nExpires: {expires}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let bad =
            Message::parse(&r.handle_register(&mk("60", 1), t0, 1000, users).unwrap()).unwrap();
        assert_eq!(bad.status(), Some(400));
        let ok = Message::parse(&r.handle_register(&mk("0", 2), t0, 1000, users).unwrap()).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert!(r.lookup("sip:bob@switchboard.test", t0).is_empty());
    }

    #[test]
    fn bindings_per_aor_are_bounded() {
        let t0 = Instant::now();
        let mut r = Registrar::new(
            RegistrarConfig {
                realm: "switchboard.test".into(),
                max_bindings_per_aor: 2,
                ..Default::default()
            },
            [3; 32],
            Algorithm::Md5,
        );
        for (i, port) in [5080u16, 5081, 5082].into_iter().enumerate() {
            let mut c = client("alice", "wonderland", 600, port);
            c.start(t0);
            let e = exchange(&mut c, &mut r, t0, 1000);
            if i < 2 {
                assert!(matches!(e, RegistrationEvent::Registered { .. }), "{e:?}");
            } else {
                assert_eq!(
                    e,
                    RegistrationEvent::Refused {
                        status: 403,
                        reason: "Too Many Bindings".into()
                    }
                );
            }
        }
    }

    #[test]
    fn aor_normalisation() {
        assert_eq!(
            address_of_record("\"Bob\" <SIP:bob@Biloxi.Example.COM;transport=udp>;tag=1")
                .as_deref(),
            Some("sip:bob@biloxi.example.com")
        );
        assert_eq!(
            address_of_record("sip:carol@chicago.example.com").as_deref(),
            Some("sip:carol@chicago.example.com")
        );
        assert_eq!(address_of_record("<>"), None);
    }
}
