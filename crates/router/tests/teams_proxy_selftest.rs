//! Tests of the simulated Teams Direct Routing proxy itself (tests/peers/teams/teams-proxy.cfg
//! run by Kamailio), with no Switchboard SIP code on either side: the SBC is `openssl s_client`
//! / `s_server` carrying SIP text these tests write, Teams users are baresip phones. Each test
//! shows one rule the router's Direct Routing tests rely on.

mod teams_proxy;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use switchboard_media::wav::read_mono;
use switchboard_media::{g711, tone};

use teams_proxy::{SbcCertificate, TeamsProxy, TeamsProxyOptions, TeamsUser, TlsPeer, PROXY_NAMES};

const TENANT_A: &str = "tenanta.sbc.example";
const TENANT_B: &str = "tenantb.sbc.example";
const WAIT: Duration = Duration::from_secs(10);
/// The tones a Teams user (baresip) and the SBC (these tests) play.
const PHONE_HZ: f64 = 1000.0;
const SBC_HZ: f64 = 440.0;

fn alice() -> TeamsUser {
    TeamsUser::new(
        "+14255550101",
        "aaaaaaaa-0000-4000-8000-00000000000a",
        TENANT_A,
    )
}

fn bella() -> TeamsUser {
    TeamsUser::new(
        "+14255550102",
        "aaaaaaaa-0000-4000-8000-00000000000a",
        TENANT_A,
    )
}

fn bruno() -> TeamsUser {
    TeamsUser::new(
        "+14255550201",
        "bbbbbbbb-0000-4000-8000-00000000000b",
        TENANT_B,
    )
}

fn proxy(fail_sip: bool) -> TeamsProxy {
    TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec![TENANT_A.into(), TENANT_B.into()],
        users: vec![alice(), bella(), bruno()],
        fail_sip,
        health_seconds: None,
        tenant_sim_url: None,
    })
}

/// Unique enough per message within a test.
fn tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// OPTIONS from an SBC whose Contact is `contact_host:contact_port`.
fn options(to: SocketAddr, contact_host: &str, contact_port: u16) -> String {
    let t = tag();
    format!(
        "OPTIONS sip:sip.pstnhub.microsoft.com:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS {contact_host}:{contact_port};branch=z9hG4bK{t};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{contact_host}>;tag={t}\r\n\
         To: <sip:sip.pstnhub.microsoft.com>\r\n\
         Call-ID: options-{t}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:{contact_host}:{contact_port};transport=tls>\r\n\
         X-MS-SBC: Test/openssl/1\r\n\
         Content-Length: 0\r\n\r\n",
        port = to.port()
    )
}

/// An SDP offer of PCMU at 127.0.0.1:`port` with `direction` (sendrecv, inactive...).
fn sdp(port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
}

/// An INVITE from SBC `fqdn` (Contact port `sbc_port`) to `ruri`, offering PCMU at `rtp`
/// (no body when `rtp` is None); `extra` are more header lines.
fn invite(
    ruri: &str,
    fqdn: &str,
    sbc_port: u16,
    rtp: Option<u16>,
    extra: &str,
    call_id: &str,
) -> String {
    let t = tag();
    let body = rtp.map_or(String::new(), |port| sdp(port, "sendrecv"));
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {fqdn}:{sbc_port};branch=z9hG4bK{t};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550001111@{fqdn};user=phone>;tag={t}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{fqdn}:{sbc_port};transport=tls>\r\n\
         Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The value of the first `name:` header line in the message that starts at `from`.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The text from the first line starting with `start_line` onwards.
fn from_line<'a>(text: &'a str, start_line: &str) -> &'a str {
    text.find(start_line).map_or("", |i| &text[i..])
}

/// The URI inside `<...>` of a header value.
fn uri_of(value: &str) -> &str {
    value
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map_or(value, |(u, _)| u)
}

/// A request within the dialog a 2xx `ok` (its head) to the SBC's INVITE set up: to the
/// Contact, through the reversed Record-Route set; CSeq `cseq` (the INVITE's for an ACK), an
/// SDP offer when `sdp` is given.
fn in_dialog(ok: &str, method: &str, cseq: u32, sbc: (&str, u16), sdp: Option<String>) -> String {
    let (fqdn, sbc_port) = sbc;
    let mut routes: Vec<&str> = ok
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    routes.reverse();
    let contact = uri_of(header(ok, "Contact").expect("Contact in 200"));
    let body = sdp.unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {contact} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {fqdn}:{sbc_port};branch=z9hG4bK{t};rport\r\n\
         Max-Forwards: 70\r\n\
         Route: {route}\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:{fqdn}:{sbc_port};transport=tls>\r\n\
         {content_type}Content-Length: {len}\r\n\r\n{body}",
        t = tag(),
        route = routes.join(", "),
        from = header(ok, "From").unwrap_or(""),
        to = header(ok, "To").unwrap_or(""),
        call_id = header(ok, "Call-ID").unwrap_or(""),
        len = body.len(),
    )
}

/// Waits for the response `code` (e.g. "200"; "" for any) to request `cseq` (e.g. "1 INVITE")
/// of call `call_id` among what `peer` received; returns it (head and body), or all the output
/// after WAIT.
fn response(peer: &TlsPeer, call_id: &str, cseq: &str, code: &str) -> Result<String, String> {
    let start = std::time::Instant::now();
    loop {
        let out = peer.output();
        let chunks: Vec<&str> = out.split("\r\n\r\n").collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let head = &chunk[chunk.find("SIP/2.0 ").unwrap_or(chunk.len())..];
            if head.starts_with(&format!("SIP/2.0 {code}"))
                && header(head, "Call-ID") == Some(call_id)
                && header(head, "CSeq") == Some(cseq)
            {
                let has_body = header(head, "Content-Length").is_some_and(|l| l != "0");
                let body = if has_body { chunks.get(i + 1) } else { None };
                return Ok(format!("{head}\r\n\r\n{}", body.unwrap_or(&"")));
            }
        }
        if start.elapsed() > WAIT {
            return Err(out);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connected(proxy: &TeamsProxy, to: SocketAddr, cert: &SbcCertificate) -> TlsPeer {
    TlsPeer::connect(to, cert, &proxy.ca_pem)
}

/// An SBC with a certificate from the test CA that sent OPTIONS gets its INVITE through to the
/// Teams user registered under the number; before its OPTIONS, the same INVITE gets 403. The
/// Teams user (baresip) answers, and each side hears the other's tone (the SBC's media is this
/// test writing and reading PCMU); hold as a=inactive goes through and is logged.
#[test]
fn sbc_that_sent_options_reaches_a_teams_user_and_media_flows() {
    let proxy = proxy(false);
    let phone = proxy.start_teams_user(&alice(), "auto", 1000);
    let cert = proxy.sbc_certificate(&[TENANT_A]);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let ruri = TeamsProxy::ruri(&alice().number, "sip.pstnhub.microsoft.com", proxy.sip);

    let mut sbc = connected(&proxy, proxy.sip, &cert);
    sbc.send(&invite(&ruri, TENANT_A, 25061, Some(rtp_port), "", "early"));
    let out = sbc
        .wait_for("SIP/2.0 403", WAIT)
        .unwrap_or_else(|o| panic!("an INVITE before any OPTIONS was not refused:\n{o}"));
    assert!(!out.contains("SIP/2.0 200"), "{out}");
    proxy.wait_for_log("refused 403 why=sbc-not-healthy", WAIT);

    sbc.send(&options(proxy.sip, TENANT_A, 25061));
    sbc.wait_for("SIP/2.0 200 OK", WAIT)
        .unwrap_or_else(|o| panic!("OPTIONS from a good SBC was not answered 200:\n{o}"));
    proxy.wait_for_log(
        &format!("options-ok sbc={TENANT_A} port=25061 proxy=sip.pstnhub.microsoft.com"),
        WAIT,
    );

    sbc.send(&invite(
        &ruri,
        TENANT_A,
        25061,
        Some(rtp_port),
        "",
        "call-1",
    ));
    let ok = response(&sbc, "call-1", "1 INVITE", "200")
        .unwrap_or_else(|o| panic!("the Teams user did not answer:\n{o}\n{}", phone.log()));
    let ok = ok.as_str();
    // Record-routed: the dialog goes through the proxy, whose name faces the SBC.
    assert!(
        ok.contains(&format!(
            "Record-Route: <sip:sip.pstnhub.microsoft.com:{};transport=tls;r2=on",
            proxy.sip.port()
        )),
        "{ok}"
    );
    sbc.send(&in_dialog(ok, "ACK", 1, (TENANT_A, 25061), None));
    phone.wait_for("Call established", WAIT);

    // Tones both ways between the SBC's address (this test, PCMU at 8 kHz) and the Teams user:
    // the phone plays 1 kHz, the SBC 440 Hz for 2 s to the port the phone's answer names.
    let phone_rtp: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in the phone's answer:\n{ok}"));
    let sender = rtp.try_clone().unwrap();
    let talk = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        for i in 0..100u16 {
            let pcm = tone::sine(SBC_HZ, 8000, 8000.0, u64::from(i) * 160, 160);
            let mut packet = vec![0x80, 0];
            packet.extend_from_slice(&i.to_be_bytes());
            packet.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
            packet.extend_from_slice(&0x5eed_u32.to_be_bytes());
            packet.extend(pcm.iter().map(|&x| g711::ulaw_encode(x)));
            let _ = sender.send_to(&packet, ("127.0.0.1", phone_rtp));
            let next = Duration::from_millis(20 * (u64::from(i) + 1));
            std::thread::sleep(next.saturating_sub(start.elapsed()));
        }
    });
    let mut heard = Vec::new();
    let mut buf = [0u8; 2048];
    let start = std::time::Instant::now();
    while heard.len() < 8000 * 2 && start.elapsed() < WAIT {
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                heard.extend(buf[12..n].iter().map(|&u| g711::ulaw_decode(u)));
            }
        }
    }
    talk.join().unwrap();
    let (wins, loud) = tone::detect(&heard, 8000, &[PHONE_HZ, SBC_HZ]);
    assert!(
        loud > 20 && wins[0] * 10 >= loud * 9,
        "the SBC heard the Teams user's {PHONE_HZ} Hz in {} of {loud} loud blocks\n{}",
        wins[0],
        phone.log()
    );

    // Hold the Teams way: a re-INVITE with a=inactive goes through, and the proxy says which
    // direction it carried (what the router's hold tests check).
    let hold = in_dialog(
        ok,
        "INVITE",
        2,
        (TENANT_A, 25061),
        Some(sdp(rtp_port, "inactive")),
    );
    sbc.send(&hold);
    response(&sbc, "call-1", "2 INVITE", "200")
        .unwrap_or_else(|o| panic!("the re-INVITE was not answered:\n{o}\n{}", phone.log()));
    proxy.wait_for_log(
        "sdp-direction inactive kind=reinvite call-id=call-1\n",
        WAIT,
    );
    // The re-INVITE's ACK (CSeq 2), then hang up; the phone's recording of the call closes.
    sbc.send(&in_dialog(ok, "ACK", 2, (TENANT_A, 25061), None));
    sbc.send(&in_dialog(ok, "BYE", 3, (TENANT_A, 25061), None));
    response(&sbc, "call-1", "3 BYE", "200").unwrap_or_else(|o| panic!("{o}"));
    let (samples, rate) = read_mono(&phone.heard_wav(WAIT)).unwrap();
    let (wins, loud) = tone::detect(&samples, rate, &[SBC_HZ, PHONE_HZ]);
    assert!(
        loud > 20 && wins[0] * 10 >= loud * 9,
        "the Teams user heard the SBC's {SBC_HZ} Hz in {} of {loud} loud blocks\n{}",
        wins[0],
        phone.log()
    );
}

/// An SBC is healthy for a while after its OPTIONS (180 s in Microsoft's proxy; 2 s here):
/// after that its INVITEs get 403 until it sends OPTIONS again.
#[test]
fn an_sbc_that_stops_sending_options_is_no_longer_healthy() {
    let proxy = TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec![TENANT_A.into()],
        users: vec![alice()],
        health_seconds: Some(2),
        ..Default::default()
    });
    let _phone = proxy.start_teams_user(&alice(), "auto", 1000);
    let cert = proxy.sbc_certificate(&[TENANT_A]);
    let mut sbc = connected(&proxy, proxy.sip, &cert);
    let ruri = TeamsProxy::ruri(&alice().number, PROXY_NAMES[0], proxy.sip);
    sbc.send(&options(proxy.sip, TENANT_A, 25061));
    sbc.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "fresh"));
    response(&sbc, "fresh", "1 INVITE", "200").unwrap_or_else(|o| panic!("{o}"));
    std::thread::sleep(Duration::from_secs(3));
    sbc.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "stale"));
    response(&sbc, "stale", "1 INVITE", "403").unwrap_or_else(|o| panic!("{o}"));
    sbc.send(&options(proxy.sip, TENANT_A, 25061));
    sbc.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "again"));
    response(&sbc, "again", "1 INVITE", "200").unwrap_or_else(|o| panic!("{o}"));
}

/// An IP address in the SBC's Contact gets 403, as Microsoft's proxy answers.
#[test]
fn ip_address_in_contact_gets_403() {
    let proxy = proxy(false);
    let cert = proxy.sbc_certificate(&[TENANT_A, "127.0.0.1"]);
    let mut sbc = connected(&proxy, proxy.sip2, &cert);
    sbc.send(&options(proxy.sip2, "127.0.0.1", 25061));
    let out = sbc
        .wait_for("SIP/2.0 ", WAIT)
        .unwrap_or_else(|o| panic!("no answer:\n{o}"));
    assert!(out.contains("SIP/2.0 403"), "{out}");
    proxy.wait_for_log("refused 403 why=ip-in-contact", WAIT);
}

/// The client certificate must name the Contact's FQDN (CN or any DNS SAN, with RFC 2818
/// wildcards); a certificate from another CA does not get past the handshake.
#[test]
fn certificate_must_name_the_contact_fqdn_and_come_from_the_trusted_ca() {
    let proxy = proxy(false);
    let ask = |cert: &SbcCertificate, fqdn: &str| {
        let mut sbc = connected(&proxy, proxy.sip, cert);
        sbc.send(&options(proxy.sip, fqdn, 25061));
        sbc.wait_for("SIP/2.0 ", WAIT)
            .unwrap_or_else(|o| panic!("no answer for {fqdn}:\n{o}"))
    };
    // Another tenant's certificate: 403.
    let other = proxy.sbc_certificate(&[TENANT_B]);
    let out = ask(&other, TENANT_A);
    assert!(out.contains("SIP/2.0 403"), "{out}");
    proxy.wait_for_log("refused 403 why=certificate-does-not-name-fqdn", WAIT);

    // A SAN list naming it second, a wildcard: 200.
    let sans = proxy.sbc_certificate(&["carrier.example", TENANT_B, TENANT_A]);
    let out = ask(&sans, TENANT_A);
    assert!(out.contains("SIP/2.0 200"), "{out}\n{}", proxy.log());
    let wildcard = proxy.sbc_certificate(&["*.sbc.example"]);
    let out = ask(&wildcard, TENANT_B);
    assert!(out.contains("SIP/2.0 200"), "{out}\n{}", proxy.log());
    // The wildcard covers one label only.
    let out = ask(&wildcard, "deep.tenantb.sbc.example");
    assert!(out.contains("SIP/2.0 403"), "{out}");

    // A certificate naming the FQDN from a CA the proxy does not trust: no TLS session.
    let foreign = proxy.foreign_certificate(&[TENANT_A]);
    let mut sbc = connected(&proxy, proxy.sip, &foreign);
    sbc.send(&options(proxy.sip, TENANT_A, 25061));
    let out = sbc
        .wait_for("alert", WAIT)
        .unwrap_or_else(|o| panic!("the handshake with a foreign certificate went through:\n{o}"));
    assert!(!out.contains("SIP/2.0"), "{out}");
}

/// INVITEs the proxy refuses from a healthy SBC: a number not in E.164, Replaces, no SDP
/// (delayed offer), an unknown MRI, another tenant's user, a number no Teams user has.
#[test]
fn invites_from_a_healthy_sbc_that_the_proxy_refuses() {
    let proxy = proxy(false);
    let _alice = proxy.start_teams_user(&alice(), "auto", 1000);
    let _bruno = proxy.start_teams_user(&bruno(), "auto", 1000);
    let cert = proxy.sbc_certificate(&[TENANT_A]);
    let mut sbc = connected(&proxy, proxy.sip, &cert);
    sbc.send(&options(proxy.sip, TENANT_A, 25061));
    sbc.wait_for("SIP/2.0 200", WAIT)
        .unwrap_or_else(|o| panic!("{o}"));
    let at = |user: &str| {
        format!(
            "sip:{user}@sip.pstnhub.microsoft.com:{};transport=tls",
            proxy.sip.port()
        )
    };
    let cases = [
        (
            "not-e164",
            at("14255550101"),
            Some(4000),
            "",
            "404",
            "not-e164",
        ),
        (
            "digits-only-plus",
            at("+1425555x101"),
            Some(4000),
            "",
            "404",
            "not-e164",
        ),
        (
            "replaces",
            at("+14255550101"),
            Some(4000),
            "Replaces: abc@host;to-tag=1;from-tag=2\r\n",
            "420",
            "replaces",
        ),
        (
            "delayed-offer",
            at("+14255550101"),
            None,
            "",
            "488",
            "no-sdp-delayed-offer",
        ),
        (
            "unknown-mri",
            format!(
                "sip:sip.pstnhub.microsoft.com:{};transport=tls;x-m=8:orgid:nobody;x-t=t",
                proxy.sip.port()
            ),
            Some(4000),
            "",
            "404",
            "unknown-mri",
        ),
        (
            "other-tenant",
            at(&bruno().number),
            Some(4000),
            "",
            "404",
            "other-tenant",
        ),
        (
            "nobody",
            at("+14255559999"),
            Some(4000),
            "",
            "404",
            "no-teams-user",
        ),
    ];
    for (call_id, ruri, rtp, extra, code, why) in cases {
        sbc.send(&invite(&ruri, TENANT_A, 25061, rtp, extra, call_id));
        // Any final answer, then its code.
        let answer = response(&sbc, call_id, "1 INVITE", "")
            .unwrap_or_else(|o| panic!("{call_id}: no answer\n{o}"));
        assert!(
            answer.starts_with(&format!("SIP/2.0 {code} ")),
            "{call_id}: wanted {code}, got:\n{answer}"
        );
        proxy.wait_for_log(&format!("refused {code} why={why} method=INVITE"), WAIT);
    }
}

/// With the fail switch, `sip` answers INVITEs 503 with Retry-After while `sip2` takes the
/// same call.
#[test]
fn fail_switch_gives_503_on_sip_while_sip2_takes_the_call() {
    let proxy = proxy(true);
    let phone = proxy.start_teams_user(&alice(), "auto", 1000);
    let cert = proxy.sbc_certificate(&["*.sbc.example"]);
    let mut first = connected(&proxy, proxy.sip, &cert);
    first.send(&options(proxy.sip, TENANT_A, 25061));
    first
        .wait_for("SIP/2.0 200", WAIT)
        .unwrap_or_else(|o| panic!("OPTIONS on sip: {o}"));
    let ruri = TeamsProxy::ruri(&alice().number, "sip.pstnhub.microsoft.com", proxy.sip);
    first.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "on-sip"));
    let out = first
        .wait_for("SIP/2.0 503", WAIT)
        .unwrap_or_else(|o| panic!("sip did not answer 503:\n{o}"));
    assert!(
        header(from_line(&out, "SIP/2.0 503"), "Retry-After").is_some(),
        "{out}"
    );

    let mut second = connected(&proxy, proxy.sip2, &cert);
    let ruri = TeamsProxy::ruri(&alice().number, "sip2.pstnhub.microsoft.com", proxy.sip2);
    second.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "on-sip2"));
    second
        .wait_for("SIP/2.0 200", WAIT)
        .unwrap_or_else(|o| panic!("sip2 did not take the call:\n{o}\n{}", phone.log()));
    proxy.wait_for_log("invite-to-teams sbc=tenanta.sbc.example user=+14255550101 proxy=sip2.pstnhub.microsoft.com", WAIT);
}

/// Voice routing: a Teams user's call to a number that is no Teams user goes over mutual TLS to
/// the port its SBC's OPTIONS named, with that SBC's FQDN in the Request-URI; two tenants' FQDNs
/// on one SBC port stay apart (each user's call names their own tenant's FQDN).
#[test]
fn teams_users_calls_to_numbers_reach_their_tenants_sbc_over_tls() {
    let proxy = proxy(false);
    let cert = proxy.sbc_certificate(&["*.sbc.example"]);
    for (user, fqdn) in [(alice(), TENANT_A), (bruno(), TENANT_B)] {
        // One SBC port for both tenants: a fresh s_server per call (it takes one connection).
        let mut server = TlsPeer::listen(&cert, &proxy.ca_pem);
        let mut sbc = connected(&proxy, proxy.sip3, &cert);
        sbc.send(&options(proxy.sip3, fqdn, server.port));
        assert_eq!(proxy.wait_for_options(fqdn, WAIT), server.port);
        let phone = proxy.start_teams_user(&user, "auto", 1000);
        phone.command("dial", &format!("sip:+15550001111@{}", proxy.users));
        let out = server
            .wait_for("\r\n\r\nv=0", WAIT)
            .unwrap_or_else(|o| panic!("no INVITE reached the SBC:\n{o}\n{}", proxy.log()));
        let got = from_line(&out, "INVITE ");
        let request_line = got.lines().next().unwrap_or("");
        assert_eq!(
            request_line,
            format!(
                "INVITE sip:+15550001111@{fqdn}:{};user=phone;transport=tls SIP/2.0",
                server.port
            ),
            "{got}"
        );
        let pai = header(got, "P-Asserted-Identity").unwrap_or("");
        assert!(
            pai.starts_with(&format!("<sip:{}@sip.pstnhub.microsoft.com:", user.number)),
            "{got}"
        );
        let from = header(got, "From").unwrap_or("");
        assert!(
            from.starts_with(&format!("<sip:{}@sip.pstnhub.microsoft.com:", user.number)),
            "{got}"
        );
        // Turn the call down so the phone is free.
        let reply = |code: &str| {
            let mut r = format!("SIP/2.0 {code}\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                for l in got.split("\r\n\r\n").next().unwrap_or("").lines() {
                    if l.split_once(':')
                        .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
                    {
                        r += l;
                        if name == "To" {
                            r += ";tag=sbc-busy";
                        }
                        r += "\r\n";
                    }
                }
            }
            r + "Content-Length: 0\r\n\r\n"
        };
        server.send(&reply("486 Busy Here"));
        phone.wait_for("486", WAIT);
    }
}

/// A Teams user's REFER reaches the SBC rewritten the Microsoft way: Refer-To names the target
/// Teams user by MRI and tenant (x-m, x-t), Referred-By the referrer; the SBC's INVITE with that
/// x-m reaches the target user, whose own REFER to a phone number names it in E.164.
#[test]
fn teams_users_refer_names_the_target_by_mri_and_an_x_m_invite_reaches_them() {
    let proxy = proxy(false);
    let alice_phone = proxy.start_teams_user(&alice(), "auto", 1000);
    let bella_phone = proxy.start_teams_user(&bella(), "auto", 1000);
    let cert = proxy.sbc_certificate(&["*.sbc.example"]);
    // The SBC's own port, where the proxy brings requests for it.
    let server = TlsPeer::listen(&cert, &proxy.ca_pem);
    let sbc_at = (TENANT_A, server.port);
    let mut sbc = connected(&proxy, proxy.sip, &cert);
    sbc.send(&options(proxy.sip, TENANT_A, server.port));
    sbc.wait_for("SIP/2.0 200", WAIT)
        .unwrap_or_else(|o| panic!("{o}"));

    let ruri = TeamsProxy::ruri(&alice().number, PROXY_NAMES[0], proxy.sip);
    sbc.send(&invite(
        &ruri,
        TENANT_A,
        server.port,
        Some(4000),
        "",
        "refer-1",
    ));
    let ok = response(&sbc, "refer-1", "1 INVITE", "200")
        .unwrap_or_else(|o| panic!("alice did not answer:\n{o}"));
    sbc.send(&in_dialog(&ok, "ACK", 1, sbc_at, None));
    alice_phone.wait_for("Call established", WAIT);

    alice_phone.command(
        "transfer",
        &format!("sip:{}@{}", bella().number, proxy.users),
    );
    let out = server
        .wait_for("REFER ", WAIT)
        .and_then(|_| server.wait_for("\r\n\r\n", WAIT))
        .unwrap_or_else(|o| panic!("no REFER reached the SBC:\n{o}\n{}", proxy.log()));
    let refer = from_line(&out, "REFER ");
    assert!(
        refer.starts_with(&format!("REFER sip:{TENANT_A}:{}", server.port)),
        "{refer}"
    );
    assert_eq!(
        header(refer, "Refer-To"),
        Some(
            format!(
                "<sip:sip.pstnhub.microsoft.com:{};transport=tls;x-m={};x-t={}>",
                proxy.sip.port(),
                bella().mri,
                bella().tenant_id
            )
            .as_str()
        ),
        "{refer}"
    );
    assert_eq!(
        header(refer, "Referred-By"),
        Some(
            format!(
                "<sip:{}@sip.pstnhub.microsoft.com;x-m={};x-t={}>",
                alice().number,
                alice().mri,
                alice().tenant_id
            )
            .as_str()
        ),
        "{refer}"
    );

    // The SBC carries the transfer out: a new INVITE to the MRI.
    let to_bella = format!(
        "sip:sip.pstnhub.microsoft.com:{};transport=tls;x-m={};x-t={}",
        proxy.sip.port(),
        bella().mri,
        bella().tenant_id
    );
    sbc.send(&invite(
        &to_bella,
        TENANT_A,
        server.port,
        Some(4002),
        "",
        "refer-2",
    ));
    let ok = response(&sbc, "refer-2", "1 INVITE", "200")
        .unwrap_or_else(|o| panic!("bella did not answer the x-m INVITE:\n{o}"));
    proxy.wait_for_log(
        &format!("invite-to-teams sbc={TENANT_A} user={}", bella().number),
        WAIT,
    );
    sbc.send(&in_dialog(&ok, "ACK", 1, sbc_at, None));
    bella_phone.wait_for("Call established", WAIT);

    // Bella transfers the caller to a phone number: Refer-To carries it in E.164 at the proxy.
    bella_phone.command("transfer", &format!("sip:+15550003333@{}", proxy.users));
    let out = server
        .wait_for("+15550003333@sip.pstnhub", WAIT)
        .and_then(|_| server.wait_for("Referred-By", WAIT))
        .unwrap_or_else(|o| panic!("no second REFER reached the SBC:\n{o}\n{}", proxy.log()));
    let refer = &out[out.rfind("REFER ").unwrap()..];
    assert_eq!(
        header(refer, "Refer-To"),
        Some(
            format!(
                "<sip:+15550003333@sip.pstnhub.microsoft.com:{};user=phone;transport=tls>",
                proxy.sip.port()
            )
            .as_str()
        ),
        "{refer}"
    );
    assert!(
        header(refer, "Referred-By").is_some_and(|v| v.starts_with(&format!(
            "<sip:{}@sip.pstnhub.microsoft.com;x-m={};",
            bella().number,
            bella().mri
        ))),
        "{refer}"
    );
}

/// With the simulated tenant configured, a Teams user's presence is Busy/InACall while a call
/// of theirs through the proxy is up, and Available again after it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_user_in_a_call_shows_busy_in_a_call_in_the_simulated_tenant() {
    let sim = switchboard_tenant_sim::TenantSim::start(switchboard_tenant_sim::Config::default())
        .await
        .unwrap();
    let upn = sim.users()[0].user_principal_name.clone();
    sim.set_teams_presence(&upn, Some(("Available", "Available")))
        .unwrap();
    let mut user = alice();
    user.presence_id = Some(upn.clone());
    let url = sim.base_url().to_owned();
    let wait_presence = |want: (&str, &str)| {
        let start = std::time::Instant::now();
        loop {
            let now = sim.presence(&upn).unwrap();
            if (now.0.as_str(), now.1.as_str()) == want {
                return;
            }
            assert!(start.elapsed() < WAIT, "presence {now:?}, not {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The SIP side is blocking (processes and pipes); the tenant runs on the other worker.
    let (proxy, phone, sbc, ok) = tokio::task::block_in_place(|| {
        let proxy = TeamsProxy::start(&TeamsProxyOptions {
            gateways: vec![TENANT_A.into()],
            users: vec![user.clone()],
            tenant_sim_url: Some(url),
            ..Default::default()
        });
        let phone = proxy.start_teams_user(&user, "auto", 1000);
        let cert = proxy.sbc_certificate(&[TENANT_A]);
        let mut sbc = connected(&proxy, proxy.sip, &cert);
        sbc.send(&options(proxy.sip, TENANT_A, 25061));
        let ruri = TeamsProxy::ruri(&user.number, PROXY_NAMES[0], proxy.sip);
        sbc.send(&invite(&ruri, TENANT_A, 25061, Some(4000), "", "busy-1"));
        let ok = response(&sbc, "busy-1", "1 INVITE", "200").unwrap_or_else(|o| panic!("{o}"));
        sbc.send(&in_dialog(&ok, "ACK", 1, (TENANT_A, 25061), None));
        (proxy, phone, sbc, ok)
    });
    tokio::task::block_in_place(|| wait_presence(("Busy", "InACall")));
    let mut sbc = sbc;
    tokio::task::block_in_place(|| {
        sbc.send(&in_dialog(&ok, "BYE", 2, (TENANT_A, 25061), None));
        response(&sbc, "busy-1", "2 BYE", "200").unwrap_or_else(|o| panic!("{o}"));
        proxy.wait_for_log(&format!("presence user={} ", user.number), WAIT);
        wait_presence(("Available", "Available"));
    });
    drop((proxy, phone));
    sim.shutdown().await;
}
