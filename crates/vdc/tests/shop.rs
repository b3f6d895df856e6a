//! End to end: the shop example on a real server, through the real CLI.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_web_instance_and_reach_the_database() {
    let vdc = Vdc::start();
    let (spec, ports) = vdc.example("shop.toml");
    let out = vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{}", ports[0]);
    assert!(
        out.contains(&format!("http://127.0.0.1:{}/", ports[0])),
        "up printed: {out}"
    );

    // One keep-alive client: the gateway balances per request, not per
    // connection.
    let client = http();
    let mut per_instance: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_hits = 0;
    for _ in 0..90 {
        let body = get_json(&client, &format!("{gateway}/")).await;
        *per_instance
            .entry(body["instance"].as_str().unwrap().to_owned())
            .or_default() += 1;
        // Every request increments a counter kept in the database.
        let hits = body["hits"].as_i64().unwrap();
        assert_eq!(hits, last_hits + 1);
        last_hits = hits;
    }
    assert_eq!(
        per_instance.keys().collect::<Vec<_>>(),
        ["shop/web/0", "shop/web/1", "shop/web/2"],
        "{per_instance:?}"
    );
    // Balancing follows latency (peak-EWMA × load): an instance whose
    // first answers were slow (each new connection opens its own database
    // connection) is used less for a few seconds, so the split of 90 serial
    // requests is not even — but no instance takes nearly all of them.
    assert!(
        per_instance.values().all(|n| *n <= 75),
        "one instance took nearly everything: {per_instance:?}"
    );

    // Written through one instance, read through whichever answers.
    let put = client
        .put(format!("{gateway}/items/apple"))
        .body("red")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    for _ in 0..6 {
        let body = get_json(&client, &format!("{gateway}/items/apple")).await;
        assert_eq!(body["value"], "red");
    }

    // The listing says where things are.
    let apps: serde_json::Value = serde_json::from_str(&vdc.ok(&["apps", "-o", "json"])).unwrap();
    assert_eq!(apps[0]["name"], "shop");
    assert_eq!(apps[0]["state"], "ready");
    assert_eq!(apps[0]["ready"], 4);
    let table = vdc.ok(&["ps", "shop"]);
    for column in [
        "INSTANCE",
        "COMPONENT",
        "NODE",
        "STATE",
        "PID",
        "ADDRESS",
        "RESTARTS",
        "UPTIME",
    ] {
        assert!(table.contains(column), "{table}");
    }

    // Logs of one instance, and of a whole component with prefixes.
    let logs = vdc.ok(&["logs", "shop/web/1"]);
    assert!(logs.contains("listening on port"), "{logs}");
    let logs = vdc.ok(&["logs", "shop/web", "--tail", "1"]);
    assert!(
        logs.contains("web/0 | ") && logs.contains("web/2 | "),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_while_requests_keep_succeeding() {
    let vdc = Vdc::start();
    let (spec, ports) = vdc.example("shop.toml");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{}/", ports[0]);
    let victim = vdc.pid_of("shop", "shop/web/0").unwrap();

    // Requests flow the whole time; one of them is in flight when the kill lands.
    let load = tokio::spawn(async move {
        let client = http();
        let (mut ok, mut failed) = (0u32, Vec::new());
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match client.get(&gateway).send().await {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => failed.push(r.status().to_string()),
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(victim, Signal::SIGKILL);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 50, "only {ok} requests in 3 s");

    let list = vdc.wait_instances("shop", "web/0 to come back", |list| {
        list.iter().any(|i| {
            instance_name(i) == "shop/web/0"
                && i["state"] == "ready"
                && i["restarts"] == 1
                && i["pid"].as_i64().is_some_and(|p| p as i32 != victim)
        })
    });
    let web0 = list
        .iter()
        .find(|i| instance_name(i) == "shop/web/0")
        .unwrap();
    assert!(
        web0["last_exit"].as_str().unwrap().contains("SIGKILL"),
        "{web0}"
    );
    assert!(!alive(victim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_keeps_its_data_in_its_volume_across_a_crash() {
    let vdc = Vdc::start();
    let (spec, ports) = vdc.example("shop.toml");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{}", ports[0]);
    let client = http();
    client
        .put(format!("{gateway}/items/pear"))
        .body("green")
        .send()
        .await
        .unwrap();

    let db = vdc.pid_of("shop", "shop/db/0").unwrap();
    signal(db, Signal::SIGKILL);
    vdc.wait_instances("shop", "the database to come back", |list| {
        list.iter()
            .any(|i| instance_name(i) == "shop/db/0" && i["state"] == "ready" && i["restarts"] == 1)
    });
    // The web servers reach the new database process at the same link address.
    let body = get_json(&client, &format!("{gateway}/items/pear")).await;
    assert_eq!(body["value"], "green");
    assert!(vdc
        .data_dir()
        .join("volumes/default/shop/db-0/data/kv.log")
        .is_file());
}

#[test]
fn down_leaves_no_process_behind() {
    let vdc = Vdc::start();
    let (spec, _) = vdc.example("shop.toml");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let pids = vdc.pids("shop");
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| alive(*p)));

    let out = vdc.ok(&["down", "shop"]);
    assert!(out.contains("shop is down"), "{out}");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived `vdc down`");
    }
    assert!(vdc.ok(&["apps", "-o", "json"]).trim() == "[]");
    // Volumes are kept.
    assert!(vdc
        .data_dir()
        .join("volumes/default/shop/db-0/data")
        .is_dir());
}

#[test]
fn an_invalid_spec_starts_nothing_and_points_at_the_problem() {
    let vdc = Vdc::new();
    let bad = vdc.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "app = \"shop\"\n\n[components.web]\ncommand = [\"sleep\", \"100\"]\nresources = { cpu = 0.5, memory = \"4GB\" }\n",
    )
    .unwrap();
    let out = vdc.run(&["up", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:5:"), "{stderr}");
    assert!(stderr.contains("4GiB"), "{stderr}");
    // Nothing was started: no server answers, no process runs.
    assert!(!vdc.is_up());
    assert!(processes_matching(&vdc.dir.path().to_string_lossy()).is_empty());

    let out = vdc.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn foreground_up_takes_the_app_down_on_ctrl_c() {
    let vdc = Vdc::new();
    let (spec, ports) = vdc.example("shop.toml");
    let mut child = std::process::Command::new(BIN)
        .args(["--addr", &vdc.addr, "up"])
        .arg(&spec)
        .env("VDC_DATA_DIR", vdc.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `up` prints the gateway on stdout once it has seen every instance
    // ready: from then on, Ctrl-C is a clean take-down.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let gateway = format!("http://127.0.0.1:{}/", ports[0]);
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains(&gateway)) {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("up did not print its gateway ({e}): {printed:?}"),
        }
    }
    let pids = vdc.pids("shop");
    signal(child.id() as i32, Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    printed.extend(lines.try_iter());
    assert!(out.status.success(), "{out:?} {printed:?}");
    assert!(
        printed.iter().any(|l| l.contains("shop is down")),
        "{printed:?}"
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived Ctrl-C");
    }
    assert!(!vdc.is_up(), "the embedded server is still up");
}

#[test]
fn server_stop_stops_every_instance_and_a_restart_brings_the_app_back() {
    let vdc = Vdc::new();
    let (spec, _) = vdc.example("shop.toml");
    // No server yet: `up -d` starts one in the background.
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let pids = vdc.pids("shop");
    assert_eq!(pids.len(), 4);
    vdc.ok(&["server", "stop"]);
    assert!(!vdc.is_up());
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} survived `vdc server stop`");
    }
    // The desired state survived: a new server runs the app again.
    let mut vdc = vdc;
    vdc.spawn_server();
    let list = vdc.wait_instances("shop", "the app to come back", |list| {
        list.len() == 4 && list.iter().all(|i| i["state"] == "ready")
    });
    assert!(list
        .iter()
        .all(|i| !pids.contains(&(i["pid"].as_i64().unwrap() as i32))));
}
