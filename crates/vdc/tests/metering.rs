//! End to end: the ledger and the bill, across a kill -9 of the server.
//! Takes a few minutes: minutes are what it counts.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps until `seconds` past the start of the next minute; returns that
/// minute (unix seconds / 60).
fn until_next_minute(seconds: u64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let next = (now.as_secs() / 60 + 1) * 60;
    std::thread::sleep(Duration::from_secs(next + seconds) - now);
    next / 60
}

#[test]
fn minutes_are_billed_once_each_across_a_kill_of_the_server() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root: the CPU limit needs cgroups"
    );
    let mut vdc = Vdc::start();
    // A quota smaller than the app: its one instance runs in the burst
    // allowance, billed at the burst prices.
    let limits = [
        "--cpu",
        "0.25",
        "--memory",
        "1GiB",
        "--instances",
        "1",
        "--burst-cpu",
        "1",
        "--burst-memory",
        "1GiB",
        "--burst-instances",
        "1",
    ];
    let token = vdc.create_tenant("acme", &[&limits[..], &PRICES[..]].concat());
    let spec = vdc.dir.path().join("burn.toml");
    std::fs::write(
        &spec,
        "app = \"burn\"\n[components.spin]\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\nresources = { cpu = 0.5, memory = \"64MiB\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--addr",
            &vdc.addr,
            "--token",
            &token,
            "up",
            "-d",
            spec.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // One whole minute, measured by the kernel at its edges, then closed by
    // vdc (5 s of grace after it ends).
    let pid = vdc.pid_of("burn", "burn/spin/0").unwrap();
    let measured = until_next_minute(0);
    let cpu_start = cgroup_cpu_seconds(pid);
    until_next_minute(0);
    let kernel_minute = cgroup_cpu_seconds(pid) - cpu_start;
    std::thread::sleep(Duration::from_secs(8));
    let before_kill = now();
    let entries: serde_json::Value =
        serde_json::from_str(&vdc.ok(&["usage", "--tenant", "acme", "-o", "json"])).unwrap();
    let lines = entries["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{entries:#}");
    let usage = &lines[0]["usage"];
    assert!(usage["minutes"].as_u64().unwrap() >= 1, "{usage}");

    // The server dies without a word; the next one restores the checkpoint.
    vdc.kill_server();
    vdc.spawn_server();
    until_next_minute(8);

    // Every minute from the first whole one on is in the ledger once, and
    // the full minutes of a 0.5-CPU spinner used about 30 CPU-seconds each.
    let resp: serde_json::Value =
        serde_json::from_str(&vdc.ok(&["usage", "--tenant", "acme", "-o", "json"])).unwrap();
    let total_minutes = resp["total"]["usage"]["minutes"].as_u64().unwrap();
    // The tenant's own token gets the same bill, also as CSV.
    let csv = std::process::Command::new(BIN)
        .args(["--addr", &vdc.addr, "--token", &token, "usage", "-o", "csv"])
        .output()
        .unwrap();
    assert!(csv.status.success());
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .any(|l| l.contains("burn") && l.contains("spin")),
        "{csv}"
    );
    let raw: Vec<serde_json::Value> = {
        let url = "/v1/usage?tenant=acme";
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { vdc.api_get(url).await.json().await.unwrap() })
    };
    let minutes: Vec<u64> = raw.iter().map(|e| e["minute"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = minutes.iter().copied().collect();
    assert_eq!(
        unique.len(),
        minutes.len(),
        "a minute was written twice: {minutes:?}"
    );
    assert_eq!(total_minutes as usize, minutes.len());
    let first = *unique.iter().next().unwrap();
    let last = *unique.iter().last().unwrap();
    assert_eq!(
        unique.len() as u64,
        last - first + 1,
        "a minute is missing: {minutes:?}"
    );
    // The minute measured at its edges matches the kernel within 5 %.
    let billed = raw
        .iter()
        .find(|e| e["minute"].as_u64() == Some(measured))
        .unwrap_or_else(|| panic!("minute {measured} is not in the ledger: {raw:?}"))
        ["cpu_seconds_used"]
        .as_f64()
        .unwrap();
    assert!(
        (billed - kernel_minute).abs() <= kernel_minute * 0.05,
        "minute {measured}: billed {billed:.2} CPU-seconds, the kernel counted {kernel_minute:.2}"
    );
    // Whole minutes before the kill: about 30 CPU-seconds (0.5 CPU).
    for e in &raw {
        let minute = e["minute"].as_u64().unwrap();
        if minute > first && (minute + 1) * 60 <= before_kill {
            let cpu = e["cpu_seconds_used"].as_f64().unwrap();
            assert!(
                (25.0..=32.0).contains(&cpu),
                "minute {minute}: {cpu} CPU-seconds at 0.5 CPU: {e}"
            );
            let burst = e["cpu_minutes_reserved_burst"].as_f64().unwrap();
            assert!(
                (burst - 0.5).abs() < 0.02,
                "the instance runs in burst: {e}"
            );
            assert_eq!(
                e["cpu_minutes_reserved_quota"].as_f64().unwrap(),
                0.0,
                "{e}"
            );
        }
    }
    // The bill applies the burst prices, and nothing at the quota prices.
    let charges = &resp["total"]["charges"];
    let money = |v: &serde_json::Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert_eq!(money(&charges["quota"]), 0.0, "{resp:#}");
    // Quantities are in millionths.
    let burst_cpu_minutes = resp["total"]["usage"]["cpu_minutes_reserved_burst"]
        .as_u64()
        .unwrap() as f64
        / 1e6;
    assert!(burst_cpu_minutes > 0.9, "{resp:#}");
    assert!(
        (money(&charges["cpu_burst"]) - burst_cpu_minutes * 0.03).abs() < 0.000_01,
        "{resp:#}"
    );
    assert!(
        money(&charges["total"]) > money(&charges["cpu_burst"]),
        "{resp:#}"
    );
}
