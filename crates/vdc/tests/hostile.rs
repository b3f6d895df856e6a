//! End to end, as an attacker: a tenant's program that tries every way out
//! of its instance, an app name handed from one tenant to another, and a
//! flood of idle connections against a node with 1024 descriptors. These
//! need root (confinement); CI runs as root.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "confinement needs root: run these tests as root (CI does)"
    );
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submits `body` as app `name` with `token`; it must be admitted.
fn up_as(vdc: &Vdc, token: &str, name: &str, body: &str) {
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, format!("app = \"{name}\"\n{body}")).unwrap();
    let out = as_token(
        vdc,
        token,
        &["up", "-d", "--timeout", "30", path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        vdc.server_log()
    );
}

/// The log of `instance` as `token` sees it, once it holds `needle`.
fn log_with(vdc: &Vdc, token: &str, instance: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = stdout(&as_token(vdc, token, &["logs", instance]));
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in {instance}'s log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A gateway app whose one instance keeps a secret in its volume and its
/// log, as the victim of the attacks.
fn victim(port: u16) -> String {
    format!(
        r#"[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {port}, address = "127.0.0.1" }}
links = {{ backend = "store.http" }}
[components.store]
command = ["sh", "-c", "echo globex-secret > \"$VDC_VOLUME_DATA/secret\"; echo globex-log-secret; exec python3 -m http.server ${{PORT}} --bind 127.0.0.1 --directory \"$VDC_VOLUME_DATA\""]
inputs = {{ http = {{ protocol = "http", health = "/" }} }}
volumes = {{ data = {{}} }}
resources = {{ cpu = 0.25, memory = "64MiB" }}
"#
    )
}

#[test]
fn a_hostile_instance_reaches_nothing_but_what_its_spec_declares() {
    root();
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let globex = vdc.create_tenant("globex", &[]);
    let gateway = free_port();
    up_as(&vdc, &globex, "vault", &victim(gateway));
    log_with(&vdc, &globex, "vault/store/0", "globex-log-secret");
    let victim_pid = vdc.pid_of("vault", "vault/store/0").unwrap();
    let data = vdc.data_dir().canonicalize().unwrap();
    let victim_volume = data.join("volumes/globex/vault/store-0/data/secret");
    let victim_log = data.join("logs/globex/vault/store-0.log");
    assert!(victim_volume.exists() && victim_log.exists());
    let host_tmp = tempfile::Builder::new()
        .prefix("host-only")
        .tempfile_in("/tmp")
        .unwrap();

    let programs = programs();
    up_as(
        &vdc,
        &acme,
        "probe",
        &format!(
            r#"[components.web]
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1"]
inputs = {{ http = {{ protocol = "http", health = "/" }} }}
resources = {{ cpu = 0.1, memory = "64MiB" }}
[components.attacker]
command = ["python3", "{programs}/hostile.py"]
workdir = "{programs}"
links = {{ web = "web.http" }}
volumes = {{ data = {{}} }}
resources = {{ cpu = 0.25, memory = "64MiB" }}
[components.attacker.env]
HOSTILE_DATA_DIR = "{data}"
HOSTILE_VICTIM = "{volume}\t{log}"
HOSTILE_VICTIM_PID = "{victim_pid}"
HOSTILE_HOST_TMP = "{host_tmp}"
HOSTILE_API = "{api}"
HOSTILE_GATEWAY = "127.0.0.1:{gateway}"
"#,
            data = data.display(),
            volume = victim_volume.display(),
            log = victim_log.display(),
            host_tmp = host_tmp.path().display(),
            api = vdc.addr,
        ),
    );
    let log = log_with(&vdc, &acme, "probe/attacker/0", "\ndone\n");
    println!("{log}");
    let escaped: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ESCAPED") || l.starts_with("BROKEN"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:#?}\n{log}");
    for attack in [
        "read-admin-token",
        "read-instance-key",
        "read-other-volume",
        "read-other-log",
        "umount-proc",
        "mount-tmpfs",
        "open-other-netns",
        "setns",
        "unshare-user",
        "write-cgroup /sys/fs/cgroup/memory/cgroup.procs",
        "escape-memory-limit",
        "ptrace-pid1",
        "see-host-tmp",
        "raw-socket",
        "load-module",
        "bpf",
        "keyctl",
        "reach-host-api",
        "reach-other-gateway",
        "platform-as-admin",
        "platform-forged-token",
    ] {
        assert!(
            log.lines()
                .any(|l| l.starts_with(&format!("blocked {attack}"))),
            "no attempt `{attack}`:\n{log}"
        );
    }
    for given in [
        "own-volume",
        "own-tmp",
        "declared-link",
        "platform-self",
        "own-identity",
    ] {
        assert!(
            log.lines().any(|l| l == format!("works {given}")),
            "`{given}` does not work:\n{log}"
        );
    }
    // Its files are its own user's, and the other tenant's are untouched.
    let own = data.join("volumes/acme/probe/attacker-0/data/mine");
    let meta = std::fs::metadata(&own).unwrap();
    assert_ne!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    assert_eq!(
        std::fs::read_to_string(&victim_volume).unwrap().trim(),
        "globex-secret"
    );
    // The victim still serves through its gateway.
    let mut conn = TcpStream::connect(("127.0.0.1", gateway)).unwrap();
    conn.write_all(b"GET /secret HTTP/1.1\r\nHost: vault\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The data directory and its secrets are for the server's user only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("instance.key")), 0o600);
}

/// Tenant a runs `payroll` and takes it down (volumes kept); tenant b then
/// runs its own `payroll`: b finds nothing of a's (log, volume), and a's
/// old instance token works for nothing. A comes back later and finds its
/// data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_app_name_hands_nothing_to_its_next_owner() {
    root();
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let globex = vdc.create_tenant("globex", &[]);
    let payroll = r#"[components.web]
command = ["sh", "-c", "echo \"token=$VDC_TOKEN\"; [ -f \"$VDC_VOLUME_DATA/owner\" ] || echo \"$VDC_TENANT\" > \"$VDC_VOLUME_DATA/owner\"; echo \"volume=$(cat \"$VDC_VOLUME_DATA/owner\")\"; exec python3 -m http.server ${PORT} --bind 127.0.0.1"]
inputs = { http = { protocol = "http", health = "/" } }
volumes = { data = {} }
resources = { cpu = 0.1, memory = "64MiB" }
"#;
    up_as(&vdc, &acme, "payroll", payroll);
    let log = log_with(&vdc, &acme, "payroll/web/0", "volume=");
    assert!(log.contains("volume=acme"), "{log}");
    let old_token = log
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .unwrap()
        .to_owned();
    let self_status = |token: String| {
        let addr = vdc.addr.clone();
        async move {
            http()
                .get(format!("http://{addr}/v1/self"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(self_status(old_token.clone()).await, 200);

    assert!(as_token(&vdc, &acme, &["down", "payroll"]).status.success());
    up_as(&vdc, &globex, "payroll", payroll);
    let log = log_with(&vdc, &globex, "payroll/web/0", "volume=");
    // Its own volume, its own log: nothing of acme's.
    assert!(log.contains("volume=globex"), "{log}");
    assert!(!log.contains("acme") && !log.contains(&old_token), "{log}");
    // Acme's token names the same instance of an app of the same name,
    // but another incarnation: it works for nothing.
    assert_eq!(self_status(old_token.clone()).await, 401);
    let raised = http()
        .post(format!("http://{}/v1/self/replicas", vdc.addr))
        .bearer_auth(&old_token)
        .json(&serde_json::json!({ "replicas": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(raised.status().as_u16(), 401);
    let replicas = vdc.instances("payroll").len();
    assert_eq!(replicas, 1);

    // Acme's data waited for acme.
    assert!(as_token(&vdc, &globex, &["down", "payroll", "--purge"])
        .status
        .success());
    up_as(&vdc, &acme, "payroll", payroll);
    let log = log_with(&vdc, &acme, "payroll/web/0", "volume=acme\n");
    assert!(log.contains("volume=acme"), "{log}");
    assert!(!log.contains("globex"), "{log}");
    // And a purge leaves nothing for the next owner.
    assert!(as_token(&vdc, &acme, &["down", "payroll", "--purge"])
        .status
        .success());
    let data = vdc.data_dir();
    let deadline = Instant::now() + Duration::from_secs(10);
    while data.join("volumes/acme/payroll").exists() || data.join("logs/acme/payroll").exists() {
        assert!(Instant::now() < deadline, "acme's payroll was not purged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With 1024 descriptors, 1100 idle and slow connections to the API from
/// one address neither stop a request with a valid token from another
/// address nor traffic through a gateway; the connections past the limits
/// are refused at once, and the idle ones are closed after the head
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_stop_neither_the_api_nor_the_gateways() {
    root();
    let mut vdc = Vdc::new();
    vdc.set_open_files(1024);
    vdc.spawn_server();
    let log = vdc.server_log();
    assert!(log.contains("open files: 1024"), "{log}");
    let (spec, ports) = vdc.example("shop.toml");
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let gateway = ports[0];
    let api: SocketAddr = vdc.addr.parse().unwrap();

    // 1100 connections from 127.0.0.1: most idle, some sending a head one
    // byte at a time.
    let mut held = Vec::new();
    let mut refused_fast = 0;
    for i in 0..1100 {
        let Ok(mut conn) = TcpStream::connect_timeout(&api, Duration::from_secs(2)) else {
            continue;
        };
        if i % 10 == 0 {
            let _ = conn.write_all(b"GET /v1/health HTTP/1.1\r\nHo");
        }
        held.push(conn);
    }
    // Those past the limits got an answer at once.
    for conn in held.iter_mut().rev().take(20) {
        conn.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = conn.read(&mut buf) {
            let head = String::from_utf8_lossy(&buf[..n]);
            if head.starts_with("HTTP/1.1 429") || head.starts_with("HTTP/1.1 503") {
                refused_fast += 1;
            }
        }
    }
    assert!(refused_fast >= 10, "{refused_fast} of 20 refused at once");

    // A valid request from another address goes through at once.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let apps = other
        .get(format!("http://{api}/v1/apps"))
        .bearer_auth(vdc.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(apps.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // So does traffic through the gateway, on the data plane's own share.
    for _ in 0..20 {
        let answer = http()
            .get(format!("http://127.0.0.1:{gateway}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
    }

    // The idle connections are closed after the head timeout.
    let mut first = held.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = Instant::now();
    let n = first.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 408"),
        "an idle connection got {answer:?}"
    );
    assert!(closed.elapsed() < Duration::from_secs(14));
    drop(held);
    let log = vdc.server_log();
    assert!(!log.contains("Too many open files"), "{log}");
}

/// A component may run as another user only when the admin allowed its
/// tenant that user; root, allowed, keeps only root's default
/// capabilities.
#[test]
fn another_user_only_when_the_admin_allows_it() {
    root();
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let body = |user: &str| {
        format!(
            r#"[components.who]
user = "{user}"
command = ["sh", "-c", "echo \"id=$(id -u):$(id -g) home=$HOME\"; grep -E '^CapEff' /proc/self/status; exec sleep 1000"]
resources = {{ cpu = 0.1, memory = "32MiB" }}
"#
        )
    };
    let path = vdc.dir.path().join("who.toml");
    for user in ["nobody", "root"] {
        std::fs::write(&path, format!("app = \"who\"\n{}", body(user))).unwrap();
        let out = as_token(&vdc, &acme, &["up", "-d", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("asks to run as `{user}`")) && stderr.contains("run-as"),
            "{stderr}"
        );
    }
    vdc.ok(&["tenant", "run-as", "acme", "nobody", "root"]);
    up_as(&vdc, &acme, "who", &body("nobody"));
    let log = log_with(&vdc, &acme, "who/who/0", "CapEff");
    assert!(log.contains("id=65534:65534 home=/home/nobody"), "{log}");
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    up_as(&vdc, &acme, "who", &body("root"));
    let log = log_with(&vdc, &acme, "who/who/0", "id=0:0");
    assert!(log.contains("home=/root"), "{log}");
    assert!(
        !log.contains("CapEff:\t000001ff"),
        "root keeps only the default set: {log}"
    );
}
