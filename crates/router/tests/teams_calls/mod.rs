//! Calls with Teams users over Direct Routing, end to end: the router is the SBC of a
//! simulated Microsoft SIP proxy (`teams_proxy`: Kamailio with its TLS module, baresip Teams
//! users, a test CA), its agents are headless `switchboard-agent`s. Our SIP code is on one
//! side only.

use super::*;
use crate::ice_agent::Agent;
use crate::teams_proxy::{SbcCertificate, TeamsProxy, TeamsProxyOptions, TeamsUser};

const TEAMS_HZ: f64 = 700.0;
const EXPERT_HZ: f64 = 1600.0;
/// Dave's, a Teams user an expert transfers to.
const DAVE_HZ: f64 = 1250.0;
/// Erin's, a Teams user Dave passes the caller on to.
const ERIN_HZ: f64 = 2400.0;
/// An outside number's, behind a carrier trunk.
const FAR_HZ: f64 = 2800.0;

/// The router's configuration for tenants behind `proxy`: TLS with `cert` (mutual), the
/// proxies' names resolved to the simulator, then `tenants`.
fn sbc_config(proxy: &TeamsProxy, cert: &SbcCertificate, tenants: &str) -> String {
    let resolve: String = proxy
        .proxies()
        .iter()
        .map(|(name, addr)| format!("\"{name}\" = \"{addr}\"\n"))
        .collect();
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n\n[sip.tls]\nlisten = \"127.0.0.1:0\"\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n[sip.resolve]\n{resolve}\n{tenants}",
        cert.cert.display(),
        cert.key.display(),
        proxy.ca_pem.display(),
    )
}

/// A tenant whose Direct Routing trunk is SBC `fqdn`, with number `number` to queue
/// `general`, agent `adele@<domain>` and expert `bob@<domain>` (in Teams at `+14255550102`).
fn dr_tenant(id: &str, fqdn: &str, number: &str) -> String {
    format!(
        r#"
[[tenants]]
id = "{id}"
domain = "{id}.example"

[[tenants.trunks]]
name = "teams"
probe_seconds = 2
[tenants.trunks.direct_routing]
fqdn = "{fqdn}"

[[tenants.numbers]]
number = "{number}"
queue = "general"

[[tenants.queues]]
name = "general"
strategy = "linear"
alert_seconds = 10
wrap_up_seconds = 1

[[tenants.experts]]
name = "escalations"
skill = "escalations"

[[tenants.agents]]
upn = "adele@{id}.example"
name = "Adele Vance"

[[tenants.agents]]
upn = "bob@{id}.example"
name = "Bob Expert"
skills = {{ escalations = 4 }}
teams_number = "+14255550102"
"#
    )
}

/// The tenant's Direct Routing trunk with media bypass on (`media_bypass = true`).
fn with_bypass(tenant: String) -> String {
    let fqdn = tenant
        .lines()
        .find(|l| l.starts_with("fqdn = "))
        .map(str::to_owned)
        .expect("a Direct Routing trunk");
    tenant.replacen(&fqdn, &format!("{fqdn}\nmedia_bypass = true"), 1)
}

/// Teams user `number` of tenant-a, whose SBC is `tenanta.sbc.example`.
fn at_tenant_a(number: &str) -> TeamsUser {
    TeamsUser::new(number, "tenant-a", "tenanta.sbc.example")
}

/// The proxy with tenant-a's SBC as its gateway and `users`; with `fail_sip`, `sip` answers
/// every INVITE 503.
fn tenant_a_proxy(users: &[&TeamsUser], fail_sip: bool) -> TeamsProxy {
    TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec!["tenanta.sbc.example".into()],
        users: users.iter().map(|u| (*u).clone()).collect(),
        fail_sip,
        ..Default::default()
    })
}

/// Teams user Alice (+14255550101) of tenant-a, whose SBC is `tenanta.sbc.example`; the proxy
/// with her; the SBC's certificate.
fn alice_at_tenant_a() -> (TeamsUser, TeamsProxy, SbcCertificate) {
    let alice = at_tenant_a("+14255550101");
    let proxy = tenant_a_proxy(&[&alice], false);
    let cert = proxy.sbc_certificate(&["tenanta.sbc.example"]);
    (alice, proxy, cert)
}

impl Center {
    /// Waits (up to 20 s) until trunk `name` of `tenant` is up with every proxy up; returns
    /// its status. Panics with the trunk's status and the end of `proxy`'s log (where a
    /// Kamailio that crashed says so: see `tcp_children` in teams-proxy.cfg).
    async fn proxies_up(&self, proxy: &TeamsProxy, tenant: &str, name: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let all: Value = get_json(&self.http, &format!("{}/v1/trunks", self.base)).await;
            if let Some(t) = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["tenant"] == tenant && t["name"] == name)
            {
                let proxies = t["proxies"].as_array().cloned().unwrap_or_default();
                if t["health"] == "up"
                    && proxies.len() == 3
                    && proxies.iter().all(|p| p["health"] == "up")
                {
                    return t.clone();
                }
                last = t.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = proxy.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "the Direct Routing proxies did not all come up: {last}\nthe proxy's log ends:\n{}",
            tail.join("\n")
        );
    }

    /// Waits (up to 10 s) until trunk `name` of `tenant` counts `calls` calls; panics with
    /// what it counts otherwise.
    async fn trunk_counts(&self, tenant: &str, name: &str, calls: u64) {
        let mut last = Value::Null;
        for _ in 0..100 {
            let all: Value = get_json(&self.http, &format!("{}/v1/trunks", self.base)).await;
            last = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["tenant"] == tenant && t["name"] == name)
                .map(|t| t["calls"].clone())
                .unwrap_or_default();
            if last == calls {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("trunk {name} of {tenant} counts {last} calls, not {calls}");
    }

    /// The call record whose caller is `caller` (panics, listing the records, when none is).
    /// The record of `caller`'s call, once it has ended (the router writes records in the
    /// background: 5 s at most, then as it is).
    async fn record_of(&self, caller: &str) -> Value {
        let start = Instant::now();
        loop {
            let records = self.calls().await;
            let rec = records
                .iter()
                .find(|r| r["caller"] == caller)
                .cloned()
                .unwrap_or_else(|| panic!("no call from {caller}: {records:#?}"));
            if !rec["ended_at"].is_null() || start.elapsed() > Duration::from_secs(5) {
                return rec;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until agent `upn` is on a call, then `seconds` of talk.
    async fn talks(&self, upn: &str, seconds: u64) {
        assert!(
            self.becomes(upn, "on_call").await,
            "{upn} is not on a call: {}",
            self.status(upn).await
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

/// The share of `hz` over `other` in what baresip heard, once its recording is closed.
fn teams_heard(phone: &crate::teams_proxy::peers::Baresip, hz: f64, other: f64) -> (f64, usize) {
    share_of(&phone.heard_wav(Duration::from_secs(20)), hz, other)
}

/// The router probes sip, sip2 and sip3 from the tenant's FQDN over mutual TLS (the proxy
/// counts it healthy); a Teams user calls the tenant's number offering SRTP only (SDES, as
/// Teams does), reaches the queue's agent, and they hear each other; the agent's phone puts the call on hold and resumes it, and the
/// router tells Teams with `a=inactive` (the only hold Teams understands, never the phone's
/// `sendonly`) and then `sendrecv`; the record names the trunk, the Teams user's number and
/// the time on hold.
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_user_calls_a_queue_through_the_direct_routing_trunk() {
    let _turn = CALLS.alone().await;
    let (alice, proxy, cert) = alice_at_tenant_a();
    let c = start(&sbc_config(
        &proxy,
        &cert,
        &dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"),
    ))
    .await;
    let trunk = c.proxies_up(&proxy, "contoso", "teams").await;
    assert_eq!(trunk["direct_routing"], "tenanta.sbc.example", "{trunk}");
    proxy.wait_for_log("teams-proxy: options-ok", Duration::from_secs(5));
    c.tones(12);
    // Adele's phone holds the call 2 s after answering it, and resumes 2 s later.
    let adele = c
        .agent_with(
            "adele@contoso.example",
            0.0,
            &["--hold-after", "2"],
            "agent.wav",
            "adele-heard.wav",
        )
        .await;
    // SRTP with SDES offered and required, as Teams' media does.
    let phone = proxy.start_teams_user_with(&alice, "auto", TEAMS_HZ as u32, ";mediaenc=srtp-mand");
    phone.command("dial", &format!("sip:+18005550100@{}", proxy.users));
    c.talks("adele@contoso.example", 7).await;
    phone.command("hangup", "");
    took_the_call(adele, "Adele took the Teams user's call").await;
    c.heard(
        "adele-heard.wav",
        TEAMS_HZ,
        AGENT_HZ,
        (20, 0.8),
        "Adele heard the Teams user",
    );
    let (share, loud) = teams_heard(&phone, AGENT_HZ, TEAMS_HZ);
    assert!(
        loud >= 20 && share >= 0.7,
        "the Teams user heard Adele: {share:.2} of {loud} blocks"
    );
    let rec = c.record_of("+14255550101").await;
    assert_eq!(rec["trunk"], "teams", "{rec}");
    assert_eq!(rec["agent"], "adele@contoso.example", "{rec}");
    assert!(
        rec["hold_seconds"].as_u64().is_some_and(|s| s >= 1),
        "{rec}"
    );
    let log = proxy.log();
    assert!(log.contains("teams-proxy: invite-to-sbc"), "{log}");
    // The router names itself to Microsoft on what it sends.
    let x_ms_sbc = format!("x-ms-sbc=Switchboard/Router/{}", env!("CARGO_PKG_VERSION"));
    assert!(
        log.lines()
            .any(|l| l.contains("sbc-headers method=OPTIONS") && l.contains(&x_ms_sbc)),
        "{log}"
    );
    // Each proxy's health is a metric too.
    let metrics = c.get("/metrics").await.text().await.unwrap();
    for proxy in crate::teams_proxy::PROXY_NAMES {
        assert!(
            metrics.lines().any(|l| l.starts_with("sip_trunk_proxy_up{")
                && l.contains(&format!("proxy=\"{proxy}\""))
                && l.contains("trunk=\"teams\"")
                && l.ends_with(" 1")),
            "{proxy} up in the metrics: {metrics}"
        );
    }
    // What the router sent Teams in the call: hold as `inactive`, then the resume.
    let sent: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("teams-proxy: sdp-direction ").nth(1))
        .filter(|l| l.contains("kind=reinvite"))
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(sent, ["inactive", "sendrecv"], "{log}");
}

/// A SIPp scenario for a Teams client with media bypass calling `dialled` as `number` through
/// the proxy at `proxy`: its offer carries the client's ICE credentials and one candidate at
/// `port` (the default address); the call lasts `ms` after the ACK, then BYE.
fn ice_caller_scenario(
    number: &str,
    dialled: &str,
    ufrag: &str,
    pwd: &str,
    port: u16,
    ms: u64,
) -> String {
    // ACK and BYE: in the dialog, along the route set of the 200.
    let in_dialog = |method: &str, cseq: u32, retrans: &str| {
        format!(
            r#"  <send{retrans}>
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:{number}@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:{number}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#
        )
    };
    let (ack, bye) = (
        in_dialog("ACK", 1, ""),
        in_dialog("BYE", 2, " retrans=\"500\""),
    );
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Teams client with media bypass">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{number}@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{number}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=teams 1 1 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio {port} RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ice-ufrag:{ufrag}
      a=ice-pwd:{pwd}
      a=candidate:1 1 UDP 2130706431 127.0.0.1 {port} typ host
      a=rtcp-mux
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
{ack}  <pause milliseconds="{ms}"/>
{bye}  <recv response="200" crlf="true"/>
</scenario>
"#
    )
}

/// The body of the first 200 OK that SIPp's message trace (`-trace_msg`) shows received.
fn answer_in_trace(trace: &str) -> Option<String> {
    trace
        .split("----------------------------------------------- ")
        .filter(|m| m.contains("message received") && m.contains("SIP/2.0 200 OK"))
        .find_map(|m| m.find("v=0").map(|i| m[i..].trim_end().to_owned()))
}

/// Media bypass end to end: a Teams client whose media goes straight to the router. Its
/// signalling is SIPp's INVITE through the simulated Microsoft proxy (the offer with the
/// client's ICE credentials, as Teams sends with bypass), its media a real full ICE agent
/// (aioice, `tests/peers/ice`) that reads the router's answer from SIPp's trace, checks the
/// router's one candidate, nominates it and talks (a tone) while counting what it hears of the
/// agent. The router answers with ICE-lite; the agent Adele takes the call from the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_client_with_media_bypass_talks_to_an_agent_over_the_pair_it_nominates() {
    let _turn = CALLS.alone().await;
    let (alice, proxy, cert) = alice_at_tenant_a();
    let tenant = with_bypass(dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"));
    let c = start(&sbc_config(&proxy, &cert, &tenant)).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    c.tones(30);
    let adele = c
        .agent("adele@contoso.example", 0.0, "agent.wav", "adele-heard.wav")
        .await;
    c.set_state("adele@contoso.example", "ready").await;

    // The offer's default address: media goes there only until the client nominates a pair.
    let default = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    default.set_nonblocking(true).unwrap();
    let port = default.local_addr().unwrap().port();
    let (ufrag, pwd) = ("tEam", "teamsclientpassword0123");
    let scenario = c.dir.path().join("ice-caller.xml");
    std::fs::write(
        &scenario,
        ice_caller_scenario(&alice.number, "+18005550100", ufrag, pwd, port, 14_000),
    )
    .unwrap();
    let trace = c.dir.path().join("ice-caller-messages.log");
    let mut sipp = Command::new("sipp")
        .arg(proxy.users.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .current_dir(c.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is not installed — run tests/peers/install.sh");
    let mut answer = None;
    for _ in 0..200 {
        answer = std::fs::read_to_string(&trace)
            .ok()
            .and_then(|t| answer_in_trace(&t));
        if answer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answer.unwrap_or_else(|| {
        panic!(
            "no 200 OK with SDP for the Teams client: {}\n{}",
            std::fs::read_to_string(&trace).unwrap_or_default(),
            proxy.log()
        )
    });
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(answer.matches("a=candidate:").count(), 1, "{answer}");

    let tone = format!("{TEAMS_HZ}");
    let hear = format!("{AGENT_HZ}");
    let answer_sdp = answer.clone();
    let client = tokio::task::spawn_blocking(move || {
        let mut agent = Agent::start(&[
            "--ufrag",
            ufrag,
            "--pwd",
            pwd,
            "--listen",
            "1",
            "--tone",
            &tone,
            "--tone-seconds",
            "6",
            "--hear",
            &hear,
        ]);
        agent.offer(&answer_sdp);
        agent.next("ufrag");
        agent.next("connected");
        let rtp = agent.next("rtp")["rtp"].as_u64().unwrap_or(0);
        let heard = agent.next("heard");
        agent.next("keyed");
        (rtp, heard)
    });
    let (rtp, heard) = client.await.unwrap();
    let stale = {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while default.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    eprintln!("bypass: {rtp} RTP packets in the first second, agent heard {heard}; {stale} to the default address in all (before the nomination)");
    // 1 s of 20 ms frames is 50; the machine may be busy.
    assert!(
        rtp >= 25,
        "the client got {rtp} RTP packets over the nominated pair"
    );
    let (loud, blocks) = (
        heard["heard"].as_u64().unwrap_or(0),
        heard["blocks"].as_u64().unwrap_or(0),
    );
    assert!(
        loud >= 100,
        "the Teams client heard Adele over the pair: {loud} of {blocks} 20 ms blocks"
    );
    let status = tokio::task::spawn_blocking(move || sipp.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "sipp: the call did not end cleanly");
    took_the_call(adele, "Adele took the Teams client's call").await;
    c.heard(
        "adele-heard.wav",
        TEAMS_HZ,
        AGENT_HZ,
        (20, 0.8),
        "Adele heard the Teams client over the bypass path",
    );
    let rec = c.record_of("+14255550101").await;
    assert_eq!(rec["agent"], "adele@contoso.example", "{rec}");
}

/// An agent transfers a Teams user's call to the expert group; its expert has no phone
/// registered but a Teams number, so the router calls them through the proxy: `sip` answers
/// 503 and the INVITE fails over to `sip2`, where the expert (baresip, SRTP required as Teams
/// does) answers and hears the caller. (A number that is not E.164 never reaches the trunk:
/// `trunk_call` refuses it, and configuration and the API take E.164 only.)
#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_to_an_expert_in_teams_fails_over_from_sip_to_sip2() {
    let _turn = CALLS.alone().await;
    let (alice, bob) = (at_tenant_a("+14255550101"), at_tenant_a("+14255550102"));
    let proxy = tenant_a_proxy(&[&alice, &bob], true);
    let cert = proxy.sbc_certificate(&["*.sbc.example"]);
    // With media bypass on: the router offers ICE-lite to Teams; baresip has no ICE (it
    // leaves loopback out of its candidates), so the call goes on without, as a Teams
    // endpoint without bypass would.
    let tenant = with_bypass(dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"));
    assert!(tenant.contains("media_bypass"));
    let c = start(&sbc_config(&proxy, &cert, &tenant)).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    c.tones(12);
    // The expert answers on sip2 and talks with the caller for a few seconds.
    let (expert, phone) = to_teams_expert(&c, &proxy, &alice, &bob, "adele-heard.wav").await;
    // The caller's leg and the expert's both count against the Teams trunk's cap.
    c.trunk_counts("contoso", "teams", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    phone.command("hangup", "");
    let log = proxy.log();
    assert!(
        log.contains("teams-proxy: refused 503"),
        "sip refused: {log}"
    );
    assert!(
        log.contains("teams-proxy: sdp-ice lite-one-candidate kind=invite"),
        "the INVITE to the expert offered ICE-lite with one host candidate: {log}"
    );
    assert!(!log.contains("lite-bad-candidates"), "{log}");
    let (share, loud) = teams_heard(&expert, TEAMS_HZ, EXPERT_HZ);
    assert!(
        loud >= 20 && share >= 0.7,
        "the expert in Teams heard the caller: {share:.2} of {loud} blocks"
    );
    let rec = c.record_of("+14255550101").await;
    let steps = rec["steps"].to_string();
    assert!(
        steps.contains("failover after 503 to sip2.pstnhub.microsoft.com"),
        "{rec}"
    );
    assert!(steps.contains("expert bob@contoso.example"), "{rec}");
}

/// What a SIPp Teams device does with the router's INVITE, forked to it by the proxy.
enum Device {
    /// Early media at once (a reliable 183 with its answer), again a second later (RSeq 2),
    /// then cancelled by the proxy when another device answers.
    RingsAndIsCancelled,
    /// Early media after half a second (a reliable 183, RSeq 1 in its own dialog), then the
    /// answer 1.5 s later in a 200 without SDP (the answer was in the 183, RFC 3262); then
    /// the router's BYE.
    Answers,
}

/// A SIPp scenario for a device of Teams user `number` whose SDP answer names `media_port`
/// (RTP/SAVP with an SDES key, as Teams answers an SBC). Responses to the INVITE after the
/// PRACKs repeat its Vias, Record-Routes and CSeq, kept from it by regular expressions.
fn device_scenario(number: &str, media_port: u16, does: &Device) -> String {
    let sdp = format!(
        "v=0\n      o=teams 1 1 IN IP4 127.0.0.1\n      s=-\n      c=IN IP4 127.0.0.1\n      t=0 0\n      \
         m=audio {media_port} RTP/SAVP 0\n      a=rtpmap:0 PCMU/8000\n      \
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n      \
         a=rtcp-mux\n      a=sendrecv\n"
    );
    let to_invite = |status: &str, body: &str| {
        let (ct, len) = if body.is_empty() {
            (String::new(), "0".to_owned())
        } else {
            (
                "Content-Type: application/sdp\n      ".to_owned(),
                "[len]".to_owned(),
            )
        };
        format!(
            r#"  <send>
    <![CDATA[
      SIP/2.0 {status}
      [$vias]
      [last_From:]
      To: [$to];tag=[pid]device[call_number]
      [last_Call-ID:]
      CSeq: [$cseq]
      [$rrs]
      Contact: <sip:{number}@[local_ip]:[local_port]>
      {ct}Content-Length: {len}

      {body}
    ]]>
  </send>
"#
        )
    };
    let early = |rseq: u32| {
        to_invite("183 Session Progress", &sdp).replace(
            "Contact: <sip",
            &format!("Require: 100rel\n      RSeq: {rseq}\n      Contact: <sip"),
        )
    };
    let to_last = |status: &str| {
        format!(
            r#"  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"#
        )
    };
    let prack = format!("  <recv request=\"PRACK\"/>\n{}", to_last("200 OK"));
    let pause = |ms: u32| format!("  <pause milliseconds=\"{ms}\"/>\n");
    let steps = match does {
        Device::RingsAndIsCancelled => [
            early(1),
            prack.clone(),
            pause(1000),
            early(2),
            prack,
            "  <recv request=\"CANCEL\"/>\n".to_owned(),
            to_last("200 OK"),
            to_invite("487 Request Terminated", ""),
            "  <recv request=\"ACK\"/>\n".to_owned(),
        ]
        .concat(),
        Device::Answers => [
            pause(500),
            early(1),
            prack,
            pause(1500),
            to_invite("200 OK", ""),
            "  <recv request=\"ACK\"/>\n".to_owned(),
            "  <recv request=\"BYE\"/>\n".to_owned(),
            to_last("200 OK"),
        ]
        .concat(),
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a Teams device">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="((Via: [^[:cntrl:]]*[[:cntrl:]]+)*Via: [^[:cntrl:]]*)" search_in="msg" check_it="true" assign_to="vias"/>
      <ereg regexp="((Record-Route: [^[:cntrl:]]*[[:cntrl:]]+)*Record-Route: [^[:cntrl:]]*)" search_in="msg" check_it="true" assign_to="rrs"/>
      <ereg regexp="[0-9]+ INVITE" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="to"/>
    </action>
  </recv>
{steps}</scenario>
"#
    )
}

/// Starts SIPp as a device of `user` (registered with the proxy as one of their endpoints)
/// doing `does`, its media at `media_port`; its message trace goes to `<name>-messages.log`.
fn start_device(
    c: &Center,
    proxy: &TeamsProxy,
    user: &TeamsUser,
    name: &str,
    media_port: u16,
    does: &Device,
) -> Child {
    let port = crate::teams_proxy::peers::free_udp_tcp_port();
    let scenario = c.dir.path().join(format!("{name}.xml"));
    std::fs::write(&scenario, device_scenario(&user.number, media_port, does)).unwrap();
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(c.dir.path().join(format!("{name}-messages.log")))
        .current_dir(c.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is not installed — run tests/peers/install.sh");
    proxy.register_device(user, &format!("sip:{}@127.0.0.1:{port}", user.number));
    child
}

/// Waits (up to `within`) for SIPp `child` to end; whether it ended cleanly.
async fn device_done(mut child: Child, within: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
}

/// RTP (or SRTP) packets that reached `socket` within `within`.
fn packets_at(socket: &std::net::UdpSocket, within: Duration) -> usize {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (start, mut n, mut buf) = (Instant::now(), 0, [0u8; 2048]);
    while start.elapsed() < within {
        if socket.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// An expert in Teams on two devices: Microsoft's proxy forks the router's INVITE to each of a
/// Teams user's endpoints (with media bypass each answers for itself), so several 183s come
/// from different early dialogs. Both devices are SIPp: the desk sends early media at once
/// and again a second later, the mobile after half a second, each a reliable 183 numbered in
/// its own dialog; the mobile answers with a 200 without SDP. The router PRACKs each 183 in
/// its own dialog (else the mobile, waiting for its PRACK, never answers), and the call's
/// media goes to the mobile's answer, not the desk's that came last; the desk is cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn an_expert_in_teams_on_two_devices_is_reached_on_the_one_that_answers() {
    let _turn = CALLS.alone().await;
    let (alice, bob) = (at_tenant_a("+14255550101"), at_tenant_a("+14255550102"));
    let proxy = tenant_a_proxy(&[&alice, &bob], false);
    let cert = proxy.sbc_certificate(&["tenanta.sbc.example"]);
    let tenant = dr_tenant("contoso", "tenanta.sbc.example", "+18005550100");
    let c = start(&sbc_config(&proxy, &cert, &tenant)).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    c.tones(12);
    let media = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (desk_media, mobile_media) = (media(), media());
    let port = |s: &std::net::UdpSocket| s.local_addr().unwrap().port();
    let desk_device = start_device(
        &c,
        &proxy,
        &bob,
        "bob-desk",
        port(&desk_media),
        &Device::RingsAndIsCancelled,
    );
    let mobile_device = start_device(
        &c,
        &proxy,
        &bob,
        "bob-mobile",
        port(&mobile_media),
        &Device::Answers,
    );

    let adele = c
        .agent("adele@contoso.example", 0.0, "agent.wav", "adele-heard.wav")
        .await;
    let phone = proxy.start_teams_user(&alice, "auto", TEAMS_HZ as u32);
    phone.command("dial", &format!("sip:+18005550100@{}", proxy.users));
    c.talks("adele@contoso.example", 2).await;
    assert_eq!(desk(&c, "transfer", Some("escalations")).await, 200);
    let _ = finish(adele, Duration::from_secs(10)).await;

    let (to_mobile, to_desk) = tokio::task::spawn_blocking(move || {
        // The mobile answers about 2 s after the INVITE; then 3 s of the call.
        let to_mobile = packets_at(&mobile_media, Duration::from_secs(6));
        (
            to_mobile,
            packets_at(&desk_media, Duration::from_millis(200)),
        )
    })
    .await
    .unwrap();
    phone.command("hangup", "");
    let desk_ok = device_done(desk_device, Duration::from_secs(20)).await;
    let mobile_ok = device_done(mobile_device, Duration::from_secs(20)).await;
    let trace = |name: &str| {
        std::fs::read_to_string(c.dir.path().join(format!("{name}-messages.log")))
            .unwrap_or_default()
    };
    let (desk_trace, mobile_trace) = (trace("bob-desk"), trace("bob-mobile"));
    eprintln!("forked call: {to_mobile} packets to the mobile's answer, {to_desk} to the desk's");
    assert!(
        mobile_ok,
        "the mobile did not get its PRACK, answer, and the BYE:\n{mobile_trace}\n{}",
        proxy.log()
    );
    assert!(
        desk_ok,
        "the desk was not PRACKed twice and cancelled:\n{desk_trace}"
    );
    assert_eq!(
        mobile_trace.matches("PRACK sip:").count(),
        1,
        "{mobile_trace}"
    );
    assert!(
        desk_trace.contains("RAck: 1 ") && desk_trace.contains("RAck: 2 "),
        "{desk_trace}"
    );
    // 3 s at 50 packets a second, on a busy machine.
    assert!(
        to_mobile >= 50,
        "the router sent {to_mobile} packets to the device that answered"
    );
    assert_eq!(to_desk, 0, "the router sent media to the cancelled device");
    let rec = c.record_of("+14255550101").await;
    assert!(
        rec["steps"]
            .to_string()
            .contains("expert bob@contoso.example"),
        "{rec}"
    );
}

/// One router, two customers (carrier hosting, one wildcard certificate): each Teams user's
/// call reaches their own tenant's agent by the FQDN it names, and a number of the other
/// tenant is not found through their FQDN. A router whose certificate another CA signed is
/// refused by the proxy: its proxies never come up.
#[tokio::test(flavor = "multi_thread")]
async fn two_customers_on_one_router_stay_apart_and_a_foreign_certificate_is_refused() {
    let _turn = CALLS.alone().await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let carol = TeamsUser::new("+14255550301", "tenant-b", "tenantb.sbc.example");
    let proxy = TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec!["tenanta.sbc.example".into(), "tenantb.sbc.example".into()],
        users: vec![alice.clone(), carol.clone()],
        ..Default::default()
    });
    // First, a certificate from another CA: the handshake fails, nothing comes up.
    let foreign = proxy.foreign_certificate(&["*.sbc.example"]);
    let c = start(&sbc_config(
        &proxy,
        &foreign,
        &dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"),
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let all: Value = get_json(&c.http, &format!("{}/v1/trunks", c.base)).await;
    let t = &all[0];
    assert_ne!(t["health"], "up", "{t}");
    assert!(
        t["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["health"] != "up" && p["last_probe_status"].is_null()),
        "{t}"
    );
    assert!(
        !proxy.log().contains("teams-proxy: options-ok"),
        "{}",
        proxy.log()
    );
    drop(c);

    let cert = proxy.sbc_certificate(&["*.sbc.example"]);
    let tenants = format!(
        "{}{}",
        dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"),
        dr_tenant("fabrikam", "tenantb.sbc.example", "+18005550200")
    );
    let c = start(&sbc_config(&proxy, &cert, &tenants)).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    c.proxies_up(&proxy, "fabrikam", "teams").await;
    c.tones(10);
    for (user, tenant, number) in [
        (&alice, "contoso", "+18005550100"),
        (&carol, "fabrikam", "+18005550200"),
    ] {
        let upn = format!("adele@{tenant}.example");
        let agent = c
            .agent(&upn, 0.0, "agent.wav", &format!("{tenant}-heard.wav"))
            .await;
        let phone = proxy.start_teams_user(user, "auto", TEAMS_HZ as u32);
        phone.command("dial", &format!("sip:{number}@{}", proxy.users));
        c.talks(&upn, 5).await;
        phone.command("hangup", "");
        took_the_call(agent, &format!("{upn} took {}'s call", user.number)).await;
        c.heard(
            &format!("{tenant}-heard.wav"),
            TEAMS_HZ,
            AGENT_HZ,
            (20, 0.8),
            &format!("{upn} heard {}", user.number),
        );
    }
    // Carol's calls go to tenant B's SBC FQDN: contoso's number is not found there.
    let phone = proxy.start_teams_user(&carol, "auto", TEAMS_HZ as u32);
    phone.command("dial", &format!("sip:+18005550100@{}", proxy.users));
    phone.wait_for("404", Duration::from_secs(15));
    let records = c.calls().await;
    let tenant_of = |caller: &str| {
        records
            .iter()
            .filter(|r| r["caller"] == caller)
            .map(|r| r["tenant"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(tenant_of("+14255550101"), ["contoso"], "{records:#?}");
    assert!(
        tenant_of("+14255550301").iter().all(|t| t == "fabrikam"),
        "{records:#?}"
    );
}

/// Adele (registered now, recording `record`) takes `caller`'s call to the queue and
/// transfers it to the escalations expert, `expert` in Teams (SRTP required, as Teams does),
/// who answers: their phones, the expert's first.
async fn to_teams_expert(
    c: &Center,
    proxy: &TeamsProxy,
    caller: &TeamsUser,
    expert: &TeamsUser,
    record: &str,
) -> (
    crate::teams_proxy::peers::Baresip,
    crate::teams_proxy::peers::Baresip,
) {
    hand_to_teams_expert(c, proxy, (caller, expert), record, false).await
}

/// [`to_teams_expert`], by a blind transfer, or (`consult`) by consulting the escalations
/// expert in Teams first and completing the transfer once they talk.
async fn hand_to_teams_expert(
    c: &Center,
    proxy: &TeamsProxy,
    (caller, expert): (&TeamsUser, &TeamsUser),
    record: &str,
    consult: bool,
) -> (
    crate::teams_proxy::peers::Baresip,
    crate::teams_proxy::peers::Baresip,
) {
    let adele = c
        .agent("adele@contoso.example", 0.0, "agent.wav", record)
        .await;
    let bob = proxy.start_teams_user_with(expert, "auto", EXPERT_HZ as u32, ";mediaenc=srtp-mand");
    let phone = proxy.start_teams_user(caller, "auto", TEAMS_HZ as u32);
    phone.command("dial", &format!("sip:+18005550100@{}", proxy.users));
    c.talks("adele@contoso.example", 2).await;
    if consult {
        assert_eq!(desk(c, "consult", Some("escalations")).await, 200);
        let state = consult_talking(c).await;
        assert_eq!(state["consult"]["state"], "talking", "{state}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(desk(c, "consult/complete", None).await, 200);
    } else {
        assert_eq!(desk(c, "transfer", Some("escalations")).await, 200);
    }
    let _ = finish(adele, Duration::from_secs(10)).await;
    bob.wait_for("Call established", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    (bob, phone)
}

/// POST `/v1/agents/me/<path>` for Adele of contoso, with `target` when given: the status.
async fn desk(c: &Center, path: &str, target: Option<&str>) -> u16 {
    let mut body = serde_json::json!({ "agent": "adele@contoso.example" });
    if let Some(t) = target {
        body["target"] = t.into();
    }
    let r = c
        .http
        .post(format!("{}/v1/agents/me/{path}", c.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    eprintln!("{path} → {status} {}", r.text().await.unwrap_or_default());
    status
}

/// Adele's status once her consultation is talking (10 s at most; as it is then, else).
async fn consult_talking(c: &Center) -> Value {
    c.status_until("adele@contoso.example", |s| {
        s["consult"]["state"] == "talking"
    })
    .await
}

/// A Teams user's call reaches Adele; a router with her tenant's Direct Routing trunk up.
struct TeamsCall {
    c: Center,
    proxy: TeamsProxy,
    caller: crate::teams_proxy::peers::Baresip,
}

/// Starts the proxy with `users` (the first calls), the router for contoso behind it, Adele
/// (and `more` agents, Ready), and the first user's call to the queue, answered by Adele.
async fn teams_caller_with_adele(
    users: &[TeamsUser],
    more: &[&str],
) -> (TeamsCall, Child, Vec<Child>) {
    teams_caller_with_adele_and(users, more, "").await
}

/// [`teams_caller_with_adele`], the tenant's configuration ending with `extra`.
async fn teams_caller_with_adele_and(
    users: &[TeamsUser],
    more: &[&str],
    extra: &str,
) -> (TeamsCall, Child, Vec<Child>) {
    let proxy = TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec!["tenanta.sbc.example".into()],
        users: users.to_vec(),
        ..Default::default()
    });
    let cert = proxy.sbc_certificate(&["tenanta.sbc.example"]);
    let mut tenant = dr_tenant("contoso", "tenanta.sbc.example", "+18005550100");
    for upn in more {
        tenant += &format!("\n[[tenants.agents]]\nupn = \"{upn}\"\n");
    }
    tenant += extra;
    let c = start(&sbc_config(&proxy, &cert, &tenant)).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    c.tones(30);
    c.tone("alex-tone.wav", EXPERT_HZ + 400.0, 30);
    let adele = c
        .agent("adele@contoso.example", 0.0, "agent.wav", "adele-heard.wav")
        .await;
    c.set_state("adele@contoso.example", "ready").await;
    let mut others = Vec::new();
    for upn in more {
        others.push(c.agent(upn, 0.0, "alex-tone.wav", "alex-heard.wav").await);
        c.set_state(upn, "not_ready").await;
    }
    let caller = proxy.start_teams_user(&users[0], "auto", TEAMS_HZ as u32);
    caller.command("dial", &format!("sip:+18005550100@{}", proxy.users));
    c.talks("adele@contoso.example", 2).await;
    (TeamsCall { c, proxy, caller }, adele, others)
}

/// Teams user `phone` holds its call (the proxy passes the hold on as `a=inactive`, as Teams
/// sends it) for 3 s, resumes, and talks 2 s more.
async fn holds_three_seconds(phone: &crate::teams_proxy::peers::Baresip, proxy: &TeamsProxy) {
    phone.command("hold", "");
    proxy.wait_for_log("teams-reinvite direction=inactive", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(3)).await;
    phone.command("resume", "");
    proxy.wait_for_log("teams-reinvite direction=sendrecv", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// The Teams user who called puts Adele on hold the Teams way (`a=inactive`: Teams sends
/// nothing then) for 3 s and resumes: Adele hears the tenant's music meanwhile, not silence,
/// then the caller again; the record counts the hold.
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_caller_who_holds_the_agent_leaves_them_hearing_music() {
    let _turn = CALLS.alone().await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let (call, adele, _) = teams_caller_with_adele(&[alice], &[]).await;
    let TeamsCall { c, proxy, caller } = call;
    holds_three_seconds(&caller, &proxy).await;
    caller.command("hangup", "");
    took_the_call(adele, "Adele took the Teams user's call").await;
    let (samples, rate) = read_mono(&c.dir.path().join("adele-heard.wav")).unwrap();
    let (held, quiet) = tone::longest_break(&samples, rate, TEAMS_HZ);
    assert!(
        held >= 40 && quiet < 15,
        "Adele heard music while the caller held, then the caller: a break of {held} blocks \
         of 50 ms in the caller's voice, {quiet} of them quiet in a row"
    );
    let rec = c.record_of("+14255550101").await;
    assert!(
        rec["hold_seconds"]
            .as_u64()
            .is_some_and(|s| (2..=5).contains(&s)),
        "{rec}"
    );
}

/// Adele consults the escalations expert, who is in Teams (rung through the proxy, SRTP), and
/// brings them into a three-party call: the Teams caller, Adele and the expert each hear the
/// other two.
#[tokio::test(flavor = "multi_thread")]
async fn a_three_party_call_with_an_expert_in_teams_where_everyone_hears_everyone() {
    let _turn = CALLS.alone().await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let bob = TeamsUser::new("+14255550102", "tenant-a", "tenanta.sbc.example");
    let (call, adele, _) = teams_caller_with_adele(&[alice, bob.clone()], &[]).await;
    let TeamsCall { c, proxy, caller } = call;
    let expert = proxy.start_teams_user_with(&bob, "auto", EXPERT_HZ as u32, ";mediaenc=srtp-mand");
    assert_eq!(desk(&c, "consult", Some("escalations")).await, 200);
    let state = consult_talking(&c).await;
    assert_eq!(state["consult"]["state"], "talking", "{state}");
    assert_eq!(state["consult"]["with"], "bob@contoso.example", "{state}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(desk(&c, "consult/conference", None).await, 200);
    // The caller from Teams and the expert in Teams: two calls on the Teams trunk.
    c.trunk_counts("contoso", "teams", 2).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    caller.command("hangup", "");
    let _ = finish(adele, Duration::from_secs(10)).await;
    c.trunk_counts("contoso", "teams", 0).await;
    let caller_wav = caller.heard_wav(Duration::from_secs(20));
    let expert_wav = expert.heard_wav(Duration::from_secs(20));
    let adele_wav = c.dir.path().join("adele-heard.wav");
    // baresip's sine is louder than Adele's tone: in a mix with it, hers holds a smaller part
    // of the energy (a tone that is not there at all holds next to none).
    let heard = |p: &Path, hz: f64| blocks_in(p, hz, if hz == AGENT_HZ { 0.05 } else { 0.2 });
    let (caller_adele, caller_expert) =
        (heard(&caller_wav, AGENT_HZ), heard(&caller_wav, EXPERT_HZ));
    let (expert_adele, expert_caller) =
        (heard(&expert_wav, AGENT_HZ), heard(&expert_wav, TEAMS_HZ));
    let (adele_caller, adele_expert) = (heard(&adele_wav, TEAMS_HZ), heard(&adele_wav, EXPERT_HZ));
    eprintln!("blocks heard: caller←Adele {caller_adele}, caller←expert {caller_expert}, expert←Adele {expert_adele}, expert←caller {expert_caller}, Adele←caller {adele_caller}, Adele←expert {adele_expert}");
    for (what, n) in [
        ("the caller heard Adele", caller_adele),
        ("the caller heard the expert", caller_expert),
        ("the expert heard Adele", expert_adele),
        ("the expert heard the caller", expert_caller),
        ("Adele heard the caller", adele_caller),
        ("Adele heard the expert", adele_expert),
    ] {
        assert!(n > 40, "{what}: {n} blocks");
    }
    let recs = c.calls().await;
    let steps = recs[0]["steps"].to_string();
    assert!(
        steps.contains("conference of adele@contoso.example and bob@contoso.example"),
        "{steps}"
    );
}

/// Waits (10 s) until the proxy logs the router's INVITE carrying `referrer`'s Referred-By
/// unchanged, as the proxy wrote it in their REFER.
fn invite_referred_by(proxy: &TeamsProxy, referrer: &TeamsUser) {
    let referred_by = format!(
        "referred-by=<sip:{}@sip.pstnhub.microsoft.com;x-m={};x-t={}>",
        referrer.number, referrer.mri, referrer.tenant_id
    );
    proxy.wait_for_log(
        &format!(
            "sbc-headers method=INVITE x-ms-sbc=Switchboard/Router/{} {referred_by}",
            env!("CARGO_PKG_VERSION")
        ),
        Duration::from_secs(10),
    );
}

/// The expert in Teams, given the caller by Adele, transfers them on with REFER the way Teams
/// does (the proxy rewrites Refer-To): back to the queue's number, where Alex takes them; and,
/// on a second call, to another Teams user named by MRI (`x-m`, `x-t`), whom the router calls
/// through the proxy with Referred-By; when that user holds the caller (`a=inactive`), the
/// caller hears music.
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_expert_transfers_the_caller_back_to_the_queue_or_to_a_teams_colleague() {
    let _turn = CALLS.alone().await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let bob = TeamsUser::new("+14255550102", "tenant-a", "tenanta.sbc.example");
    let dave = TeamsUser::new("+14255550104", "tenant-a", "tenanta.sbc.example");
    let (call, adele, mut others) = teams_caller_with_adele(
        &[alice, bob.clone(), dave.clone()],
        &["alex@contoso.example"],
    )
    .await;
    let TeamsCall { c, proxy, caller } = call;
    let expert = proxy.start_teams_user_with(&bob, "auto", EXPERT_HZ as u32, ";mediaenc=srtp-mand");
    assert_eq!(desk(&c, "transfer", Some("escalations")).await, 200);
    let _ = finish(adele, Duration::from_secs(10)).await;
    expert.wait_for("Call established", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Back to the queue: Alex, Ready now, takes the caller.
    c.set_state("alex@contoso.example", "ready").await;
    expert.command("transfer", &format!("sip:+18005550100@{}", proxy.users));
    proxy.wait_for_log("teams-proxy: refer-to-sbc", Duration::from_secs(10));
    c.talks("alex@contoso.example", 4).await;
    caller.command("hangup", "");
    let alex = others.remove(0);
    took_the_call(alex, "Alex took the caller back from the expert in Teams").await;
    c.heard(
        "alex-heard.wav",
        TEAMS_HZ,
        AGENT_HZ,
        (20, 0.8),
        "Alex heard the caller",
    );
    let recs = c.calls().await;
    let steps = recs[0]["steps"].to_string();
    assert!(
        steps.contains("transfer by bob@contoso.example to +18005550100@sip.pstnhub.microsoft.com"),
        "{steps}"
    );
    assert_eq!(recs[0]["agent"], "alex@contoso.example", "{}", recs[0]);
    drop(expert);
    drop(caller);

    // A second call: the expert sends the caller to Dave, another Teams user, by MRI.
    let colleague =
        proxy.start_teams_user_with(&dave, "auto", DAVE_HZ as u32, ";mediaenc=srtp-mand");
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let (expert, caller) = to_teams_expert(&c, &proxy, &alice, &bob, "adele-heard-2.wav").await;
    expert.command("transfer", &format!("sip:{}@{}", dave.number, proxy.users));
    // The router's INVITE to Dave carries the Referred-By of Bob's REFER, unchanged.
    invite_referred_by(&proxy, &bob);
    colleague.wait_for("Call established", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Dave puts the caller on hold the Teams way (`a=inactive`: Teams sends nothing then) for
    // 3 s and resumes: the caller hears the router's music meanwhile, not silence, then Dave.
    holds_three_seconds(&colleague, &proxy).await;
    caller.command("hangup", "");
    let (share, loud) = teams_heard(&colleague, TEAMS_HZ, EXPERT_HZ);
    assert!(
        loud >= 20 && share >= 0.7,
        "Dave in Teams heard the caller: {share:.2} of {loud} blocks"
    );
    let (samples, rate) = read_mono(&caller.heard_wav(Duration::from_secs(20))).unwrap();
    let (held, quiet) = tone::longest_break(&samples, rate, DAVE_HZ);
    assert!(
        held >= 40 && quiet < 15,
        "the caller heard music while Dave held, then Dave: a break of {held} blocks of 50 ms \
         in Dave's voice, {quiet} of them quiet in a row"
    );
    let recs = c.calls().await;
    let second = recs
        .iter()
        .find(|r| r["steps"].to_string().contains("Teams user"))
        .unwrap_or_else(|| panic!("{recs:#?}"));
    assert!(
        second["steps"]
            .to_string()
            .contains(&format!("to Teams user {}", dave.mri)),
        "{second}"
    );
}

/// A proxy that stops answering (here: `sip` resolves to a port nobody listens on) is marked
/// down after three probes and skipped: the call to the expert in Teams goes to `sip2` at
/// once, no failover needed. The expert then transfers the caller to a Teams user who is not
/// online (the proxy answers 404 for their MRI): the transfer fails cleanly — the expert's
/// REFER gets NOTIFY 404, the caller stays with them rather than going back to the queue —
/// and the record says why. On a second call the expert's REFER comes malformed (its `x-m`
/// is no MRI): refused in the NOTIFY (400) before anyone is called, the caller staying with
/// the expert, and recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_proxy_is_skipped_and_a_transfer_to_an_absent_teams_user_fails_cleanly() {
    let _turn = CALLS.alone().await;
    let (alice, bob) = (at_tenant_a("+14255550101"), at_tenant_a("+14255550102"));
    let erin = at_tenant_a("+14255550105");
    // A Teams user whose id is no MRI: the proxy's REFER names her with an x-m the router
    // cannot take (a character outside Microsoft's alphabet).
    let mut ghost = at_tenant_a("+14255550106");
    ghost.mri = "8:orgid:not*an*id".into();
    let proxy = tenant_a_proxy(&[&alice, &bob, &erin, &ghost], false);
    let cert = proxy.sbc_certificate(&["tenanta.sbc.example"]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = sbc_config(
        &proxy,
        &cert,
        &dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"),
    )
    .replace(&proxy.sip.to_string(), &dead.to_string());
    let c = start(&config).await;
    let mut trunk = Value::Null;
    for _ in 0..200 {
        let all: Value = get_json(&c.http, &format!("{}/v1/trunks", c.base)).await;
        trunk = all[0].clone();
        let p = &trunk["proxies"];
        if p[0]["health"] == "down" && p[1]["health"] == "up" && p[2]["health"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(trunk["health"], "up", "{trunk}");
    assert_eq!(trunk["proxies"][0]["health"], "down", "{trunk}");
    assert_eq!(trunk["proxies"][1]["health"], "up", "{trunk}");
    c.tones(20);
    let (expert, caller) = to_teams_expert(&c, &proxy, &alice, &bob, "adele-heard.wav").await;
    expert.command("transfer", &format!("sip:{}@{}", erin.number, proxy.users));
    let mut rec = Value::Null;
    for _ in 0..100 {
        let recs = c.calls().await;
        rec = recs.first().cloned().unwrap_or_default();
        if rec["steps"]
            .to_string()
            .contains("transfer target not answered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The expert is told (NOTIFY 404), and keeps the caller; baresip, unlike Teams, then
    // hangs up by itself.
    expert.wait_for("transfer failed: 404 Not Found", Duration::from_secs(10));
    caller.command("hangup", "");
    let steps = rec["steps"].to_string();
    assert!(
        !steps.contains("failover"),
        "sip was skipped, not tried: {rec}"
    );
    assert!(
        steps.contains(&format!(
            "transfer by bob@contoso.example to Teams user {}",
            erin.mri
        )),
        "{rec}"
    );
    assert!(
        steps.contains(
            "transfer target not answered: 404 Not Found; the caller stays with bob@contoso.example"
        ),
        "{rec}"
    );
    assert_eq!(
        rec["steps"]
            .as_array()
            .map(|s| s.iter().filter(|x| *x == "queue general").count()),
        Some(1),
        "not back in the queue: {rec}"
    );
    // A malformed REFER: its x-m is refused (NOTIFY 400) before anything is called, the
    // caller stays with the expert, and the record says why.
    drop((expert, caller));
    let (expert, caller) = to_teams_expert(&c, &proxy, &alice, &bob, "adele-heard.wav").await;
    expert.command("transfer", &format!("sip:{}@{}", ghost.number, proxy.users));
    expert.wait_for("transfer failed: 400 Bad Request", Duration::from_secs(10));
    caller.command("hangup", "");
    let rec = c.record_of(&alice.number).await;
    assert!(
        rec["steps"].to_string().contains(
            "transfer by bob@contoso.example to a Teams user refused: malformed Refer-To (x-m, x-t)"
        ),
        "{rec}"
    );
    assert!(
        !rec["steps"]
            .to_string()
            .contains("to Teams user 8:orgid:not"),
        "nobody was called: {rec}"
    );
}

/// A call from `alice` that Adele hands to `bob` (the escalations expert in Teams), and Bob to
/// `dave` in Teams, who after a second transfers it on to `target` (a number, as he would type
/// it): Bob's, the caller's and Dave's phones.
async fn passed_on_by_dave(
    c: &Center,
    proxy: &TeamsProxy,
    [alice, bob, dave]: [&TeamsUser; 3],
    target: &str,
    record: &str,
) -> (
    crate::teams_proxy::peers::Baresip,
    crate::teams_proxy::peers::Baresip,
    crate::teams_proxy::peers::Baresip,
) {
    let (expert, caller) = to_teams_expert(c, proxy, alice, bob, record).await;
    let dave_phone = handed_to(proxy, &expert, dave);
    tokio::time::sleep(Duration::from_secs(1)).await;
    dave_phone.command("transfer", &format!("sip:{target}@{}", proxy.users));
    (expert, caller, dave_phone)
}

/// `expert` transfers their caller to `dave` in Teams, who answers: Dave's phone.
fn handed_to(
    proxy: &TeamsProxy,
    expert: &crate::teams_proxy::peers::Baresip,
    dave: &TeamsUser,
) -> crate::teams_proxy::peers::Baresip {
    let dave_phone =
        proxy.start_teams_user_with(dave, "auto", DAVE_HZ as u32, ";mediaenc=srtp-mand");
    expert.command("transfer", &format!("sip:{}@{}", dave.number, proxy.users));
    dave_phone.wait_for("Call established", Duration::from_secs(20));
    dave_phone
}

/// The caller handed to a Teams user (Dave, reached by the expert's transfer) is passed on by
/// him in Teams — his REFER arrives on the router's leg to him, as Microsoft's proxy sends it.
/// To Frank, who is not online: the router calls him, the proxy answers 404, Dave's REFER is
/// told so and the record says the caller stays with him. On a second call, to Erin by MRI:
/// the router calls her with Dave's Referred-By, and once she answers Dave is told 200 and
/// leaves (his trunk channel freed), she and the caller hear each other. Erin then sends the
/// caller back to the contact center's number: its queue, where Alex takes them. On a third
/// call Dave sends the caller to an outside number the toll rules allow, rung on the
/// carrier trunk; on a fourth, the caller hangs up while Dave's target rings.
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_user_the_caller_was_handed_to_passes_them_on_in_teams_or_back_to_the_queue() {
    let _turn = CALLS.alone().await;
    let alice = at_tenant_a("+14255550101");
    let bob = at_tenant_a("+14255550102");
    let dave = at_tenant_a("+14255550104");
    let erin = at_tenant_a("+14255550105");
    let frank = at_tenant_a("+14255550107");
    let gina = at_tenant_a("+14255550108");
    // An outside number's phone behind a carrier trunk, under toll rules.
    let far_port = free_udp_port();
    let carrier = format!(
        "\n[[tenants.trunks]]\nname = \"carrier\"\nusername = \"carrier-1\"\n\
         password = \"correct horse battery\"\noutbound = \"sip:127.0.0.1:{far_port}\"\n\n\
         [tenants.outbound]\ntrunk = \"carrier\"\nallow = [\"+1555\"]\n"
    );
    let (call, adele, mut others) = teams_caller_with_adele_and(
        &[
            alice.clone(),
            bob.clone(),
            dave.clone(),
            erin.clone(),
            frank.clone(),
            gina.clone(),
        ],
        &["alex@contoso.example"],
        &carrier,
    )
    .await;
    let TeamsCall { c, proxy, caller } = call;
    let srtp = ";mediaenc=srtp-mand";
    // The first call: Adele hands the caller to Bob, Bob to Dave, Dave to Frank (offline).
    let expert = proxy.start_teams_user_with(&bob, "auto", EXPERT_HZ as u32, srtp);
    assert_eq!(desk(&c, "transfer", Some("escalations")).await, 200);
    let _ = finish(adele, Duration::from_secs(10)).await;
    expert.wait_for("Call established", Duration::from_secs(20));
    let dave_phone = handed_to(&proxy, &expert, &dave);
    tokio::time::sleep(Duration::from_secs(2)).await;
    dave_phone.command("transfer", &format!("sip:{}@{}", frank.number, proxy.users));
    // Told as the expert would be; baresip, unlike Teams, then hangs up by itself.
    dave_phone.wait_for("transfer failed: 404 Not Found", Duration::from_secs(10));
    caller.command("hangup", "");
    let rec = c.record_of(&alice.number).await;
    let steps = rec["steps"].to_string();
    for step in [
        format!(
            "transfer by Teams user {} to Teams user {}",
            dave.mri, frank.mri
        ),
        format!(
            "transfer target not answered: 404 Not Found; the caller stays with Teams user {}",
            dave.mri
        ),
    ] {
        assert!(steps.contains(&step), "{step:?} not in {rec}");
    }
    drop((expert, dave_phone, caller));
    c.trunk_counts("contoso", "teams", 0).await;

    let people = [&alice, &bob, &dave];
    // The second call: Bob hands the caller to Dave, Dave to Erin.
    let erin_phone = proxy.start_teams_user_with(&erin, "auto", ERIN_HZ as u32, srtp);
    let (expert, caller, dave_phone) =
        passed_on_by_dave(&c, &proxy, people, &erin.number, "adele-heard-2.wav").await;
    invite_referred_by(&proxy, &dave);
    erin_phone.wait_for("Call established", Duration::from_secs(20));
    // Dave is told and leaves: the trunk carries the caller and Erin, no one else.
    c.trunk_counts("contoso", "teams", 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back to the contact center's number: Alex, Ready now, takes the caller from Erin.
    c.set_state("alex@contoso.example", "ready").await;
    erin_phone.command("transfer", &format!("sip:+18005550100@{}", proxy.users));
    c.talks("alex@contoso.example", 4).await;
    c.trunk_counts("contoso", "teams", 1).await;
    caller.command("hangup", "");
    let alex = others.remove(0);
    took_the_call(alex, "Alex took the caller back from Erin in Teams").await;
    let (share, loud) = teams_heard(&erin_phone, TEAMS_HZ, DAVE_HZ);
    assert!(
        loud >= 20 && share >= 0.7,
        "Erin in Teams heard the caller: {share:.2} of {loud} blocks"
    );
    // The caller heard Erin for a while (of a call in which Adele, Bob, Dave, the music and
    // Alex speak too).
    let (samples, rate) = read_mono(&caller.heard_wav(Duration::from_secs(20))).unwrap();
    let (wins, _) = tone::detect(&samples, rate, &[ERIN_HZ, DAVE_HZ]);
    assert!(
        wins[0] >= 30,
        "the caller heard Erin in {} blocks of 50 ms (Dave in {})",
        wins[0],
        wins[1]
    );
    c.heard(
        "alex-heard.wav",
        TEAMS_HZ,
        AGENT_HZ,
        (20, 0.8),
        "Alex heard the caller",
    );
    let recs = c.calls().await;
    let rec = recs
        .iter()
        .find(|r| r["agent"] == "alex@contoso.example")
        .unwrap_or_else(|| panic!("Alex took no call: {recs:#?}"));
    let steps = rec["steps"].to_string();
    for step in [
        format!(
            "transfer by Teams user {} to Teams user {}",
            dave.mri, erin.mri
        ),
        format!("transfer by Teams user {} to +18005550100", erin.mri),
        "queue general".to_owned(),
    ] {
        assert!(steps.contains(&step), "{step:?} not in {rec}");
    }
    c.set_state("alex@contoso.example", "not_ready").await;
    drop((expert, dave_phone, erin_phone, caller));

    // The third call: Bob hands the caller to Dave, Dave to an outside number the tenant's
    // toll rules allow, rung on the carrier trunk; Dave leaves once it answers.
    c.tone("far-tone.wav", FAR_HZ, 15);
    let called = trunk_phone(&c, far_port, "+15550001234", "far-tone.wav", "called.wav");
    let (expert, caller, dave_phone) =
        passed_on_by_dave(&c, &proxy, people, "+15550001234", "adele-heard-3.wav").await;
    c.trunk_counts("contoso", "carrier", 1).await;
    c.trunk_counts("contoso", "teams", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    caller.command("hangup", "");
    took_the_call(called, "the outside number took the caller from Dave").await;
    c.heard(
        "called.wav",
        TEAMS_HZ,
        DAVE_HZ,
        (20, 0.7),
        "the outside number heard the caller",
    );
    let recs = c.calls().await;
    let rec = recs
        .iter()
        .find(|r| r["steps"].to_string().contains("+15550001234"))
        .unwrap_or_else(|| panic!("no call went to the outside number: {recs:#?}"));
    assert!(
        rec["steps"].to_string().contains(&format!(
            "transfer by Teams user {} to +15550001234",
            dave.mri
        )),
        "{rec}"
    );
    drop((expert, dave_phone));
    c.trunk_counts("contoso", "carrier", 0).await;
    c.trunk_counts("contoso", "teams", 0).await;

    // The fourth call: the caller hangs up while Gina, Dave's target, rings. Dave's REFER is
    // told 487, Gina's ringing is cancelled, and no channel stays taken.
    let gina_phone = proxy.start_teams_user_with(&gina, "manual", ERIN_HZ as u32, srtp);
    let (_expert, caller, dave_phone) =
        passed_on_by_dave(&c, &proxy, people, &gina.number, "adele-heard-4.wav").await;
    gina_phone.wait_for("Incoming call", Duration::from_secs(10));
    caller.command("hangup", "");
    dave_phone.wait_for("transfer failed: 487", Duration::from_secs(10));
    gina_phone.wait_for("session closed", Duration::from_secs(10));
    c.trunk_counts("contoso", "teams", 0).await;
    let recs = c.calls().await;
    let rec = recs
        .iter()
        .find(|r| r["steps"].to_string().contains(&gina.mri))
        .unwrap_or_else(|| panic!("no call went to Gina: {recs:#?}"));
    assert!(
        rec["steps"].to_string().contains(&format!(
            "transfer by Teams user {} to Teams user {}",
            dave.mri, gina.mri
        )),
        "{rec}"
    );
}

/// The experts' Teams presence as the router's desk shows it (`GET /v1/agents/me/targets`):
/// the UPNs of the escalations group's experts free now.
async fn free_experts(c: &Center) -> Vec<String> {
    let t: Value = get_json(
        &c.http,
        &format!(
            "{}/v1/agents/me/targets?agent=adele@contoso.example",
            c.base
        ),
    )
    .await;
    t["experts"][0]["available"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["upn"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 15 s) until the free experts are `want`.
async fn experts_become(c: &Center, want: &[&str]) {
    let mut now = Vec::new();
    for _ in 0..150 {
        now = free_experts(c).await;
        if now == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("free experts: {now:?}, not {want:?}");
}

/// Experts in Teams are chosen by Teams presence: with the router following presence in the
/// simulated tenant, Dave (the better expert) is Busy in another Teams call, so Adele's
/// consultation of the escalations group rings Bob, and she completes the transfer to him;
/// while Bob talks, the proxy tells the tenant he is in a call and the router sees
/// him Busy too (nobody free); when the call ends he is Available again.
#[tokio::test(flavor = "multi_thread")]
async fn an_expert_in_teams_is_chosen_by_teams_presence() {
    use switchboard_tenant_sim::{Config as SimConfig, TenantSim, DEMO_CLIENT_ID};
    let _turn = CALLS.alone().await;
    let sim = TenantSim::start(SimConfig {
        device_code_interval: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = super::http_client();
    let added = post_json(
        &http,
        &format!("{}/_sim/users", sim.base_url()),
        &serde_json::json!({ "count": 2 }),
    )
    .await;
    let (bob_id, dave_id) = (
        added["ids"][0].as_str().unwrap().to_owned(),
        added["ids"][1].as_str().unwrap().to_owned(),
    );
    let presence = |id: String, availability: &'static str, activity: &'static str| {
        let (http, base) = (http.clone(), sim.base_url().to_owned());
        async move {
            let r = http
                .post(format!("{base}/_sim/users/{id}/presence"))
                .json(&serde_json::json!({ "availability": availability, "activity": activity }))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    presence(bob_id.clone(), "Available", "Available").await;
    presence(dave_id.clone(), "Busy", "InACall").await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let mut bob = TeamsUser::new("+14255550102", "tenant-a", "tenanta.sbc.example");
    bob.presence_id = Some(bob_id.clone());
    let proxy = TeamsProxy::start(&TeamsProxyOptions {
        gateways: vec!["tenanta.sbc.example".into()],
        users: vec![alice.clone(), bob.clone()],
        tenant_sim_url: Some(sim.base_url().to_owned()),
        ..Default::default()
    });
    let cert = proxy.sbc_certificate(&["tenanta.sbc.example"]);
    let tenant = dr_tenant("contoso", "tenanta.sbc.example", "+18005550100").replace(
        "teams_number = \"+14255550102\"",
        &format!(
            "teams_number = \"+14255550102\"\nobject_id = \"{bob_id}\"\n\n[[tenants.agents]]\nupn = \"dave@contoso.example\"\nskills = {{ escalations = 5 }}\nteams_number = \"+14255550104\"\nobject_id = \"{dave_id}\""
        ),
    );
    let toml = format!(
        "[presence]\nenabled = true\nauthority = \"{}\"\nclient_id = \"{DEMO_CLIENT_ID}\"\ngraph_url = \"{}\"\npoll_seconds = 1\nsweep_seconds = 2\n\n{}",
        sim.authority(),
        sim.graph_url(),
        sbc_config(&proxy, &cert, &tenant)
    );
    // The operator signs the router's service account in once (graph-login).
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&toml, Path::new("calls.toml")).unwrap();
    switchboard_router::presence::sign_in_service_account(dir.path(), &config.presence, |code| {
        let (uri, otc) = (code.verification_uri.clone(), code.user_code.clone());
        tokio::spawn(async move {
            switchboard_tenant_sim::enter_device_code(&uri, &otc, "NestorW@contoso.example")
                .await
                .unwrap();
        });
    })
    .await
    .unwrap();
    let c = start_in(&toml, dir).await;
    c.proxies_up(&proxy, "contoso", "teams").await;
    // Dave is busy in Teams: only Bob is free.
    experts_become(&c, &["bob@contoso.example"]).await;
    c.tones(20);
    // Adele consults the escalations expert the router finds free by presence, Bob, and
    // hands him the caller.
    let (expert, caller) =
        hand_to_teams_expert(&c, &proxy, (&alice, &bob), "adele-heard.wav", true).await;
    // In the call, Bob is Busy / In a call in Teams, and the router sees it within its
    // presence poll (1 s here; "no expert free" comes sooner, from the call itself).
    proxy.wait_for_log("teams-proxy: presence", Duration::from_secs(10));
    experts_become(&c, &[]).await;
    let bob_now = c
        .status_until("bob@contoso.example", |s| s["teams"] == "Busy/InACall")
        .await;
    assert_eq!(bob_now["teams"], "Busy/InACall", "{bob_now}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller.command("hangup", "");
    drop(expert);
    // The call over, he is Available again (Dave still busy).
    experts_become(&c, &["bob@contoso.example"]).await;
    let rec = c.record_of("+14255550101").await;
    let steps = rec["steps"].to_string();
    for step in [
        "consult by adele@contoso.example with bob@contoso.example",
        "transfer by adele@contoso.example to bob@contoso.example after consulting",
    ] {
        assert!(steps.contains(step), "{step}: {steps}");
    }
    assert!(!steps.contains("dave"), "{steps}");
    assert_eq!(rec["agent"], "bob@contoso.example", "{rec}");
}

/// Bob has a Switchboard phone registered and a Teams number: Adele chooses Teams. The
/// escalations group consulted there (`teams:escalations`) rings Bob's Teams client through
/// the proxy — not his phone — and Adele cancels; then her blind transfer to `teams:bob@…` gives the Teams caller
/// to Bob in Teams, where the two hear each other. Alex, who has no Teams number, cannot be
/// reached in Teams (409), and his phone is not rung either.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_chooses_teams_to_reach_an_expert_who_also_has_a_switchboard_phone() {
    let _turn = CALLS.alone().await;
    let alice = TeamsUser::new("+14255550101", "tenant-a", "tenanta.sbc.example");
    let bob = TeamsUser::new("+14255550102", "tenant-a", "tenanta.sbc.example");
    let (call, adele, others) =
        teams_caller_with_adele(&[alice, bob.clone()], &["alex@contoso.example"]).await;
    let TeamsCall { c, proxy, caller } = call;
    // Bob's Switchboard phone, registered (Not ready), would answer at once if rung.
    let bob_phone = c
        .agent("bob@contoso.example", 0.0, "alex-tone.wav", "bob-phone.wav")
        .await;
    c.set_state("bob@contoso.example", "not_ready").await;
    let expert = proxy.start_teams_user_with(&bob, "auto", EXPERT_HZ as u32, ";mediaenc=srtp-mand");
    let targets: Value = get_json(
        &c.http,
        &format!(
            "{}/v1/agents/me/targets?agent=adele@contoso.example",
            c.base
        ),
    )
    .await;
    let in_teams = |upn: &str| {
        targets["colleagues"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["upn"] == upn))
            .map(|x| x["in_teams"].clone())
    };
    assert_eq!(
        in_teams("bob@contoso.example"),
        Some(Value::Bool(true)),
        "{targets}"
    );
    assert_eq!(
        in_teams("alex@contoso.example"),
        Some(Value::Bool(false)),
        "{targets}"
    );
    let best = &targets["experts"][0]["available"][0];
    assert_eq!(best["upn"], "bob@contoso.example", "{targets}");
    assert_eq!(best["in_teams"], true, "{targets}");
    assert_eq!(
        desk(&c, "consult", Some("teams:alex@contoso.example")).await,
        409
    );
    assert_eq!(
        desk(&c, "transfer", Some("teams:alex@contoso.example")).await,
        409
    );
    // The escalations group consulted in Teams: its expert with a Teams number, Bob; the
    // caller and his Teams client, two calls on the Teams trunk.
    assert_eq!(desk(&c, "consult", Some("teams:escalations")).await, 200);
    let state = consult_talking(&c).await;
    assert_eq!(state["consult"]["state"], "talking", "{state}");
    c.trunk_counts("contoso", "teams", 2).await;
    assert_eq!(desk(&c, "consult/cancel", None).await, 200);
    c.trunk_counts("contoso", "teams", 1).await;
    // The blind transfer rings him in Teams again; Adele's part ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        desk(&c, "transfer", Some("teams:bob@contoso.example")).await,
        200
    );
    let _ = finish(adele, Duration::from_secs(10)).await;
    c.trunk_counts("contoso", "teams", 2).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    caller.command("hangup", "");
    c.trunk_counts("contoso", "teams", 0).await;
    let caller_wav = caller.heard_wav(Duration::from_secs(20));
    let expert_wav = expert.heard_wav(Duration::from_secs(20));
    let (caller_bob, bob_caller) = (
        blocks_in(&caller_wav, EXPERT_HZ, 0.2),
        blocks_in(&expert_wav, TEAMS_HZ, 0.2),
    );
    eprintln!("blocks heard: caller←Bob in Teams {caller_bob}, Bob in Teams←caller {bob_caller}");
    assert!(
        caller_bob > 40 && bob_caller > 40,
        "caller←Bob {caller_bob}, Bob←caller {bob_caller}"
    );
    // Neither Switchboard phone rang.
    for (who, phone) in [("Bob", bob_phone)]
        .into_iter()
        .chain(others.into_iter().map(|p| ("Alex", p)))
    {
        let ev = finish(phone, Duration::from_millis(10)).await;
        assert!(
            !ev.iter()
                .any(|e| e["event"] == "incoming" || e["event"] == "established"),
            "{who}'s Switchboard phone: {ev:?}"
        );
    }
    let recs = c.calls().await;
    let steps = recs[0]["steps"].to_string();
    for step in [
        "consult by adele@contoso.example with bob@contoso.example in Teams",
        "consult with bob@contoso.example ended: cancelled",
        "transfer by adele@contoso.example to bob@contoso.example in Teams",
    ] {
        assert!(steps.contains(step), "{step}: {steps}");
    }
    assert_eq!(recs[0]["agent"], "bob@contoso.example", "{}", recs[0]);
}

/// An INVITE from Teams user Alice (+14255550101) to `number` at tenant A's SBC (`port`: the
/// router's TLS port), as a proxy sends it over TLS (plain RTP, PCMU), Call-ID `id`, with
/// `extra` header lines.
fn proxy_invite(number: &str, port: u16, id: &str, extra: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    format!(
        "INVITE sip:{number}@tenanta.sbc.example:{port};user=phone;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+14255550101@sip.pstnhub.microsoft.com;user=phone>;tag=t{id}\r\n\
         To: <sip:{number}@tenanta.sbc.example;user=phone>\r\n\
         Call-ID: {id}@proxy\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sip.pstnhub.microsoft.com:5061;transport=tls>\r\n\
         {extra}\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Only Microsoft's proxies speak for a Direct Routing trunk. A TLS client on a proxy's
/// address (127.0.0.1, as `[sip.resolve]` gives the proxies here) whose certificate, from a
/// CA the router trusts, names no proxy is refused as a stranger (403), logged and counted.
/// The same INVITE on a connection whose certificate names
/// `sip.pstnhub.microsoft.com` is a Teams call to the tenant's number; on it, a caller named
/// by P-Asserted-Identity is that number whatever From says, and one with `Privacy: id` is
/// anonymous. The clients are openssl, not our SIP code.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_address_without_a_proxys_certificate_speaks_for_no_trunk() {
    let _turn = CALLS.alone().await;
    let (_alice, proxy, cert) = alice_at_tenant_a();
    let c = start(&sbc_config(
        &proxy,
        &cert,
        &dr_tenant("contoso", "tenanta.sbc.example", "+18005550100"),
    ))
    .await;
    let tls = c.router.sip_tls_addr().expect("the router listens on TLS");
    let impostor = proxy.sbc_certificate(&["sip.pstnhub.impostor.example"]);
    let mut peer = crate::teams_proxy::TlsPeer::connect(tls, &impostor, &proxy.ca_pem);
    peer.send(&proxy_invite("+18005550100", tls.port(), "impostor", ""));
    let out = peer
        .wait_for("SIP/2.0 403", Duration::from_secs(10))
        .unwrap_or_else(|out| panic!("not refused: {out}"));
    assert!(!out.contains("SIP/2.0 100"), "{out}");
    drop(peer);
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("sip_requests_refused_total{why=\"proxy-certificate\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Microsoft's name (from the same CA): the call is the tenant's.
    let microsoft = proxy.sbc_certificate(&["sip.pstnhub.microsoft.com"]);
    let mut peer = crate::teams_proxy::TlsPeer::connect(tls, &microsoft, &proxy.ca_pem);
    peer.send(&proxy_invite("+18005550100", tls.port(), "proxy", ""));
    let out = peer
        .wait_for("SIP/2.0 200", Duration::from_secs(10))
        .unwrap_or_else(|out| panic!("not answered: {out}"));
    assert!(!out.contains("SIP/2.0 403"), "{out}");
    let rec = c.record_of("+14255550101").await;
    assert_eq!(rec["trunk"], "teams", "{rec}");
    assert_eq!(
        c.calls().await.len(),
        1,
        "the impostor's INVITE left no call"
    );
    // P-Asserted-Identity names the caller, whatever From says; with Privacy: id the caller
    // is anonymous, to the agent and in the record.
    let pai = |n: &str| {
        format!("P-Asserted-Identity: <sip:{n}@sip.pstnhub.microsoft.com;user=phone>\r\n")
    };
    peer.send(&proxy_invite(
        "+18005550100",
        tls.port(),
        "asserted",
        &pai("+14255550177"),
    ));
    peer.send(&proxy_invite(
        "+18005550100",
        tls.port(),
        "private",
        &format!("{}Privacy: id\r\n", pai("+14255550178")),
    ));
    let mut callers = Vec::new();
    for _ in 0..100 {
        callers = c
            .calls()
            .await
            .iter()
            .map(|r| r["caller"].clone())
            .collect();
        if callers.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    callers.sort_by_key(|v| v.to_string());
    assert_eq!(
        callers,
        ["+14255550101", "+14255550177", "anonymous"],
        "the asserted caller, and the private one hidden"
    );
}
