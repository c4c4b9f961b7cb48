//! The engine's task: the SIP phone (transport, user agent, registration) and the audio,
//! driven by [`Command`]s from [`Phone`] handles, reporting [`PhoneEvent`]s. Every SIP event
//! is handled to its end before the next command or event is taken, so no caller's
//! cancelled future can lose one.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::check::{ring_cycle, Player};
use switchboard_media::srtp::{SdesKey, Suite};
use switchboard_sip::auth::Credentials;
use switchboard_sip::phone::{Phone as SipPhone, PhoneEvent as SipEvent};
use switchboard_sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use switchboard_sip::sdp::{LocalMedia, Negotiated};
use switchboard_sip::transaction::Timers;
use switchboard_sip::transport::{TlsSettings, Transports};
use switchboard_sip::ua::{Destination, UaConfig, UaEvent, UserAgent};
use switchboard_sip::udp::ServerAddress;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use super::media::{bind_media_ports, AudioEvent, AudioHandle, AudioOptions};
use super::{
    refer_allowed, CallError, CallId, CallQuality, DeviceReport, DtmfVia, EndReason, MediaInfo,
    PhoneEvent, PhoneOptions, ReferPolicy, ReferRefusal, RegistrationState, RingOptions,
    RouterOffer, SrtpMode, Transport,
};

/// The stream of what the phone reports; it ends when the engine has stopped.
pub type PhoneEvents = mpsc::UnboundedReceiver<PhoneEvent>;

type Reply<T> = oneshot::Sender<Result<T, CallError>>;

/// What a [`Phone`] handle asks of the engine.
enum Command {
    Register,
    Unregister(Reply<usize>),
    Dial(String, Reply<CallId>),
    Ring(CallId),
    Devices(Option<switchboard_media::device::DeviceChoice>),
    RingWith(Option<RingOptions>),
    Answer(CallId, Reply<()>),
    Reject(CallId, u16),
    Hangup(CallId),
    HangupAll,
    Hold(CallId, bool, Reply<()>),
    Mute(bool),
    Volume(f32),
    Dtmf(CallId, char, Reply<DtmfVia>),
    Transfer(CallId, String, Reply<()>),
    Consult(CallId, String, bool, Reply<CallId>),
    CompleteTransfer(CallId, Reply<()>),
    Conference(Vec<CallId>, Reply<Vec<CallId>>),
    AcceptTransfer(CallId),
    DeclineTransfer(CallId),
    Quality(CallId, Reply<CallQuality>),
    Close(oneshot::Sender<()>),
}

/// A handle on a running phone: every method is a command to its engine. Clones drive the
/// same phone; when the last is dropped, the engine hangs up nothing but finishes what is
/// pending, unregisters and stops.
#[derive(Clone)]
pub struct Phone {
    tx: mpsc::UnboundedSender<Command>,
    info: Arc<Info>,
}

struct Info {
    contact: String,
    local_addr: SocketAddr,
}

/// A consultation call of an attended transfer.
struct Consultation {
    /// The call to transfer.
    original: CallId,
    target: String,
    /// Connect the two as soon as the target answers.
    auto_complete: bool,
}

/// A REFER waiting for the person's consent.
struct PendingRefer {
    target: String,
    replaces: Option<String>,
    referred_by: Option<String>,
}

struct Engine {
    phone: SipPhone,
    audio: AudioHandle,
    events: mpsc::UnboundedSender<PhoneEvent>,
    local_ip: IpAddr,
    suites: Vec<Suite>,
    srtp_required: bool,
    dtmf_info: bool,
    refer: ReferPolicy,
    /// Whether calls go through the account's registrar, and the account's domain.
    registrar: bool,
    domain: String,
    /// Calls we placed because a peer asked us to (REFER): new call → the call that asked.
    transfers: HashMap<CallId, CallId>,
    consults: HashMap<CallId, Consultation>,
    /// The other party of each call (the caller, or whom we called), for the REFER rule.
    peers: HashMap<CallId, String>,
    /// What a router said about each call it offered, repeated in `established`/`ended`.
    offers: HashMap<CallId, RouterOffer>,
    refers: HashMap<CallId, PendingRefer>,
    /// Hang-ups due later (a consultation the target should have ended itself).
    due: Vec<(TokioInstant, CallId)>,
    /// The address of record of each registered account.
    aors: Vec<String>,
    /// Where to ring, the calls ringing, and the ring playing while there are some.
    ring: Option<RingOptions>,
    ringing: HashSet<CallId>,
    ringer: Option<Player>,
    /// See [`PhoneOptions::media_timeout`].
    media_timeout: Option<Duration>,
    /// Each call with audio: the packets received so far, and since when that count has not
    /// moved while the other side should have sent.
    heard: HashMap<CallId, (u64, TokioInstant)>,
    /// The calls we put on hold (asked for, whether or not the other side has agreed yet).
    held: HashSet<CallId>,
}

fn host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    }
}

/// The local IP the system would use to reach `to` (no packet is sent).
fn local_ip_towards(to: SocketAddr) -> IpAddr {
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(to)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(if to.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        })
}

/// Resolves a host name (the first address).
pub(super) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, CallError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| CallError::Network(format!("cannot resolve {host} — check the name: {e}")))?
        .next()
        .ok_or_else(|| CallError::Network(format!("{host} has no address")))
}

fn transport_named(name: &str) -> Transport {
    match name {
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => Transport::Udp,
    }
}

impl Phone {
    /// Binds the SIP transport and the RTP ports, opens the audio (a file to play is read
    /// now, so a bad one is an error before any call) and, with a server, starts
    /// registering: the outcome arrives as [`PhoneEvent::Registration`].
    pub async fn start(options: PhoneOptions) -> Result<(Phone, PhoneEvents), CallError> {
        let PhoneOptions {
            account,
            bind,
            towards,
            transport_hint,
            tls_ca,
            tls_cert,
            tls_key,
            dns_server,
            media,
            refer,
            expires,
            more_accounts,
            keepalive,
            ring,
            media_timeout,
        } = options;
        let (server, registrar) = match &account.server {
            Some(s) => {
                let addr = ServerAddress::parse(s)?;
                let target = resolve(&addr.host, addr.port).await?;
                (Some(addr), Some(target))
            }
            None => (None, None),
        };
        let kind = match (account.transport, &server) {
            (Some(t), _) => t,
            (None, Some(s)) => transport_named(&s.transport),
            (None, None) => transport_hint.unwrap_or(Transport::Udp),
        };
        let peer_name = match (&server, &towards) {
            (Some(s), _) => Some(s.host.clone()),
            (None, Some((_, h))) => Some(h.clone()),
            _ => None,
        };
        let towards = towards.map(|(a, _)| a);
        let peer = registrar.or(towards);
        // Without a resolved peer (a domain only SRV knows), the interface of the default route.
        let default_route = || local_ip_towards(SocketAddr::from(([192, 0, 2, 1], 5060)));
        let bind = match bind {
            Some(b) => b,
            None => SocketAddr::new(peer.map(local_ip_towards).unwrap_or_else(default_route), 0),
        };
        let tls = TlsSettings {
            ca_file: tls_ca,
            cert_file: tls_cert,
            key_file: tls_key,
            mutual: false,
        };
        let net = Transports::bind(kind, bind, &tls).await?;
        let local = net.local_addr();
        let local_ip = if local.ip().is_unspecified() {
            peer.map(local_ip_towards)
                .unwrap_or(IpAddr::from([127, 0, 0, 1]))
        } else {
            local.ip()
        };
        let contact = SocketAddr::new(local_ip, local.port());
        let rtp = bind_media_ports(local_ip, media.rtp_ports).await?;
        let (suites, srtp_required) = match media.srtp {
            SrtpMode::Off => (Vec::new(), false),
            SrtpMode::Sdes => (media.srtp_suites.clone(), true),
            SrtpMode::Auto => (media.srtp_suites.clone(), kind == Transport::Tls),
        };
        let audio = AudioHandle::spawn(
            rtp,
            AudioOptions {
                play: media.play.clone(),
                record: media.record.clone(),
                codecs: media.codecs.clone(),
                dtx: media.dtx,
                devices: media.devices.clone(),
                echo: media.echo,
                volume: media.volume,
                muted: media.muted,
            },
        )?;
        let domain = account
            .domain
            .clone()
            .or_else(|| server.as_ref().map(|s| s.host.clone()))
            .unwrap_or_else(|| local_ip.to_string());
        let credentials = account.password.as_ref().map(|p| Credentials {
            username: account
                .auth_user
                .clone()
                .unwrap_or_else(|| account.user.clone()),
            password: p.0.clone(),
        });
        let user_agent = format!("Switchboard-Agent/{}", env!("CARGO_PKG_VERSION"));
        let cfg = UaConfig {
            user: account.user.clone(),
            domain: domain.clone(),
            display_name: account.display_name.clone(),
            credentials: credentials.clone(),
            contact_host: host(contact),
            transport: kind,
            outbound_proxy: registrar.map(Destination::Addr),
            timers: Timers::default(),
            user_agent: user_agent.clone(),
        };
        let mut phone = SipPhone::new(net, UserAgent::new(cfg));
        if let Some(dns) = dns_server {
            phone.set_resolver(switchboard_sip::dns::SipResolver::with_name_server(dns)?);
        }
        if let (Some(p), Some(name)) = (peer, &peer_name) {
            phone.name_address(p, name);
        }
        let mut aors = Vec::new();
        if let (Some(server), Some(registrar)) = (&server, registrar) {
            let Some(credentials) = credentials else {
                return Err(CallError::Options(
                    "registering at a server needs the account's password".into(),
                ));
            };
            let accounts = std::iter::once(credentials).chain(more_accounts.into_iter().map(
                |(username, password)| Credentials {
                    username,
                    password: password.0,
                },
            ));
            for credentials in accounts {
                let user = credentials.username.clone();
                let aor = format!("sip:{user}@{domain}");
                let mut reg = Registration::new(RegistrationConfig {
                    registrar: server.uri(),
                    aor: aor.clone(),
                    contact: format!("sip:{user}@{};transport={}", host(contact), kind.param()),
                    via_sent_by: host(contact),
                    via_transport: kind.via_name(),
                    reliability: kind.reliability(),
                    credentials,
                    expires,
                    timers: Timers::default(),
                    user_agent: user_agent.clone(),
                });
                reg.start(Instant::now());
                phone.add_registration(reg, registrar);
                aors.push(aor);
            }
        }
        phone.set_keepalive(keepalive);
        let local_addr = phone.local_addr()?;
        let (tx, commands) = mpsc::unbounded_channel();
        let (events, rx) = mpsc::unbounded_channel();
        let engine = Engine {
            phone,
            audio,
            events,
            local_ip,
            suites,
            srtp_required,
            dtmf_info: media.dtmf_info,
            refer,
            registrar: server.is_some(),
            domain,
            transfers: HashMap::new(),
            held: HashSet::new(),
            consults: HashMap::new(),
            peers: HashMap::new(),
            offers: HashMap::new(),
            refers: HashMap::new(),
            due: Vec::new(),
            aors,
            ring,
            ringing: HashSet::new(),
            ringer: None,
            media_timeout,
            heard: HashMap::new(),
        };
        tokio::spawn(engine.run(commands));
        let info = Info {
            contact: format!("sip:{}@{}", account.user, host(contact)),
            local_addr,
        };
        Ok((
            Phone {
                tx,
                info: Arc::new(info),
            },
            rx,
        ))
    }

    /// Our contact address (`sip:user@ip:port`), where calls reach the phone directly.
    pub fn contact(&self) -> &str {
        &self.info.contact
    }

    /// The local SIP address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.info.local_addr
    }

    fn send(&self, c: Command) -> Result<(), CallError> {
        self.tx.send(c).map_err(|_| CallError::Stopped)
    }

    async fn ask<T>(&self, c: impl FnOnce(Reply<T>) -> Command) -> Result<T, CallError> {
        let (reply, answer) = oneshot::channel();
        self.send(c(reply))?;
        answer.await.map_err(|_| CallError::Stopped)?
    }

    /// Registers every account again (after [`Phone::unregister`]), or refreshes now.
    pub fn register(&self) -> Result<(), CallError> {
        self.send(Command::Register)
    }

    /// Unregisters every registered account (`Expires: 0`; each reports
    /// [`RegistrationState::Unregistered`]); the phone keeps running. Returns how many were
    /// registered.
    pub async fn unregister(&self) -> Result<usize, CallError> {
        self.ask(Command::Unregister).await
    }

    /// Calls a SIP URI ([`PhoneEvent::Calling`] follows).
    pub async fn dial(&self, uri: &str) -> Result<CallId, CallError> {
        let uri = uri.to_owned();
        self.ask(|r| Command::Dial(uri, r)).await
    }

    /// Says an incoming call rings (180 Ringing).
    pub fn ring(&self, call: CallId) -> Result<(), CallError> {
        self.send(Command::Ring(call))
    }

    /// Answers an incoming call.
    pub async fn answer(&self, call: CallId) -> Result<(), CallError> {
        self.ask(|r| Command::Answer(call, r)).await
    }

    /// Refuses an incoming call with `status` (486 Busy Here, 603 Decline …).
    pub fn reject(&self, call: CallId, status: u16) -> Result<(), CallError> {
        self.send(Command::Reject(call, status))
    }

    /// Ends a call (BYE, or CANCEL while it rings).
    pub fn hangup(&self, call: CallId) -> Result<(), CallError> {
        self.send(Command::Hangup(call))
    }

    /// Ends every call.
    pub fn hangup_all(&self) -> Result<(), CallError> {
        self.send(Command::HangupAll)
    }

    /// Puts a call on hold (`true`) or resumes it.
    pub async fn hold(&self, call: CallId, on_hold: bool) -> Result<(), CallError> {
        self.ask(|r| Command::Hold(call, on_hold, r)).await
    }

    /// Mutes the microphone of every call: they carry silence.
    pub fn mute(&self, muted: bool) -> Result<(), CallError> {
        self.send(Command::Mute(muted))
    }

    /// The output volume, 0.0–1.0.
    pub fn set_volume(&self, volume: f32) -> Result<(), CallError> {
        self.send(Command::Volume(volume))
    }

    /// Moves the calls' audio to `devices` (none: no sound devices), calls going on.
    pub fn set_devices(
        &self,
        devices: Option<switchboard_media::device::DeviceChoice>,
    ) -> Result<(), CallError> {
        self.send(Command::Devices(devices))
    }

    /// Rings on `ring` from now on (none: no ring); a ring sounding moves there.
    pub fn set_ring(&self, ring: Option<RingOptions>) -> Result<(), CallError> {
        self.send(Command::RingWith(ring))
    }

    /// Sends a DTMF digit: in the media path when the call agreed telephone-event (RFC
    /// 4733), else as SIP INFO. [`PhoneEvent::DtmfSent`] follows.
    pub async fn send_dtmf(&self, call: CallId, digit: char) -> Result<DtmfVia, CallError> {
        self.ask(|r| Command::Dtmf(call, digit, r)).await
    }

    /// Blind transfer: asks the other party to call `target` (REFER); its progress arrives
    /// as [`PhoneEvent::TransferProgress`].
    pub async fn transfer(&self, call: CallId, target: &str) -> Result<(), CallError> {
        let target = target.to_owned();
        self.ask(|r| Command::Transfer(call, target, r)).await
    }

    /// Attended transfer, first step: calls `target` for a consultation while `call` waits.
    /// With `auto_complete`, the two are connected as soon as the target answers; otherwise
    /// by [`Phone::complete_transfer`] (or [`Phone::hangup`] of the consultation cancels).
    pub async fn consult(
        &self,
        call: CallId,
        target: &str,
        auto_complete: bool,
    ) -> Result<CallId, CallError> {
        let target = target.to_owned();
        self.ask(|r| Command::Consult(call, target, auto_complete, r))
            .await
    }

    /// Attended transfer, second step: connects the consulted party to the original call
    /// (REFER with Replaces, RFC 3891).
    pub async fn complete_transfer(&self, consultation: CallId) -> Result<(), CallError> {
        self.ask(|r| Command::CompleteTransfer(consultation, r))
            .await
    }

    /// A three-way call mixed on this phone: joins `calls` (answered calls of this phone,
    /// two or more, or more calls to add to a conference going on) into one conference,
    /// resuming those we hold. Each call then carries our voice and what the others say;
    /// the mute silences only us. A call leaves when it ends; the last one left is a plain
    /// call. Returns every call of the conference; [`PhoneEvent::Conference`] follows.
    /// Nothing changes when a call named is not answered or has ended.
    pub async fn conference(&self, calls: &[CallId]) -> Result<Vec<CallId>, CallError> {
        let calls = calls.to_vec();
        self.ask(|r| Command::Conference(calls, r)).await
    }

    /// Follows a REFER the person was asked about ([`PhoneEvent::TransferConsent`]).
    pub fn accept_transfer(&self, call: CallId) -> Result<(), CallError> {
        self.send(Command::AcceptTransfer(call))
    }

    /// Declines a REFER the person was asked about.
    pub fn decline_transfer(&self, call: CallId) -> Result<(), CallError> {
        self.send(Command::DeclineTransfer(call))
    }

    /// A call's audio figures so far (packets, loss, jitter, estimated MOS …), for a live
    /// display; the final ones come with [`PhoneEvent::Ended`]. An error for a call that
    /// carries no audio (yet).
    pub async fn quality(&self, call: CallId) -> Result<CallQuality, CallError> {
        self.ask(|r| Command::Quality(call, r)).await
    }

    /// Lets the last requests finish (a BYE retransmitted on a lossy path waits for its
    /// answer, up to 8 s), unregisters, and stops the engine; the event stream then ends.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Command::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

impl Engine {
    fn emit(&self, e: PhoneEvent) {
        let _ = self.events.send(e);
    }

    fn local_media(&self) -> LocalMedia {
        let mut m = LocalMedia::new(self.local_ip, self.audio.port());
        m.codecs = self.audio.codec_specs();
        // Fresh keys for every call (RFC 4568 §6.1: never reuse a master key).
        m.crypto = self
            .suites
            .iter()
            .enumerate()
            .map(|(i, s)| SdesKey::generate(i as u32 + 1, *s).to_attribute())
            .collect();
        m.plain_offer = !self.srtp_required;
        m.require_srtp = self.srtp_required;
        m
    }

    /// Sends an INVITE with our media to `target`; the sound devices open meanwhile.
    fn place_call(
        &mut self,
        target: &str,
        headers: Vec<String>,
        now: Instant,
    ) -> Result<CallId, super::UaError> {
        let media = self.local_media();
        let call = self.phone.ua().invite(target, media, headers, now)?;
        self.audio.expect(call);
        Ok(call)
    }

    /// Starts or updates a call's audio for newly agreed media; says so when it cannot.
    async fn media_agreed(&mut self, call: CallId, media: &Negotiated) {
        tracing::info!(
            %call,
            codec = %media.codec.encoding,
            rate = media.codec.clock_rate,
            "call media agreed"
        );
        if let Err(e) = self.audio.start(call, media).await {
            self.emit(PhoneEvent::MediaError {
                call,
                kind: "setup".into(),
                error: e.to_string(),
            });
        }
    }

    /// Ends each call whose other side has sent no audio for the media timeout while it
    /// should have; a held call (either side) is not counted.
    async fn check_heard(&mut self) {
        let Some(limit) = self.media_timeout else {
            return;
        };
        let now = TokioInstant::now();
        let calls: Vec<CallId> = self.heard.keys().copied().collect();
        for call in calls {
            let Some((packets, expected)) = self.audio.heard(call).await else {
                continue;
            };
            let Some((seen, since)) = self.heard.get_mut(&call) else {
                continue;
            };
            if packets != *seen || !expected {
                *seen = packets;
                *since = now;
                continue;
            }
            if now.duration_since(*since) >= limit {
                let secs = limit.as_secs();
                tracing::warn!(?call, secs, "no audio from the other side; hanging up");
                self.emit(PhoneEvent::MediaError {
                    call,
                    kind: "no_audio".into(),
                    error: format!(
                        "no audio from the other side for {secs} s: the call was ended \
                         (the other side or the network between went away)"
                    ),
                });
                self.heard.remove(&call);
                self.phone.ua().hangup(call, Instant::now());
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // Often enough to end a dead call within a few seconds of the timeout.
        let mut listen =
            tokio::time::interval(self.media_timeout.map_or(Duration::from_secs(5), |t| {
                (t / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
            }));
        listen.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closed = loop {
            self.keep_ringing();
            let next = self.due.iter().map(|(t, _)| *t).min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = commands.recv() => match c {
                    None => break None,
                    Some(Command::Close(reply)) => break Some(reply),
                    Some(c) => self.command(c).await,
                },
                ev = self.phone.next_event() => match ev {
                    Ok(ev) => self.sip_event(ev).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "the SIP transport failed; the phone stops");
                        self.emit(PhoneEvent::Stopped { error: Some(e.to_string()) });
                        return;
                    }
                },
                Some(ev) = self.audio.next_event() => self.audio_event(ev),
                _ = listen.tick(), if !self.heard.is_empty() => self.check_heard().await,
                () = sleep => {
                    let now = TokioInstant::now();
                    let (due, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(t, _)| *t <= now);
                    self.due = later;
                    for (_, call) in due {
                        self.phone.ua().hangup(call, Instant::now());
                    }
                }
            }
        };
        self.ringing.clear();
        self.keep_ringing();
        self.finish().await;
        self.emit(PhoneEvent::Stopped { error: None });
        if let Some(reply) = closed {
            let _ = reply.send(());
        }
    }

    /// Rings while calls ring and stops when none does; reports the ring device's news.
    fn keep_ringing(&mut self) {
        match (&self.ring, self.ringing.is_empty(), self.ringer.is_some()) {
            (Some(r), false, false) => {
                self.ringer = Some(Player::start(
                    r.device.clone(),
                    ring_cycle(),
                    r.volume,
                    true,
                ));
                let device = r.device.clone();
                self.emit(PhoneEvent::Ringing { device });
            }
            (_, true, true) => {
                // Stopping joins the sound's thread: at most one 20 ms step.
                for e in self.ringer.take().map(Player::stop).unwrap_or_default() {
                    self.emit(PhoneEvent::RingDevice(DeviceReport::from(&e)));
                }
            }
            _ => {}
        }
        if let Some(r) = &self.ringer {
            while let Some(e) = r.try_event() {
                self.emit(PhoneEvent::RingDevice(DeviceReport::from(&e)));
            }
        }
    }

    /// Lets the last requests finish and answers stray retransmissions for a moment, then
    /// unregisters.
    async fn finish(&mut self) {
        let give_up = TokioInstant::now() + Duration::from_secs(8);
        let mut settle = TokioInstant::now() + Duration::from_millis(300);
        loop {
            match tokio::time::timeout_at(settle, self.phone.next_event()).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) if self.phone.ua().has_pending_requests() && settle < give_up => {
                    settle = (TokioInstant::now() + Duration::from_millis(100)).min(give_up);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let mut pending = 0;
        for reg in self.phone.registrations() {
            if reg.is_registered() {
                reg.unregister(now);
                pending += 1;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while pending > 0 {
                match self.phone.next_event().await {
                    Ok(SipEvent::Registration {
                        event: RegistrationEvent::Unregistered | RegistrationEvent::Refused { .. },
                        ..
                    }) => pending -= 1,
                    Err(_) => break,
                    _ => {}
                }
            }
        })
        .await;
    }

    async fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Register => {
                for reg in self.phone.registrations() {
                    reg.start(now);
                }
            }
            Command::Unregister(reply) => {
                let mut n = 0;
                for reg in self.phone.registrations() {
                    if reg.is_registered() {
                        reg.unregister(now);
                        n += 1;
                    }
                }
                let _ = reply.send(Ok(n));
            }
            Command::Dial(uri, reply) => {
                let r = self.place_call(&uri, Vec::new(), now);
                if let Ok(call) = r {
                    self.peers.insert(call, uri.clone());
                    self.emit(PhoneEvent::Calling { call, to: uri });
                }
                let _ = reply.send(r.map_err(CallError::from));
            }
            Command::Ring(call) => {
                self.phone.ua().ring(call, now);
                if self.phone.ua().calls().any(|c| c == call) {
                    self.ringing.insert(call);
                    // It may be answered: the sound devices open while it rings (not for a
                    // call turned away at once).
                    self.audio.expect(call);
                }
            }
            Command::Answer(call, reply) => {
                self.ringing.remove(&call);
                let media = self.local_media();
                let r = self.phone.ua().answer(call, media, now);
                let _ = reply.send(r.map_err(CallError::from));
            }
            Command::Reject(call, status) => {
                self.ringing.remove(&call);
                self.phone.ua().reject(call, status, now);
            }
            Command::Hangup(call) => {
                self.ringing.remove(&call);
                self.phone.ua().hangup(call, now);
            }
            Command::HangupAll => {
                self.ringing.clear();
                let calls: Vec<CallId> = self.phone.ua().calls().collect();
                for c in calls {
                    self.phone.ua().hangup(c, now);
                }
            }
            Command::Hold(call, on, reply) => {
                let r = self.phone.ua().hold(call, on, now);
                if r.is_ok() {
                    if on {
                        self.held.insert(call);
                    } else {
                        self.held.remove(&call);
                    }
                }
                let _ = reply.send(r.map_err(CallError::from));
            }
            Command::Devices(devices) => self.audio.set_devices(devices),
            Command::RingWith(ring) => {
                if self.ring != ring {
                    self.ring = ring;
                    // A ring sounding stops on its old device and starts on the new one.
                    if let Some(old) = self.ringer.take() {
                        for e in old.stop() {
                            self.emit(PhoneEvent::RingDevice(DeviceReport::from(&e)));
                        }
                    }
                    self.keep_ringing();
                }
            }
            Command::Mute(on) => self.audio.set_muted(on),
            Command::Volume(v) => self.audio.set_volume(v),
            Command::Dtmf(call, digit, reply) => {
                let r = if !self.dtmf_info && self.audio.send_dtmf(call, digit).await {
                    Ok(DtmfVia::Rfc4733)
                } else {
                    self.phone
                        .ua()
                        .send_dtmf_info(call, digit, 160, now)
                        .map(|_| DtmfVia::Info)
                        .map_err(CallError::from)
                };
                if let Ok(via) = r {
                    self.emit(PhoneEvent::DtmfSent { call, digit, via });
                }
                let _ = reply.send(r);
            }
            Command::Transfer(call, target, reply) => {
                let r = self.phone.ua().transfer(call, &target, None, now);
                if r.is_ok() {
                    self.emit(PhoneEvent::Transferring {
                        call,
                        to: target,
                        consultation: None,
                    });
                }
                let _ = reply.send(r.map_err(CallError::from));
            }
            Command::Consult(call, target, auto_complete, reply) => {
                let r = if self.phone.ua().calls().any(|c| c == call) {
                    self.place_call(&target, Vec::new(), now)
                        .map_err(CallError::from)
                } else {
                    Err(CallError::Sip(super::UaError::NoSuchCall(call)))
                };
                if let Ok(consult) = r {
                    self.peers.insert(consult, target.clone());
                    self.consults.insert(
                        consult,
                        Consultation {
                            original: call,
                            target: target.clone(),
                            auto_complete,
                        },
                    );
                    self.emit(PhoneEvent::Consulting {
                        call: consult,
                        to: target,
                        for_call: call,
                    });
                }
                let _ = reply.send(r);
            }
            Command::CompleteTransfer(consult, reply) => {
                let r = self.complete(consult);
                let _ = reply.send(r);
            }
            Command::Conference(calls, reply) => {
                let r = self.conference(calls).await;
                let _ = reply.send(r);
            }
            Command::AcceptTransfer(call) => {
                if let Some(r) = self.refers.remove(&call) {
                    self.follow(call, r);
                }
            }
            Command::DeclineTransfer(call) => {
                if let Some(r) = self.refers.remove(&call) {
                    self.decline(call, r.target, ReferRefusal::Declined);
                }
            }
            Command::Quality(call, reply) => {
                let r = match self.audio.stats(call).await {
                    Some((stats, mos)) => Ok(CallQuality::new(&stats, mos)),
                    None => Err(CallError::Sip(super::UaError::NoSuchCall(call))),
                };
                let _ = reply.send(r);
            }
            Command::Close(_) => {}
        }
    }

    /// Joins calls into the phone's conference, resuming those we hold.
    async fn conference(&mut self, calls: Vec<CallId>) -> Result<Vec<CallId>, CallError> {
        let known: HashSet<CallId> = self.phone.ua().calls().collect();
        if let Some(c) = calls.iter().find(|c| !known.contains(c)) {
            return Err(CallError::Sip(super::UaError::NoSuchCall(*c)));
        }
        let mut unique = calls.clone();
        unique.sort();
        unique.dedup();
        let all = match self.audio.conference(unique).await {
            None => return Err(CallError::Media("the audio engine stopped".into())),
            Some(Err(Some(call))) => {
                return Err(CallError::Options(format!(
                    "call {call} cannot join a conference: it is not answered yet"
                )))
            }
            Some(Err(None)) => {
                return Err(CallError::Options(
                    "a conference needs two answered calls: call someone else first".into(),
                ))
            }
            Some(Ok(joined)) => joined,
        };
        // Those we hold, whether or not the other side has agreed yet: a resume asked while
        // the hold is under way goes after it. A hold from the other side stays theirs.
        let held: Vec<CallId> = all
            .iter()
            .copied()
            .filter(|c| self.held.contains(c))
            .collect();
        tracing::info!(calls = ?all, resumed = ?held, "the phone's conference");
        let now = Instant::now();
        for call in held {
            self.held.remove(&call);
            if let Err(e) = self.phone.ua().hold(call, false, now) {
                tracing::warn!(%call, error = %e, "could not resume a call joining the conference");
            }
        }
        self.emit(PhoneEvent::Conference { calls: all.clone() });
        Ok(all)
    }

    /// Connects a consultation's party to the call it was for (REFER with Replaces).
    fn complete(&mut self, consult: CallId) -> Result<(), CallError> {
        let Some(c) = self.consults.get(&consult) else {
            return Err(CallError::Sip(super::UaError::NoSuchCall(consult)));
        };
        let (original, target) = (c.original, c.target.clone());
        self.phone
            .ua()
            .transfer(original, &target, Some(consult), Instant::now())?;
        self.emit(PhoneEvent::Transferring {
            call: original,
            to: target,
            consultation: Some(consult),
        });
        Ok(())
    }

    /// Follows a REFER: calls its target, reporting progress to the referrer (NOTIFY).
    fn follow(&mut self, call: CallId, r: PendingRefer) {
        let now = Instant::now();
        // Through the wire checks: a value that would break a header line is refused (the
        // Replaces is already re-built from its parts by the user agent).
        let built: Result<Vec<String>, switchboard_sip::wire::WireError> = r
            .replaces
            .iter()
            .map(|v| switchboard_sip::wire::header_line("Replaces", v))
            .chain(
                r.referred_by
                    .iter()
                    .map(|b| switchboard_sip::wire::header_line("Referred-By", b)),
            )
            .collect();
        let placed = match built {
            Ok(headers) => self.place_call(&r.target, headers, now),
            Err(e) => Err(e.into()),
        };
        match placed {
            Ok(new_call) => {
                self.transfers.insert(new_call, call);
                self.peers.insert(new_call, r.target.clone());
                self.emit(PhoneEvent::TransferCalling {
                    call,
                    new_call,
                    target: r.target,
                });
            }
            Err(e) => {
                self.phone
                    .ua()
                    .notify_transfer(call, 503, "Service Unavailable", now);
                self.emit(PhoneEvent::TransferFailed {
                    call,
                    target: r.target,
                    error: e.to_string(),
                });
            }
        }
    }

    fn decline(&mut self, call: CallId, target: String, refusal: ReferRefusal) {
        tracing::info!(call, %refusal, "transfer declined");
        self.phone
            .ua()
            .notify_transfer(call, 603, "Declined", Instant::now());
        self.emit(PhoneEvent::TransferRefused {
            call,
            target,
            refusal,
        });
    }

    fn audio_event(&mut self, ev: AudioEvent) {
        self.emit(match ev {
            AudioEvent::Dtmf { call, digit } => PhoneEvent::Dtmf {
                call,
                digit,
                via: DtmfVia::Rfc4733,
                duration_ms: None,
            },
            AudioEvent::Problem {
                call,
                kind,
                message,
            } => PhoneEvent::MediaError {
                call,
                kind: kind.into(),
                error: message,
            },
            AudioEvent::Device(d) => PhoneEvent::Device(DeviceReport::from(&d)),
        });
    }

    async fn sip_event(&mut self, ev: SipEvent) {
        let now = Instant::now();
        let ev = match ev {
            SipEvent::Registration { account, event } => {
                let state = match event {
                    RegistrationEvent::Registered { expires, bindings } => {
                        RegistrationState::Registered { expires, bindings }
                    }
                    RegistrationEvent::Refused { status, reason } => {
                        RegistrationState::Refused { status, reason }
                    }
                    RegistrationEvent::Unreachable => RegistrationState::Unreachable,
                    RegistrationEvent::Unregistered => RegistrationState::Unregistered,
                    RegistrationEvent::NotSent(why) => RegistrationState::NotSent { why },
                };
                self.emit(PhoneEvent::Registration {
                    account,
                    aor: self.aors.get(account).cloned().unwrap_or_default(),
                    state,
                });
                return;
            }
            SipEvent::Call(ev) => ev,
        };
        match ev {
            UaEvent::OptionsAnswered { .. } | UaEvent::FailedOver { .. } => {}
            UaEvent::IncomingCall {
                call,
                from,
                to,
                replaces,
                x_headers,
            } => {
                self.peers.insert(call, from.clone());
                let offer = RouterOffer::from_headers(&x_headers);
                if !offer.is_empty() {
                    self.offers.insert(call, offer.clone());
                }
                self.emit(PhoneEvent::Incoming {
                    call,
                    from,
                    to,
                    replaces,
                    offer,
                });
            }
            UaEvent::Progress {
                call,
                status,
                reason,
                early_media,
            } => {
                self.emit(PhoneEvent::Progress {
                    call,
                    status,
                    phrase: reason.clone(),
                    early_media: early_media.as_ref().map(MediaInfo::from),
                });
                if let Some(m) = &early_media {
                    self.media_agreed(call, m).await;
                }
                if let Some(orig) = self.transfers.get(&call).copied() {
                    self.phone.ua().notify_transfer(orig, status, &reason, now);
                }
            }
            UaEvent::Established { call, media } => {
                self.media_agreed(call, &media).await;
                // Counted from the answer: early media (a ringback) may well be silent.
                self.heard.insert(call, (0, TokioInstant::now()));
                self.emit(PhoneEvent::Established {
                    call,
                    media: MediaInfo::from(&media),
                    offer: self.offers.get(&call).cloned(),
                });
                if let Some(orig) = self.transfers.remove(&call) {
                    self.phone.ua().notify_transfer(orig, 200, "OK", now);
                }
                if let Some(c) = self.consults.get(&call) {
                    if c.auto_complete {
                        // The target answered the consultation: connect it to the original
                        // caller (REFER with Replaces).
                        let original = c.original;
                        if let Err(e) = self.complete(call) {
                            self.emit(PhoneEvent::AttendedTransferFailed {
                                call: original,
                                consultation: call,
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
            UaEvent::MediaChanged {
                call,
                media,
                by_peer,
            } => {
                self.audio.update(call, &media, !by_peer);
                self.emit(PhoneEvent::MediaChanged {
                    call,
                    media: MediaInfo::from(&media),
                });
            }
            UaEvent::MediaChangeFailed { call, status } => {
                self.emit(PhoneEvent::MediaChangeFailed { call, status });
            }
            UaEvent::Dtmf {
                call,
                digit,
                duration_ms,
            } => self.emit(PhoneEvent::Dtmf {
                call,
                digit,
                via: DtmfVia::Info,
                duration_ms: Some(duration_ms),
            }),
            UaEvent::TransferRequested {
                call,
                target,
                replaces,
                referred_by,
            } => {
                self.emit(PhoneEvent::TransferRequested {
                    call,
                    target: target.clone(),
                    replaces: replaces.clone(),
                    referred_by: referred_by.clone(),
                });
                let verdict = match self.refer {
                    ReferPolicy::Always => Ok(()),
                    ReferPolicy::Trusted | ReferPolicy::Ask => refer_allowed(
                        self.registrar,
                        &self.domain,
                        self.peers.get(&call).map(String::as_str),
                        referred_by.as_deref(),
                        &target,
                    ),
                };
                let refer = PendingRefer {
                    target,
                    replaces,
                    referred_by,
                };
                match verdict {
                    Ok(()) => self.follow(call, refer),
                    Err(refusal) if self.refer == ReferPolicy::Ask => {
                        self.emit(PhoneEvent::TransferConsent {
                            call,
                            target: refer.target.clone(),
                            refusal,
                        });
                        self.refers.insert(call, refer);
                    }
                    Err(refusal) => self.decline(call, refer.target, refusal),
                }
            }
            UaEvent::TransferProgress {
                call,
                status,
                final_,
            } => {
                self.emit(PhoneEvent::TransferProgress {
                    call,
                    status,
                    final_,
                });
                // RFC 5589 §6: the transferor ends its leg once the transfer is done, and
                // (§7.2) the consultation too, in case the target did not (a target that
                // replaces it ends it itself, RFC 3891: give it two seconds).
                if final_ && (200..300).contains(&status) {
                    self.phone.ua().hangup(call, now);
                    let at = TokioInstant::now() + Duration::from_secs(2);
                    for (c, k) in &self.consults {
                        if k.original == call {
                            self.due.push((at, *c));
                        }
                    }
                }
            }
            UaEvent::Ended { call, reason } => {
                let (stats, mos) = self.audio.stop(call).await.unwrap_or_default();
                let offer = self.offers.remove(&call);
                self.emit(PhoneEvent::Ended {
                    call,
                    reason: EndReason::from(&reason),
                    quality: CallQuality::new(&stats, mos),
                    offer,
                });
                if let Some(orig) = self.transfers.remove(&call) {
                    let (st, ph) = match &reason {
                        switchboard_sip::ua::EndReason::Rejected { status, reason } => {
                            (*status, reason.clone())
                        }
                        _ => (487, "Request Terminated".to_owned()),
                    };
                    self.phone.ua().notify_transfer(orig, st, &ph, now);
                }
                self.ringing.remove(&call);
                self.heard.remove(&call);
                self.held.remove(&call);
                self.consults.remove(&call);
                self.peers.remove(&call);
                self.refers.remove(&call);
                self.due.retain(|(_, c)| *c != call);
            }
        }
    }
}
