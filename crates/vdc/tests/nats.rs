//! `vdc server --nats`: the state lives in NATS JetStream, not in the data
//! directory, so a server with a new data directory finds it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

use vdc_testkit::NatsServer;

/// An app of one web instance whose command line names `marker`, so the
/// test can find its processes.
fn app(vdc: &Vdc, name: &str, marker: &Path) -> std::path::PathBuf {
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"app = "{name}"
[components.web]
max = 2
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1", "--directory", "{0}"]
workdir = "{0}"
resources = {{ cpu = 0.25, memory = "64MiB" }}
inputs = {{ http = {{ protocol = "http", health = "/" }} }}
"#,
            marker.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn state_in_nats_outlives_the_server_and_its_data_directory() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path());
    let url = nats.url();

    let mut first = Vdc::start_with(&["--nats", &url]);
    let spec = app(&first, "shop", first.dir.path());
    first.ok(&["up", "-d", spec.to_str().unwrap()]);
    first.wait_instances("shop", "web to run", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    });
    // Nothing of the state is on the local disk.
    assert!(!first.data_dir().join("state.redb").exists());
    let token = first.admin_token();

    // The server dies without cleaning up; its instances may outlive it.
    first.kill_server();
    for (pid, _) in processes_matching(&first.dir.path().to_string_lossy()) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }

    // A new server, new data directory, same NATS: the app is still there.
    // The admin token lives in NATS too; the old one still works.
    let mut second = Vdc::new();
    std::fs::create_dir_all(second.data_dir()).unwrap();
    std::fs::write(second.data_dir().join("admin.token"), &token).unwrap();
    second.spawn_server_with(&["--nats", &url]);
    let apps: serde_json::Value =
        serde_json::from_str(&second.ok(&["apps", "-o", "json"])).unwrap();
    assert_eq!(apps[0]["name"], "shop", "{apps:#}");
    assert!(second.ok(&["apps"]).contains("shop"));
    // And it runs it again.
    second.wait_instances("shop", "web to run again", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    });
    second.ok(&["down", "shop"]);
    drop(second);
    for (pid, _) in processes_matching(&first.dir.path().to_string_lossy()) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// `GET /v1/health` of a server, with its admin token.
fn health(vdc: &Vdc) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { vdc.api_get("/v1/health").await.json().await.unwrap() })
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Servers `a` (which leads) and `b` on one bucket, each with its own data
/// directory and node name. The admin token lives in NATS; b's data
/// directory gets a copy of the file for the harness.
fn two_servers(nats: &NatsServer, ttl: &str) -> (Vdc, Vdc) {
    let url = nats.url();
    let args = |node: &'static str| {
        [
            "--nats",
            &url,
            "--node-name",
            node,
            "--leader-ttl",
            ttl,
            "--node-timeout",
            "2s",
        ]
    };
    let a = Vdc::start_with(&args("a"));
    wait_for("a to lead", Duration::from_secs(10), || {
        health(&a)["leader"] == true
    });
    let mut b = Vdc::new();
    std::fs::create_dir_all(b.data_dir()).unwrap();
    std::fs::write(b.data_dir().join("admin.token"), a.admin_token()).unwrap();
    b.spawn_server_with(&args("b"));
    (a, b)
}

#[test]
fn two_servers_on_one_bucket_elect_one_leader_and_the_other_takes_over() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path());
    let (mut a, b) = two_servers(&nats, "2s");
    // b follows: it answers the API but does not lead.
    std::thread::sleep(Duration::from_secs(1));
    let hb = health(&b);
    assert_eq!(hb["leader"], false, "{hb:#}");
    assert_eq!(health(&a)["term"], 1);

    // Placed by the leader, on one of the two nodes; both servers show the
    // whole pool.
    let marker = tempfile::tempdir().unwrap();
    open_to_instances(marker.path());
    let spec = app(&a, "shop", marker.path());
    a.ok(&["up", "-d", spec.to_str().unwrap()]);
    // The follower sees the app in the shared store.
    assert!(b.ok(&["apps"]).contains("shop"));
    a.wait_instances("shop", "web to run", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    });
    b.wait_instances("shop", "the follower to see it", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    });
    assert_eq!(health(&b)["leader"], false);
    // Make sure the instance is on a's node, which dies below.
    if a.instances("shop")[0]["node"] != "a" {
        b.ok(&["node", "drain", "b"]);
        a.wait_instances("shop", "web to move to a", |list| {
            list.len() == 1 && list[0]["node"] == "a" && list[0]["state"] == "ready"
        });
    }

    // The leader dies with its instances.
    a.kill_server();
    let died = Instant::now();
    for needle in [a.dir.path(), marker.path()] {
        for (pid, _) in processes_matching(&needle.to_string_lossy()) {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    b.ok(&["node", "undrain", "b"]);
    b.wait_instances("shop", "web to run on b", |list| {
        list.len() == 1 && list[0]["node"] == "b" && list[0]["state"] == "ready"
    });
    let failover = died.elapsed();
    println!("failover: the app ran again {failover:?} after the leader died (lease ttl 2s)");
    let hb = health(&b);
    assert_eq!(hb["leader"], true, "{hb:#}");
    assert_eq!(hb["term"], 2, "{hb:#}");
    assert!(failover < Duration::from_secs(8), "{failover:?}");
    assert!(
        b.server_log().contains("leads (term 2)"),
        "{}",
        b.server_log()
    );

    // The new leader applies changes: scale to two.
    b.ok(&["scale", "shop/web", "2"]);
    b.wait_instances("shop", "two replicas under the new leader", |list| {
        list.len() == 2 && list.iter().all(|i| i["state"] == "ready")
    });

    b.ok(&["down", "shop"]);
    drop(b);
    for (pid, _) in processes_matching(&marker.path().to_string_lossy()) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn a_leader_stopped_cleanly_hands_the_lease_over_at_once() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path());
    // A long ttl: a takeover after a clean stop must not wait it out.
    let (mut a, b) = two_servers(&nats, "30s");
    assert_eq!(health(&b)["leader"], false);

    let stopped = Instant::now();
    a.stop_server();
    wait_for("b to lead", Duration::from_secs(20), || {
        health(&b)["leader"] == true
    });
    let handover = stopped.elapsed();
    println!("handover after a clean stop: {handover:?} (lease ttl 30s)");
    // The follower reads the lease every second: far sooner than the ttl.
    assert!(handover < Duration::from_secs(10), "{handover:?}");
    assert_eq!(health(&b)["term"], 2);
}

/// An instance calls its own node's platform API; its load report reaches
/// the leading server's bus (and so its autoscaler) from any node.
#[test]
fn load_reports_from_every_node_reach_the_leader() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path());
    let (a, b) = two_servers(&nats, "5s");
    let spec = a.dir.path().join("reporters.toml");
    std::fs::write(
        &spec,
        format!(
            r#"app = "reporters"
[components.worker]
replicas = 2
command = ["python3", "{0}/report.py"]
workdir = "{0}"
resources = {{ cpu = 0.1, memory = "32MiB" }}
"#,
            programs()
        ),
    )
    .unwrap();
    a.ok(&["up", "-d", spec.to_str().unwrap()]);
    a.wait_instances("reporters", "one worker on each node", |list| {
        let mut nodes: Vec<_> = list
            .iter()
            .filter(|i| i["state"] == "ready")
            .map(|i| i["node"].as_str().unwrap_or_default().to_owned())
            .collect();
        nodes.sort();
        nodes == ["a", "b"]
    });
    let on_b = a
        .instances("reporters")
        .into_iter()
        .find(|i| i["node"] == "b")
        .map(|i| instance_name(&i))
        .unwrap();

    // The leader's stream of instance series carries both workers' reports.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reports: std::collections::BTreeMap<String, f64> = rt.block_on(async {
        use futures_util::StreamExt;
        let response = a
            .api_get("/v1/streams/metrics?app=reporters&kind=instance")
            .await;
        assert!(response.status().is_success());
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut reports = std::collections::BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while reports.len() < 2 {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("no load reports from both nodes within 15 s")
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if !block.contains("event: load") {
                    continue;
                }
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                let message: serde_json::Value = serde_json::from_str(data).unwrap();
                reports.insert(
                    message["tags"]["instance"].as_str().unwrap().to_owned(),
                    message["utilization"].as_f64().unwrap(),
                );
            }
        }
        reports
    });
    assert_eq!(
        reports.values().copied().collect::<Vec<_>>(),
        [0.25, 0.75],
        "{reports:?}"
    );
    assert!(reports.contains_key(&on_b), "{on_b} not in {reports:?}");
    drop(b);
}
