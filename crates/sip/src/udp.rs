//! The thin tokio adapter that drives a [`Registration`] over a UDP socket: it sends what the
//! core asks, feeds it the datagrams that parse, and wakes it at its timeouts. Malformed
//! datagrams are dropped and counted (logged once per kind), never a panic.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::message::{Message, MAX_MESSAGE_BYTES};
use crate::registration::{Registration, RegistrationEvent};

/// A `sip:` / `sips:` server address as a person types it: `sip:HOST[:PORT][;transport=udp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
    pub transport: String,
}

/// Why a server address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a SIP server address: {why} — write it like sip:sip.example.com:5060;transport=udp")]
pub struct AddressError {
    pub input: String,
    pub why: &'static str,
}

impl ServerAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let err = |why| AddressError {
            input: input.to_owned(),
            why,
        };
        let rest = input.trim();
        let (rest, default_port) = if let Some(r) = rest.strip_prefix("sips:") {
            (r, 5061)
        } else if let Some(r) = rest.strip_prefix("sip:") {
            (r, 5060)
        } else {
            return Err(err("it must start with sip: or sips:"));
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or("");
        let mut transport = if default_port == 5061 {
            "tls".to_owned()
        } else {
            "udp".to_owned()
        };
        for p in parts {
            if let Some(t) = p.strip_prefix("transport=") {
                transport = t.to_ascii_lowercase();
            }
        }
        if !matches!(transport.as_str(), "udp" | "tcp" | "tls") {
            return Err(err("transport must be udp, tcp or tls"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed [ in an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| err("the port is not a number"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| err("the port is not a number"))?,
                ),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(err("it has no host (a user part does not belong here)"));
        }
        Ok(Self {
            host,
            port,
            transport,
        })
    }

    /// `sip:host[:port]` as a Request-URI.
    pub fn uri(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("sip:{host}:{}", self.port)
    }
}

/// Drives a registration over one UDP socket connected to the registrar.
pub struct UdpRegistration {
    socket: UdpSocket,
    reg: Registration,
    dropped: u64,
}

impl UdpRegistration {
    /// `socket` must be connected to the registrar (so only its datagrams arrive).
    pub fn new(socket: UdpSocket, reg: Registration) -> Self {
        Self {
            socket,
            reg,
            dropped: 0,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams dropped because they did not parse.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn registration(&mut self) -> &mut Registration {
        &mut self.reg
    }

    /// Runs until the registration reports something.
    pub async fn next_event(&mut self) -> std::io::Result<RegistrationEvent> {
        let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
        loop {
            while let Some(b) = self.reg.poll_transmit() {
                if let Err(e) = self.socket.send(&b).await {
                    tracing::warn!(error = %e, "cannot send to the registrar");
                }
            }
            if let Some(ev) = self.reg.poll_event() {
                return Ok(ev);
            }
            let wake = self.reg.poll_timeout();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv(&mut buf) => {
                    match r {
                        Ok(n) => match Message::parse(&buf[..n]) {
                            Ok(m) => self.reg.handle_message(&m, Instant::now()),
                            Err(e) => {
                                self.dropped += 1;
                                if self.dropped == 1 || self.dropped.is_power_of_two() {
                                    tracing::info!(error = %e, dropped = self.dropped, "dropped a datagram that is not SIP");
                                }
                            }
                        },
                        // ICMP port unreachable shows up here on a connected socket: keep
                        // going, timer F decides.
                        Err(e) => tracing::debug!(error = %e, "receive failed"),
                    }
                }
                _ = sleep => self.reg.handle_timeout(Instant::now()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let a = ServerAddress::parse("sip:127.0.0.1:5070;transport=UDP").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.transport.as_str()),
            ("127.0.0.1", 5070, "udp")
        );
        assert_eq!(a.uri(), "sip:127.0.0.1:5070");
        let b = ServerAddress::parse("sips:sbc.contoso.com").unwrap();
        assert_eq!((b.port, b.transport.as_str()), (5061, "tls"));
        let c = ServerAddress::parse("sip:[::1]:5080").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 5080));
        assert_eq!(c.uri(), "sip:[::1]:5080");
        for bad in [
            "127.0.0.1",
            "sip:",
            "sip:h:port",
            "sip:h;transport=sctp",
            "sip:alice@h",
            "sip:[::1",
        ] {
            assert!(ServerAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
