//! The router follows Teams presence for its clients against the simulated tenant (in process,
//! 127.0.0.1): the Graph service account signed in by device code, subscriptions with the
//! validation handshake and real webhook deliveries, lifecycle notifications, the fall-back to
//! polling, and presence fanned out over `/v1/events` only to the clients that watch the user.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_router::config::Config;
use switchboard_tenant_sim::{Config as SimConfig, TenantSim, DEMO_CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SERVICE: &str = "NestorW@contoso.example";

struct Setup {
    sim: TenantSim,
    base: String,
    router: switchboard_router::Background,
    _dir: tempfile::TempDir,
}

async fn setup(webhooks: bool) -> Setup {
    setup_with(webhooks, |_, _| {}).await
}

/// [`setup`] with a change to the router's configuration (it gets the simulated tenant).
async fn setup_with(webhooks: bool, tweak: impl FnOnce(&mut Config, &TenantSim)) -> Setup {
    let sim = TenantSim::start(SimConfig {
        device_code_interval: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config::default();
    config.storage.data_dir = Some(dir.path().to_owned());
    config.presence.enabled = true;
    config.presence.authority = sim.authority();
    config.presence.client_id = DEMO_CLIENT_ID.into();
    config.presence.graph_url = sim.graph_url();
    config.presence.poll_seconds = if webhooks { 3600 } else { 1 };
    config.presence.sweep_seconds = 2;
    if webhooks {
        config.presence.notification_url = format!("{base}/v1/graph/notifications");
    }
    tweak(&mut config, &sim);
    // The operator signs the service account in once (graph-login, with the scopes the
    // configuration asks for); the test enters the code.
    let user = switchboard_router::presence::sign_in_service_account(
        dir.path(),
        &config.presence,
        |code| {
            let (uri, otc) = (code.verification_uri.clone(), code.user_code.clone());
            tokio::spawn(async move {
                switchboard_tenant_sim::enter_device_code(&uri, &otc, SERVICE)
                    .await
                    .unwrap();
            });
        },
    )
    .await
    .unwrap();
    assert_eq!(user, SERVICE);
    let router = switchboard_router::Router::start_on(config, listener)
        .await
        .unwrap()
        .spawn();
    Setup {
        sim,
        base,
        router,
        _dir: dir,
    }
}

async fn client(base: &str, watch: &[&str]) -> Ws {
    let url = format!("{}/v1/events", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let msg = json!({"type": "watch", "ids": watch}).to_string();
    ws.send(Message::Text(msg.into())).await.unwrap();
    ws
}

/// Waits until `ws` has had a presence event for each (id, availability) of `want`, in any
/// order (one read of several users sends them in Graph's order); returns them as seen.
async fn presences_of(ws: &mut Ws, want: &[(&str, &str)], secs: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut found: Vec<Option<Value>> = vec![None; want.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<_> = want
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|(w, _)| *w)
                    .collect();
                panic!("no presence for {missing:?} within {secs} s")
            })
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] != "presence" {
                continue;
            }
            for (i, (id, av)) in want.iter().enumerate() {
                if found[i].is_none() && v["id"] == *id && v["availability"] == *av {
                    found[i] = Some(v.clone());
                }
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// [`presences_of`] for one user.
async fn presence_of(ws: &mut Ws, id: &str, availability: &str, secs: u64) -> Value {
    presences_of(ws, &[(id, availability)], secs)
        .await
        .remove(0)
}

/// Every presence event `ws` gets within `secs`.
async fn presence_events(ws: &mut Ws, secs: u64) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(
        deadline.saturating_duration_since(tokio::time::Instant::now()),
        ws.next(),
    )
    .await
    {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "presence" {
                got.push(v);
            }
        }
    }
    got
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

async fn until(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The router's subscriptions at the simulated Graph.
async fn subscriptions(sim: &TenantSim) -> Vec<Value> {
    let token = sim
        .mint_access_token(SERVICE, &["Presence.Read.All"])
        .unwrap();
    let v: Value = reqwest::Client::new()
        .get(format!("{}/subscriptions", sim.graph_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["value"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_changes_to_the_clients_that_watch() {
    let s = setup(true).await;
    let megan = s.sim.user_id("MeganB@contoso.example").unwrap();
    let alex = s.sim.user_id("AlexW@contoso.example").unwrap();
    s.sim
        .set_teams_presence(&megan, Some(("Available", "Available")))
        .unwrap();
    s.sim
        .set_teams_presence(&alex, Some(("Available", "Available")))
        .unwrap();

    let mut both = client(&s.base, &[&megan, &alex]).await;
    let mut only_alex = client(&s.base, &[&alex]).await;
    // The state now, first.
    presences_of(
        &mut both,
        &[(&megan, "Available"), (&alex, "Available")],
        10,
    )
    .await;
    presence_of(&mut only_alex, &alex, "Available", 10).await;
    until("one subscription for the two users", 15, async || {
        metric(&s.base, "presence_subscriptions").await == 1.0
    })
    .await;
    let subs = subscriptions(&s.sim).await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    let resource = subs[0]["resource"].as_str().unwrap();
    assert!(
        resource.contains(&megan) && resource.contains(&alex),
        "{resource}"
    );

    // Megan presents: the webhook brings it to the client that watches her, not the other.
    s.sim
        .set_teams_presence(&megan, Some(("DoNotDisturb", "Presenting")))
        .unwrap();
    let e = presence_of(&mut both, &megan, "DoNotDisturb", 10).await;
    assert_eq!(e["activity"], "Presenting");
    let leaked = presence_events(&mut only_alex, 2).await;
    assert!(
        leaked.iter().all(|v| v["id"] == alex.as_str()),
        "{leaked:?}"
    );

    // Bad items in a webhook POST are dropped and the good ones processed; the answer is 202
    // (Graph retries a non-2xx for hours and may mix subscriptions in one POST).
    let hook = format!("{}/v1/graph/notifications", s.base);
    let http = reqwest::Client::new();
    let forged = json!({"value": [{
        "subscriptionId": subs[0]["id"], "clientState": "not-the-secret", "changeType": "updated",
        "resource": format!("communications/presences('{alex}')"),
        "resourceData": {"id": alex}
    }]});
    let r = http.post(&hook).json(&forged).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let expires = subs[0]["expirationDateTime"].as_str().unwrap().to_owned();
    let lifecycle = |sub: &Value, state: &Value| {
        json!({
            "subscriptionId": sub, "clientState": state, "tenantId": subs[0]["tenantId"],
            "lifecycleEvent": "reauthorizationRequired",
            "subscriptionExpirationDateTime": expires,
        })
    };
    let mixed = json!({"value": [
        lifecycle(&json!("00000000-0000-0000-0000-000000000000"), &subs[0]["clientState"]),
        lifecycle(&subs[0]["id"], &json!("not-the-secret")),
        lifecycle(&subs[0]["id"], &subs[0]["clientState"]),
    ]});
    let r = http.post(&hook).json(&mixed).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // The good item (reauthorizationRequired) was acted on: the subscription was renewed.
    until("the subscription to be renewed", 15, async || {
        let now = subscriptions(&s.sim).await;
        now.len() == 1
            && now[0]["id"] == subs[0]["id"]
            && now[0]["expirationDateTime"] != expires.as_str()
    })
    .await;
    let r = http.post(&hook).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!(
            "{hook}?validationToken=Validation%3A%20Testing%20client%20application"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "Validation: Testing client application"
    );

    // A notification Graph loses (it announces none for presence) heals at the next sweep.
    s.sim.lose_notifications(1);
    s.sim
        .set_teams_presence(&alex, Some(("Away", "Away")))
        .unwrap();
    presence_of(&mut only_alex, &alex, "Away", 10).await;
    s.sim
        .set_teams_presence(&megan, Some(("Available", "Available")))
        .unwrap();
    presence_of(&mut both, &megan, "Available", 10).await;

    // Clients leave: nobody watched, no subscription left.
    drop(both);
    drop(only_alex);
    until("the subscription to go", 15, async || {
        subscriptions(&s.sim).await.is_empty()
    })
    .await;
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_the_router_polls() {
    let s = setup(false).await;
    let lynne = s.sim.user_id("LynneR@contoso.example").unwrap();
    s.sim
        .set_teams_presence(&lynne, Some(("Available", "Available")))
        .unwrap();
    let mut ws = client(&s.base, &[&lynne]).await;
    presence_of(&mut ws, &lynne, "Available", 10).await;
    // (Both tests' routers share this process's metrics registry: the webhook one reports 0.)
    until("the router to say it polls", 10, async || {
        metric(&s.base, "presence_polling").await == 1.0
    })
    .await;
    s.sim
        .set_teams_presence(&lynne, Some(("Busy", "InACall")))
        .unwrap();
    presence_of(&mut ws, &lynne, "Busy", 10).await;
    assert!(subscriptions(&s.sim).await.is_empty());
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_follow_their_agents_teams_presence() {
    // Adele is an agent of the router's tenant, with her Entra object id: the queues watch
    // her presence from the start, through the same webhooks as the clients'.
    let s = setup_with(true, |config, sim| {
        let adele = sim.user_id("AdeleV@contoso.example").unwrap();
        let toml = format!(
            "[[tenants]]\nid = \"contoso\"\ndomain = \"contoso.example\"\nqueues = [{{ name = \"general\" }}]\nagents = [{{ upn = \"AdeleV@contoso.example\", object_id = \"{adele}\" }}]\n"
        );
        let t = Config::from_toml(&toml, std::path::Path::new("t.toml")).unwrap();
        config.tenants = t.tenants;
    })
    .await;
    let adele = s.sim.user_id("AdeleV@contoso.example").unwrap();
    let teams = async |base: &str| -> Value {
        let v: Value = reqwest::get(format!("{base}/v1/agents/me?agent=AdeleV@contoso.example"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["teams"].clone()
    };
    for (av, ac) in [("DoNotDisturb", "Presenting"), ("Available", "Available")] {
        s.sim.set_teams_presence(&adele, Some((av, ac))).unwrap();
        let want = format!("{av}/{ac}");
        until(
            &format!("the router's agent status says {want}"),
            20,
            async || teams(&s.base).await == want.as_str(),
        )
        .await;
    }
    s.router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expert_groups_from_graph_find_experts_by_their_microsoft_365_skills() {
    // Megan's profile lists "escalations" in Microsoft 365; the router's configuration gives
    // her no skill. The group that counts Graph skills finds her; Adele's does not.
    let s = setup_with(false, |config, sim| {
        let megan = sim.user_id("MeganB@contoso.example").unwrap();
        let toml = format!(
            "[presence]\nenabled = true\nread_skills = true\nauthority = \"https://login.microsoftonline.com/contoso.example/v2.0\"\nclient_id = \"x\"\n\n[[tenants]]\nid = \"contoso\"\ndomain = \"contoso.example\"\nexperts = [{{ name = \"escalations\", skill = \"escalations\", min_level = 2, from_graph = true }}, {{ name = \"spanish\", skill = \"spanish\" }}]\nagents = [{{ upn = \"AdeleV@contoso.example\" }}, {{ upn = \"MeganB@contoso.example\", object_id = \"{megan}\" }}]\n"
        );
        config.tenants = Config::from_toml(&toml, std::path::Path::new("t.toml"))
            .unwrap()
            .tenants;
        config.presence.read_skills = true;
        config.presence.skills_seconds = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let get = async |path: &str| -> Value {
        http.get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    until("Megan's Microsoft 365 skills are read", 20, async || {
        let agents = get("/v1/config/tenants/contoso/agents").await;
        agents[1]["graph_skills"] == json!(["english", "escalations", "spanish"])
    })
    .await;
    let targets = get("/v1/agents/me/targets?agent=AdeleV@contoso.example").await;
    let groups = targets["experts"].as_array().unwrap();
    // Megan has no phone registered: an expert of the group, not free now.
    assert_eq!(groups[0]["name"], "escalations");
    assert_eq!(groups[0]["unavailable"], 1, "{targets}");
    assert_eq!(groups[1]["name"], "spanish");
    assert_eq!(groups[1]["unavailable"], 0, "{targets}");
    s.router.stop().await.unwrap();
    s.sim.shutdown().await;
}
