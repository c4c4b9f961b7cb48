//! SIPp against the router's SIP edge (our SIP code on one side only): a load of agents'
//! outside calls that must all complete, and peers that misbehave — an ACK that comes late,
//! requests in dialogs that do not exist, a retransmitted BYE, requests the router cannot take
//! — each answered as RFC 3261 says, with no call left behind.

use super::*;

/// A SIPp process, killed when dropped.
struct Sipp(std::process::Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs SIPp against the router's edge with `args` until it ends (at most `within`); its
/// exit status, and its screen and error output for the failure message.
async fn sipp_run(c: &Center, name: &str, args: &[&str], within: Duration) -> (bool, String) {
    let errors = c.dir.path().join(format!("{name}-errors.log"));
    let mut cmd = Command::new("sipp");
    cmd.arg(format!("127.0.0.1:{}", c.sip))
        .args(["-i", "127.0.0.1", "-nostdin", "-timeout_error"])
        .args(["-timeout", &format!("{}s", within.as_secs())])
        .args(["-p", &peers::free_udp_tcp_port().to_string()])
        .args(["-mp", &peers::free_udp_tcp_port().to_string()])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&errors)
        .args(args)
        .current_dir(c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .expect("sipp is not installed — run tests/peers/install.sh");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    (out.status.success(), text)
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers/sipp")
        .join(name)
        .display()
        .to_string()
}

/// The `n`th request SIPp sends outside any dialog (a From tag and CSeq of its own, so no two
/// look like one request merged by a fork), and the one response it must get.
fn refused(n: u32, method: &str, extra: &str, body: &str, status: u16) -> String {
    let (ct, len) = if body.is_empty() {
        (String::new(), "0")
    } else {
        ("Content-Type: application/sdp\n      ".to_owned(), "[len]")
    };
    // A refused INVITE is ACKed on its own branch (RFC 3261 §17.1.1.3).
    let ack = if method == "INVITE" {
        format!(
            r#"  <send>
    <![CDATA[
      ACK sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:+15550001111@[local_ip]:[local_port]>;tag=[pid]bad{n}
      [last_To:]
      Call-ID: [call_id]
      CSeq: {n} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"  <send>
    <![CDATA[
      {method} sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+15550001111@[local_ip]:[local_port]>;tag=[pid]bad{n}
      To: <sip:+18005550100@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {n} {method}
      Contact: <sip:+15550001111@[local_ip]:[local_port]>
      {extra}
      {ct}Content-Length: {len}

      {body}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{status}"/>
{ack}"#
    )
}

/// An SDP offer of `codecs` (`m=` payload types and their `a=rtpmap` lines) at `[media_port]`.
fn offer(m: &str, maps: &str) -> String {
    format!(
        "v=0\n      o=sipp 1 1 IN IP4 [local_ip]\n      s=-\n      c=IN IP4 [local_ip]\n      t=0 0\n      \
         m=audio [media_port] RTP/AVP {m}\n      {maps}\n"
    )
}

/// Calls through the router's edge from SIPp, each a real process on 127.0.0.1:
///
/// - misbehaving peers on the trunk, each call to the tenant's number (an attendant that
///   answers at once): the ACK of the 200 comes only after 1.2 s (the router retransmits the
///   200 meanwhile); a BYE and an INFO naming a dialog that does not exist get 481; the BYE
///   sent twice gets the same 200 twice;
/// - requests the router cannot take: an offer with no codec in common (488), a body that is
///   not SDP (400), a method it does not know (501), an INVITE with `Require:` of an
///   extension it lacks (420); each refused INVITE is ACKed;
/// - then a load: 100 agents' outside calls at 20 a second (the phones answer the router's
///   407 with digest, the toll rules pass them, both legs' media anchored, SIPp's UAS as the
///   number called): every one completes;
///
/// and nothing is left: the trunk counts no call, every call has a record, closed.
#[tokio::test(flavor = "multi_thread")]
async fn sipp_load_and_misbehaving_peers_leave_no_call_behind() {
    let _turn = CALLS.turn().await;
    // SIPp's own UAS: the outside number the agents call (180, 200 with SDP, the BYE).
    let uas = peers::free_udp_tcp_port();
    let _uas = Sipp(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin"])
            .args(["-p", &uas.to_string()])
            .args(["-mp", &peers::free_udp_tcp_port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is not installed — run tests/peers/install.sh"),
    );
    let agents: String = (1..=10)
        .map(|i| format!("[[tenants.agents]]\nupn = \"agent{i}@contoso.example\"\n\n"))
        .collect();
    // The edge of the other tests, SIPp's MD5 (it knows no SHA-256), its UAS as the trunk's
    // far end.
    let edge = EDGE.replace("[sip]\n", "[sip]\ndigest = \"MD5\"\n");
    let c = start(&format!(
        r#"{edge}outbound = "sip:127.0.0.1:{uas}"
max_calls = 1000

[[tenants.numbers]]
number = "+18005550100"
attendant = "main"

[[tenants.attendants]]
name = "main"
greeting = "demo-main-menu"
timeout_seconds = 30
default = {{ queue = "general" }}

[[tenants.queues]]
name = "general"

[tenants.outbound]
trunk = "carrier"
allow = ["+1555"]
max_per_hour = 1000

{agents}"#
    ))
    .await;

    // The late ACK, the 481s, the retransmitted BYE.
    let (ok, out) = sipp_run(
        &c,
        "lost",
        &[
            "-sf",
            &scenario("uac_lost.xml"),
            "-s",
            "+18005550100",
            "-m",
            "1",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "uac_lost.xml against the router:\n{out}");

    // Requests the router cannot take.
    let pcmu = offer("0", "a=rtpmap:0 PCMU/8000");
    let steps = [
        refused(
            1,
            "INVITE",
            "Max-Forwards: 70",
            &offer("18", "a=rtpmap:18 G729/8000"),
            488,
        ),
        refused(
            2,
            "INVITE",
            "Max-Forwards: 70",
            "this is not SDP at all",
            400,
        ),
        refused(3, "FROB", "Max-Forwards: 70", "", 501),
        refused(
            4,
            "INVITE",
            "Max-Forwards: 70\n      Require: frobnication",
            &pcmu,
            420,
        ),
    ]
    .concat();
    let bad = c.dir.path().join("bad.xml");
    std::fs::write(
        &bad,
        format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"refused\">\n{steps}</scenario>\n"
        ),
    )
    .unwrap();
    let (ok, out) = sipp_run(
        &c,
        "refused",
        &["-sf", bad.to_str().unwrap(), "-m", "1"],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "requests the router cannot take:\n{out}");

    // The load: 100 outside calls from the agents' phones, 20 a second.
    let users = c.dir.path().join("users.csv");
    let mut rows = String::from("SEQUENTIAL\n");
    for i in 1..=10 {
        let v: Value = c
            .http
            .post(format!("{}/v1/agents/me/sip-credentials", c.base))
            .json(&serde_json::json!({ "agent": format!("agent{i}@contoso.example") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (user, password, domain) = (
            v["username"].as_str().unwrap(),
            v["password"].as_str().unwrap(),
            v["domain"].as_str().unwrap(),
        );
        rows.push_str(&format!(
            "{user};[authentication username={user} password={password}];+15550000000;{domain}\n"
        ));
    }
    std::fs::write(&users, rows).unwrap();
    let auth_uri = format!("+15550000000@127.0.0.1:{}", c.sip);
    let (ok, out) = sipp_run(
        &c,
        "load",
        &[
            "-sf",
            &scenario("uac_auth_call.xml"),
            "-inf",
            users.to_str().unwrap(),
            "-m",
            "100",
            "-r",
            "20",
            "-l",
            "60",
            "-recv_timeout",
            "20000",
            "-auth_uri",
            &auth_uri,
        ],
        Duration::from_secs(120),
    )
    .await;
    assert!(ok, "100 outside calls at 20/s, none failed:\n{out}");

    // Nothing left: no call on the trunk, every call recorded and closed.
    let mut trunks = Value::Null;
    for _ in 0..100 {
        trunks = get_json(&c.http, &format!("{}/v1/trunks", c.base)).await;
        if trunks[0]["calls"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(trunks[0]["calls"], 0, "calls left on the trunk: {trunks}");
    // The records' last writes go to the store after the calls have left the trunk: wait
    // for them (up to 10 s) before judging.
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..100 {
        records = get_json(&c.http, &format!("{}/v1/calls?limit=500", c.base)).await;
        if records.iter().all(|r| r["ended_at"].is_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outside = records
        .iter()
        .filter(|r| r["dialled"] == "+15550000000")
        .collect::<Vec<_>>();
    assert_eq!(outside.len(), 100, "a record per outside call");
    assert!(
        records.iter().all(|r| r["ended_at"].is_string()),
        "every record closed: {records:#?}"
    );
    assert!(
        outside.iter().all(|r| r["outcome"] == "answered"),
        "{:#?}",
        outside.iter().find(|r| r["outcome"] != "answered")
    );
}

/// Keys as DTMF tone pairs (RFC 4733 §5's frequencies) in raw µ-law at 8 kHz, as a phone on a
/// trunk without telephone-event sends them: 1 s of silence (the relay follows the stream
/// first), then each key for 150 ms with 300 ms of silence after it.
fn keys_as_tones(keys: &str) -> Vec<u8> {
    let mut pcm = vec![0i16; 8000];
    for key in keys.chars() {
        pcm.extend(
            switchboard_media::dtmf::key_tone(key, 8000, 7000.0, 0, 1200).expect("a DTMF key"),
        );
        pcm.extend(std::iter::repeat_n(0, 2400));
    }
    pcm.iter()
        .map(|s| switchboard_media::g711::ulaw_encode(*s))
        .collect()
}

/// A caller on a trunk without telephone-event (SIPp offering PCMU alone, streaming a file)
/// presses "1" as tones in the audio: the router hears the key in-band during the greeting,
/// the attendant sends the caller to billing, and Adele answers; the record has the choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sent_as_tones_by_a_trunk_without_telephone_event_reach_the_attendant() {
    let _turn = CALLS.turn().await;
    let c = start(&format!("{EDGE}{ATTENDANT}")).await;
    c.tones(20);
    let adele = c
        .agent("adele@contoso.example", 0.0, "agent.wav", "adele.wav")
        .await;
    std::fs::write(c.dir.path().join("keys.ulaw"), keys_as_tones("1")).unwrap();
    let (ok, out) = sipp_run(
        &c,
        "inband",
        &[
            "-sf",
            &scenario("uac_inband_keys.xml"),
            "-s",
            "+18005550100",
            "-m",
            "1",
        ],
        Duration::from_secs(40),
    )
    .await;
    assert!(ok, "uac_inband_keys.xml against the router:\n{out}");
    took_the_call(adele, "Adele (billing) took the call").await;
    let recs = c.calls().await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        recs[0]["choices"],
        serde_json::json!(["main:1"]),
        "{recs:?}"
    );
    assert_eq!(recs[0]["queue"], "billing", "{recs:?}");
    c.router.stop().await.unwrap();
}
