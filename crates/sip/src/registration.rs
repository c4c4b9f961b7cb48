//! A registration client (RFC 3261 §10), sans-IO: it builds REGISTER requests, answers digest
//! challenges (§22.2), learns the granted expiry from the 200 OK, refreshes before it runs out,
//! retries once with `Min-Expires` on 423, and unregisters (`Expires: 0`). Each REGISTER runs
//! in a [`ClientNonInvite`] transaction, so retransmission
//! over UDP and timeouts come from §17.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::auth::{Challenge, Credentials};
use crate::builder::MessageBuilder;
use crate::message::{header_param_u32, split_list, value_uri, Message};
use crate::transaction::{self, ClientNonInvite, Reliability, Timers};

/// Who registers where.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Request-URI of the REGISTER, e.g. `sip:sip.example.com` or `sip:127.0.0.1:5060`.
    pub registrar: String,
    /// Address of record, e.g. `sip:alice@sip.example.com`.
    pub aor: String,
    /// Our contact, e.g. `sip:alice@192.0.2.4:5062;transport=udp`.
    pub contact: String,
    /// `host:port` we put in Via (the socket we send from).
    pub via_sent_by: String,
    /// `UDP`, `TCP` or `TLS` for the Via.
    pub via_transport: &'static str,
    pub reliability: Reliability,
    pub credentials: Credentials,
    /// Expiry we ask for, in seconds.
    pub expires: u32,
    pub timers: Timers,
    pub user_agent: String,
}

/// What the registration tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The registrar accepted us for `expires` seconds; `bindings` are the Contact values it
    /// reported for the AOR (ours among them).
    Registered { expires: u32, bindings: Vec<String> },
    /// The registrar said no (after authentication, where it asked for it).
    Refused { status: u16, reason: String },
    /// No answer in time (timer F) or the transport failed.
    Unreachable,
    /// `Expires: 0` was accepted.
    Unregistered,
    /// The REGISTER could not be written: a setting (registrar, address of record, contact)
    /// holds a space or a control character. Nothing was sent.
    NotSent(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Register,
    Unregister,
}

/// The registration state machine.
pub struct Registration {
    cfg: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    goal: Goal,
    expires_asked: u32,
    tx: Option<(String, ClientNonInvite)>,
    /// The challenge we answer and how often we used its nonce.
    challenge: Option<(Challenge, u32, bool /* proxy */)>,
    /// Authentication was already tried for the current attempt.
    auth_tried: bool,
    refresh_at: Option<Instant>,
    registered: bool,
    out: VecDeque<Bytes>,
    events: VecDeque<RegistrationEvent>,
}

fn random_token(n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    (0..n)
        .map(|_| A[r.random_range(0..A.len())] as char)
        .collect()
}

impl Registration {
    pub fn new(cfg: RegistrationConfig) -> Self {
        let expires_asked = cfg.expires;
        Self {
            call_id: format!("{}@switchboard", random_token(20)),
            from_tag: random_token(10),
            cseq: 0,
            goal: Goal::Register,
            expires_asked,
            tx: None,
            challenge: None,
            auth_tried: false,
            refresh_at: None,
            registered: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
        }
    }

    /// Sends the first REGISTER.
    pub fn start(&mut self, now: Instant) {
        self.goal = Goal::Register;
        self.auth_tried = false;
        self.send_register(now);
    }

    /// Sends `Expires: 0` for our contact.
    pub fn unregister(&mut self, now: Instant) {
        self.goal = Goal::Unregister;
        self.auth_tried = false;
        self.refresh_at = None;
        self.send_register(now);
    }

    /// The connection to the registrar failed (RFC 5626 §4.4.1 flow failure): register again
    /// now over a new one, unless we were leaving.
    pub fn transport_failed(&mut self, now: Instant) {
        if self.goal == Goal::Register && self.tx.is_none() {
            self.auth_tried = false;
            self.send_register(now);
        }
    }

    /// Our REGISTER could not be sent (a TCP or TLS connection to the registrar refused, no
    /// route): the transaction ends now with [`RegistrationEvent::Unreachable`], as RFC 3261
    /// §17.1.4 has it, rather than at timer F 32 s later; the next try is in 30 s.
    pub fn transport_error(&mut self, now: Instant) {
        if let Some((_, t)) = self.tx.as_mut() {
            t.transport_error();
            self.drain_tx(None, now);
        }
    }

    /// The realm our registrar challenged with, once it has: the realm the account's
    /// credentials belong to.
    pub fn realm(&self) -> Option<&str> {
        self.challenge.as_ref().map(|(c, _, _)| c.realm.as_str())
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx.as_ref().and_then(|(_, t)| t.poll_timeout());
        [tx, self.refresh_at].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, t)) = self.tx.as_mut() {
            t.handle_timeout(now);
        }
        self.drain_tx(None, now);
        if self.refresh_at.is_some_and(|t| t <= now) && self.tx.is_none() {
            self.refresh_at = None;
            self.auth_tried = false;
            self.send_register(now);
        }
    }

    /// A message from the registrar's direction; responses to other transactions are ignored.
    pub fn handle_message(&mut self, msg: &Message, now: Instant) {
        let Some(status) = msg.status() else { return };
        let ours = match (&self.tx, msg.top_via_branch(), msg.cseq()) {
            (Some((branch, _)), Some(b), Some((_, m))) => b == branch && m == "REGISTER",
            _ => false,
        };
        if !ours || msg.call_id() != Some(self.call_id.as_str()) {
            return;
        }
        if let Some((_, t)) = self.tx.as_mut() {
            t.on_response(status, now);
        }
        self.drain_tx(Some(msg), now);
    }

    fn drain_tx(&mut self, msg: Option<&Message>, now: Instant) {
        let mut finished = false;
        let mut final_status = None;
        let mut timed_out = false;
        if let Some((_, t)) = self.tx.as_mut() {
            while let Some(o) = t.poll_output() {
                match o {
                    transaction::Output::Transmit(b) => self.out.push_back(b),
                    transaction::Output::Event(transaction::Event::Response(s)) if s >= 200 => {
                        final_status = Some(s)
                    }
                    transaction::Output::Event(
                        transaction::Event::Timeout | transaction::Event::TransportError,
                    ) => timed_out = true,
                    transaction::Output::Event(transaction::Event::Terminated) => finished = true,
                    transaction::Output::Event(_) => {}
                }
            }
        }
        if finished {
            self.tx = None;
        }
        if timed_out {
            self.tx = None;
            self.registered = false;
            self.events.push_back(RegistrationEvent::Unreachable);
            // Try again later while we want to be registered.
            if self.goal == Goal::Register {
                self.refresh_at = Some(now + Duration::from_secs(30));
            }
            return;
        }
        if let (Some(status), Some(msg)) = (final_status, msg) {
            // The transaction may linger (timer K) to absorb retransmissions; we are done with it.
            self.tx = None;
            self.on_final(status, msg, now);
        }
    }

    fn on_final(&mut self, status: u16, msg: &Message, now: Instant) {
        match status {
            200..=299 => {
                if self.goal == Goal::Unregister {
                    self.registered = false;
                    self.events.push_back(RegistrationEvent::Unregistered);
                    return;
                }
                let bindings: Vec<String> = msg.headers("Contact").flat_map(split_list).collect();
                let ours = bindings.iter().find(|b| same_contact(b, &self.cfg.contact));
                let granted = ours
                    .and_then(|b| header_param_u32(b, "expires"))
                    .or_else(|| msg.header("Expires").and_then(|e| e.trim().parse().ok()))
                    .unwrap_or(self.expires_asked);
                self.registered = true;
                // Refresh with a margin: at 80 % of the granted time, at least 5 s early.
                let g = u64::from(granted.max(1));
                let early = (g / 5).max(5).min(g.saturating_sub(1));
                self.refresh_at = Some(now + Duration::from_secs(g - early));
                self.events.push_back(RegistrationEvent::Registered {
                    expires: granted,
                    bindings,
                });
            }
            401 | 407 => {
                let header = if status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let parsed = msg.headers(header).find_map(|h| Challenge::parse(h).ok());
                match parsed {
                    Some(ch) if !self.auth_tried || ch.stale => {
                        self.auth_tried = true;
                        self.challenge = Some((ch, 0, status == 407));
                        self.send_register(now);
                    }
                    _ => self.refuse(status, msg),
                }
            }
            423 => {
                let min = msg
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.expires_asked => {
                        self.expires_asked = m;
                        self.send_register(now);
                    }
                    _ => self.refuse(status, msg),
                }
            }
            _ => self.refuse(status, msg),
        }
    }

    fn refuse(&mut self, status: u16, msg: &Message) {
        self.registered = false;
        self.refresh_at = None;
        let reason = msg.reason().unwrap_or("").to_owned();
        self.events
            .push_back(RegistrationEvent::Refused { status, reason });
    }

    fn send_register(&mut self, now: Instant) {
        self.cseq += 1;
        let branch = format!("z9hG4bK{}", random_token(16));
        let expires = if self.goal == Goal::Unregister {
            0
        } else {
            self.expires_asked
        };
        let mut m = MessageBuilder::request("REGISTER", &self.cfg.registrar);
        m.via(self.cfg.via_transport, &self.cfg.via_sent_by, &branch)
            .header("Max-Forwards", 70)
            .header(
                "From",
                format_args!("<{}>;tag={}", self.cfg.aor, self.from_tag),
            )
            .header("To", format_args!("<{}>", self.cfg.aor))
            .header("Call-ID", &self.call_id)
            .cseq(self.cseq, "REGISTER")
            .header(
                "Contact",
                format_args!("<{}>;expires={expires}", self.cfg.contact),
            )
            .header("Expires", expires)
            .header("User-Agent", &self.cfg.user_agent);
        if let Some((ch, nc, proxy)) = self.challenge.as_mut() {
            *nc += 1;
            let value = ch.authorize(
                &self.cfg.credentials,
                "REGISTER",
                &self.cfg.registrar,
                *nc,
                &random_token(16),
            );
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            m.header(name, value);
        }
        let req = match m.build() {
            Ok(r) => r,
            Err(e) => {
                // The registrar, AOR and contact come from the account's settings.
                self.registered = false;
                self.refresh_at = None;
                self.events
                    .push_back(RegistrationEvent::NotSent(e.to_string()));
                return;
            }
        };
        let t = ClientNonInvite::start(req, self.cfg.reliability, self.cfg.timers, now);
        self.tx = Some((branch, t));
        self.drain_tx(None, now);
    }
}

fn same_contact(binding: &str, ours: &str) -> bool {
    // Registrars may reorder or drop URI parameters; compare scheme, user and host:port.
    let key = |u: &str| u.split(';').next().unwrap_or(u).to_ascii_lowercase();
    key(value_uri(binding)) == key(ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Algorithm, DigestServer};

    fn cfg() -> RegistrationConfig {
        RegistrationConfig {
            registrar: "sip:127.0.0.1:5060".into(),
            aor: "sip:alice@127.0.0.1".into(),
            contact: "sip:alice@127.0.0.1:5062;transport=udp".into(),
            via_sent_by: "127.0.0.1:5062".into(),
            via_transport: "UDP",
            reliability: Reliability::Unreliable,
            credentials: Credentials {
                username: "alice".into(),
                password: "wonderland".into(),
            },
            expires: 600,
            timers: Timers::default(),
            user_agent: "Switchboard-test".into(),
        }
    }

    /// A tiny registrar built from the crate's own server-side digest, answering in place.
    fn answer(req: &Message, server: &mut DigestServer, now_s: u64, extra: &str) -> Message {
        let via = req.header("Via").unwrap();
        let head = |status: &str| {
            format!(
                "SIP/2.0 {status}\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n",
                req.header("From").unwrap(),
                req.header("To").unwrap(),
                req.call_id().unwrap(),
                req.header("CSeq").unwrap()
            )
        };
        let text = match req.header("Authorization") {
            None => format!(
                "{}WWW-Authenticate: {}\r\n{extra}Content-Length: 0\r\n\r\n",
                head("401 Unauthorized"),
                server.challenge(now_s, false)
            ),
            Some(a) => match server.verify(a, "REGISTER", &req.request_uri().unwrap(), now_s, |u| {
                (u == "alice").then(|| "wonderland".to_string())
            }) {
                Ok(_) => {
                    let exp = req.header("Expires").unwrap();
                    format!("{}Contact: <sip:alice@127.0.0.1:5062;transport=udp>;expires={}\r\n{extra}Content-Length: 0\r\n\r\n", head("200 OK"), if exp == "0" { "0" } else { "300" })
                }
                Err(_) => format!("{}Content-Length: 0\r\n\r\n", head("403 Forbidden")),
            },
        };
        Message::parse(text.as_bytes()).unwrap()
    }

    /// #13 item 17: settings that would add a line to the REGISTER send nothing and say why.
    #[test]
    fn a_setting_with_a_line_break_sends_nothing() {
        let t0 = Instant::now();
        for bad in [
            RegistrationConfig {
                aor: "sip:alice@127.0.0.1>\r\nX-Evil: 1".into(),
                ..cfg()
            },
            RegistrationConfig {
                user_agent: "Switchboard\nX-Evil: 1".into(),
                ..cfg()
            },
            RegistrationConfig {
                registrar: "sip:127.0.0.1 SIP/2.0\r\nX: 1".into(),
                ..cfg()
            },
        ] {
            let mut r = Registration::new(bad);
            r.start(t0);
            assert!(r.poll_transmit().is_none());
            assert!(matches!(
                r.poll_event(),
                Some(RegistrationEvent::NotSent(_))
            ));
            assert!(!r.is_registered());
        }
    }

    #[test]
    fn registers_through_a_challenge_refreshes_and_unregisters() {
        let t0 = Instant::now();
        let mut server = DigestServer::new("127.0.0.1", [1; 32], Algorithm::Sha256);
        let mut r = Registration::new(cfg());
        r.start(t0);
        let first = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        assert!(first.header("Authorization").is_none());
        r.handle_message(&answer(&first, &mut server, 1000, ""), t0);
        let second = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        assert!(second
            .header("Authorization")
            .unwrap()
            .contains("algorithm=SHA-256"));
        assert_eq!(second.cseq().unwrap().0, first.cseq().unwrap().0 + 1);
        assert_ne!(second.top_via_branch(), first.top_via_branch());
        r.handle_message(&answer(&second, &mut server, 1000, ""), t0);
        match r.poll_event() {
            Some(RegistrationEvent::Registered {
                expires: 300,
                bindings,
            }) => assert_eq!(bindings.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(r.is_registered());
        // Refresh at 80 % of 300 s, reusing the nonce with nc=2.
        let refresh = r.poll_timeout().unwrap();
        assert!(
            refresh > t0 + Duration::from_secs(239) && refresh <= t0 + Duration::from_secs(240),
            "{:?}",
            refresh - t0
        );
        r.handle_timeout(refresh);
        let third = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        assert!(third
            .header("Authorization")
            .unwrap()
            .contains("nc=00000002"));
        r.handle_message(&answer(&third, &mut server, 1200, ""), refresh);
        assert!(matches!(
            r.poll_event(),
            Some(RegistrationEvent::Registered { .. })
        ));
        r.unregister(refresh);
        let bye = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        assert_eq!(bye.header("Expires"), Some("0"));
        r.handle_message(&answer(&bye, &mut server, 1201, ""), refresh);
        assert_eq!(r.poll_event(), Some(RegistrationEvent::Unregistered));
        assert!(!r.is_registered());
    }

    #[test]
    fn a_wrong_password_is_refused_with_status_and_reason() {
        let t0 = Instant::now();
        let mut server = DigestServer::new("127.0.0.1", [1; 32], Algorithm::Md5);
        let mut c = cfg();
        c.credentials.password = "wrong".into();
        let mut r = Registration::new(c);
        r.start(t0);
        let first = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        r.handle_message(&answer(&first, &mut server, 1000, ""), t0);
        let second = Message::parse(&r.poll_transmit().unwrap()).unwrap();
        r.handle_message(&answer(&second, &mut server, 1000, ""), t0);
        assert_eq!(
            r.poll_event(),
            Some(RegistrationEvent::Refused {
                status: 403,
                reason: "Forbidden".into()
            })
        );
        assert_eq!(r.poll_timeout(), None, "no refresh after a refusal");
    }

    #[test]
    fn a_second_401_for_the_same_nonce_is_a_refusal_not_a_loop() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg());
        r.start(t0);
        for i in 0..2 {
            let req = Message::parse(&r.poll_transmit().unwrap()).unwrap();
            let resp = format!(
                "SIP/2.0 401 Unauthorized\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n{i}\"\r\nContent-Length: 0\r\n\r\n",
                req.header("Via").unwrap(), req.header("From").unwrap(), req.header("To").unwrap(), req.call_id().unwrap(), req.header("CSeq").unwrap()
            );
            r.handle_message(&Message::parse(resp.as_bytes()).unwrap(), t0);
        }
        assert_eq!(
            r.poll_event(),
            Some(RegistrationEvent::Refused {
                status: 401,
                reason: "Unauthorized".into()
            })
        );
        assert!(r.poll_transmit().is_none());
    }

    #[test]
    fn silence_is_unreachable_after_timer_f_and_retried_later() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg());
        r.start(t0);
        let mut now = t0;
        let mut sends = 0;
        while r.poll_event().is_none() {
            while r.poll_transmit().is_some() {
                sends += 1;
            }
            now = r.poll_timeout().unwrap();
            r.handle_timeout(now);
        }
        assert_eq!(now - t0, Duration::from_secs(32));
        assert!(sends >= 7, "retransmitted over UDP ({sends})");
        assert!(r.poll_timeout().is_some(), "a retry is scheduled");
    }

    #[test]
    fn a_register_that_cannot_be_sent_is_unreachable_at_once_and_retried_later() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg());
        r.start(t0);
        assert!(r.poll_transmit().is_some());
        r.transport_error(t0);
        assert_eq!(r.poll_event(), Some(RegistrationEvent::Unreachable));
        assert!(!r.is_registered());
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + Duration::from_secs(30)),
            "tried again in 30 s"
        );
        // Nothing more is said for the same failure, nor for one with no REGISTER out.
        r.transport_error(t0);
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(t0 + Duration::from_secs(30));
        assert!(r.poll_transmit().is_some(), "the retry is sent");
    }

    #[test]
    fn responses_for_other_transactions_are_ignored() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg());
        r.start(t0);
        let _ = r.poll_transmit();
        let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKother\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: other\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        r.handle_message(&Message::parse(stray.as_bytes()).unwrap(), t0);
        assert_eq!(r.poll_event(), None);
    }

    #[test]
    fn contact_helpers() {
        let v = r#""Alice, A." <sip:alice@h:5062;transport=udp>;expires=120, <sip:alice@other>;expires=5"#;
        let parts = split_list(v);
        assert_eq!(parts.len(), 2);
        assert_eq!(header_param_u32(&parts[0], "expires"), Some(120));
        assert!(same_contact(&parts[0], "sip:alice@h:5062;transport=udp"));
        assert!(!same_contact(&parts[1], "sip:alice@h:5062"));
    }
}
