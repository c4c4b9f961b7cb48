//! Trunk health: OPTIONS keep-alives both ways. The router answers a trunk's OPTIONS (its user
//! agent does, 200 with `Allow`) and notes that it heard from the trunk; with `probe`, it sends
//! its own every `probe_seconds`. Any final answer but 503 means the trunk is up; no answer
//! within a probe interval, a transaction timeout, or 503 is a miss, and three misses in a row
//! mean it is down. Shown by `GET /v1/trunks` and the `sip_trunk_up` metric.
//!
//! A Direct Routing trunk has one such state per Microsoft proxy (`sip`, `sip2`, `sip3`),
//! each probed on its own; the trunk is up while any proxy is, down when all are, and calls
//! go to the healthy ones first.

use std::time::Instant;

use switchboard_api::TrunkHealth;

/// Misses in a row that make a trunk down.
pub const MISSES_DOWN: u32 = 3;

/// One trunk's state as the router sees it.
#[derive(Debug, Clone)]
pub struct TrunkRt {
    pub name: String,
    pub max_calls: usize,
    /// Where its probes go (`sip:…`), when it has any.
    pub probe: Option<String>,
    /// Calls on it now.
    pub calls: usize,
    pub health: TrunkHealth,
    /// When `health` last changed.
    pub since: time::OffsetDateTime,
    /// When it last sent us a request (OPTIONS, INVITE, …).
    pub last_heard: Option<time::OffsetDateTime>,
    /// The last probe's answer: when, and its status (`None`: no answer).
    pub last_probe: Option<(time::OffsetDateTime, Option<u16>)>,
    /// Misses since the last good answer.
    misses: u32,
    /// A probe was sent and not answered yet; `counted`: its silence was already a miss.
    outstanding: Option<Instant>,
    counted: bool,
    /// A Direct Routing trunk's proxies, in failover order; empty for other trunks.
    pub proxies: Vec<ProxyRt>,
}

/// One proxy of a Direct Routing trunk: its host, port, and its own probe state (`name` is
/// the host; `probe` its OPTIONS target).
#[derive(Debug, Clone)]
pub struct ProxyRt {
    pub host: String,
    pub port: u16,
    pub state: TrunkRt,
}

impl ProxyRt {
    /// Its Request-URI host part and target for OPTIONS (`sip:host:port;transport=tls`;
    /// Microsoft supports no SIPS URIs).
    pub fn target(host: &str, port: u16) -> String {
        format!("sip:{host}:{port};transport=tls")
    }
}

impl TrunkRt {
    pub fn new(name: &str, max_calls: usize, probe: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            max_calls,
            probe,
            calls: 0,
            health: TrunkHealth::Unknown,
            since: time::OffsetDateTime::now_utc(),
            last_heard: None,
            last_probe: None,
            misses: 0,
            outstanding: None,
            counted: false,
            proxies: Vec::new(),
        }
    }

    /// The state a trunk of this configuration starts in.
    pub fn for_spec(spec: &crate::center::TrunkSpec) -> Self {
        let mut t = Self::new(&spec.name, spec.max_calls, spec.probe.clone());
        t.set_proxies(spec);
        t
    }

    /// Follows a changed configuration's proxies, keeping the state of those that stay.
    pub fn set_proxies(&mut self, spec: &crate::center::TrunkSpec) {
        let hosts = spec
            .direct_routing
            .as_ref()
            .map(|d| d.proxy_hosts())
            .unwrap_or_default();
        let old = std::mem::take(&mut self.proxies);
        self.proxies = hosts
            .into_iter()
            .map(|(host, port)| {
                old.iter()
                    .find(|p| p.host == host && p.port == port)
                    .cloned()
                    .unwrap_or_else(|| ProxyRt {
                        state: TrunkRt::new(
                            &host,
                            spec.max_calls,
                            Some(ProxyRt::target(&host, port)),
                        ),
                        host,
                        port,
                    })
            })
            .collect();
        self.from_proxies();
    }

    /// A Direct Routing trunk's health from its proxies': up while any is up, down when all
    /// are down, unknown otherwise. Returns whether it changed.
    pub fn from_proxies(&mut self) -> bool {
        if self.proxies.is_empty() {
            return false;
        }
        let h = if self
            .proxies
            .iter()
            .any(|p| p.state.health == TrunkHealth::Up)
        {
            TrunkHealth::Up
        } else if self
            .proxies
            .iter()
            .all(|p| p.state.health == TrunkHealth::Down)
        {
            TrunkHealth::Down
        } else {
            TrunkHealth::Unknown
        };
        self.set(h)
    }

    /// The proxies in the order calls try them: healthy (or not yet probed) ones first, in
    /// configuration order, then those down — a proxy that stopped answering is skipped
    /// while another may answer, and tried last rather than never.
    pub fn proxy_order(&self) -> Vec<(String, u16)> {
        let mut v: Vec<&ProxyRt> = self.proxies.iter().collect();
        v.sort_by_key(|p| p.state.health == TrunkHealth::Down);
        v.into_iter().map(|p| (p.host.clone(), p.port)).collect()
    }

    fn set(&mut self, h: TrunkHealth) -> bool {
        if self.health == h {
            return false;
        }
        self.health = h;
        self.since = time::OffsetDateTime::now_utc();
        true
    }

    /// Time for a probe: `true` when one should be sent now; while the last one is still
    /// unanswered, its silence counts as a miss instead. Returns whether health changed too.
    pub fn probe_due(&mut self, now: Instant) -> (bool, bool) {
        if self.outstanding.is_some() {
            self.counted = true;
            return (false, self.missed());
        }
        self.outstanding = Some(now);
        self.counted = false;
        (true, false)
    }

    /// The probe's answer (`None`: the transaction timed out or could not be sent); returns
    /// whether health changed.
    pub fn probed(&mut self, status: Option<u16>) -> bool {
        let counted = std::mem::take(&mut self.counted);
        self.outstanding = None;
        self.last_probe = Some((time::OffsetDateTime::now_utc(), status));
        match status {
            Some(s) if s != 503 => {
                self.misses = 0;
                self.set(TrunkHealth::Up)
            }
            // A timeout already counted tick by tick is not counted again.
            None if counted => false,
            _ => self.missed(),
        }
    }

    fn missed(&mut self) -> bool {
        self.misses += 1;
        if self.misses >= MISSES_DOWN {
            self.set(TrunkHealth::Down)
        } else {
            false
        }
    }

    /// The trunk sent us a request: it is alive. Returns whether health changed.
    pub fn heard(&mut self) -> bool {
        self.last_heard = Some(time::OffsetDateTime::now_utc());
        self.misses = 0;
        self.set(TrunkHealth::Up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_direct_routing_trunk_is_up_while_a_proxy_is_and_calls_skip_those_down() {
        let spec: crate::center::TrunkSpec =
            toml::from_str("name = \"teams\"\n[direct_routing]\nfqdn = \"contoso.sbc.example\"\n")
                .unwrap();
        let mut t = TrunkRt::for_spec(&spec);
        let hosts: Vec<_> = t.proxies.iter().map(|p| p.host.as_str()).collect();
        assert_eq!(hosts, crate::center::TEAMS_PROXIES);
        assert_eq!(
            t.proxies[0].state.probe.as_deref(),
            Some("sip:sip.pstnhub.microsoft.com:5061;transport=tls")
        );
        assert_eq!(t.health, TrunkHealth::Unknown);
        let now = Instant::now();
        // sip answers 503 three times: down; sip2 and sip3 answer: the trunk is up, and
        // calls go to sip2, sip3, then sip.
        for p in &mut t.proxies {
            p.state.probe_due(now);
        }
        t.proxies[1].state.probed(Some(200));
        t.proxies[2].state.probed(Some(200));
        for _ in 0..3 {
            t.proxies[0].state.probed(Some(503));
        }
        assert!(t.from_proxies());
        assert_eq!(t.health, TrunkHealth::Up);
        assert_eq!(t.proxies[0].state.health, TrunkHealth::Down);
        let order: Vec<_> = t.proxy_order().into_iter().map(|(h, _)| h).collect();
        assert_eq!(
            order,
            [
                "sip2.pstnhub.microsoft.com",
                "sip3.pstnhub.microsoft.com",
                "sip.pstnhub.microsoft.com"
            ]
        );
        // All down: the trunk is down.
        for i in 1..3 {
            for _ in 0..3 {
                t.proxies[i].state.probed(None);
            }
        }
        assert!(t.from_proxies());
        assert_eq!(t.health, TrunkHealth::Down);
        // A changed configuration keeps the state of the proxies that stay.
        let spec2: crate::center::TrunkSpec = toml::from_str(
            "name = \"teams\"\n[direct_routing]\nfqdn = \"contoso.sbc.example\"\nproxies = [\"sip2.pstnhub.microsoft.com\", \"sip4.example:5062\"]\n",
        )
        .unwrap();
        t.set_proxies(&spec2);
        assert_eq!(t.proxies.len(), 2);
        assert_eq!(t.proxies[0].state.health, TrunkHealth::Down);
        assert_eq!(
            (t.proxies[1].host.as_str(), t.proxies[1].port),
            ("sip4.example", 5062)
        );
        assert_eq!(t.proxies[1].state.health, TrunkHealth::Unknown);
        assert_eq!(t.health, TrunkHealth::Unknown);
    }

    fn trunk() -> TrunkRt {
        TrunkRt::new("carrier", 10, Some("sip:192.0.2.10:5060".into()))
    }

    #[test]
    fn a_trunk_is_unknown_until_it_answers_then_up() {
        let mut t = trunk();
        assert_eq!(t.health, TrunkHealth::Unknown);
        let now = Instant::now();
        assert_eq!(t.probe_due(now), (true, false));
        assert!(t.probed(Some(200)));
        assert_eq!(t.health, TrunkHealth::Up);
        // Any final answer but 503 shows it is alive (405: it does not do OPTIONS).
        assert_eq!(t.probe_due(now), (true, false));
        assert!(!t.probed(Some(405)));
        assert_eq!(t.health, TrunkHealth::Up);
    }

    #[test]
    fn three_misses_in_a_row_make_it_down_and_one_answer_up_again() {
        let mut t = trunk();
        let now = Instant::now();
        t.probe_due(now);
        t.probed(Some(200));
        // 503, 503: still up; a third miss: down.
        for _ in 0..2 {
            t.probe_due(now);
            assert!(!t.probed(Some(503)));
            assert_eq!(t.health, TrunkHealth::Up);
        }
        t.probe_due(now);
        assert!(t.probed(None));
        assert_eq!(t.health, TrunkHealth::Down);
        t.probe_due(now);
        assert!(t.probed(Some(200)));
        assert_eq!(t.health, TrunkHealth::Up);
        // A good answer clears the misses: two more are not enough.
        for _ in 0..2 {
            t.probe_due(now);
            t.probed(Some(503));
        }
        assert_eq!(t.health, TrunkHealth::Up);
    }

    #[test]
    fn silence_counts_a_miss_each_interval_and_the_late_timeout_not_again() {
        let mut t = trunk();
        let now = Instant::now();
        t.probe_due(now);
        t.probed(Some(200));
        assert_eq!(t.probe_due(now), (true, false));
        // Two intervals without an answer: two misses, no new probe sent meanwhile.
        assert_eq!(t.probe_due(now + Duration::from_secs(1)), (false, false));
        assert_eq!(t.probe_due(now + Duration::from_secs(2)), (false, false));
        // The third silent interval: down.
        assert_eq!(t.probe_due(now + Duration::from_secs(3)), (false, true));
        assert_eq!(t.health, TrunkHealth::Down);
        // The transaction's own timeout arrives later and adds nothing.
        assert!(!t.probed(None));
        assert_eq!(t.misses, 3);
        // The next interval sends a new probe.
        assert_eq!(t.probe_due(now + Duration::from_secs(4)), (true, false));
    }

    #[test]
    fn a_request_from_the_trunk_shows_it_alive() {
        let mut t = TrunkRt::new("carrier", 10, None);
        assert!(t.heard());
        assert_eq!(t.health, TrunkHealth::Up);
        assert!(t.last_heard.is_some());
        assert!(!t.heard());
    }
}
