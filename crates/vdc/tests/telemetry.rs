//! End to end: what the data plane and the kernel measure reaches
//! subscribers of the live streams, the topology and Prometheus.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

/// An app whose `web` instances run the test backend behind a gateway.
fn backend_app(
    vdc: &Vdc,
    app: &str,
    replicas: u32,
    delay_ms: u32,
    extra: &str,
) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let text = format!(
        r#"app = "{app}"

[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {port}, address = "127.0.0.1" }}
links = {{ backend = "web.http" }}

[components.web]
replicas = {replicas}
command = ["python3", "{programs}/backend.py"]
workdir = "{programs}"
env = {{ DELAY_MS = "{delay_ms}" }}
resources = {{ cpu = 0.5, memory = "128MiB" }}
inputs = {{ http = {{ protocol = "http", health = {{ path = "/healthz", interval = "10s" }} }} }}
{extra}
"#,
        programs = programs()
    );
    let path = vdc.dir.path().join(format!("{app}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, port)
}

/// A live subscription to a stream, as a test reads it.
struct Stream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Stream {
    async fn open(vdc: &Vdc, path: &str) -> Stream {
        Stream::open_as(vdc, path, &vdc.admin_token()).await
    }

    async fn open_as(vdc: &Vdc, path: &str, token: &str) -> Stream {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", vdc.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next message, or None after `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }

    /// Reads messages until `pick` returns something, for at most `timeout`.
    async fn until<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Value) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.next(left).await?;
            if let Some(t) = pick(&message) {
                return Some(t);
            }
        }
        None
    }
}

/// Sends `n` requests on `concurrency` connections; returns the statuses.
async fn load(url: String, n: usize, concurrency: usize) -> Vec<u16> {
    let client = http();
    let per = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..per {
                    statuses.push(
                        client
                            .get(&url)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16()),
                    );
                }
                statuses
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_backend_latency_reaches_the_stream_within_two_seconds() {
    let vdc = Vdc::start();
    let (spec, port) = backend_app(&vdc, "slow", 2, 50, "");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let mut stream = Stream::open(&vdc, "/v1/streams/metrics?app=slow&kind=gateway").await;

    let started = Instant::now();
    let load = tokio::spawn(load(format!("http://127.0.0.1:{port}/"), 80, 4));
    let p50 = stream
        .until(Duration::from_secs(5), |m| {
            (m["type"] == "traffic" && m["latency"]["count"].as_u64().unwrap_or(0) > 0)
                .then(|| m["latency"]["p50_ms"].as_f64().unwrap())
        })
        .await
        .expect("no latency in the stream");
    let delay = started.elapsed();
    assert!(
        delay < Duration::from_secs(2) + Duration::from_millis(300),
        "first sample after {delay:?}"
    );
    assert!(
        (45.0..=55.0).contains(&p50),
        "p50 {p50} ms for a 50 ms backend"
    );
    assert!(load.await.unwrap().iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_attributed_to_their_cause() {
    let vdc = Vdc::start();
    let (spec, port) = backend_app(&vdc, "flaky", 1, 0, "");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let mut stream = Stream::open(&vdc, "/v1/streams/metrics?app=flaky&kind=gateway").await;

    // The backend answers 503: counted as a 5xx response, not an error of
    // the data plane.
    let statuses = load(format!("http://127.0.0.1:{port}/fail"), 10, 1).await;
    assert!(statuses.iter().all(|s| *s == 503));
    let fives = stream
        .until(Duration::from_secs(4), |m| {
            let n = m["traffic"]["responses_5xx"].as_u64().unwrap_or(0);
            (n > 0).then_some((n, m["traffic"]["errors_refused"].as_u64().unwrap_or(0)))
        })
        .await
        .expect("5xx not in the stream");
    assert_eq!(fives, (10, 0));

    // The backend stops accepting connections while its process lives on:
    // connects are refused, the client gets 502s, and the stream says why.
    let client = http();
    client
        .get(format!("http://127.0.0.1:{port}/close"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (A connection the data plane already had open may still serve one
    // request: only new connections are refused.)
    let statuses = load(format!("http://127.0.0.1:{port}/"), 8, 1).await;
    let bad = statuses.iter().filter(|s| **s == 502).count() as u64;
    assert!(bad >= 4, "{statuses:?}");
    // The 502s may straddle two seconds: add up the samples. Each 502 is an
    // error with a cause; new connections were refused, and at most one
    // request may have died on a connection the backend had open before
    // (a reset, not a refusal).
    let (mut refused, mut errors) = (0, 0);
    let total = stream
        .until(Duration::from_secs(4), |m| {
            let t = &m["traffic"];
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            refused += n("errors_refused");
            errors +=
                n("errors_refused") + n("errors_reset") + n("errors_other") + n("errors_timeout");
            (errors >= bad).then_some(errors)
        })
        .await
        .unwrap_or_else(|| panic!("errors not in the stream: {errors} of {bad}"));
    assert_eq!(total, bad);
    assert!(
        refused >= bad - 1,
        "{refused} of {bad} 502s were refused connects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_only_their_series_and_a_stalled_one_blocks_nobody() {
    let vdc = Vdc::start();
    let (a, port_a) = backend_app(&vdc, "alpha", 1, 0, "");
    let (b, port_b) = backend_app(&vdc, "beta", 1, 0, "");
    vdc.ok(&["up", "-d", a.to_str().unwrap()]);
    vdc.ok(&["up", "-d", b.to_str().unwrap()]);

    // A subscriber that never reads: its buffer fills, then it loses
    // messages; nobody else notices.
    let stalled = vdc.api_get("/v1/streams/metrics").await;
    let mut alpha = Stream::open(&vdc, "/v1/streams/metrics?app=alpha").await;
    let mut beta = Stream::open(&vdc, "/v1/streams/metrics?app=beta&component=web").await;

    let loads = tokio::spawn(async move {
        let a = load(format!("http://127.0.0.1:{port_a}/"), 200, 2).await;
        let b = load(format!("http://127.0.0.1:{port_b}/"), 200, 2).await;
        (a, b)
    });
    let mut seen_alpha = 0;
    let mut seen_beta = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        if let Some(m) = alpha.next(Duration::from_millis(200)).await {
            assert_eq!(m["tags"]["app"], "alpha", "{m}");
            seen_alpha += 1;
        }
        if let Some(m) = beta.next(Duration::from_millis(200)).await {
            assert_eq!(m["tags"]["app"], "beta", "{m}");
            assert_eq!(m["tags"]["component"], "web", "{m}");
            seen_beta += 1;
        }
    }
    assert!(
        seen_alpha >= 4 && seen_beta >= 2,
        "alpha {seen_alpha}, beta {seen_beta}"
    );
    let (a, b) = loads.await.unwrap();
    assert!(
        a.iter().chain(&b).all(|s| *s == 200),
        "the data plane kept serving"
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_output_parses_and_counts_requests() {
    let vdc = Vdc::start();
    let (spec, port) = backend_app(&vdc, "prom", 1, 0, "");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let statuses = load(format!("http://127.0.0.1:{port}/"), 30, 1).await;
    assert!(statuses.iter().all(|s| *s == 200));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let text = vdc.api_get("/metrics").await.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    let requests: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "vdc_requests_total"
                && s.labels.get("kind") == Some("gateway")
                && s.labels.get("app") == Some("prom")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(requests, 30.0, "{text}");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("vdc_request_duration_seconds")),
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "vdc_instance_memory_bytes"
                && s.labels.get("instance") == Some("prom/web/0")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_burning_a_core_shows_about_one_hundred_percent() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("burn.toml");
    std::fs::write(
        &path,
        // Niced up so that other tests running beside it on a small
        // machine cannot keep it from a whole core.
        "app = \"burn\"\n[components.spin]\ncommand = [\"nice\", \"-n\", \"-20\", \"sh\", \"-c\", \"while :; do :; done\"]\nresources = { cpu = 1, memory = \"64MiB\" }\n",
    )
    .unwrap();
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    let pid = vdc.pid_of("burn", "burn/spin/0").unwrap();
    let mut stream = Stream::open(&vdc, "/v1/streams/metrics?app=burn&kind=instance").await;

    // The kernel's own account, read beside the stream, is the reference: on
    // a loaded machine the spinner may get less than a core, and vdc must
    // then say so too. The instance's cgroup counts every process in it,
    // whatever its process tree looks like (an init, a shell, the spinner).
    // In hundredths of a second, like /proc's clock ticks.
    let cpu_ticks = || (cgroup_cpu_seconds(pid) * 100.0) as u64;
    let ticks_per_s = 100.0;
    let mut readings = Vec::new();
    let mut reference = None;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until && readings.len() < 5 {
        let Some(m) = stream.next(Duration::from_secs(2)).await else {
            continue;
        };
        if m["type"] != "resources" {
            continue;
        }
        if nix::unistd::geteuid().is_root() {
            assert_eq!(m["source"], "cgroup-v1", "{m}");
        }
        readings.push(m["cpu_percent"].as_f64().unwrap());
        match readings.len() {
            2 => reference = Some((Instant::now(), cpu_ticks())),
            5 => {
                let (t0, ticks0) = reference.unwrap();
                let kernel =
                    (cpu_ticks() - ticks0) as f64 / ticks_per_s / t0.elapsed().as_secs_f64()
                        * 100.0;
                let reported = readings[2..].iter().sum::<f64>() / 3.0;
                assert!(
                    (reported - kernel).abs() <= 12.0,
                    "vdc says {reported:.1}% ({readings:?}), the kernel {kernel:.1}%"
                );
                if kernel >= 90.0 {
                    assert!(reported >= 85.0, "{readings:?}");
                }
                eprintln!("spinner: vdc {reported:.1}%, kernel {kernel:.1}%");
            }
            _ => {}
        }
    }
    assert_eq!(readings.len(), 5, "{readings:?}");
    assert!(
        readings[1..].iter().all(|r| *r > 30.0),
        "a spinning core is visible: {readings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_stream_with_reasons_and_websockets_work_too() {
    let vdc = Vdc::start();
    let (spec, _) = backend_app(&vdc, "life", 1, 0, "");
    let mut events = Stream::open(&vdc, "/v1/streams/events").await;
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/streams/events?app=life&access_token={}",
        vdc.addr,
        vdc.admin_token()
    ))
    .await
    .unwrap();

    let pid = vdc.pid_of("life", "life/web/0").unwrap();
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let mut kinds = Vec::new();
    let exited = events
        .until(Duration::from_secs(10), |m| {
            kinds.push(m["kind"].as_str().unwrap_or_default().to_owned());
            (m["kind"] == "instance-exited").then(|| m["reason"].as_str().unwrap().to_owned())
        })
        .await
        .unwrap_or_else(|| panic!("no exit event; saw {kinds:?}"));
    assert!(exited.contains("SIGKILL"), "{exited}");
    for expected in [
        "spec-applied",
        "placement",
        "instance-started",
        "instance-ready",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
    let restarted = events
        .until(Duration::from_secs(10), |m| {
            (m["kind"] == "instance-restarted").then(|| m["reason"].clone())
        })
        .await
        .expect("no restart event");
    assert!(
        restarted.as_str().unwrap().contains("restart 1"),
        "{restarted}"
    );

    // The same events arrive over the WebSocket.
    let mut ws_kinds = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["app"], "life");
            ws_kinds.push(v["kind"].as_str().unwrap().to_owned());
            if ws_kinds.iter().any(|k| k == "instance-restarted") {
                break;
            }
        }
    }
    assert!(
        ws_kinds.iter().any(|k| k == "instance-exited"),
        "{ws_kinds:?}"
    );

    // And `vdc events` shows the history.
    let out = vdc.ok(&["events", "life"]);
    assert!(
        out.contains("instance-exited") && out.contains("SIGKILL"),
        "{out}"
    );
}
