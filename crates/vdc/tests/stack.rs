//! End to end with real servers from Debian's packages: nginx instances
//! behind the built-in balancer, proxying to a Python API that keeps its data
//! in redis. `.ci/run` installs nginx and redis; without them these tests
//! fail with a message saying so.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_redis_serve_through_the_gateway() {
    require("nginx");
    require("redis-server");
    let vdc = Vdc::start();
    let (spec, ports) = vdc.example("stack.toml");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{}", ports[0]);
    let client = http();

    // Static pages from both nginx instances.
    let mut nginx = BTreeSet::new();
    for _ in 0..20 {
        let r = client.get(format!("{gateway}/")).send().await.unwrap();
        assert!(r.status().is_success());
        nginx.insert(r.headers()["x-instance"].to_str().unwrap().to_owned());
        assert!(r.text().await.unwrap().contains("served by stack/nginx/"));
    }
    assert_eq!(nginx.len(), 2, "{nginx:?}");

    // nginx -> api link -> api instances -> redis link -> redis.
    let mut api = BTreeSet::new();
    let mut last = 0;
    for _ in 0..20 {
        let body: serde_json::Value = client
            .get(format!("{gateway}/api/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        api.insert(body["instance"].as_str().unwrap().to_owned());
        let hits = body["hits"].as_i64().unwrap();
        assert_eq!(hits, last + 1, "redis INCR through the link");
        last = hits;
    }
    assert_eq!(api.len(), 2, "{api:?}");

    let put = client
        .put(format!("{gateway}/api/items/plum"))
        .body("purple")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // redis persists to its volume (append-only file) and comes back with
    // the data after being killed.
    let redis = vdc.pid_of("stack", "stack/redis/0").unwrap();
    signal(redis, Signal::SIGKILL);
    vdc.wait_instances("stack", "redis to come back", |list| {
        list.iter().any(|i| {
            instance_name(i) == "stack/redis/0" && i["state"] == "ready" && i["restarts"] == 1
        })
    });
    let value = value_when_served(&client, &format!("{gateway}/api/items/plum")).await;
    assert_eq!(value, Some(serde_json::json!("purple")));

    let pids = vdc.pids("stack");
    vdc.ok(&["down", "stack"]);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived `vdc down`");
    }
}
