//! The thin tokio adapter that drives a [`UserAgent`] (and optionally a [`Registration`] on the
//! same socket, so the registered Contact is where calls arrive) over UDP. It sends what the
//! cores ask, resolves host names (A/AAAA through the system resolver), feeds parsed datagrams
//! in, and wakes the cores at their timeouts. Datagrams that do not parse are dropped and
//! counted; refusals are logged once per power of two, never per packet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::message::{Message, MAX_MESSAGE_BYTES};
use crate::registration::{Registration, RegistrationEvent};
use crate::ua::{Destination, Transmit, UaEvent, UserAgent};

/// What the phone reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    Call(UaEvent),
    Registration(RegistrationEvent),
}

/// A user agent and its registration over one UDP socket.
pub struct UdpPhone {
    socket: UdpSocket,
    ua: UserAgent,
    registration: Option<(Registration, SocketAddr)>,
    resolved: HashMap<(String, u16), SocketAddr>,
    dropped: u64,
}

impl UdpPhone {
    pub fn new(socket: UdpSocket, ua: UserAgent) -> Self {
        Self {
            socket,
            ua,
            registration: None,
            resolved: HashMap::new(),
            dropped: 0,
        }
    }

    /// Runs `reg` on this socket towards `registrar` (it must have been started).
    pub fn set_registration(&mut self, reg: Registration, registrar: SocketAddr) {
        self.registration = Some((reg, registrar));
    }

    pub fn ua(&mut self) -> &mut UserAgent {
        &mut self.ua
    }

    pub fn registration(&mut self) -> Option<&mut Registration> {
        self.registration.as_mut().map(|(r, _)| r)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams dropped because they were not SIP.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    async fn resolve(&mut self, to: &Destination) -> Option<SocketAddr> {
        match to {
            Destination::Addr(a) => Some(*a),
            Destination::Host { host, port } => {
                let key = (host.clone(), port.unwrap_or(5060));
                if let Some(a) = self.resolved.get(&key) {
                    return Some(*a);
                }
                let found = tokio::net::lookup_host((key.0.as_str(), key.1))
                    .await
                    .ok()
                    .and_then(|mut it| it.next());
                match found {
                    Some(a) => {
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

    async fn flush(&mut self) {
        while let Some(Transmit { to, data }) = self.ua.poll_transmit() {
            if let Some(addr) = self.resolve(&to).await {
                if let Err(e) = self.socket.send_to(&data, addr).await {
                    tracing::warn!(error = %e, to = %addr, "cannot send a SIP message");
                }
            }
        }
        if let Some((reg, to)) = self.registration.as_mut() {
            while let Some(b) = reg.poll_transmit() {
                if let Err(e) = self.socket.send_to(&b, *to).await {
                    tracing::warn!(error = %e, to = %to, "cannot send to the registrar");
                }
            }
        }
    }

    /// Runs until the user agent or the registration reports something.
    pub async fn next_event(&mut self) -> std::io::Result<PhoneEvent> {
        let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
        loop {
            self.flush().await;
            if let Some(e) = self.registration.as_mut().and_then(|(r, _)| r.poll_event()) {
                return Ok(PhoneEvent::Registration(e));
            }
            if let Some(e) = self.ua.poll_event() {
                return Ok(PhoneEvent::Call(e));
            }
            let wake = [
                self.ua.poll_timeout(),
                self.registration
                    .as_ref()
                    .and_then(|(r, _)| r.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        // A CRLF keep-alive (RFC 5626 §4.4.1) gets no answer over UDP.
                        if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n')) {
                            continue;
                        }
                        match Message::parse(&buf[..n]) {
                            Ok(m) => {
                                let now = Instant::now();
                                if !m.is_request() {
                                    if let Some((reg, _)) = self.registration.as_mut() {
                                        reg.handle_message(&m, now);
                                    }
                                }
                                self.ua.handle_message(&m, from, now);
                            }
                            Err(e) => {
                                self.dropped += 1;
                                if self.dropped.is_power_of_two() {
                                    tracing::info!(error = %e, from = %from, dropped = self.dropped, "dropped a datagram that is not SIP");
                                }
                            }
                        }
                    }
                    // ICMP errors surface here; the transaction timers decide.
                    Err(e) => tracing::debug!(error = %e, "receive failed"),
                },
                _ = sleep => {
                    let now = Instant::now();
                    self.ua.handle_timeout(now);
                    if let Some((reg, _)) = self.registration.as_mut() {
                        reg.handle_timeout(now);
                    }
                }
            }
        }
    }
}
