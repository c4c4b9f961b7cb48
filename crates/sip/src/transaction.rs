//! The four transaction state machines of RFC 3261 §17, with RFC 6026's `Accepted` state for
//! INVITE 2xx. Sans-IO: the owner feeds inputs with the current `Instant`, sends whatever
//! [`Output::Transmit`] asks, hands [`Output::Event`]s to the transaction user, and calls
//! `handle_timeout` at [`poll_timeout`](ClientNonInvite::poll_timeout). Messages are opaque bytes
//! here: matching a message to its transaction (branch, method) is the owner's job (§17.1.3,
//! §17.2.3), and so is building the ACK for a non-2xx final response (§17.1.1.3), which the
//! client INVITE transaction then retransmits on its own.
//!
//! Timer names follow the RFC's table in §A: A, B, D (client INVITE), E, F, K (client
//! non-INVITE), G, H, I (server INVITE), J (server non-INVITE), L and M (RFC 6026).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Whether the transport retransmits for us (TCP, TLS) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    Reliable,
    Unreliable,
}

/// T1, T2, T4 (RFC 3261 §17.1.1.1 and Table 4). Defaults 500 ms, 4 s, 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// What a transaction asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the transaction's peer.
    Transmit(Bytes),
    /// Tell the transaction user.
    Event(Event),
}

/// What the transaction user learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A response for the TU (client transactions): provisional, the final one, and in
    /// `Accepted` each 2xx retransmission (the TU ACKs 2xx itself).
    Response(u16),
    /// No final response in time (client: timer B/F), or no ACK (server: timer H).
    Timeout,
    /// The transport failed while sending (§17.1.4 / §17.2.4).
    TransportError,
    /// The transaction is over; drop it.
    Terminated,
}

/// Transaction states (§17.1, §17.2, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// Shared plumbing: queued outputs and the terminate step.
#[derive(Debug)]
struct Core {
    state: State,
    out: VecDeque<Output>,
}

impl Core {
    fn new(state: State) -> Self {
        Self {
            state,
            out: VecDeque::new(),
        }
    }
    fn send(&mut self, b: &Bytes) {
        self.out.push_back(Output::Transmit(b.clone()));
    }
    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
    fn terminate(&mut self) {
        if self.state != State::Terminated {
            self.state = State::Terminated;
            self.event(Event::Terminated);
        }
    }
}

fn due(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| t <= now)
}

fn earliest(ts: &[Option<Instant>]) -> Option<Instant> {
    ts.iter().flatten().min().copied()
}

macro_rules! common_api {
    () => {
        /// The current state.
        pub fn state(&self) -> State {
            self.core.state
        }

        /// The next output, if any.
        pub fn poll_output(&mut self) -> Option<Output> {
            self.core.out.pop_front()
        }

        /// The transport could not send: the transaction ends (§17.1.4, §17.2.4).
        pub fn transport_error(&mut self) {
            if self.core.state != State::Terminated {
                self.core.event(Event::TransportError);
                self.clear_timers();
                self.core.terminate();
            }
        }
    };
}

/// Client non-INVITE transaction (§17.1.2).
#[derive(Debug)]
pub struct ClientNonInvite {
    core: Core,
    request: Bytes,
    reliability: Reliability,
    timers: Timers,
    e_interval: Duration,
    timer_e: Option<Instant>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is sent at once.
    pub fn start(request: Bytes, reliability: Reliability, timers: Timers, now: Instant) -> Self {
        let mut t = Self {
            core: Core::new(State::Trying),
            request,
            reliability,
            timers,
            e_interval: timers.t1,
            timer_e: (reliability == Reliability::Unreliable).then(|| now + timers.t1),
            timer_f: Some(now + timers.t1 * 64),
            timer_k: None,
        };
        t.core.send(&t.request.clone());
        t
    }

    common_api!();

    fn clear_timers(&mut self) {
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_f, self.timer_k])
    }

    /// A response matched this transaction.
    pub fn on_response(&mut self, status: u16, now: Instant) {
        match (self.core.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.core.state = State::Proceeding;
                self.core.event(Event::Response(status));
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.core.event(Event::Response(status));
                self.timer_e = None;
                self.timer_f = None;
                match self.reliability {
                    Reliability::Reliable => self.core.terminate(),
                    Reliability::Unreliable => {
                        self.core.state = State::Completed;
                        self.timer_k = Some(now + self.timers.t4);
                    }
                }
            }
            // Completed absorbs retransmitted finals; malformed codes are ignored.
            _ => {}
        }
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_f, now) && matches!(self.core.state, State::Trying | State::Proceeding) {
            self.clear_timers();
            self.core.event(Event::Timeout);
            self.core.terminate();
            return;
        }
        if due(self.timer_e, now) {
            self.core.send(&self.request.clone());
            // Trying: double up to T2; Proceeding: every T2 (§17.1.2.2).
            self.e_interval = match self.core.state {
                State::Proceeding => self.timers.t2,
                _ => (self.e_interval * 2).min(self.timers.t2),
            };
            self.timer_e = Some(now + self.e_interval);
        }
        if due(self.timer_k, now) {
            self.clear_timers();
            self.core.terminate();
        }
    }
}

/// Client INVITE transaction (§17.1.1, with RFC 6026's Accepted state).
#[derive(Debug)]
pub struct ClientInvite {
    core: Core,
    request: Bytes,
    ack: Option<Bytes>,
    reliability: Reliability,
    timers: Timers,
    a_interval: Duration,
    timer_a: Option<Instant>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE is sent at once.
    pub fn start(request: Bytes, reliability: Reliability, timers: Timers, now: Instant) -> Self {
        let mut t = Self {
            core: Core::new(State::Calling),
            request,
            ack: None,
            reliability,
            timers,
            a_interval: timers.t1,
            timer_a: (reliability == Reliability::Unreliable).then(|| now + timers.t1),
            timer_b: Some(now + timers.t1 * 64),
            timer_d: None,
            timer_m: None,
        };
        t.core.send(&t.request.clone());
        t
    }

    common_api!();

    fn clear_timers(&mut self) {
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_d, self.timer_m])
    }

    /// A response matched this transaction. For 300–699 the owner passes the ACK it built
    /// (§17.1.1.3); it is sent now and again for each retransmission of that response.
    pub fn on_response(&mut self, status: u16, ack: Option<Bytes>, now: Instant) {
        match (self.core.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.core.state = State::Proceeding;
                self.timer_a = None;
                self.timer_b = None;
                self.core.event(Event::Response(status));
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.timer_a = None;
                self.timer_b = None;
                self.core.state = State::Accepted;
                self.timer_m = Some(now + self.timers.t1 * 64);
                self.core.event(Event::Response(status));
            }
            (State::Accepted, 200..=299) => self.core.event(Event::Response(status)),
            (State::Calling | State::Proceeding, 300..=699) => {
                self.timer_a = None;
                self.timer_b = None;
                self.ack = ack;
                if let Some(a) = self.ack.clone() {
                    self.core.send(&a);
                }
                self.core.event(Event::Response(status));
                match self.reliability {
                    Reliability::Reliable => self.core.terminate(),
                    Reliability::Unreliable => {
                        self.core.state = State::Completed;
                        self.timer_d = Some(now + Duration::from_secs(32).max(self.timers.t1 * 64));
                    }
                }
            }
            (State::Completed, 300..=699) => {
                if let Some(a) = self.ack.clone() {
                    self.core.send(&a);
                }
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_b, now) && self.core.state == State::Calling {
            self.clear_timers();
            self.core.event(Event::Timeout);
            self.core.terminate();
            return;
        }
        if due(self.timer_a, now) && self.core.state == State::Calling {
            self.core.send(&self.request.clone());
            self.a_interval *= 2; // no T2 cap for INVITE (§17.1.1.2)
            self.timer_a = Some(now + self.a_interval);
        }
        if due(self.timer_d, now) || due(self.timer_m, now) {
            self.clear_timers();
            self.core.terminate();
        }
    }
}

/// Server non-INVITE transaction (§17.2.2). The owner passes the request to the TU when it
/// creates the transaction; retransmissions of it go to [`ServerNonInvite::on_request`].
#[derive(Debug)]
pub struct ServerNonInvite {
    core: Core,
    reliability: Reliability,
    timers: Timers,
    last_response: Option<Bytes>,
    timer_j: Option<Instant>,
}

impl ServerNonInvite {
    pub fn new(reliability: Reliability, timers: Timers) -> Self {
        Self {
            core: Core::new(State::Trying),
            reliability,
            timers,
            last_response: None,
            timer_j: None,
        }
    }

    common_api!();

    fn clear_timers(&mut self) {
        self.timer_j = None;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    /// A retransmission of the request: absorbed in Trying, answered with the last response
    /// in Proceeding and Completed.
    pub fn on_request(&mut self) {
        if matches!(self.core.state, State::Proceeding | State::Completed) {
            if let Some(r) = self.last_response.clone() {
                self.core.send(&r);
            }
        }
    }

    /// The TU responds.
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) {
        match (self.core.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.core.state = State::Proceeding;
                self.core.send(&response);
                self.last_response = Some(response);
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.core.send(&response);
                self.last_response = Some(response);
                match self.reliability {
                    Reliability::Reliable => self.core.terminate(),
                    Reliability::Unreliable => {
                        self.core.state = State::Completed;
                        self.timer_j = Some(now + self.timers.t1 * 64);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_j, now) {
            self.clear_timers();
            self.core.terminate();
        }
    }
}

/// Server INVITE transaction (§17.2.1, with RFC 6026's Accepted state).
#[derive(Debug)]
pub struct ServerInvite {
    core: Core,
    reliability: Reliability,
    timers: Timers,
    last_response: Option<Bytes>,
    g_interval: Duration,
    timer_g: Option<Instant>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl ServerInvite {
    pub fn new(reliability: Reliability, timers: Timers) -> Self {
        Self {
            core: Core::new(State::Proceeding),
            reliability,
            timers,
            last_response: None,
            g_interval: timers.t1,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    common_api!();

    fn clear_timers(&mut self) {
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_i, self.timer_l])
    }

    /// A retransmitted INVITE: the last provisional or final response is sent again; in
    /// Accepted it is absorbed (the TU retransmits 2xx itself, RFC 6026 §8.5).
    pub fn on_request(&mut self) {
        if matches!(self.core.state, State::Proceeding | State::Completed) {
            if let Some(r) = self.last_response.clone() {
                self.core.send(&r);
            }
        }
    }

    /// An ACK for a non-2xx final response matched this transaction.
    pub fn on_ack(&mut self, now: Instant) {
        if self.core.state == State::Completed {
            self.timer_g = None;
            self.timer_h = None;
            match self.reliability {
                Reliability::Reliable => self.core.terminate(),
                Reliability::Unreliable => {
                    self.core.state = State::Confirmed;
                    self.timer_i = Some(now + self.timers.t4);
                }
            }
        }
    }

    /// The TU responds.
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) {
        match (self.core.state, status) {
            (State::Proceeding, 100..=199) => {
                self.core.send(&response);
                self.last_response = Some(response);
            }
            (State::Proceeding, 200..=299) => {
                self.core.send(&response);
                self.core.state = State::Accepted;
                self.timer_l = Some(now + self.timers.t1 * 64);
            }
            // 2xx retransmissions from the TU pass through (RFC 6026 §8.7).
            (State::Accepted, 200..=299) => self.core.send(&response),
            (State::Proceeding, 300..=699) => {
                self.core.send(&response);
                self.last_response = Some(response);
                self.core.state = State::Completed;
                if self.reliability == Reliability::Unreliable {
                    self.timer_g = Some(now + self.g_interval);
                }
                self.timer_h = Some(now + self.timers.t1 * 64);
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_h, now) && self.core.state == State::Completed {
            self.clear_timers();
            self.core.event(Event::Timeout);
            self.core.terminate();
            return;
        }
        if due(self.timer_g, now) && self.core.state == State::Completed {
            if let Some(r) = self.last_response.clone() {
                self.core.send(&r);
            }
            self.g_interval = (self.g_interval * 2).min(self.timers.t2);
            self.timer_g = Some(now + self.g_interval);
        }
        if due(self.timer_i, now) || due(self.timer_l, now) {
            self.clear_timers();
            self.core.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<F: FnMut() -> Option<Output>>(f: F) -> Vec<Output> {
        std::iter::from_fn(f).collect()
    }

    fn tx(s: &'static str) -> Output {
        Output::Transmit(Bytes::from_static(s.as_bytes()))
    }

    /// Steps a transaction through its own timeouts until `until`, recording (ms, output).
    macro_rules! run_until {
        ($t:expr, $t0:expr, $until_ms:expr) => {{
            let mut log = Vec::new();
            while let Some(at) = $t.poll_timeout() {
                if at > $t0 + Duration::from_millis($until_ms) {
                    break;
                }
                $t.handle_timeout(at);
                for o in drain(|| $t.poll_output()) {
                    log.push(((at - $t0).as_millis() as u64, o));
                }
            }
            log
        }};
    }

    #[test]
    fn timer_a_doubles_without_cap_and_b_times_out_at_64_t1() {
        let t0 = Instant::now();
        let mut t = ClientInvite::start(
            Bytes::from_static(b"INVITE"),
            Reliability::Unreliable,
            Timers::default(),
            t0,
        );
        assert_eq!(drain(|| t.poll_output()), vec![tx("INVITE")]);
        let log = run_until!(t, t0, 40_000);
        let sends: Vec<u64> = log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Transmit(_)))
            .map(|(ms, _)| *ms)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: intervals 0.5, 1, 2, 4, 8, 16 (§17.1.1.2).
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        let ends: Vec<&(u64, Output)> = log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Event(_)))
            .collect();
        assert_eq!(
            ends,
            vec![
                &(32_000, Output::Event(Event::Timeout)),
                &(32_000, Output::Event(Event::Terminated))
            ]
        );
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn invite_over_tcp_is_not_retransmitted() {
        let t0 = Instant::now();
        let mut t = ClientInvite::start(
            Bytes::from_static(b"INVITE"),
            Reliability::Reliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    }

    #[test]
    fn invite_non_2xx_is_acked_and_retransmissions_re_acked_until_timer_d() {
        let t0 = Instant::now();
        let mut t = ClientInvite::start(
            Bytes::from_static(b"INVITE"),
            Reliability::Unreliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        t.on_response(180, None, t0 + Duration::from_millis(100));
        assert_eq!(t.state(), State::Proceeding);
        assert_eq!(
            drain(|| t.poll_output()),
            vec![Output::Event(Event::Response(180))]
        );
        // Proceeding: no more INVITE retransmissions, no timer B.
        assert_eq!(t.poll_timeout(), None);
        t.on_response(
            486,
            Some(Bytes::from_static(b"ACK")),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(
            drain(|| t.poll_output()),
            vec![tx("ACK"), Output::Event(Event::Response(486))]
        );
        assert_eq!(t.state(), State::Completed);
        t.on_response(486, None, t0 + Duration::from_secs(6));
        assert_eq!(drain(|| t.poll_output()), vec![tx("ACK")]);
        // Timer D: 32 s after the final response.
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(37)));
        t.handle_timeout(t0 + Duration::from_secs(37));
        assert_eq!(
            drain(|| t.poll_output()),
            vec![Output::Event(Event::Terminated)]
        );
    }

    #[test]
    fn invite_2xx_goes_to_accepted_and_passes_retransmissions_up() {
        let t0 = Instant::now();
        let mut t = ClientInvite::start(
            Bytes::from_static(b"INVITE"),
            Reliability::Unreliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        t.on_response(200, None, t0 + Duration::from_secs(1));
        assert_eq!(t.state(), State::Accepted);
        t.on_response(200, None, t0 + Duration::from_secs(2));
        assert_eq!(
            drain(|| t.poll_output()),
            vec![
                Output::Event(Event::Response(200)),
                Output::Event(Event::Response(200))
            ]
        );
        assert_eq!(
            t.poll_timeout(),
            Some(t0 + Duration::from_secs(33)),
            "timer M = 64*T1"
        );
        t.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn timer_e_doubles_to_t2_then_every_t2_in_proceeding() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::start(
            Bytes::from_static(b"REGISTER"),
            Reliability::Unreliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        let log = run_until!(t, t0, 12_000);
        let sends: Vec<u64> = log.iter().map(|(ms, _)| *ms).collect();
        // 0.5, 1.5, 3.5, 7.5, 11.5: intervals 0.5, 1, 2, 4, 4 (capped at T2).
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 11500]);
        t.on_response(100, t0 + Duration::from_millis(11_600));
        assert_eq!(t.state(), State::Proceeding);
        drain(|| t.poll_output());
        let log = run_until!(t, t0, 20_000);
        let sends: Vec<u64> = log.iter().map(|(ms, _)| *ms).collect();
        assert_eq!(sends, vec![15500, 19500], "every T2 in Proceeding");
    }

    #[test]
    fn non_invite_times_out_with_timer_f() {
        let t0 = Instant::now();
        let timers = Timers {
            t1: Duration::from_millis(100),
            ..Timers::default()
        };
        let mut t = ClientNonInvite::start(
            Bytes::from_static(b"OPTIONS"),
            Reliability::Reliable,
            timers,
            t0,
        );
        drain(|| t.poll_output());
        assert_eq!(
            t.poll_timeout(),
            Some(t0 + Duration::from_millis(6400)),
            "F = 64*T1, no E over TCP"
        );
        t.handle_timeout(t0 + Duration::from_millis(6400));
        assert_eq!(
            drain(|| t.poll_output()),
            vec![
                Output::Event(Event::Timeout),
                Output::Event(Event::Terminated)
            ]
        );
    }

    #[test]
    fn non_invite_final_waits_timer_k_over_udp_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::start(
            Bytes::from_static(b"REGISTER"),
            Reliability::Unreliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        t.on_response(200, t0 + Duration::from_millis(200));
        assert_eq!(t.state(), State::Completed);
        t.on_response(200, t0 + Duration::from_millis(300));
        assert_eq!(
            drain(|| t.poll_output()),
            vec![Output::Event(Event::Response(200))]
        );
        assert_eq!(
            t.poll_timeout(),
            Some(t0 + Duration::from_millis(5200)),
            "K = T4"
        );
        t.handle_timeout(t0 + Duration::from_millis(5200));
        assert_eq!(t.state(), State::Terminated);
        // Over TCP it ends at once.
        let mut r = ClientNonInvite::start(
            Bytes::from_static(b"REGISTER"),
            Reliability::Reliable,
            Timers::default(),
            t0,
        );
        r.on_response(401, t0);
        assert_eq!(r.state(), State::Terminated);
    }

    #[test]
    fn server_non_invite_absorbs_then_repeats_the_last_response_until_timer_j() {
        let t0 = Instant::now();
        let mut s = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
        s.on_request();
        assert!(
            drain(|| s.poll_output()).is_empty(),
            "Trying absorbs retransmissions"
        );
        s.send_response(100, Bytes::from_static(b"100"), t0);
        s.on_request();
        assert_eq!(drain(|| s.poll_output()), vec![tx("100"), tx("100")]);
        s.send_response(200, Bytes::from_static(b"200"), t0 + Duration::from_secs(1));
        s.on_request();
        assert_eq!(drain(|| s.poll_output()), vec![tx("200"), tx("200")]);
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(33)),
            "J = 64*T1"
        );
        s.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_invite_retransmits_final_with_timer_g_until_ack_then_timer_i() {
        let t0 = Instant::now();
        let mut s = ServerInvite::new(Reliability::Unreliable, Timers::default());
        s.send_response(180, Bytes::from_static(b"180"), t0);
        s.on_request();
        assert_eq!(drain(|| s.poll_output()), vec![tx("180"), tx("180")]);
        s.send_response(486, Bytes::from_static(b"486"), t0);
        drain(|| s.poll_output());
        let log = run_until!(s, t0, 9_000);
        let sends: Vec<u64> = log.iter().map(|(ms, _)| *ms).collect();
        // G: 0.5, 1, 2, 4, 4 → at 0.5, 1.5, 3.5, 7.5 s.
        assert_eq!(sends, vec![500, 1500, 3500, 7500]);
        s.on_ack(t0 + Duration::from_secs(9));
        assert_eq!(s.state(), State::Confirmed);
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(14)),
            "I = T4"
        );
        s.handle_timeout(t0 + Duration::from_secs(14));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_invite_without_ack_times_out_with_timer_h() {
        let t0 = Instant::now();
        let mut s = ServerInvite::new(Reliability::Reliable, Timers::default());
        s.send_response(603, Bytes::from_static(b"603"), t0);
        drain(|| s.poll_output());
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "H = 64*T1, no G over TCP"
        );
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(
            drain(|| s.poll_output()),
            vec![
                Output::Event(Event::Timeout),
                Output::Event(Event::Terminated)
            ]
        );
    }

    #[test]
    fn server_invite_2xx_is_accepted_and_absorbs_invite_retransmissions() {
        let t0 = Instant::now();
        let mut s = ServerInvite::new(Reliability::Unreliable, Timers::default());
        s.send_response(200, Bytes::from_static(b"200"), t0);
        s.on_request();
        s.send_response(
            200,
            Bytes::from_static(b"200"),
            t0 + Duration::from_millis(500),
        );
        assert_eq!(drain(|| s.poll_output()), vec![tx("200"), tx("200")]);
        assert_eq!(s.state(), State::Accepted);
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(s.state(), State::Terminated, "timer L");
    }

    #[test]
    fn transport_errors_end_the_transaction_once() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::start(
            Bytes::from_static(b"BYE"),
            Reliability::Reliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        t.transport_error();
        t.transport_error();
        assert_eq!(
            drain(|| t.poll_output()),
            vec![
                Output::Event(Event::TransportError),
                Output::Event(Event::Terminated)
            ]
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn nonsense_status_codes_change_nothing() {
        let t0 = Instant::now();
        let mut t = ClientNonInvite::start(
            Bytes::from_static(b"BYE"),
            Reliability::Reliable,
            Timers::default(),
            t0,
        );
        drain(|| t.poll_output());
        t.on_response(0, t0);
        t.on_response(999, t0);
        assert_eq!(t.state(), State::Trying);
        assert!(drain(|| t.poll_output()).is_empty());
    }
}
