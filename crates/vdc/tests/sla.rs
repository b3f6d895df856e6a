//! End to end: SLAs kept by steering traffic and by scaling within quota
//! and burst, each decision explained; draining on scale-down; components
//! calling the platform with their own token.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::load::{self, Recorder, Sample};
use common::*;
use serde_json::Value;

/// An app whose `web` component runs the test backend behind a gateway.
/// `web` is the rest of the component's table (replicas, env, the input).
fn app(vdc: &Vdc, name: &str, web: &str) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let text = format!(
        r#"app = "{name}"

[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {port}, address = "127.0.0.1" }}
links = {{ backend = "web.http" }}

[components.web]
command = ["python3", "{programs}/backend.py"]
workdir = "{programs}"
resources = {{ cpu = 0.1, memory = "64MiB" }}
stop_grace = "10s"
{web}
"#,
        programs = programs()
    );
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, port)
}

async fn scale_view(vdc: &Vdc, app: &str) -> Value {
    vdc.api_get(&format!("/v1/apps/{app}/components/web/scale"))
        .await
        .json()
        .await
        .unwrap()
}

async fn events_of(vdc: &Vdc, app: &str) -> Vec<Value> {
    vdc.api_get(&format!("/v1/events?app={app}&limit=1000"))
        .await
        .json()
        .await
        .unwrap()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn reason(e: &Value) -> &str {
    e["reason"].as_str().unwrap_or_default()
}

/// Polls the component's replicas every 250 ms while `load` runs.
async fn watching<F: std::future::Future>(
    vdc: &Vdc,
    app: &str,
    load: F,
) -> (F::Output, Vec<(Duration, u64, u64)>) {
    let started = Instant::now();
    let mut load = std::pin::pin!(load);
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            out = &mut load => return (out, seen),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                let view = scale_view(vdc, app).await;
                seen.push((
                    started.elapsed(),
                    view["replicas"].as_u64().unwrap(),
                    view["ready"].as_u64().unwrap(),
                ));
            }
        }
    }
}

fn window(samples: &[Sample], from: Duration, to: Duration) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_autoscaler_follows_a_stepped_load_and_gives_back_without_flapping() {
    let vdc = Vdc::start();
    // Each request waits 20 ms for every other one in flight: one replica
    // holds p99 <= 100 ms up to about 30 req/s.
    let (spec, port) = app(
        &vdc,
        "steps",
        r#"replicas = 1
min = 1
max = 6
env = { DELAY_MS = "10", PER_IN_FLIGHT_MS = "20" }
inputs = { http = { protocol = "http", health = "/healthz", sla = { latency = "p99 <= 100ms", window = "5s", scale_down_after = "10s" } } }"#,
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/");
    let client = http();
    let recorder = Recorder::default();

    let phases = [
        (15.0, Duration::from_secs(5)),
        (120.0, Duration::from_secs(30)),
        (5.0, Duration::from_secs(45)),
    ];
    let run = async {
        let mut offset = Duration::ZERO;
        let mut sent = 0;
        for (rate, duration) in phases {
            load::run(&client, &url, rate, duration, offset, &recorder).await;
            offset += duration;
            sent += (rate * duration.as_secs_f64()).round() as usize;
        }
        load::settle(&recorder, sent).await;
    };
    let ((), replicas) = watching(&vdc, "steps", run).await;
    let samples = recorder.samples();

    let busy = (Duration::from_secs(5), Duration::from_secs(35));
    let most = replicas
        .iter()
        .filter(|(t, _, _)| *t >= busy.0 && *t < busy.1)
        .map(|(_, n, _)| *n)
        .max()
        .unwrap();
    assert!(
        most >= 3,
        "120 req/s needs at least 3 replicas: {replicas:?}"
    );
    // Once scaled, the objective holds as the client sees it.
    let settled = window(&samples, Duration::from_secs(20), busy.1);
    let p99 = load::quantile(&settled, 0.99);
    assert!(
        p99 <= Duration::from_millis(100),
        "p99 {p99:?} over the last 15 s at 120 req/s; replicas {replicas:?}"
    );
    // Back to min once the load is gone, with no request failing on the way
    // (instances leaving are drained).
    let (_, last, _) = replicas.last().unwrap();
    assert_eq!(*last, 1, "back to min: {replicas:?}");
    let failed = load::failures(&samples);
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // Every change is an event with its figures, and none is taken back:
    // up while the load rises, down once it falls.
    let events = events_of(&vdc, "steps").await;
    let scaled = of_kind(&events, "scaled");
    assert!(!scaled.is_empty());
    let directions: Vec<bool> = scaled
        .iter()
        .map(|e| {
            let r = reason(e);
            assert!(
                r.contains("req/s") && r.contains("replicas") && r.contains("p99"),
                "a decision names its inputs: {r}"
            );
            let (from, to) = counts(r);
            to > from
        })
        .collect();
    let first_down = directions.iter().position(|up| !up).unwrap();
    assert!(
        directions[first_down..].iter().all(|up| !up),
        "flapping: {:#?}",
        scaled.iter().map(|e| reason(e)).collect::<Vec<_>>()
    );
    assert!(
        scaled.len() <= 8,
        "{} decisions: {:#?}",
        scaled.len(),
        scaled.iter().map(|e| reason(e)).collect::<Vec<_>>()
    );
    let up = reason(scaled[0]);
    assert!(up.contains("> 100ms"), "{up}");
}

/// `3 → 5 replicas` in a reason.
fn counts(reason: &str) -> (u32, u32) {
    let arrow = reason.find(" → ").unwrap_or_else(|| panic!("{reason}"));
    let from = reason[..arrow]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reason}"));
    let to = reason[arrow + " → ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reason}"));
    (from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_instance_gets_a_small_share_and_nothing_scales() {
    let vdc = Vdc::start();
    let (spec, port) = app(
        &vdc,
        "steer",
        r#"replicas = 3
min = 3
max = 6
env = { DELAY_MS = "2", SLOW_INDEX = "0", SLOW_MS = "150" }
inputs = { http = { protocol = "http", health = "/healthz", sla = { latency = "p99 <= 50ms", window = "10s" } } }"#,
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/");
    let client = http();
    let recorder = Recorder::default();
    load::run(
        &client,
        &url,
        50.0,
        Duration::from_secs(20),
        Duration::ZERO,
        &recorder,
    )
    .await;
    load::settle(&recorder, 1000).await;
    let samples = recorder.samples();
    assert!(load::failures(&samples).is_empty());

    let slow = samples.iter().filter(|s| s.body == "steer/web/0").count();
    let share = slow as f64 / samples.len() as f64;
    assert!(
        share < 0.05,
        "the slow instance served {slow} of {} requests",
        samples.len()
    );
    // After the first seconds, which teach the balancer, the objective
    // holds as the client sees it.
    let later = window(&samples, Duration::from_secs(3), Duration::from_secs(20));
    let p99 = load::quantile(&later, 0.99);
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
    // Steering was enough: nothing scaled.
    let view = scale_view(&vdc, "steer").await;
    let events = events_of(&vdc, "steer").await;
    assert_eq!(
        view["replicas"],
        3,
        "{view:#}\n{:#?}",
        of_kind(&events, "scaled")
    );
    assert!(
        of_kind(&events, "scaled").is_empty(),
        "{:#?}",
        of_kind(&events, "scaled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_down_under_load_drops_no_request() {
    let vdc = Vdc::start();
    let (spec, port) = app(
        &vdc,
        "drain",
        r#"replicas = 4
min = 1
max = 4
env = { DELAY_MS = "200" }
inputs = { http = { protocol = "http", health = "/healthz" } }"#,
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/");
    let client = http();
    let recorder = Recorder::default();
    let run = load::run(
        &client,
        &url,
        60.0,
        Duration::from_secs(8),
        Duration::ZERO,
        &recorder,
    );
    let scale = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let vdc = &vdc;
        tokio::task::block_in_place(|| vdc.ok(&["scale", "drain/web", "1"]))
    };
    let ((), out) = tokio::join!(run, scale);
    assert!(out.contains("drain/web: 1 replicas"), "{out}");
    load::settle(&recorder, 480).await;
    let samples = recorder.samples();
    assert_eq!(samples.len(), 480);
    let failed = load::failures(&samples);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    // The instances that left were serving when asked to: each had
    // requests in flight (200 ms each, 60 req/s over 4).
    let served_by_leaving = samples
        .iter()
        .filter(|s| s.at > Duration::from_millis(2800) && s.body != "drain/web/0")
        .count();
    assert!(served_by_leaving > 0);
    vdc.wait_instances("drain", "one instance left", |list| list.len() == 1);
    let events = events_of(&vdc, "drain").await;
    let scaled = of_kind(&events, "scaled");
    assert!(
        scaled
            .iter()
            .any(|e| reason(e) == "vdc scale: 4 → 1 replicas"),
        "{scaled:#?}"
    );

    // Bad input changes nothing.
    for (args, expect) in [
        (vec!["scale", "drain/web", "9"], "outside the bounds"),
        (vec!["scale", "drain/lb", "2"], "served by the data plane"),
        (vec!["scale", "drain/nope", "2"], "no component `nope`"),
        (vec!["scale", "nope/web", "2"], "no app named `nope`"),
        (vec!["scale", "drain", "2"], "expected APP/COMPONENT"),
        (vec!["autoscale", "drain/web", "on"], "no SLA to keep"),
    ] {
        let out = vdc.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    let view = scale_view(&vdc, "drain").await;
    assert_eq!(view["replicas"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_autoscaler_stops_at_the_quota_then_bursts_and_the_bill_shows_it() {
    let vdc = Vdc::start();
    let limits = ["--cpu", "4", "--memory", "4GiB", "--instances", "2"];
    let token = vdc.create_tenant("acme", &[&limits[..], &PRICES[..]].concat());
    let (spec, port) = app(
        &vdc,
        "quota",
        r#"replicas = 1
min = 1
max = 6
env = { DELAY_MS = "10", PER_IN_FLIGHT_MS = "20" }
inputs = { http = { protocol = "http", health = "/healthz", sla = { latency = "p99 <= 100ms", window = "5s", scale_down_after = "1h" } } }"#,
    );
    let up = std::process::Command::new(BIN)
        .args(["--addr", &vdc.addr, "up", "-d", spec.to_str().unwrap()])
        .env("VDC_TOKEN", &token)
        .env("XDG_CONFIG_HOME", vdc.dir.path().join("config"))
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let url = format!("http://127.0.0.1:{port}/");
    let client = http();
    let recorder = Recorder::default();

    // Without a burst allowance: two replicas, the quota, and an event
    // that says so.
    let (_, seen) = watching(
        &vdc,
        "quota",
        load::run(
            &client,
            &url,
            100.0,
            Duration::from_secs(12),
            Duration::ZERO,
            &recorder,
        ),
    )
    .await;
    assert_eq!(seen.iter().map(|s| s.1).max(), Some(2), "{seen:?}");
    let events = events_of(&vdc, "quota").await;
    let limited = of_kind(&events, "scale-limited");
    assert_eq!(limited.len(), 1, "said once: {events:#?}");
    assert!(
        reason(limited[0]).contains("the quota reached"),
        "{limited:#?}"
    );

    // With one: past the quota, into burst.
    vdc.ok(&[
        "tenant",
        "set-quota",
        "acme",
        "--cpu",
        "4",
        "--memory",
        "4GiB",
        "--instances",
        "2",
        "--burst-cpu",
        "1",
        "--burst-memory",
        "1GiB",
        "--burst-instances",
        "2",
    ]);
    let (_, seen) = watching(
        &vdc,
        "quota",
        load::run(
            &client,
            &url,
            100.0,
            Duration::from_secs(10),
            Duration::from_secs(12),
            &recorder,
        ),
    )
    .await;
    assert!(seen.iter().any(|s| s.1 > 2), "{seen:?}");
    let view = scale_view(&vdc, "quota").await;
    assert!(view["in_burst"].as_u64().unwrap() >= 1, "{view:#}");
    let events = events_of(&vdc, "quota").await;
    assert!(
        of_kind(&events, "scaled")
            .iter()
            .any(|e| reason(e).contains("in burst above the quota")),
        "{events:#?}"
    );

    // The minute the burst replicas ran in is billed at burst prices.
    let deadline = Instant::now() + Duration::from_secs(80);
    loop {
        let bill: Value = vdc
            .api_get("/v1/tenants/acme/bill")
            .await
            .json()
            .await
            .unwrap();
        let burst = bill["total"]["usage"]["burst_instance_minutes"]
            .as_u64()
            .unwrap_or(0);
        if burst > 0 {
            let cpu_burst: f64 = bill["total"]["charges"]["cpu_burst"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(cpu_burst > 0.0, "{bill:#}");
            break;
        }
        assert!(Instant::now() < deadline, "no burst in the bill: {bill:#}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_calls_the_platform_with_its_own_token() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("ask.toml");
    std::fs::write(
        &path,
        format!(
            r#"app = "ask"

[components.worker]
command = ["python3", "{0}/ask.py"]
workdir = "{0}"
replicas = 1
min = 1
max = 3
env = {{ ASK_REPLICAS = "2" }}
"#,
            programs()
        ),
    )
    .unwrap();
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    vdc.wait_instances("ask", "two workers", |list| list.len() == 2);
    // The second worker can be listed before the first has written the
    // answer that asked for it to its log.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = vdc.ok(&["logs", "ask/worker/0"]);
        if log.contains("replicas 200") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in [
        "load 204",
        "bad-load 400",
        "apps 403",
        "tenants 403",
        "forged 401",
        "too-many 400",
        "replicas 200",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    let own = log.lines().find(|l| l.starts_with("self 200")).unwrap();
    assert!(own.contains("\"instance\":\"ask/worker/0\""), "{own}");
    let events = events_of(&vdc, "ask").await;
    assert!(
        of_kind(&events, "scaled")
            .iter()
            .any(|e| reason(e) == "instance ask/worker/0: asked for it; 1 → 2 replicas"),
        "{events:#?}"
    );
    // The token stops working once its instance is gone.
    let token = vdc_token_of(&vdc, "ask/worker/0");
    vdc.ok(&["down", "ask"]);
    let response = vdc.api_get_as("/v1/self", &token).await;
    assert_eq!(response.status(), 401);
}

/// The token an instance was given, read from its process's environment.
fn vdc_token_of(_vdc: &Vdc, instance: &str) -> String {
    for (pid, _) in processes_matching("ask.py") {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&str> = environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .collect();
        if vars.contains(&format!("VDC_INSTANCE={instance}").as_str()) {
            if let Some(token) = vars.iter().find_map(|kv| kv.strip_prefix("VDC_TOKEN=")) {
                return token.to_owned();
            }
        }
    }
    panic!("no process of {instance} found")
}
