//! A cluster on one machine: three "hosts", each a network namespace on a
//! bridge created here, running `vdc server` or `vdc agent --join`, with a
//! NATS server on the bridge. An app spread over the three serves through
//! one gateway; a host that dies or is cut off loses its instances to the
//! others, and never runs them at the same time as they do; when the
//! leading server's host dies, the server on another host takes over.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vdc_testkit::NatsServer;

/// How long a node may be silent in the partition test (the leader test
/// keeps the default, 5 s).
const NODE_TIMEOUT: &str = "3s";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three hosts on a bridge: namespace `vdcN-hI` with address PREFIX.(10+I),
/// the bridge with PREFIX.1. Everything is removed on drop.
struct Hosts {
    tag: String,
    prefix: String,
    count: usize,
}

impl Hosts {
    fn new(count: usize) -> Hosts {
        require("ip");
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        let prefix = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let hosts = Hosts { tag, prefix, count };
        let bridge = hosts.bridge();
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", hosts.prefix),
            "dev",
            &bridge,
        ]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        // Bridged frames must not go through the host's firewall.
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0");
        for i in 1..=count {
            let ns = hosts.ns(i);
            let (outside, inside) = (
                format!("vo{}h{i}", hosts.tag),
                format!("vi{}h{i}", hosts.tag),
            );
            sh(&["ip", "netns", "add", &ns]);
            sh(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            sh(&["ip", "link", "set", &inside, "netns", &ns]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", hosts.ip(i)),
                "dev",
                &inside,
            ]);
            sh(&["ip", "-n", &ns, "link", "set", &inside, "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&["ip", "link", "set", &outside, "master", &bridge]);
            sh(&["ip", "link", "set", &outside, "up"]);
        }
        hosts
    }

    fn bridge(&self) -> String {
        format!("vdcbr{}", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("vdc{}-h{i}", self.tag)
    }

    fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    fn gateway_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Cuts host `i` off the bridge (its processes live on, alone).
    fn cut(&self, i: usize) {
        sh(&["ip", "link", "set", &format!("vo{}h{i}", self.tag), "down"]);
    }

    fn heal(&self, i: usize) {
        sh(&["ip", "link", "set", &format!("vo{}h{i}", self.tag), "up"]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
            let _ = Command::new("ip")
                .args(["link", "del", &format!("vo{}h{i}", self.tag)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}

/// A process in a host's namespace, killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(ns: &str, args: &[&str], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .env("VDC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so instances stop cleanly.
        signal(self.child.id() as i32, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

struct Cluster {
    hosts: Hosts,
    dir: tempfile::TempDir,
    nats: NatsServer,
    procs: Vec<Option<Proc>>,
    /// The API the CLI talks to.
    api: String,
    node_timeout: &'static str,
}

impl Cluster {
    /// A server on h1, agents on h2 and h3.
    fn start() -> Cluster {
        Cluster::start_with(1, NODE_TIMEOUT)
    }

    /// Servers on the first `servers` hosts, agents on the others.
    fn start_with(servers: usize, node_timeout: &'static str) -> Cluster {
        let hosts = Hosts::new(3);
        let dir = tempfile::tempdir().unwrap();
        open_to_instances(dir.path());
        let nats = NatsServer::start_at(&dir.path().join("nats"), &hosts.gateway_ip());
        let url = nats.url();
        let api = format!("{}:7470", hosts.ip(1));
        let mut cluster = Cluster {
            hosts,
            dir,
            nats,
            procs: Vec::new(),
            api,
            node_timeout,
        };
        let server = cluster.spawn(
            1,
            &[
                "server",
                "--nats",
                &url,
                "--api",
                &cluster.api_of(1),
                "--leader-ttl",
                "2s",
            ],
        );
        cluster.procs.push(Some(server));
        wait_for("the server to answer", Duration::from_secs(20), || {
            cluster.data(1).join("admin.token").exists() && cluster.cli(&["apps"]).0
        });
        for i in 2..=3 {
            let proc = if i <= servers {
                // The admin token lives in NATS; the harness reads the file.
                std::fs::create_dir_all(cluster.data(i)).unwrap();
                std::fs::copy(
                    cluster.data(1).join("admin.token"),
                    cluster.data(i).join("admin.token"),
                )
                .unwrap();
                cluster.spawn(
                    i,
                    &[
                        "server",
                        "--nats",
                        &url,
                        "--api",
                        &cluster.api_of(i),
                        "--leader-ttl",
                        "2s",
                    ],
                )
            } else {
                cluster.spawn(i, &["agent", "--join", &url])
            };
            cluster.procs.push(Some(proc));
        }
        wait_for("three ready nodes", Duration::from_secs(20), || {
            cluster
                .nodes()
                .iter()
                .filter(|n| n["state"] == "ready")
                .count()
                == 3
        });
        cluster
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}"))
    }

    fn api_of(&self, i: usize) -> String {
        format!("{}:7470", self.hosts.ip(i))
    }

    /// `GET /v1/health` of host `i`'s server.
    fn health(&self, i: usize) -> Value {
        let addr: SocketAddr = self.api_of(i).parse().unwrap();
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return Value::Null;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let token = std::fs::read_to_string(self.data(1).join("admin.token")).unwrap_or_default();
        let request = format!(
            "GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        );
        let mut response = String::new();
        if stream.write_all(request.as_bytes()).is_err()
            || stream.read_to_string(&mut response).is_err()
        {
            return Value::Null;
        }
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    fn spawn(&self, i: usize, args: &[&str]) -> Proc {
        let data = self.data(i);
        let name = format!("h{i}");
        let mut full: Vec<&str> = vec![BIN];
        full.extend_from_slice(args);
        full.extend_from_slice(&[
            "--data-dir",
            data.to_str().unwrap(),
            "--node-name",
            &name,
            "--node-timeout",
            self.node_timeout,
            "--labels",
        ]);
        let labels = format!("host=h{i}");
        full.push(&labels);
        Proc::spawn(
            &self.hosts.ns(i),
            &full,
            self.dir.path().join(format!("h{i}.log")),
        )
    }

    /// Runs the CLI against the server on h1, as the admin.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let token = std::fs::read_to_string(self.data(1).join("admin.token")).unwrap_or_default();
        let out = Command::new(BIN)
            .arg("--addr")
            .arg(&self.api)
            .args(args)
            .env("VDC_TOKEN", token.trim())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.cli(args);
        assert!(
            ok,
            "vdc {args:?} failed: {out}\n--- h1 log:\n{}",
            self.log(1)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = args.to_vec();
        full.extend_from_slice(&["-o", "json"]);
        let (ok, out) = self.cli(&full);
        if !ok {
            return Vec::new();
        }
        serde_json::from_str(&out).unwrap_or_default()
    }

    fn nodes(&self) -> Vec<Value> {
        self.json(&["node", "list"])
    }

    fn instances(&self, app: &str) -> Vec<Value> {
        self.json(&["ps", app])
    }

    fn log(&self, i: usize) -> String {
        self.procs
            .get(i - 1)
            .and_then(|p| p.as_ref())
            .map(Proc::log)
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents and server first (they stop their instances), then NATS.
        for p in self.procs.iter_mut().rev() {
            drop(p.take());
        }
        self.nats.kill();
    }
}

impl Cluster {
    /// SIGKILL of host `i`'s vdc process and of its instances (those whose
    /// command line names `marker`), as a machine dying would.
    fn kill_host(&mut self, i: usize, marker: &str) {
        if let Some(mut proc) = self.procs[i - 1].take() {
            proc.kill();
            std::mem::forget(proc);
        }
        let node = format!("VDC_NODE=h{i}\0");
        for (pid, _) in processes_matching(marker) {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if String::from_utf8_lossy(&environ).contains(&node) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Runs the `spread` app (a gateway, three web instances whose command
    /// lines name a marker) and waits until every instance is ready:
    /// (marker, gateway port, spec file).
    fn up_spread(&self, name: &str) -> (String, u16, PathBuf) {
        let marker = format!("{name}-marker-{}", std::process::id());
        let gateway_port = free_port();
        let file = spec(self.dir.path(), gateway_port, &marker);
        self.ok(&["up", "-d", file.to_str().unwrap()]);
        wait_for("three ready instances", Duration::from_secs(30), || {
            let list = self.instances("spread");
            list.len() == 3 && list.iter().all(|i| i["state"] == "ready")
        });
        (marker, gateway_port, file)
    }

    /// The node named `name` as `vdc node list` shows it, asserting its
    /// state.
    fn assert_node_state(&self, name: &str, state: &str) -> Value {
        let node = self
            .nodes()
            .into_iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        assert_eq!(node["state"], state, "{node:#}");
        node
    }

    /// Waits until the app's `count` instances are ready, none on `host`.
    fn wait_ready_off(&self, app: &str, count: usize, host: &str) {
        wait_for(
            &format!("{app}'s instances to run off {host}"),
            Duration::from_secs(20),
            || {
                let list = self.instances(app);
                list.len() == count
                    && list
                        .iter()
                        .all(|i| i["state"] == "ready" && i["node"] != host)
            },
        );
    }
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One GET to `addr`, returning the body (the answering instance's name).
fn get(addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(response.lines().next().unwrap_or("no answer").to_owned());
    }
    Ok(response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Instance programs (not their inits) whose command line mentions
/// `needle`.
fn count_processes(needle: &str) -> usize {
    processes_matching(needle)
        .iter()
        .filter(|(_, cmdline)| !cmdline.contains("__vdc-init"))
        .count()
}

/// Requests to `addr` every 20 ms until stopped: (sent, failures with the
/// time each happened).
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<Instant>>>,
    sent: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    if get(&addr).is_err() {
                        failures.lock().unwrap().push(at);
                    }
                    *sent.lock().unwrap() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Load {
            stop,
            failures,
            sent,
            thread: Some(thread),
        }
    }

    /// (requests sent, failed, the time from the first failure to the last).
    fn finish(mut self) -> (u64, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let failures = self.failures.lock().unwrap();
        let window = match (failures.first(), failures.last()) {
            (Some(a), Some(b)) => b.duration_since(*a),
            _ => Duration::ZERO,
        };
        (*self.sent.lock().unwrap(), failures.len(), window)
    }
}

fn spec(dir: &Path, gateway_port: u16, marker: &str) -> PathBuf {
    let path = dir.join("spread.toml");
    std::fs::write(
        &path,
        format!(
            r#"app = "spread"

[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {gateway_port} }}
links = {{ backend = "web.http" }}

[components.web]
replicas = 3
command = ["python3", "{programs}/backend.py", "{marker}"]
workdir = "{programs}"
resources = {{ cpu = 0.1, memory = "64MiB" }}
inputs = {{ http = {{ protocol = "http", health = "/healthz" }} }}
"#,
            programs = programs(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_app_spread_over_three_nodes_survives_losing_one_and_a_partition() {
    let cluster = Cluster::start();
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 3, "{nodes:#?}");
    assert!(
        nodes.iter().all(|n| n["labels"]["host"] == n["name"]),
        "{nodes:#?}"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["disk_free_bytes"].as_u64().unwrap_or(0) > 0
                && n["disk_total_bytes"].as_u64() >= n["disk_free_bytes"].as_u64()),
        "{nodes:#?}"
    );
    assert!(cluster.ok(&["node", "list"]).contains("DISK FREE"));

    // Spread: one web instance per node.
    let (marker, gateway_port, _) = cluster.up_spread("spread");
    let list = cluster.instances("spread");
    let mut on: Vec<String> = list
        .iter()
        .map(|i| i["node"].as_str().unwrap().to_owned())
        .collect();
    on.sort();
    assert_eq!(on, ["h1", "h2", "h3"], "{list:#?}");

    // One gateway (h1's) reaches all three, two of them on other nodes.
    let gateway = format!("{}:{gateway_port}", cluster.hosts.ip(1));
    let mut answered = std::collections::BTreeSet::new();
    wait_for(
        "every instance to answer through h1's gateway",
        Duration::from_secs(20),
        || {
            if let Ok(who) = get(&gateway) {
                answered.insert(who);
            }
            answered.len() == 3
        },
    );
    // So does the gateway of another node.
    assert!(get(&format!("{}:{gateway_port}", cluster.hosts.ip(3))).is_ok());

    // Kill h2's agent and its instances: they come back on h1 and h3.
    let load = Load::start(gateway.clone());
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    let mut cluster = cluster;
    cluster.kill_host(2, &marker);
    cluster.wait_ready_off("spread", 3, "h2");
    let recovered = killed.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (sent, failed, window) = load.finish();
    println!(
        "node loss: instances ready elsewhere {recovered:?} after the kill (node timeout {NODE_TIMEOUT}); \
         gateway: {failed} of {sent} requests failed, over {window:?}"
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    cluster.assert_node_state("h2", "down");
    let events = cluster.ok(&["events", "--limit", "200"]);
    assert!(events.contains("down: no heartbeat"), "{events}");

    // Cut h3 off: it stops its instances before the pool places them on
    // h1, so no instance ever runs twice.
    let on_h3 = cluster
        .instances("spread")
        .iter()
        .filter(|i| i["node"] == "h3")
        .count();
    assert!(on_h3 >= 1);
    cluster.hosts.cut(3);
    let cut = Instant::now();
    let mut most = 0;
    while cut.elapsed() < Duration::from_secs(20) {
        most = most.max(count_processes(&marker));
        let list = cluster.instances("spread");
        if list.len() == 3
            && list
                .iter()
                .all(|i| i["state"] == "ready" && i["node"] == "h1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = cluster.instances("spread");
    assert!(
        list.len() == 3
            && list
                .iter()
                .all(|i| i["state"] == "ready" && i["node"] == "h1"),
        "{list:#?}\n--- h3:\n{}",
        cluster.log(3)
    );
    println!(
        "partition: all instances on h1 {:?} after the cut; at most {most} running at once",
        cut.elapsed()
    );
    assert!(most <= 3, "{most} copies ran at once during the partition");
    assert!(
        cluster.log(3).contains("stopping every instance"),
        "{}",
        cluster.log(3)
    );

    // Heal: h3 comes back, runs nothing it was not given, nothing is lost.
    cluster.hosts.heal(3);
    wait_for("h3 to be ready again", Duration::from_secs(20), || {
        cluster
            .nodes()
            .iter()
            .any(|n| n["name"] == "h3" && n["state"] == "ready")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count_processes(&marker), 3);
    let list = cluster.instances("spread");
    assert_eq!(list.len(), 3, "{list:#?}");
    assert!(get(&gateway).is_ok());

    // Drain h1: its instances move to h3 (h2 is down), each ready before
    // the old copy stops.
    let load = Load::start(format!("{}:{gateway_port}", cluster.hosts.ip(3)));
    cluster.ok(&["node", "drain", "h1"]);
    wait_for("h1 to be empty", Duration::from_secs(30), || {
        let list = cluster.instances("spread");
        list.len() == 3
            && list
                .iter()
                .all(|i| i["state"] == "ready" && i["node"] == "h3")
    });
    let (sent, failed, _) = load.finish();
    println!("drain: {failed} of {sent} requests failed");
    assert_eq!(failed, 0, "a drain must not fail requests");
    let h1 = cluster.assert_node_state("h1", "draining");
    assert_eq!(h1["instances"], 0, "{h1:#}");

    cluster.ok(&["down", "spread"]);
}

/// Servers on h1 and h2, an agent on h3, the default node timeout (5 s).
/// h1 — the leading server, with its instances — dies: h2 leads, the app
/// keeps serving through h3's gateway, h1's instance runs elsewhere, and
/// the app scales again under the new leader.
#[test]
fn the_leaders_host_dies_and_a_server_on_another_takes_over() {
    let mut cluster = Cluster::start_with(2, "5s");
    wait_for("h1 to lead", Duration::from_secs(10), || {
        cluster.health(1)["leader"] == true
    });
    assert_eq!(cluster.health(2)["leader"], false);

    let (marker, gateway_port, file) = cluster.up_spread("leader");
    assert!(cluster
        .instances("spread")
        .iter()
        .any(|i| i["node"] == "h1"));

    // Kill h1's server and its instances, with requests going through h3.
    let gateway = format!("{}:{gateway_port}", cluster.hosts.ip(3));
    wait_for("h3's gateway to answer", Duration::from_secs(20), || {
        get(&gateway).is_ok()
    });
    let load = Load::start(gateway.clone());
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    cluster.kill_host(1, &marker);
    cluster.api = cluster.api_of(2);

    wait_for("h2 to lead", Duration::from_secs(15), || {
        cluster.health(2)["leader"] == true
    });
    let leads = killed.elapsed();
    cluster.wait_ready_off("spread", 3, "h1");
    let recovered = killed.elapsed();

    // The new leader applies a changed spec: four web instances.
    let four = std::fs::read_to_string(&file)
        .unwrap()
        .replace("replicas = 3", "replicas = 4");
    std::fs::write(&file, four).unwrap();
    cluster.ok(&["up", "-d", file.to_str().unwrap()]);
    wait_for("four ready instances", Duration::from_secs(20), || {
        let list = cluster.instances("spread");
        list.len() == 4 && list.iter().all(|i| i["state"] == "ready")
    });
    let scaled = killed.elapsed() - recovered;
    std::thread::sleep(Duration::from_secs(1));
    let (sent, failed, window) = load.finish();
    println!(
        "leader loss (node timeout 5s, leader ttl 2s): h2 led after {leads:?}; \
         h1's instance ready elsewhere after {recovered:?}; applied 4 replicas, ready in {scaled:?} more; \
         h3's gateway: {failed} of {sent} requests failed, over {window:?}"
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    cluster.assert_node_state("h1", "down");
    cluster.ok(&["down", "spread"]);
}

/// One redis command on a new connection; the reply's first line and, for
/// a bulk string, its value.
fn redis(addr: &str, args: &[&str]) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).map_err(|e| e.to_string())?;
    if let Some(n) = line.strip_prefix('$') {
        let n: i64 = n.trim().parse().map_err(|e| format!("{e}"))?;
        if n < 0 {
            return Ok("(nil)".to_owned());
        }
        let mut value = String::new();
        std::io::BufRead::read_line(&mut reader, &mut value).map_err(|e| e.to_string())?;
        return Ok(value.trim_end().to_owned());
    }
    if line.starts_with('-') {
        return Err(line.trim_end().to_owned());
    }
    Ok(line.trim_end().to_owned())
}

/// `vdc move`: a redis with its volume goes to another node with its data,
/// reached at the same gateway; a stateless web instance moves under load
/// without a failed request.
#[test]
fn instances_move_between_nodes_with_their_data_and_their_callers() {
    require("redis-server");
    let cluster = Cluster::start();
    let port = free_port();
    let file = cluster.dir.path().join("kv.toml");
    std::fs::write(
        &file,
        format!(
            r#"app = "kv"

[components.redis]
command = ["redis-server", "--port", "${{PORT}}", "--bind", "127.0.0.1", "--dir", "${{VDC_VOLUME_DATA}}",
           "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
resources = {{ cpu = 0.1, memory = "64MiB" }}
inputs = {{ resp = {{ protocol = "tcp" }} }}
volumes = {{ data = {{}} }}
gateway = {{ port = {port} }}
"#
        ),
    )
    .unwrap();
    cluster.ok(&["up", "-d", file.to_str().unwrap()]);
    wait_for("redis to be ready", Duration::from_secs(30), || {
        let list = cluster.instances("kv");
        list.len() == 1 && list[0]["state"] == "ready"
    });
    let gateway = format!("{}:{port}", cluster.hosts.ip(1));
    wait_for("redis through the gateway", Duration::from_secs(20), || {
        redis(&gateway, &["PING"]).is_ok()
    });
    for i in 0..50 {
        redis(&gateway, &["SET", &format!("k{i}"), &format!("v{i}")]).unwrap();
    }
    let from = cluster.instances("kv")[0]["node"]
        .as_str()
        .unwrap()
        .to_owned();
    let to = if from == "h2" { "h3" } else { "h2" };
    let out = cluster.ok(&["move", "kv/redis/0", "--to", to]);
    println!(
        "stateful move {from} -> {to}: {}",
        out.trim().replace('\n', " | ")
    );
    assert!(out.contains(&format!("runs on {to}")), "{out}");
    // The new node reports the instance a moment after the old one has
    // taken its report away: for that moment the listing is empty.
    wait_for("the moved instance listed", Duration::from_secs(5), || {
        !cluster.instances("kv").is_empty()
    });
    let list = cluster.instances("kv");
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["node"], to, "{list:#?}");
    // Same address, same data, and writes go on.
    let mut glitches = Vec::new();
    wait_for(
        "redis after the move",
        Duration::from_secs(20),
        || match redis(&gateway, &["GET", "k0"]) {
            Ok(v) if v == "v0" => true,
            other => {
                glitches.push(format!("{other:?}"));
                false
            }
        },
    );
    println!("answers before the first right one after the move: {glitches:?}");
    for i in [0, 25, 49] {
        assert_eq!(
            redis(&gateway, &["GET", &format!("k{i}")]).unwrap(),
            format!("v{i}")
        );
    }
    assert_eq!(redis(&gateway, &["DBSIZE"]).unwrap(), ":50");
    redis(&gateway, &["SET", "after", "move"]).unwrap();
    // Moving it where it is, or to a node that does not exist, is refused.
    let (ok, out) = cluster.cli(&["move", "kv/redis/0", "--to", to]);
    assert!(!ok && out.contains("already runs on"), "{out}");
    let (ok, out) = cluster.cli(&["move", "kv/redis/0", "--to", "nowhere"]);
    assert!(!ok && out.contains("no node named"), "{out}");

    // Draining its node moves it the same way: with its data.
    cluster.ok(&["node", "drain", to]);
    wait_for(
        "redis to move off the drained node",
        Duration::from_secs(60),
        || {
            let list = cluster.instances("kv");
            list.len() == 1 && list[0]["node"] != to && list[0]["state"] == "ready"
        },
    );
    wait_for("redis after the drain", Duration::from_secs(20), || {
        redis(&gateway, &["GET", "after"]).is_ok_and(|v| v == "move")
    });
    assert_eq!(redis(&gateway, &["DBSIZE"]).unwrap(), ":51");
    cluster.ok(&["node", "undrain", to]);

    // Snapshots through the server on h1 of an instance on another node:
    // that node takes it, and it lands in the cluster's object store.
    let ready_kv = |cluster: &Cluster| {
        let mut list = Vec::new();
        wait_for("redis to be ready", Duration::from_secs(20), || {
            list = cluster.instances("kv");
            list.len() == 1 && list[0]["state"] == "ready"
        });
        list
    };
    if ready_kv(&cluster)[0]["node"] == "h1" {
        cluster.ok(&["move", "kv/redis/0", "--to", "h3"]);
    }
    let on = ready_kv(&cluster)[0]["node"].as_str().unwrap().to_owned();
    assert_ne!(on, "h1");
    let taken: Value = serde_json::from_str(&cluster.ok(&[
        "snapshot",
        "create",
        "kv/redis",
        "--name",
        "kv-before",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(taken["snapshot"]["node"], on.as_str(), "{taken:#}");
    redis(&gateway, &["SET", "later", "yes"]).unwrap();
    let list = cluster.ok(&["snapshot", "list", "kv"]);
    assert!(list.contains("kv-before"), "{list}");
    let restored: Value =
        serde_json::from_str(&cluster.ok(&["snapshot", "restore", "kv-before", "-o", "json"]))
            .unwrap();
    assert_eq!(restored["ready"], true, "{restored:#}");
    println!(
        "remote restore on {on}: down {} ms",
        restored["downtime_ms"]
    );
    wait_for("redis after the restore", Duration::from_secs(20), || {
        redis(&gateway, &["DBSIZE"]).is_ok_and(|v| v == ":51")
    });
    assert_eq!(redis(&gateway, &["GET", "later"]).unwrap(), "(nil)");
    cluster.ok(&["down", "kv"]);

    // Stateless: under load, no failed request.
    let (_, gateway_port, _) = cluster.up_spread("move");
    let web0 = cluster
        .instances("spread")
        .into_iter()
        .find(|i| i["id"]["index"] == 0)
        .unwrap();
    let from = web0["node"].as_str().unwrap().to_owned();
    let to = if from == "h1" { "h2" } else { "h1" };
    let gateway = format!("{}:{gateway_port}", cluster.hosts.ip(3));
    wait_for("the gateway", Duration::from_secs(20), || {
        get(&gateway).is_ok()
    });
    let load = Load::start(gateway);
    std::thread::sleep(Duration::from_millis(500));
    let out = cluster.ok(&["move", "spread/web/0", "--to", to]);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed, _) = load.finish();
    println!(
        "stateless move {from} -> {to} under load: {failed} of {sent} requests failed; {}",
        out.trim().replace('\n', " | ")
    );
    assert_eq!(failed, 0);
    // The old copy stops once the new one is ready (make-before-break):
    // for a moment both are listed.
    wait_for(
        "web/0 to be on its new node only",
        Duration::from_secs(20),
        || {
            let copies: Vec<Value> = cluster
                .instances("spread")
                .into_iter()
                .filter(|i| i["id"]["index"] == 0)
                .collect();
            copies.len() == 1 && copies[0]["node"] == to
        },
    );
    cluster.ok(&["down", "spread"]);
}

/// Benchmark, not run by default: the downtime of a stateful move for a
/// 100 MiB and a 1 GiB volume (`cargo nextest run -p vdc --test cluster
/// --run-ignored only --no-capture move_downtime`).
#[test]
#[ignore = "benchmark"]
fn move_downtime_by_volume_size() {
    let cluster = Cluster::start();
    for mib in [100, 1024] {
        let app = format!("bulk{mib}");
        let file = cluster.dir.path().join(format!("{app}.toml"));
        std::fs::write(
            &file,
            format!(
                r#"app = "{app}"

[components.store]
command = ["python3", "{programs}/bulk.py"]
workdir = "{programs}"
env = {{ BULK_MIB = "{mib}" }}
resources = {{ cpu = 0.5, memory = "256MiB" }}
inputs = {{ tcp = {{ protocol = "tcp" }} }}
volumes = {{ data = {{}} }}
"#,
                programs = programs()
            ),
        )
        .unwrap();
        cluster.ok(&["up", "-d", "--timeout", "300", file.to_str().unwrap()]);
        wait_for("the store to be ready", Duration::from_secs(300), || {
            let list = cluster.instances(&app);
            list.len() == 1 && list[0]["state"] == "ready"
        });
        let from = cluster.instances(&app)[0]["node"]
            .as_str()
            .unwrap()
            .to_owned();
        let to = if from == "h2" { "h3" } else { "h2" };
        let started = Instant::now();
        let out = cluster.ok(&["move", &format!("{app}/store/0"), "--to", to]);
        let total = started.elapsed();
        let down = out
            .rsplit("down ")
            .next()
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?")
            .to_owned();
        println!(
            "stateful move of a {mib} MiB volume {from} -> {to}: down {down} ms, {total:?} in all"
        );
        cluster.ok(&["down", &app, "--purge"]);
    }
}

impl Cluster {
    /// Runs the CLI against the server on host `i`, as the admin.
    fn ok_at(&self, i: usize, args: &[&str]) -> String {
        let token = std::fs::read_to_string(self.data(1).join("admin.token")).unwrap_or_default();
        let out = Command::new(BIN)
            .arg("--addr")
            .arg(self.api_of(i))
            .args(args)
            .env("VDC_TOKEN", token.trim())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vdc {args:?} on h{i} failed: {}{}\n--- h{i} log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log(i)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Only h2 reaches the registry (it listens on h2's own loopback). h2
/// pulls the image and offers it to the pool's object store; the app is
/// accepted by h1 and runs on all three hosts, h1 and h3 taking the image
/// from the object store.
#[test]
fn nodes_without_the_registry_run_an_image_another_node_pulled() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (CI does)");
    let cluster = Cluster::start_with(2, NODE_TIMEOUT);
    build_image(cluster.dir.path());
    let registry = vdc_testkit::registry::Registry::start_in_netns(
        &cluster.dir.path().join("registry"),
        &cluster.hosts.ns(2),
    );
    registry.push(
        &format!("oci:{}/images:web", cluster.dir.path().display()),
        "shop/web:1",
    );
    let image = format!("{}/shop/web:1", registry.host());
    cluster.ok_at(2, &["image", "pull", &image]);

    // And one that keeps a log in its volume, for a move.
    let mut spec = format!(
        "app = \"air\"\n[components.mover]\nappliance = \"container\"\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo started >> /data/log; exec httpd -f -p $PORT -h /srv/www\"]\ninputs.http = {{ protocol = \"tcp\" }}\nvolumes.data = {{ mount = \"/data\" }}\n"
    );
    for i in 1..=3 {
        spec.push_str(&format!(
            "[components.web{i}]\nappliance = \"container\"\nimage = \"{image}\"\nargs = [\"-f\", \"-p\", \"${{PORT}}\", \"-h\", \"/srv/www\"]\ninputs.http = {{ protocol = \"tcp\" }}\nplacement = {{ labels = {{ host = \"h{i}\" }} }}\n"
        ));
    }
    let file = cluster.dir.path().join("air.toml");
    std::fs::write(&file, spec).unwrap();
    cluster.ok(&["up", "-d", "--timeout", "60", file.to_str().unwrap()]);
    let list = cluster.instances("air");
    assert_eq!(list.len(), 4, "{list:#?}");
    for i in &list {
        assert_eq!(i["state"], "ready", "{i:#}");
    }
    let nodes: std::collections::BTreeSet<&str> = list
        .iter()
        .filter(|i| i["id"]["component"] != "mover")
        .map(|i| i["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "one on each host: {nodes:?}");

    // The container with a volume moves, its data along.
    let from = list
        .iter()
        .find(|i| i["id"]["component"] == "mover")
        .and_then(|i| i["node"].as_str())
        .unwrap()
        .to_owned();
    let to = if from == "h3" { "h1" } else { "h3" };
    let started = Instant::now();
    let out = cluster.ok(&["move", "air/mover/0", "--to", to]);
    println!(
        "container move {from} -> {to} in {:?}: {}",
        started.elapsed(),
        out.trim()
    );
    let moved = cluster
        .data(to[1..].parse().unwrap())
        .join("volumes/default/air/mover-0/data/log");
    wait_for(
        "the moved container to log again",
        Duration::from_secs(20),
        || std::fs::read_to_string(&moved).is_ok_and(|l| l.lines().count() >= 2),
    );
    for i in [1, 3] {
        assert!(
            cluster
                .log(i)
                .contains("fetched from the pool's object store"),
            "h{i}:\n{}",
            cluster.log(i)
        );
    }
}
