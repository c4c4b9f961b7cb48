//! Benchmark (not a test): presence fan-out through one router.
//!
//! ```text
//! cargo build --release -p switchboard-router
//! cargo run --release -p switchboard-router --example presence_fanout -- [USERS] [CLIENTS] [CHANGES]
//! ```
//! (defaults 1000 watched users, 200 clients, 40 changes). The simulated tenant runs in this
//! process with USERS generated users; the router runs as its own process (the release binary
//! beside this example) with webhooks on, its Graph service account signed in through
//! `graph-login`; CLIENTS WebSocket clients each watch all USERS. Each change is made in the
//! tenant and timed until every client has its `presence` event; the router's resident memory
//! is read from /proc before and after the watching starts.
//!
//! Prints the delay (p50, p95, max over every delivery) and the memory per watched user.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_tenant_sim::{Config as SimConfig, TenantSim, DEMO_CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let users = args.first().copied().unwrap_or(1000);
    let clients = args.get(1).copied().unwrap_or(200);
    let changes = args.get(2).copied().unwrap_or(40);

    let sim = TenantSim::start(SimConfig {
        extra_users: users,
        device_code_interval: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await?;
    let http = reqwest::Client::new();
    // Every user's id (seeded and generated), the first USERS watched.
    let token = sim.mint_access_token("NestorW@contoso.example", &["User.ReadBasic.All"])?;
    let mut ids: Vec<String> = Vec::new();
    let mut next = Some(format!("{}/users?$select=id&$top=999", sim.graph_url()));
    while let Some(url) = next.take() {
        let page: Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        for u in page["value"].as_array().into_iter().flatten() {
            if let Some(id) = u["id"].as_str() {
                ids.push(id.to_owned());
            }
        }
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    ids.truncate(users);
    println!("tenant: {} users watched, {clients} clients", ids.len());

    // The router, as its own process.
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndata_dir = \"{}\"\n[log]\nlevel = \"warn\"\n[events]\nclient_buffer = 65536\n[presence]\nenabled = true\nauthority = \"{}\"\nclient_id = \"{DEMO_CLIENT_ID}\"\ngraph_url = \"{}\"\nnotification_url = \"{base}/v1/graph/notifications\"\npoll_seconds = 3600\nmax_watched = {}\n",
            dir.path().join("data").display(),
            sim.authority(),
            sim.graph_url(),
            users.max(1)
        ),
    )?;
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("switchboard-router"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("build the router first: cargo build --release -p switchboard-router")
        })?;
    // graph-login: read the code from its message and enter it as the person would.
    let mut login = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("graph-login")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(login.stderr.take().expect("stderr")).read_line(&mut line)?;
    let code = line
        .split("enter the code ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no code in {line:?}"))?
        .to_owned();
    let devicelogin = format!("{}/devicelogin", sim.base_url());
    switchboard_tenant_sim::enter_device_code(&devicelogin, &code, "NestorW@contoso.example")
        .await?;
    anyhow::ensure!(login.wait()?.success(), "graph-login failed");
    let mut router = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = router.id();
    let start = Instant::now();
    while http.get(format!("{base}/v1/health")).send().await.is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "the router did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = rss_kib(pid);

    // Clients: connect, then watch everyone.
    type Seen = Arc<Mutex<Vec<(String, String, Instant)>>>;
    let mut sinks = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    for _ in 0..clients {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/events")).await?;
        let (sink, mut stream) = ws.split();
        let log: Seen = Arc::default();
        let l = log.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = stream.next().await {
                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                    if v["type"] == "presence" {
                        let id = v["id"].as_str().unwrap_or_default().to_owned();
                        let av = v["availability"].as_str().unwrap_or_default().to_owned();
                        l.lock().unwrap().push((id, av, Instant::now()));
                    }
                }
            }
        });
        sinks.push(sink);
        seen.push(log);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(pid);
    let watch = json!({"type": "watch", "ids": ids}).to_string();
    for s in &mut sinks {
        s.send(Message::Text(watch.clone().into())).await?;
    }
    // Everyone has everyone's first state, and the subscriptions are made.
    let want = ids.len();
    let start = Instant::now();
    loop {
        let done = seen
            .iter()
            .filter(|s| s.lock().unwrap().len() >= want)
            .count();
        let subs = reqwest::get(format!("{base}/metrics"))
            .await?
            .text()
            .await?;
        let subscribed = subs
            .lines()
            .find_map(|l| l.strip_prefix("presence_subscriptions "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if done == clients && subscribed >= (want as f64 / 650.0).ceil() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "initial states: {done}/{clients} clients complete, {subscribed} subscriptions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_watching = rss_kib(pid);

    // Changes, one at a time.
    let mut delays = Vec::new();
    let mut lost = 0usize;
    let states = ["Busy", "Away", "DoNotDisturb", "Available"];
    let reader = sim.mint_access_token("NestorW@contoso.example", &["Presence.Read.All"])?;
    for k in 0..changes {
        let id = &ids[(k * 7919) % ids.len()];
        // A state the user is not in now, so that every change is one.
        let now: Value = http
            .get(format!("{}/users/{id}/presence", sim.graph_url()))
            .bearer_auth(&reader)
            .send()
            .await?
            .json()
            .await?;
        let av = states
            .iter()
            .cycle()
            .skip(k % states.len())
            .take(states.len())
            .find(|s| now["availability"] != **s)
            .copied()
            .unwrap_or("Busy");
        let act = match av {
            "Busy" => "InACall",
            "DoNotDisturb" => "Presenting",
            a => a,
        };
        for s in &seen {
            s.lock().unwrap().clear();
        }
        let t0 = Instant::now();
        http.post(format!("{}/_sim/users/{id}/presence", sim.base_url()))
            .json(&json!({"availability": av, "activity": act}))
            .send()
            .await?;
        let deadline = t0 + Duration::from_secs(10);
        let mut got = vec![None; clients];
        while Instant::now() < deadline && got.iter().any(Option::is_none) {
            for (i, s) in seen.iter().enumerate() {
                if got[i].is_none() {
                    if let Some((_, _, at)) = s
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(x, a, _)| x == id && a == av)
                    {
                        got[i] = Some(at.duration_since(t0));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for g in got {
            match g {
                Some(d) => delays.push(d.as_secs_f64() * 1000.0),
                None => lost += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    println!(
        "fan-out delay (tenant change → client event), {} deliveries: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms, missing {lost}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    let per_user = (rss_watching.saturating_sub(rss_connected)) as f64 * 1024.0 / want as f64;
    let per_entry = per_user / clients as f64;
    println!(
        "router RSS: idle {rss_idle} KiB, {clients} clients connected {rss_connected} KiB, watching {rss_watching} KiB → {:.0} bytes per watched user ({per_entry:.0} bytes per client × user)",
        per_user
    );
    let _ = router.kill();
    let _ = router.wait();
    sim.shutdown().await;
    Ok(())
}
