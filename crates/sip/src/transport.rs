//! SIP transports as a thin tokio layer (RFC 3261 §18): UDP datagrams, and TCP and TLS streams
//! framed by `Content-Length` (§18.3) with connection reuse — a response or a request to an
//! address we already have a connection with goes over that connection, whoever opened it.
//! TLS is rustls (TLS 1.2 and 1.3 only), trusting the system's roots plus an optional CA file,
//! with SNI from the host name we resolved. Incoming bytes reach the owner as parsed messages
//! through one channel, so the user agent above never sees the difference.
//!
//! CRLF keep-alives (RFC 5626 §4.4.1) are answered on streams with a single CRLF ("pong") and
//! ignored on UDP; [`Transports::keepalive`] sends the double-CRLF ping on every stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::message::{Message, MAX_MESSAGE_BYTES};

/// An open stream connection: its writer's queue, and who the TLS handshake proved the peer
/// to be.
struct Conn {
    writer: mpsc::Sender<Bytes>,
    identity: Option<PeerIdentity>,
}

type Streams = Arc<std::sync::Mutex<HashMap<SocketAddr, Conn>>>;

fn streams_get(s: &Streams, a: &SocketAddr) -> Option<mpsc::Sender<Bytes>> {
    s.lock()
        .ok()
        .and_then(|m| m.get(a).map(|c| c.writer.clone()))
}
fn streams_set(s: &Streams, a: SocketAddr, w: Option<mpsc::Sender<Bytes>>) {
    streams_set_with(s, a, w.map(|writer| (writer, None)));
}
fn streams_set_with(
    s: &Streams,
    a: SocketAddr,
    w: Option<(mpsc::Sender<Bytes>, Option<PeerIdentity>)>,
) {
    if let Ok(mut m) = s.lock() {
        match w {
            Some((writer, identity)) => {
                m.insert(a, Conn { writer, identity });
            }
            None => {
                m.remove(&a);
            }
        }
    }
}

/// Who the TLS handshake of a stream connection proved its peer to be.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerIdentity {
    /// We connected to this name, and the server's certificate was verified for it.
    Server(String),
    /// The peer presented this client certificate, verified to chain to a trusted root (its
    /// names are not checked by the handshake: [`PeerIdentity::is_for`] does).
    Client(rustls::pki_types::CertificateDer<'static>),
}

impl PeerIdentity {
    /// Whether the handshake proved the peer to be DNS name `name`: the name we connected to,
    /// or a client certificate valid for it (a DNS subjectAltName, a wildcard covering one
    /// label, as RFC 6125 has it).
    pub fn is_for(&self, name: &str) -> bool {
        match self {
            Self::Server(n) => n.eq_ignore_ascii_case(name),
            Self::Client(der) => certificate_is_for(der, name),
        }
    }
}

/// Whether end-entity certificate `der` is valid for DNS name `name` as a TLS client checks a
/// server's: a DNS subjectAltName, or a wildcard covering one label (RFC 6125).
pub fn certificate_is_for(der: &rustls::pki_types::CertificateDer<'_>, name: &str) -> bool {
    let Ok(sn) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(der)
        .is_ok_and(|c| rustls::client::verify_server_name(&c, &sn).is_ok())
}

/// Whether the first certificate of PEM file `path` (a chain's end entity, as
/// [`TlsSettings::cert_file`] holds it) is valid for DNS name `name`; an error when the file
/// cannot be read or holds no certificate.
pub fn certificate_file_is_for(path: &Path, name: &str) -> Result<bool, TransportError> {
    let certs = read_pem_certs(path)?;
    Ok(certs.first().is_some_and(|c| certificate_is_for(c, name)))
}
use crate::ua::Transport;

/// What arrives from the network.
#[derive(Debug)]
pub enum Incoming {
    Message(Box<Message>, SocketAddr),
    /// Bytes that were not SIP, from this source: why, and the 400/505 to send back when
    /// they looked like a request ([`crate::message::error_response`]).
    Garbage(SocketAddr, String, Option<Bytes>),
    /// A stream connection closed.
    Closed(SocketAddr),
    /// A connection that [`Transports::send_detached`] was to open could not be made: to
    /// whom, and why. What was to be sent there was not.
    Unreachable(SocketAddr, String),
}

/// Why a transport could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {addr}: {source} — is another program using this port?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {addr} failed: {source} — check the server certificate and --tls-ca")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {why}")]
    File { path: String, why: String },
}

/// TLS settings.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// PEM CA certificates trusted in addition to the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate chain and private key, to accept TLS connections.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// Mutual TLS (a Direct Routing SBC and Microsoft's SIP proxies): our certificate is shown
    /// as a client's too on connections we open, and peers connecting to us are asked for
    /// theirs — one they show must chain to the trusted roots, or the handshake fails. Peers
    /// without one (phones) are still let in; who may do what is decided above, by address.
    pub mutual: bool,
}

/// Bounds on stream connections (TCP, TLS), so that no peer can hold the listener's
/// resources: how many accepted connections at once, how long an accepted connection may stay
/// silent, and how long one message may take to arrive once it has begun (slowloris).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Accepted connections open at once; more are closed as they arrive.
    pub max_accepted: usize,
    /// An accepted connection with nothing from the peer (no message, no keep-alive) this
    /// long is closed. Connections we opened are kept: incoming calls may come over them.
    pub idle: std::time::Duration,
    /// A message must be whole this long after its first byte, on any connection.
    pub message: std::time::Duration,
    /// TLS handshake of an accepted connection.
    pub handshake: std::time::Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_accepted: 1024,
            // Longer than a registration refresh with RFC 5626 keep-alives (about 2 minutes).
            idle: std::time::Duration::from_secs(300),
            // 64 × T1, the longest a transaction waits.
            message: std::time::Duration::from_secs(32),
            handshake: std::time::Duration::from_secs(10),
        }
    }
}

use rustls::pki_types::pem::PemObject as _;

fn read_pem_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TransportError> {
    let data = std::fs::read(path).map_err(|e| TransportError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let certs: Result<Vec<_>, _> =
        rustls::pki_types::CertificateDer::pem_slice_iter(&data).collect();
    let certs = certs.map_err(|e| TransportError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TransportError::File {
            path: path.display().to_string(),
            why: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn read_pem_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TransportError> {
    let key_data = std::fs::read(path).map_err(|e| TransportError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_data).map_err(|e| TransportError::File {
        path: path.display().to_string(),
        why: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => e.to_string(),
        },
    })
}

/// The system's roots and the CA file's.
fn trusted_roots(settings: &TlsSettings) -> Result<rustls::RootCertStore, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots; a machine without them still works with --tls-ca.
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = &settings.ca_file {
        for c in read_pem_certs(ca)? {
            roots.add(c).map_err(|e| TransportError::File {
                path: ca.display().to_string(),
                why: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, TransportError> {
    let roots = trusted_roots(settings)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TransportError::File {
            path: "TLS settings".into(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    let cfg = match (&settings.cert_file, &settings.key_file, settings.mutual) {
        (Some(cert), Some(key), true) => builder
            .with_client_auth_cert(read_pem_certs(cert)?, read_pem_key(key)?)
            .map_err(|e| TransportError::File {
                path: cert.display().to_string(),
                why: e.to_string(),
            })?,
        _ => builder.with_no_client_auth(),
    };
    Ok(cfg)
}

fn server_config(settings: &TlsSettings) -> Result<Option<rustls::ServerConfig>, TransportError> {
    let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
        return Ok(None);
    };
    let certs = read_pem_certs(cert)?;
    let key_der = read_pem_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TransportError::File {
            path: "TLS settings".into(),
            why: e.to_string(),
        })?;
    let builder = if settings.mutual {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(trusted_roots(settings)?),
            provider,
        )
        .allow_unauthenticated()
        // Hints would list every system root in each handshake; clients choose anyway.
        .clear_root_hint_subjects()
        .build()
        .map_err(|e| TransportError::File {
            path: "TLS settings".into(),
            why: format!("cannot verify client certificates: {e}"),
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let cfg = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| TransportError::File {
            path: cert.display().to_string(),
            why: e.to_string(),
        })?;
    Ok(Some(cfg))
}

/// The transport layer of one user agent.
pub struct Transports {
    kind: Transport,
    udp: Option<Arc<UdpSocket>>,
    local: SocketAddr,
    /// Open stream connections by peer address, ours and accepted ones alike (reuse, §18).
    streams: Streams,
    tx: mpsc::Sender<Incoming>,
    rx: mpsc::Receiver<Incoming>,
    tls_client: Option<tokio_rustls::TlsConnector>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    limits: StreamLimits,
    /// Accepts that failed (out of file descriptors, say), for logs and tests.
    accept_failures: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Transports {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Transports {
    /// Listens on `bind` with `kind` (UDP socket, or TCP/TLS listener; TLS accepts only when a
    /// certificate is configured).
    pub async fn bind(
        kind: Transport,
        bind: SocketAddr,
        tls: &TlsSettings,
    ) -> Result<Self, TransportError> {
        Self::bind_with(kind, bind, tls, StreamLimits::default()).await
    }

    /// [`Transports::bind`] with other bounds on stream connections.
    pub async fn bind_with(
        kind: Transport,
        bind: SocketAddr,
        tls: &TlsSettings,
        limits: StreamLimits,
    ) -> Result<Self, TransportError> {
        let (tx, rx) = mpsc::channel(1024);
        let mut t = Self {
            kind,
            udp: None,
            local: bind,
            streams: Arc::default(),
            tx,
            rx,
            tls_client: None,
            tasks: Vec::new(),
            limits,
            accept_failures: Arc::default(),
        };
        match kind {
            Transport::Udp => {
                let s = UdpSocket::bind(bind)
                    .await
                    .map_err(|source| TransportError::Bind { addr: bind, source })?;
                t.local = s.local_addr().unwrap_or(bind);
                let s = Arc::new(s);
                t.udp = Some(s.clone());
                let tx = t.tx.clone();
                t.tasks.push(tokio::spawn(udp_reader(s, tx)));
            }
            Transport::Tcp | Transport::Tls => {
                let l = TcpListener::bind(bind)
                    .await
                    .map_err(|source| TransportError::Bind { addr: bind, source })?;
                t.local = l.local_addr().unwrap_or(bind);
                let acceptor = match (kind, server_config(tls)?) {
                    (Transport::Tls, Some(cfg)) => {
                        Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
                    }
                    _ => None,
                };
                if kind == Transport::Tls {
                    t.tls_client = Some(tokio_rustls::TlsConnector::from(Arc::new(client_config(
                        tls,
                    )?)));
                }
                t.tasks.push(tokio::spawn(accept_loop(
                    l,
                    kind,
                    acceptor,
                    t.tx.clone(),
                    t.streams.clone(),
                    limits,
                    t.accept_failures.clone(),
                )));
            }
        }
        Ok(t)
    }

    pub fn kind(&self) -> Transport {
        self.kind
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many accepts have failed so far (each is followed by a pause that grows to 1 s).
    pub fn accept_failures(&self) -> u64 {
        self.accept_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many received messages wait to be taken by [`Self::recv`]: a user agent that
    /// falls behind sees it grow (up to 1,024, then the socket's own buffer fills).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// The next thing from the network.
    pub async fn recv(&mut self) -> Option<Incoming> {
        let item = self.rx.recv().await?;
        if let Incoming::Closed(a) = &item {
            streams_set(&self.streams, *a, None);
        }
        Some(item)
    }

    /// Answers a source over the flow it came in on (a UDP datagram, or the stream if it is
    /// still open); never opens a connection.
    pub async fn reply(&mut self, to: SocketAddr, data: Bytes) {
        if let Some(u) = &self.udp {
            let _ = u.send_to(&data, to).await;
        } else if let Some(w) = streams_get(&self.streams, &to) {
            let _ = w.send(data).await;
        }
    }

    /// Sends `data` to `to`; on a stream transport, over the existing connection or a new one
    /// (`server_name` is the TLS SNI and certificate name).
    pub async fn send(
        &mut self,
        to: SocketAddr,
        server_name: Option<&str>,
        data: Bytes,
    ) -> Result<(), TransportError> {
        if let Some(u) = &self.udp {
            u.send_to(&data, to)
                .await
                .map_err(|source| TransportError::Connect { addr: to, source })?;
            return Ok(());
        }
        if let Some(w) = streams_get(&self.streams, &to) {
            if w.send(data.clone()).await.is_ok() {
                return Ok(());
            }
            streams_set(&self.streams, to, None);
        }
        let opener = self.opener();
        opener
            .open_and_send(to, server_name, data, &mut self.tasks)
            .await
    }

    /// Sends `data` to `to` without waiting for a connection to be made, for an owner that
    /// must not stall (a B2BUA's one loop): over UDP or an open connection at once; else a
    /// task of its own connects (within the TLS handshake bound for the whole setup) and
    /// sends, and a failure arrives from [`Transports::recv`] as [`Incoming::Unreachable`].
    pub async fn send_detached(
        &mut self,
        to: SocketAddr,
        server_name: Option<String>,
        data: Bytes,
    ) -> Result<(), TransportError> {
        if self.udp.is_some() {
            return self.send(to, None, data).await;
        }
        if let Some(w) = streams_get(&self.streams, &to) {
            if w.send(data.clone()).await.is_ok() {
                return Ok(());
            }
            streams_set(&self.streams, to, None);
        }
        let opener = self.opener();
        let tx = self.tx.clone();
        let bound = self.limits.handshake;
        tokio::spawn(async move {
            // The connection's own tasks are detached, as accepted ones are: they end when
            // it closes or when the owner stops reading.
            let mut tasks = Vec::new();
            let r = tokio::time::timeout(
                bound,
                opener.open_and_send(to, server_name.as_deref(), data, &mut tasks),
            )
            .await;
            let why = match r {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no connection to {to} within {} s", bound.as_secs()),
            };
            let _ = tx.send(Incoming::Unreachable(to, why)).await;
        });
        Ok(())
    }

    /// Who the TLS handshake of the open connection with `peer` proved it to be; none over
    /// UDP or TCP, with no such connection, or when an accepted peer showed no certificate.
    pub fn peer_identity(&self, peer: &SocketAddr) -> Option<PeerIdentity> {
        self.streams
            .lock()
            .ok()
            .and_then(|m| m.get(peer).and_then(|c| c.identity.clone()))
    }

    fn opener(&self) -> Opener {
        Opener {
            kind: self.kind,
            tls_client: self.tls_client.clone(),
            tx: self.tx.clone(),
            streams: self.streams.clone(),
            limits: self.limits,
        }
    }

    /// RFC 5626 §4.4.1 keep-alive ping (CRLFCRLF) on every stream connection.
    pub async fn keepalive(&mut self) {
        let writers: Vec<mpsc::Sender<Bytes>> = self
            .streams
            .lock()
            .map(|m| m.values().map(|c| c.writer.clone()).collect())
            .unwrap_or_default();
        for w in writers {
            let _ = w.send(Bytes::from_static(b"\r\n\r\n")).await;
        }
    }
}

/// What opening a connection needs, apart from the [`Transports`] that owns it.
struct Opener {
    kind: Transport,
    tls_client: Option<tokio_rustls::TlsConnector>,
    tx: mpsc::Sender<Incoming>,
    streams: Streams,
    limits: StreamLimits,
}

impl Opener {
    /// Connects to `to` (TLS with `server_name`, else its address, as SNI and certificate
    /// name), sends `data` and keeps the connection for reuse.
    async fn open_and_send(
        &self,
        to: SocketAddr,
        server_name: Option<&str>,
        data: Bytes,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), TransportError> {
        let tcp = TcpStream::connect(to)
            .await
            .map_err(|source| TransportError::Connect { addr: to, source })?;
        let _ = tcp.set_nodelay(true);
        let mut identity = None;
        let writer = match (&self.kind, &self.tls_client) {
            (Transport::Tls, Some(connector)) => {
                let name = server_name
                    .map(str::to_owned)
                    .unwrap_or_else(|| to.ip().to_string());
                let sni = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                    TransportError::Tls {
                        addr: to,
                        source: std::io::Error::other(format!("{name:?} is not a valid TLS name")),
                    }
                })?;
                let stream = connector
                    .connect(sni, tcp)
                    .await
                    .map_err(|source| TransportError::Tls { addr: to, source })?;
                identity = Some(PeerIdentity::Server(name));
                spawn_stream(stream, to, self.tx.clone(), tasks, self.limits, None)
            }
            _ => spawn_stream(tcp, to, self.tx.clone(), tasks, self.limits, None),
        };
        writer
            .send(data)
            .await
            .map_err(|_| TransportError::Connect {
                addr: to,
                source: std::io::Error::other("the connection closed"),
            })?;
        streams_set_with(&self.streams, to, Some((writer, identity)));
        Ok(())
    }
}

async fn udp_reader(s: Arc<UdpSocket>, tx: mpsc::Sender<Incoming>) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    loop {
        match s.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    continue;
                }
                let item = match Message::parse(&buf[..n]) {
                    Ok(m) => Incoming::Message(Box::new(m), from),
                    Err(e) => {
                        let reply = crate::message::error_response(&buf[..n], &e, from);
                        Incoming::Garbage(from, e.to_string(), reply)
                    }
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            // ICMP errors surface here on some systems; the transaction timers decide.
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}

async fn accept_loop(
    l: TcpListener,
    kind: Transport,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<Incoming>,
    streams: Streams,
    limits: StreamLimits,
    failures: Arc<std::sync::atomic::AtomicU64>,
) {
    let room = Arc::new(tokio::sync::Semaphore::new(limits.max_accepted));
    let mut pause = std::time::Duration::from_millis(50);
    let mut turned_away = 0u64;
    loop {
        let (tcp, from) = match l.accept().await {
            Ok(c) => {
                pause = std::time::Duration::from_millis(50);
                c
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or memory: the connection stays in
                // the backlog and accept fails again at once, so wait instead of spinning.
                let n = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(error = %e, failures = n + 1, "cannot accept SIP connections; pausing");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            turned_away += 1;
            if turned_away.is_power_of_two() {
                tracing::warn!(from = %from, limit = limits.max_accepted, turned_away, "too many SIP connections; closing new ones");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tx, streams, acceptor) = (tx.clone(), streams.clone(), acceptor.clone());
        // Handshakes run apart so a slow or hostile peer cannot stall the listener.
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut identity = None;
            let writer = match (kind, &acceptor) {
                (Transport::Tls, Some(a)) => {
                    let hs = tokio::time::timeout(limits.handshake, a.accept(tcp));
                    match hs.await {
                        Ok(Ok(s)) => {
                            identity = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| PeerIdentity::Client(c.clone().into_owned()));
                            spawn_stream(s, from, tx, &mut tasks, limits, Some(permit))
                        }
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, from = %from, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(from = %from, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                (Transport::Tls, None) => {
                    tracing::info!(from = %from, "TLS connection refused: no certificate configured to accept with");
                    return;
                }
                _ => spawn_stream(tcp, from, tx, &mut tasks, limits, Some(permit)),
            };
            streams_set_with(&streams, from, Some((writer, identity)));
        });
    }
}

/// Starts the reader and writer of one stream connection; returns the writer's queue.
/// `accepted` holds the place of an accepted connection (released when it closes); those are
/// closed when idle for `limits.idle`. Any connection is closed when a message takes longer
/// than `limits.message` from its first byte to its last.
fn spawn_stream<S>(
    stream: S,
    peer: SocketAddr,
    tx: mpsc::Sender<Incoming>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    limits: StreamLimits,
    accepted: Option<tokio::sync::OwnedSemaphorePermit>,
) -> mpsc::Sender<Bytes>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(256);
    let pong = wtx.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    }));
    tasks.push(tokio::spawn(async move {
        // Given back before the close is reported, so the owner may count on the place.
        let mut place = accepted;
        let idle_applies = place.is_some();
        let mut buf = BytesMut::with_capacity(8192);
        let mut framer = crate::message::Framer::default();
        let mut heard = tokio::time::Instant::now();
        let mut began: Option<tokio::time::Instant> = None;
        loop {
            // Frame every complete message in the buffer (§18.3).
            loop {
                // A keep-alive ping gets a pong (RFC 5626 §4.4.1).
                if buf.starts_with(b"\r\n\r\n") {
                    let _ = buf.split_to(4);
                    framer.consumed();
                    heard = tokio::time::Instant::now();
                    let _ = pong.try_send(Bytes::from_static(b"\r\n"));
                    continue;
                }
                match framer.next_len(&buf) {
                    Ok(Some(n)) => {
                        let frame = buf.split_to(n);
                        framer.consumed();
                        heard = tokio::time::Instant::now();
                        let item = match Message::parse(&frame) {
                            Ok(m) => Incoming::Message(Box::new(m), peer),
                            Err(e) => {
                                let reply = crate::message::error_response(&frame, &e, peer);
                                Incoming::Garbage(peer, e.to_string(), reply)
                            }
                        };
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // Unframeable: the stream cannot be resynchronised; close it.
                        let _ = tx.send(Incoming::Garbage(peer, e.to_string(), None)).await;
                        place.take();
                        let _ = tx.send(Incoming::Closed(peer)).await;
                        return;
                    }
                }
            }
            began = match (framer.in_message(), began) {
                (true, None) => Some(tokio::time::Instant::now()),
                (true, b) => b,
                (false, _) => None,
            };
            let deadline = match began {
                Some(b) => Some((b + limits.message, "a message did not arrive whole in time")),
                None if idle_applies => Some((heard + limits.idle, "the connection was idle")),
                None => None,
            };
            let read = rd.read_buf(&mut buf);
            let got = match deadline {
                Some((at, why)) => match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::info!(peer = %peer, "closing a SIP connection: {why}");
                        place.take();
                        let _ = tx.send(Incoming::Closed(peer)).await;
                        return;
                    }
                },
                None => read.await,
            };
            match got {
                Ok(0) | Err(_) => {
                    place.take();
                    let _ = tx.send(Incoming::Closed(peer)).await;
                    return;
                }
                Ok(_) => {}
            }
        }
    }));
    wtx
}

#[cfg(test)]
mod pem_tests {
    use super::*;

    /// The PEM files of `--tls-cert`/`--tls-key`/`--tls-ca`, read through rustls-pki-types
    /// (rustls-pemfile is unmaintained, RUSTSEC-2025-0134): a file without what it should
    /// hold is named with what is missing.
    #[test]
    fn pem_files_without_what_they_should_hold_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a PEM file\n").unwrap();
        let e = read_pem_certs(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        // A certificate where the key should be: no private key in it.
        let cert = dir.path().join("cert.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(read_pem_certs(&cert).unwrap().len(), 1);
        let settings = TlsSettings {
            ca_file: None,
            cert_file: Some(cert.clone()),
            key_file: Some(cert),
            mutual: false,
        };
        let e = server_config(&settings).err().unwrap().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
        let missing = TlsSettings {
            ca_file: Some(dir.path().join("nope.pem")),
            cert_file: None,
            key_file: None,
            mutual: false,
        };
        assert!(client_config(&missing).is_err());
    }
}
