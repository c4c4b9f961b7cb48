//! The thin tokio adapter that drives a [`UserAgent`] (and optionally a [`Registration`] on the
//! same socket, so the registered Contact is where calls arrive) over UDP. It sends what the
//! cores ask, resolves host names (A/AAAA through the system resolver), feeds parsed datagrams
//! in, and wakes the cores at their timeouts. Datagrams that do not parse are dropped and
//! counted; refusals are logged once per power of two, never per packet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::dns::SipResolver;
use crate::registration::{Registration, RegistrationEvent};
use crate::transport::{Incoming, Transports};
use crate::ua::{Destination, Transmit, UaEvent, UserAgent};

/// What the phone reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    Call(UaEvent),
    /// An event of the registration of account `account` (the order they were added in).
    Registration {
        account: usize,
        event: RegistrationEvent,
    },
}

/// A user agent and its registration over one transport (UDP, TCP or TLS).
pub struct Phone {
    net: Transports,
    ua: UserAgent,
    /// One registration per account, each with its registrar's address.
    registrations: Vec<(Registration, SocketAddr)>,
    /// RFC 5626 §4.4.1 keep-alives: how often, and when next.
    keepalive: Option<std::time::Duration>,
    next_keepalive: Option<tokio::time::Instant>,
    resolved: HashMap<(String, u16), SocketAddr>,
    /// Host names we resolved, by address: the TLS server name for connections to them.
    names: HashMap<SocketAddr, String>,
    dns: Option<SipResolver>,
    dns_tried: bool,
    dropped: u64,
    /// Keep-alive OPTIONS in flight over UDP: target → registration index.
    pings: HashMap<String, usize>,
    outbox: std::collections::VecDeque<Outgoing>,
}

/// A message waiting to be sent.
#[derive(Clone)]
enum Outgoing {
    Ua(Transmit),
    Registration(SocketAddr, bytes::Bytes),
}

/// The earlier name of [`Phone`], when it only spoke UDP.
pub type UdpPhone = Phone;

impl Phone {
    pub fn new(net: Transports, ua: UserAgent) -> Self {
        Self {
            net,
            ua,
            registrations: Vec::new(),
            keepalive: None,
            next_keepalive: None,
            resolved: HashMap::new(),
            names: HashMap::new(),
            dns: None,
            dns_tried: false,
            dropped: 0,
            pings: HashMap::new(),
            outbox: std::collections::VecDeque::new(),
        }
    }

    /// Resolves host names with `resolver` (RFC 3263) instead of the system's configuration.
    pub fn set_resolver(&mut self, resolver: SipResolver) {
        self.dns = Some(resolver);
    }

    /// Remembers that `addr` is `host` (for TLS server names).
    pub fn name_address(&mut self, addr: SocketAddr, host: &str) {
        self.names.insert(addr, host.to_owned());
    }

    /// Runs `reg` on this transport towards `registrar` (it must have been started); returns
    /// its account index. Several accounts can be registered at once.
    pub fn add_registration(&mut self, reg: Registration, registrar: SocketAddr) -> usize {
        self.registrations.push((reg, registrar));
        self.registrations.len() - 1
    }

    /// Same as [`Phone::add_registration`], for the single-account case.
    pub fn set_registration(&mut self, reg: Registration, registrar: SocketAddr) {
        self.add_registration(reg, registrar);
    }

    /// Sends a keep-alive every `every` (up to 20 % less, RFC 5626 §4.4.1's jitter), keeping
    /// NAT bindings and connections open between registration refreshes: CRLFCRLF on TCP/TLS
    /// flows (RFC 5626 §4.4.1), an OPTIONS to each registrar over UDP — a registrar that stops
    /// answering it is registered with again.
    pub fn set_keepalive(&mut self, every: Option<std::time::Duration>) {
        self.keepalive = every;
        self.next_keepalive = every.map(|e| tokio::time::Instant::now() + jittered(e));
    }

    /// Every account's registration, in the order they were added.
    pub fn registrations(&mut self) -> impl Iterator<Item = &mut Registration> {
        self.registrations.iter_mut().map(|(r, _)| r)
    }

    pub fn ua(&mut self) -> &mut UserAgent {
        &mut self.ua
    }

    /// The first account's registration.
    pub fn registration(&mut self) -> Option<&mut Registration> {
        self.registrations.first_mut().map(|(r, _)| r)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.net.local_addr())
    }

    /// Datagrams dropped because they were not SIP.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    async fn resolve(&mut self, to: &Destination) -> Option<SocketAddr> {
        match to {
            Destination::Addr(a) => Some(*a),
            Destination::Host { host, port } => {
                let default = if self.net.kind() == crate::ua::Transport::Tls {
                    5061
                } else {
                    5060
                };
                let key = (host.clone(), port.unwrap_or(default));
                if let Some(a) = self.resolved.get(&key) {
                    return Some(*a);
                }
                // RFC 3263: NAPTR/SRV/A through our resolver; the system's getaddrinfo when
                // no resolver could be set up (e.g. no resolv.conf).
                if self.dns.is_none() && !self.dns_tried {
                    self.dns_tried = true;
                    self.dns = SipResolver::system()
                        .map_err(
                            |e| tracing::info!(error = %e, "no DNS resolver; using getaddrinfo"),
                        )
                        .ok();
                }
                let found = match &self.dns {
                    Some(r) => r
                        .locate(host, *port, None, false, &[self.net.kind()])
                        .await
                        .ok()
                        .and_then(|t| {
                            // Only addresses our socket's family can reach.
                            let v4 = self.net.local_addr().is_ipv4();
                            t.iter().find(|t| t.addr.is_ipv4() == v4).map(|t| t.addr)
                        }),
                    None => {
                        let v4 = self.net.local_addr().is_ipv4();
                        tokio::net::lookup_host((key.0.as_str(), key.1))
                            .await
                            .ok()
                            .and_then(|mut it| it.find(|a| a.is_ipv4() == v4))
                    }
                };
                match found {
                    Some(a) => {
                        self.names.insert(a, key.0.clone());
                        self.resolved.insert(key, a);
                        Some(a)
                    }
                    None => {
                        tracing::warn!(host = %host, "cannot resolve a SIP destination; the message is not sent");
                        None
                    }
                }
            }
        }
    }

    async fn send(&mut self, to: SocketAddr, data: bytes::Bytes) -> bool {
        let name = self.names.get(&to).cloned();
        match self.net.send(to, name.as_deref(), data).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot send a SIP message");
                false
            }
        }
    }

    /// Sends what the user agent and the registrations have queued. Cancellation-safe: a
    /// message leaves the outbox only once its send finished, so when the caller drops
    /// [`Phone::next_event`] mid-send (a `select!` with other branches), it goes out on the
    /// next call instead of being lost.
    async fn flush(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            self.outbox.push_back(Outgoing::Ua(t));
        }
        for (reg, to) in self.registrations.iter_mut() {
            while let Some(b) = reg.poll_transmit() {
                self.outbox.push_back(Outgoing::Registration(*to, b));
            }
        }
        while let Some(item) = self.outbox.front().cloned() {
            match item {
                Outgoing::Ua(Transmit { to, data, .. }) => {
                    let sent = match self.resolve(&to).await {
                        Some(addr) => self.send(addr, data).await,
                        None => false,
                    };
                    if !sent {
                        // Tell the transactions now rather than at timer B/F (RFC 3261 §17.1.4).
                        self.ua.transport_error(&to, Instant::now());
                    }
                }
                Outgoing::Registration(to, b) => {
                    if !self.send(to, b).await {
                        // Said now, not at timer F (RFC 3261 §17.1.4).
                        let now = Instant::now();
                        for (reg, at) in self.registrations.iter_mut() {
                            if *at == to {
                                reg.transport_error(now);
                            }
                        }
                    }
                }
            }
            self.outbox.pop_front();
        }
    }

    /// Runs until the user agent or a registration reports something.
    pub async fn next_event(&mut self) -> std::io::Result<PhoneEvent> {
        loop {
            self.flush().await;
            for (i, (r, _)) in self.registrations.iter_mut().enumerate() {
                if let Some(event) = r.poll_event() {
                    if let (RegistrationEvent::Registered { .. }, Some(realm)) = (&event, r.realm())
                    {
                        // The registrar we chose accepted our answer in this realm: calls
                        // may answer its challenges too.
                        self.ua.trust_realm(realm);
                    }
                    return Ok(PhoneEvent::Registration { account: i, event });
                }
            }
            if let Some(e) = self.ua.poll_event() {
                if let UaEvent::OptionsAnswered { target, status } = &e {
                    if let Some(i) = self.pings.remove(target) {
                        // Any answer means the registrar and the path to it are alive; none
                        // means register again (a restarted server, a NAT that forgot us).
                        if status.is_none() {
                            tracing::warn!(%target, "the registrar did not answer the keep-alive OPTIONS; registering again");
                            if let Some((reg, _)) = self.registrations.get_mut(i) {
                                reg.transport_failed(Instant::now());
                            }
                        }
                        continue;
                    }
                }
                return Ok(PhoneEvent::Call(e));
            }
            let wake = self
                .registrations
                .iter()
                .filter_map(|(r, _)| r.poll_timeout())
                .chain(self.ua.poll_timeout())
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let keepalive_at = self.next_keepalive;
            let keepalive = async {
                match keepalive_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = self.net.recv() => match item {
                    Some(Incoming::Message(m, from)) => {
                        let now = Instant::now();
                        if !m.is_request() {
                            for (reg, _) in self.registrations.iter_mut() {
                                reg.handle_message(&m, now);
                            }
                        }
                        self.ua.handle_message(&m, from, now);
                    }
                    Some(Incoming::Garbage(from, why, reply)) => {
                        self.dropped += 1;
                        // Logged once per power of two: a flood of garbage cannot flood the log.
                        if self.dropped.is_power_of_two() {
                            tracing::info!(error = %why, from = %from, dropped = self.dropped, "refused a malformed message");
                        }
                        if let Some(r) = reply {
                            self.net.reply(from, r).await;
                        }
                    }
                    Some(Incoming::Closed(addr)) => {
                        // The flow to a registrar broke: register again over a new one
                        // (RFC 5626 §4.4.1), so calls keep reaching us.
                        let now = Instant::now();
                        for (reg, to) in self.registrations.iter_mut() {
                            if *to == addr {
                                reg.transport_failed(now);
                            }
                        }
                    }
                    // The phone never sends detached: nothing of ours waits on this.
                    Some(Incoming::Unreachable(..)) => {}
                    None => return Err(std::io::Error::other("the SIP transport stopped")),
                },
                _ = sleep => {
                    let now = Instant::now();
                    self.ua.handle_timeout(now);
                    for (reg, _) in self.registrations.iter_mut() {
                        reg.handle_timeout(now);
                    }
                }
                _ = keepalive => {
                    if let Some(every) = self.keepalive {
                        self.next_keepalive = Some(tokio::time::Instant::now() + jittered(every));
                    }
                    if self.net.kind() == crate::ua::Transport::Udp {
                        // Over UDP an OPTIONS to each registrar: it keeps NAT bindings open
                        // and, unlike a bare CRLF, tells us whether the registrar still answers.
                        let now = Instant::now();
                        let targets: Vec<(usize, String)> = self
                            .registrations
                            .iter()
                            .enumerate()
                            .filter(|(_, (r, _))| r.is_registered())
                            .map(|(i, (_, a))| (i, format!("sip:{a}")))
                            .collect();
                        for (i, target) in targets {
                            if !self.pings.contains_key(&target) && self.ua.options(&target, now).is_ok() {
                                self.pings.insert(target, i);
                            }
                        }
                    } else {
                        self.net.keepalive().await;
                    }
                }
            }
        }
    }
}

/// `every` minus up to 20 % (RFC 5626 §4.4.1 asks for randomised keep-alive intervals).
fn jittered(every: std::time::Duration) -> std::time::Duration {
    let f: f64 = rand::random::<f64>() * 0.2;
    every.mul_f64(1.0 - f)
}
