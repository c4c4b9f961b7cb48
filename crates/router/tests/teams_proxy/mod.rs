//! A simulated Microsoft Teams Direct Routing SIP proxy for the router's tests: Kamailio with
//! its TLS module running `tests/peers/teams/teams-proxy.cfg` (README.md beside it says what it
//! enforces), baresip phones as Teams users, and a test CA of its own. None of Switchboard's SIP
//! code runs in it, so a test of the router against it never has our code on both sides.
//!
//! ```ignore
//! mod teams_proxy;
//! use teams_proxy::{TeamsProxy, TeamsProxyOptions, TeamsUser};
//!
//! let alice = TeamsUser::new("+14255550101", "tenant-a-id", "tenanta.sbc.example");
//! let proxy = TeamsProxy::start(&TeamsProxyOptions {
//!     gateways: vec!["tenanta.sbc.example".into()],
//!     users: vec![alice.clone()],
//!     ..Default::default()
//! });
//! let cert = proxy.sbc_certificate(&["*.sbc.example"]); // the router's client/server certificate
//! let phone = proxy.start_teams_user(&alice, "auto", 1000); // registered, answers, plays 1 kHz
//! // The router: trust proxy.ca_pem, present cert, send OPTIONS to proxy.sip / sip2 / sip3 with
//! // Contact <sip:tenanta.sbc.example:ROUTER_TLS_PORT;transport=tls>, then INVITE
//! // sip:+14255550101@sip.pstnhub.microsoft.com:PORT;user=phone;transport=tls.
//! ```
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// baresip and free ports, shared with the agent's interop tests.
#[path = "../../../agent/tests/common/peers.rs"]
pub mod peers;

use peers::{free_tcp_port, free_udp_tcp_port, Baresip};

/// The proxies' names, in failover order; `TeamsProxy::proxies` pairs them with their ports.
pub const PROXY_NAMES: [&str; 3] = [
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
];

/// A Teams user: a phone number (E.164 with `+`), the user's MRI (what Microsoft puts in
/// `x-m`), their tenant's id (`x-t`), and the FQDN of the SBC their calls to phone numbers go to
/// (their voice route; also the only SBC whose INVITEs may reach them).
#[derive(Clone, Debug)]
pub struct TeamsUser {
    pub number: String,
    pub mri: String,
    pub tenant_id: String,
    pub sbc_fqdn: String,
    /// The user's id or UPN in the simulated tenant (crates/tenant-sim): with
    /// `TeamsProxyOptions::tenant_sim_url`, their presence is Busy/InACall while in a call.
    pub presence_id: Option<String>,
}

impl TeamsUser {
    /// A user whose MRI is `8:orgid:` and a UUID-shaped id made from the number's digits.
    pub fn new(number: &str, tenant_id: &str, sbc_fqdn: &str) -> Self {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let tail = format!("{digits:0>12}");
        let tail = &tail[tail.len() - 12..];
        Self {
            number: number.to_owned(),
            mri: format!("8:orgid:00000000-0000-4000-8000-{tail}"),
            tenant_id: tenant_id.to_owned(),
            sbc_fqdn: sbc_fqdn.to_owned(),
            presence_id: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TeamsProxyOptions {
    /// FQDNs of the SBCs the tenants declared (`New-CsOnlinePSTNGateway`): requests from any
    /// other FQDN get 403.
    pub gateways: Vec<String>,
    pub users: Vec<TeamsUser>,
    /// The `sip.` port answers every INVITE `503 Service Unavailable` with `Retry-After: 60`
    /// (OPTIONS still 200), so a caller fails over to `sip2.`.
    pub fail_sip: bool,
    /// How long an SBC counts as healthy after its last OPTIONS; None: 180 s, as Microsoft.
    pub health_seconds: Option<u32>,
    /// The simulated tenant's base URL (`TenantSim::base_url`): the proxy sets a Teams user's
    /// presence (those with a `presence_id`) Busy/InACall when a call of theirs is answered,
    /// Available/Available when it ends, through `POST /_sim/users/{id}/presence`.
    pub tenant_sim_url: Option<String>,
}

/// A certificate and key (PEM files) for an SBC.
#[derive(Clone, Debug)]
pub struct SbcCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The running proxy: Kamailio on 127.0.0.1 (three TLS ports, one UDP port), stopped when
/// dropped.
pub struct TeamsProxy {
    child: Child,
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// TLS, standing for `sip.pstnhub.microsoft.com:5061`.
    pub sip: SocketAddr,
    /// TLS, standing for `sip2.pstnhub.microsoft.com:5061`.
    pub sip2: SocketAddr,
    /// TLS, standing for `sip3.pstnhub.microsoft.com:5061`.
    pub sip3: SocketAddr,
    /// UDP, where Teams users (baresip) register.
    pub users: SocketAddr,
    /// The test CA (PEM): it signed the proxy's certificate and the SBC certificates; an SBC
    /// trusts it to verify the proxy.
    pub ca_pem: PathBuf,
    /// The users it was started with.
    pub teams_users: Vec<TeamsUser>,
}

impl Drop for TeamsProxy {
    fn drop(&mut self) {
        // SIGTERM: Kamailio's main process then stops its workers (ser_kill_timeout=3 bounds
        // the wait); then whatever is left of its own process group is killed.
        let pid = self.child.id().to_string();
        let stopped = Command::new("kill").args(["-TERM", &pid]).status();
        if !stopped.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/teams")
}

fn kamailio_binary() -> PathBuf {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("kamailio is not installed — run tests/peers/install.sh")
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn test_ca(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

/// A leaf certificate for `names` (DNS SANs; the first is also the CN) signed by `ca`.
fn leaf(
    names: &[&str],
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert, key)
}

/// `route[TEAMS_DATA]` for teams-proxy.cfg: the gateways and users as htable entries.
fn teams_data(options: &TeamsProxyOptions) -> String {
    let quoted = |s: &str| {
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:_*@".contains(c)),
            "{s:?}: only letters, digits and + - . : _ * @ in the proxy's data"
        );
        s.to_owned()
    };
    let mut out = String::from("route[TEAMS_DATA] {\n");
    for g in &options.gateways {
        out += &format!("    $sht(gateway=>{}) = 1;\n", quoted(&g.to_lowercase()));
    }
    for u in &options.users {
        let (n, m) = (quoted(&u.number), quoted(&u.mri));
        out += &format!("    $sht(mri=>{n}) = \"{m}\";\n");
        out += &format!("    $sht(mri_user=>{m}) = \"{n}\";\n");
        out += &format!("    $sht(tenant=>{n}) = \"{}\";\n", quoted(&u.tenant_id));
        out += &format!(
            "    $sht(route=>{n}) = \"{}\";\n",
            quoted(&u.sbc_fqdn.to_lowercase())
        );
        if let Some(id) = &u.presence_id {
            out += &format!("    $sht(presence=>{n}) = \"{}\";\n", quoted(id));
        }
    }
    out + "}\n"
}

impl TeamsProxy {
    /// Generates the test CA and the proxy's certificate (SANs sip/sip2/sip3.pstnhub.microsoft.com),
    /// starts Kamailio on free ports and returns once it answers OPTIONS on the users' port.
    pub fn start(options: &TeamsProxyOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = test_ca("Switchboard Teams proxy test CA");
        let ca_pem = write_pem(dir.path(), "ca.pem", &ca.pem());
        let (proxy_cert, proxy_key) = leaf(&PROXY_NAMES, &ca, &ca_key);
        let cert = write_pem(dir.path(), "proxy.pem", &proxy_cert.pem());
        let key = write_pem(dir.path(), "proxy.key", &proxy_key.serialize_pem());
        // The configuration includes teams-data.cfg from its own directory: both go into ours.
        std::fs::copy(
            config_dir().join("teams-proxy.cfg"),
            dir.path().join("teams-proxy.cfg"),
        )
        .expect("tests/peers/teams/teams-proxy.cfg");
        std::fs::write(dir.path().join("teams-data.cfg"), teams_data(options)).unwrap();

        for attempt in 1..=5 {
            let users_port = free_udp_tcp_port();
            let tls: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
            if tls.contains(&users_port) || tls[0] == tls[1] || tls[1] == tls[2] || tls[0] == tls[2]
            {
                continue;
            }
            let mut defines = vec![
                format!("SIP_PORT={}", tls[0]),
                format!("SIP2_PORT={}", tls[1]),
                format!("SIP3_PORT={}", tls[2]),
                format!("USERS_PORT={users_port}"),
                format!("TLS_CERT=\"{}\"", cert.display()),
                format!("TLS_KEY=\"{}\"", key.display()),
                format!("TLS_CA=\"{}\"", ca_pem.display()),
            ];
            if options.fail_sip {
                defines.push("FAIL_SIP".into());
            }
            if let Some(seconds) = options.health_seconds {
                defines.push(format!("HEALTH_SECONDS={seconds}"));
            }
            if let Some(url) = &options.tenant_sim_url {
                assert!(
                    url.starts_with("http://")
                        && url
                            .chars()
                            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\''),
                    "{url:?}: an http:// URL without quotes"
                );
                defines.push(format!("TENANT_SIM_URL=\"{}\"", url.trim_end_matches('/')));
            }
            let mut cmd = Command::new(kamailio_binary());
            // A process group of its own: Kamailio signals its whole group when it stops.
            cmd.process_group(0);
            cmd.args(["-DD", "-E", "-f"])
                .arg(dir.path().join("teams-proxy.cfg"));
            for d in &defines {
                cmd.args(["-A", d]);
            }
            // Its pid file and runtime directory in ours; its log (stderr) to kamailio.log.
            let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
            let pid_file = dir.path().join("kamailio.pid");
            cmd.args([
                "-P".as_ref(),
                pid_file.as_os_str(),
                "-Y".as_ref(),
                dir.path().as_os_str(),
            ]);
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start kamailio");
            let log_path = dir.path().join("kamailio.log");
            let users = SocketAddr::from(([127, 0, 0, 1], users_port));
            if wait_ready(&mut child, users, &log_path) {
                let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
                return Self {
                    child,
                    dir,
                    ca,
                    ca_key,
                    sip: addr(tls[0]),
                    sip2: addr(tls[1]),
                    sip3: addr(tls[2]),
                    users,
                    ca_pem,
                    teams_users: options.users.clone(),
                };
            }
            let log = read_lossy(&log_path);
            assert!(
                attempt < 5 && log.contains("Address already in use"),
                "kamailio (teams-proxy.cfg) did not start:\n{log}"
            );
            // A port was taken in between: try other ports.
            let _ = child.wait();
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The three proxies, in failover order: (name, address).
    pub fn proxies(&self) -> [(&'static str, SocketAddr); 3] {
        [
            (PROXY_NAMES[0], self.sip),
            (PROXY_NAMES[1], self.sip2),
            (PROXY_NAMES[2], self.sip3),
        ]
    }

    /// A certificate for an SBC from the test CA, naming `names` (DNS SANs, the first also the
    /// CN; `*.sbc.example` is a wildcard). Usable as client and server certificate.
    pub fn sbc_certificate(&self, names: &[&str]) -> SbcCertificate {
        let (cert, key) = leaf(names, &self.ca, &self.ca_key);
        self.write_certificate(names[0], &cert, &key)
    }

    /// A certificate naming `names` signed by another CA: the proxy refuses the handshake.
    pub fn foreign_certificate(&self, names: &[&str]) -> SbcCertificate {
        let (ca, ca_key) = test_ca("Some other CA");
        let (cert, key) = leaf(names, &ca, &ca_key);
        self.write_certificate(&format!("foreign-{}", names[0]), &cert, &key)
    }

    fn write_certificate(
        &self,
        stem: &str,
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> SbcCertificate {
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let n = std::fs::read_dir(self.dir.path()).map_or(0, |d| d.count());
        SbcCertificate {
            cert: write_pem(self.dir.path(), &format!("{stem}-{n}.pem"), &cert.pem()),
            key: write_pem(
                self.dir.path(),
                &format!("{stem}-{n}.key"),
                &key.serialize_pem(),
            ),
        }
    }

    /// Kamailio's log so far. Lines the configuration writes for tests start with
    /// `teams-proxy: ` (`options-ok`, `refused <code> why=<reason>`, `invite-to-teams`,
    /// `invite-to-sbc`, `sdp-direction <dir>`, `refer-to-sbc`, `registered`).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("kamailio.log"))
    }

    /// Waits until the log holds `needle`; returns the log. Panics with the log after `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < within,
                "the Teams proxy did not log {needle:?} within {within:?}; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until SBC `fqdn` has had an OPTIONS accepted (it is then healthy); returns the port
    /// its Contact named, where the proxy sends it calls. Panics with the log after `within`.
    pub fn wait_for_options(&self, fqdn: &str, within: Duration) -> u16 {
        let needle = format!("teams-proxy: options-ok sbc={} port=", fqdn.to_lowercase());
        let log = self.wait_for_log(&needle, within);
        let at = log.rfind(&needle).unwrap() + needle.len();
        log[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port after port=")
    }

    /// A baresip phone registered with the proxy as `user` (plain RTP, a `tone_hz` sine as its
    /// microphone, what it hears recorded; `answermode` "auto" or "manual"); returns once the
    /// proxy has its registration. Dial with `phone.command("dial", "sip:+1555...@<users>")`,
    /// transfer with `phone.command("transfer", "sip:+1425...@<users>")`.
    pub fn start_teams_user(&self, user: &TeamsUser, answermode: &str, tone_hz: u32) -> Baresip {
        self.start_teams_user_with(user, answermode, tone_hz, "")
    }

    /// Like `start_teams_user`, with account parameters appended (e.g. `;mediaenc=srtp-mand`
    /// to offer and require SRTP with SDES, as Teams does).
    pub fn start_teams_user_with(
        &self,
        user: &TeamsUser,
        answermode: &str,
        tone_hz: u32,
        account_params: &str,
    ) -> Baresip {
        let account = format!(
            "<sip:{}@{}>;regint=600;answermode={answermode}{account_params}",
            user.number, self.users
        );
        let phone = Baresip::start_with_account(&user.number, &account, tone_hz);
        self.wait_for_log(
            &format!("teams-proxy: registered user={}\n", user.number),
            Duration::from_secs(10),
        );
        phone
    }

    /// Registers `contact` (a SIP URI on 127.0.0.1) with the proxy as one more device of
    /// Teams user `user`, for an endpoint that does not register itself (a SIPp device): the
    /// proxy then forks a call to `user` to it as well, as Microsoft's forks a call to each of a
    /// Teams user's endpoints. Returns once the proxy has it.
    pub fn register_device(&self, user: &TeamsUser, contact: &str) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let local = socket.local_addr().expect("its address");
        let id: u64 = rand::random();
        let register = format!(
            "REGISTER sip:{users} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{id:x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{n}@127.0.0.1>;tag={id:x}\r\n\
             To: <sip:{n}@127.0.0.1>\r\n\
             Call-ID: {id:x}@127.0.0.1\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <{contact}>\r\n\
             Expires: 600\r\n\
             Content-Length: 0\r\n\r\n",
            users = self.users,
            n = user.number,
        );
        socket
            .send_to(register.as_bytes(), self.users)
            .expect("REGISTER sent");
        let mut buf = [0u8; 4096];
        let (n, _) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer to the device's REGISTER: {e}\n{}", self.log()));
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.starts_with("SIP/2.0 200"),
            "the proxy refused the device {contact}: {answer}"
        );
    }

    /// The Request-URI an SBC uses to call `number` through proxy `addr`.
    pub fn ruri(number: &str, name: &str, addr: SocketAddr) -> String {
        format!(
            "sip:{number}@{name}:{};user=phone;transport=tls",
            addr.port()
        )
    }
}

/// Ready when the users' UDP port answers OPTIONS 200 (the TLS ports are bound before the
/// workers start); false when Kamailio exited.
fn wait_ready(child: &mut Child, users: SocketAddr, log: &Path) -> bool {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let start = Instant::now();
    let mut n = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        n += 1;
        let ping = format!(
            "OPTIONS sip:{users} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{users}>\r\nCall-ID: ready-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(ping.as_bytes(), users).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return true;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the Teams proxy did not answer OPTIONS on {users}:\n{}",
            read_lossy(log)
        );
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Reads a child's output into a shared buffer on a thread of its own.
fn collect(from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    collect_into(from, out.clone());
    out
}

fn collect_into(mut from: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

fn wait_in(out: &Arc<Mutex<Vec<u8>>>, needle: &str, within: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        if text.contains(needle) {
            return Ok(text);
        }
        if start.elapsed() > within {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One side of an SBC made of openssl: `connect` (`s_client`, a TLS connection to a proxy) or
/// `listen` (`s_server`, the SBC's TLS port the proxy connects to). Mutual TLS both ways; the
/// test writes SIP text and reads what arrives, so nothing of Switchboard's SIP code is involved.
pub struct TlsPeer {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    /// The port `listen` took (0 for `connect`).
    pub port: u16,
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(mode: &str, cert: &SbcCertificate, ca: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args([mode, "-quiet", "-verify_return_error"])
        .args(args)
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl TlsPeer {
    fn spawn(mut cmd: Command, port: u16) -> Self {
        let mut child = cmd.spawn().expect("openssl is not installed");
        let stdin = child.stdin.take().unwrap();
        let out = collect(child.stdout.take().unwrap());
        // stderr (handshake errors, alerts) goes into the same buffer.
        collect_into(child.stderr.take().unwrap(), out.clone());
        Self {
            child,
            stdin,
            out,
            port,
        }
    }

    /// A TLS connection to `to` presenting `cert`, verifying the proxy with `ca`.
    pub fn connect(to: SocketAddr, cert: &SbcCertificate, ca: &Path) -> Self {
        let to = to.to_string();
        Self::spawn(openssl("s_client", cert, ca, &["-connect", &to]), 0)
    }

    /// A TLS port on 127.0.0.1 presenting `cert` and requiring a client certificate from `ca`;
    /// it serves one connection at a time.
    pub fn listen(cert: &SbcCertificate, ca: &Path) -> Self {
        for _ in 0..5 {
            let port = free_tcp_port();
            let accept = format!("127.0.0.1:{port}");
            let mut peer = Self::spawn(
                openssl("s_server", cert, ca, &["-Verify", "2", "-accept", &accept]),
                port,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) && !peer.exited() {
                // Bound (by it: a port taken by another process makes it exit).
                if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                    if !peer.exited() {
                        return peer;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("openssl s_server could not listen on five ports in a row");
    }

    pub fn send(&mut self, message: &str) {
        self.stdin.write_all(message.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Everything received (and openssl's messages) so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the output holds `needle`: Ok(output), or Err(output) after `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> Result<String, String> {
        wait_in(&self.out, needle, within)
    }

    /// Whether openssl has exited (a refused handshake ends `s_client`).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }
}
