//! Locating SIP servers (RFC 3263 §4): NAPTR, then SRV (RFC 2782), then A/AAAA, with the
//! transport chosen along the way. The choices are plain functions over records (tested with
//! the RFCs' own examples); [`SipResolver`] asks DNS through `hickory-resolver`, using the
//! system's configuration or a given name server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::Rng;

use crate::ua::Transport;

/// Why a host could not be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("cannot set up DNS resolution: {0}")]
    Setup(String),
    #[error("{host} has no SIP server in DNS (no NAPTR, SRV or address records) — check the name")]
    NotFound { host: String },
}

/// One place to try, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A NAPTR record as far as SIP cares (RFC 3263 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The SRV service name for a transport (RFC 3263 §4.1; `_sips._tcp` for TLS).
pub fn srv_name(transport: Transport, host: &str) -> String {
    let host = host.trim_end_matches('.');
    match transport {
        Transport::Udp => format!("_sip._udp.{host}"),
        Transport::Tcp => format!("_sip._tcp.{host}"),
        Transport::Tls => format!("_sips._tcp.{host}"),
    }
}

fn naptr_transport(services: &str) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

/// RFC 3263 §4.1: the NAPTR records that lead to a transport we support, in order (`order`,
/// then `preference`), as (transport, SRV name). A `sips:` URI only takes SIPS services.
pub fn naptr_choices(
    records: &[Naptr],
    sips: bool,
    supported: &[Transport],
) -> Vec<(Transport, String)> {
    let mut usable: Vec<&Naptr> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| {
            naptr_transport(&r.services)
                .is_some_and(|t| supported.contains(&t) && (!sips || t == Transport::Tls))
        })
        .collect();
    usable.sort_by_key(|r| (r.order, r.preference));
    usable
        .into_iter()
        .filter_map(|r| {
            let t = naptr_transport(&r.services)?;
            Some((t, r.replacement.trim_end_matches('.').to_owned()))
        })
        .collect()
}

/// RFC 2782 ordering: by priority, and within a priority a weighted random pick (weight 0
/// records come last but can still be picked). `roll(total)` returns a number in 0..=total.
pub fn order_srv(mut records: Vec<Srv>, mut roll: impl FnMut(u32) -> u32) -> Vec<Srv> {
    // "." as the target means "no service here" (RFC 2782).
    records.retain(|r| !r.target.trim_end_matches('.').is_empty());
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let p = records[i].priority;
        let mut group: Vec<Srv> = records[i..]
            .iter()
            .take_while(|r| r.priority == p)
            .cloned()
            .collect();
        i += group.len();
        // Zero weights first, as RFC 2782 arranges them, so they get a small chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = roll(total).min(total);
            let mut running = 0;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    out
}

/// A DNS resolver for SIP targets.
#[derive(Clone)]
pub struct SipResolver {
    inner: Arc<TokioResolver>,
}

impl SipResolver {
    /// The system's resolver configuration (`/etc/resolv.conf` on Linux).
    pub fn system() -> Result<Self, DnsError> {
        let b = TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?;
        let r = b.build().map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Self { inner: Arc::new(r) })
    }

    /// Asks only `server` (UDP, then TCP for long answers): for tests and split-horizon setups.
    pub fn with_name_server(server: SocketAddr) -> Result<Self, DnsError> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        ns.connections = vec![udp, tcp];
        let cfg = ResolverConfig::from_name_servers(vec![ns]);
        let r = TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Self { inner: Arc::new(r) })
    }

    async fn naptr(&self, host: &str) -> Vec<Naptr> {
        let Ok(l) = self.inner.lookup(fqdn(host), RecordType::NAPTR).await else {
            return Vec::new();
        };
        l.answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    services: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                _ => None,
            })
            .collect()
    }

    async fn srv(&self, name: &str) -> Vec<Srv> {
        let Ok(l) = self.inner.lookup(fqdn(name), RecordType::SRV).await else {
            return Vec::new();
        };
        let records = l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii(),
                }),
                _ => None,
            })
            .collect();
        let mut rng = rand::rng();
        order_srv(records, |total| rng.random_range(0..=total))
    }

    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        match self.inner.lookup_ip(fqdn(host)).await {
            Ok(l) => l.iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// RFC 3263 §4: where to send requests for `host` (from a URI with an optional `port` and
    /// `;transport=`), among the transports we `supported`, in the order to try them.
    pub async fn locate(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        sips: bool,
        supported: &[Transport],
    ) -> Result<Vec<Target>, DnsError> {
        let default_transport = if sips { Transport::Tls } else { Transport::Udp };
        let default_port = |t: Transport| if t == Transport::Tls { 5061 } else { 5060 };
        // §4.1: a numeric host or an explicit port: no NAPTR or SRV.
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            let t = transport.unwrap_or(default_transport);
            return Ok(vec![Target {
                transport: t,
                addr: SocketAddr::new(ip, port.unwrap_or(default_port(t))),
            }]);
        }
        if let Some(p) = port {
            let t = transport.unwrap_or(default_transport);
            return self.hosts(host, p, t).await;
        }
        let mut srv_names: Vec<(Transport, String)> = match transport {
            Some(t) => vec![(t, srv_name(t, host))],
            None => {
                let n = naptr_choices(&self.naptr(host).await, sips, supported);
                if n.is_empty() {
                    // §4.1: without NAPTR, SRV for each transport we support.
                    supported
                        .iter()
                        .filter(|t| !sips || **t == Transport::Tls)
                        .map(|t| (*t, srv_name(*t, host)))
                        .collect()
                } else {
                    n
                }
            }
        };
        srv_names.retain(|(t, _)| supported.contains(t));
        let mut out = Vec::new();
        for (t, name) in srv_names {
            for s in self.srv(&name).await {
                for ip in self.addresses(&s.target).await {
                    out.push(Target {
                        transport: t,
                        addr: SocketAddr::new(ip, s.port),
                    });
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        // §4.2: no SRV either: the host's addresses on the default port.
        let t = transport.unwrap_or(if supported.contains(&default_transport) {
            default_transport
        } else {
            supported.first().copied().unwrap_or(default_transport)
        });
        self.hosts(host, default_port(t), t).await
    }

    async fn hosts(&self, host: &str, port: u16, t: Transport) -> Result<Vec<Target>, DnsError> {
        let ips = self.addresses(host).await;
        if ips.is_empty() {
            return Err(DnsError::NotFound {
                host: host.to_owned(),
            });
        }
        Ok(ips
            .into_iter()
            .map(|ip| Target {
                transport: t,
                addr: SocketAddr::new(ip, port),
            })
            .collect())
    }
}

/// Names from URIs are absolute: query them as FQDNs (no search-domain guessing).
fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naptr(order: u16, pref: u16, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: "s".into(),
            services: services.into(),
            replacement: replacement.into(),
        }
    }

    #[test]
    fn rfc_3263_naptr_example() {
        // §4.1's example: TLS first, then TCP, then UDP.
        let records = vec![
            naptr(90, 50, "SIP+D2T", "_sip._tcp.example.com."),
            naptr(100, 50, "SIP+D2U", "_sip._udp.example.com."),
            naptr(50, 50, "SIPS+D2T", "_sips._tcp.example.com."),
        ];
        let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
        assert_eq!(
            naptr_choices(&records, false, &all),
            vec![
                (Transport::Tls, "_sips._tcp.example.com".to_owned()),
                (Transport::Tcp, "_sip._tcp.example.com".to_owned()),
                (Transport::Udp, "_sip._udp.example.com".to_owned()),
            ]
        );
        // A UDP-only client takes the UDP record; a sips: URI only the SIPS one.
        assert_eq!(
            naptr_choices(&records, false, &[Transport::Udp]),
            vec![(Transport::Udp, "_sip._udp.example.com".to_owned())]
        );
        assert_eq!(naptr_choices(&records, true, &all).len(), 1);
        // Unknown services and non-terminal flags are skipped.
        let odd = vec![
            naptr(1, 1, "E2U+sip", "x."),
            Naptr {
                flags: "a".into(),
                ..naptr(1, 1, "SIP+D2U", "y.")
            },
        ];
        assert!(naptr_choices(&odd, false, &all).is_empty());
    }

    #[test]
    fn srv_priority_then_weight() {
        let srv = |p, w, t: &str| Srv {
            priority: p,
            weight: w,
            port: 5060,
            target: t.into(),
        };
        let records = vec![
            srv(20, 0, "backup.example.com."),
            srv(10, 60, "a.example.com."),
            srv(10, 40, "b.example.com."),
            srv(10, 0, "."),
        ];
        // A roll of 0 picks the first in the running sum; the highest picks the last.
        let low = order_srv(records.clone(), |_| 0);
        assert_eq!(
            low.iter().map(|s| s.target.as_str()).collect::<Vec<_>>(),
            ["a.example.com.", "b.example.com.", "backup.example.com."]
        );
        let high = order_srv(records.clone(), |t| t);
        assert_eq!(high[0].target, "b.example.com.");
        assert_eq!(
            high[2].target, "backup.example.com.",
            "priority 20 always last"
        );
        // Over many rolls, a is first about 60 % of the time.
        let mut rng = rand::rng();
        let a_first = (0..2000)
            .filter(|_| {
                order_srv(records.clone(), |t| rng.random_range(0..=t))[0].target
                    == "a.example.com."
            })
            .count();
        assert!((1000..1400).contains(&a_first), "{a_first}");
    }

    #[test]
    fn srv_names() {
        assert_eq!(
            srv_name(Transport::Udp, "example.com"),
            "_sip._udp.example.com"
        );
        assert_eq!(
            srv_name(Transport::Tls, "example.com."),
            "_sips._tcp.example.com"
        );
    }
}
