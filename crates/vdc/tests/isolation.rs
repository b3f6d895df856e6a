//! End to end: the kernel enforces each instance's limits, and vdc says so.
//! These need root (cgroups); CI runs as root.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cgroup limits need root: run these tests as root (CI does)"
    );
}

fn launch(vdc: &Vdc, app: &str, body: &str) {
    let path = vdc.dir.path().join(format!("{app}.toml"));
    std::fs::write(&path, format!("app = \"{app}\"\n{body}")).unwrap();
    let out = vdc.run(&["up", "-d", "--timeout", "10", path.to_str().unwrap()]);
    // A hog may be killed before it is ready: only refusals matter here.
    assert_ne!(out.status.code(), Some(3), "{out:?}");
}

fn events(vdc: &Vdc, app: &str) -> Vec<serde_json::Value> {
    let out = vdc.ok(&["events", app, "-o", "json", "--limit", "200"]);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_instance_past_its_memory_limit_is_killed_restarted_and_the_event_says_why() {
    root();
    let vdc = Vdc::start();
    launch(
        &vdc,
        "oom",
        &format!(
            "[components.hog]\ncommand = [\"python3\", \"{0}/hog.py\"]\nworkdir = \"{0}\"\nenv = {{ HOG = \"memory\" }}\nresources = {{ cpu = 0.5, memory = \"96MiB\" }}\n",
            programs()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = events(&vdc, "oom");
        let killed = events.iter().find(|e| e["kind"] == "instance-exited");
        let restarted = events.iter().any(|e| e["kind"] == "instance-restarted");
        if let (Some(killed), true) = (killed, restarted) {
            assert!(
                killed["reason"].as_str().unwrap().contains("out of memory"),
                "{killed}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OOM kill and restart: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = vdc.instances("oom");
    assert!(
        list[0]["last_exit"]
            .as_str()
            .unwrap()
            .contains("out of memory"),
        "{list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_instance_is_throttled_to_its_cpu_share_and_accounting_shows_it() {
    root();
    let vdc = Vdc::start();
    launch(
        &vdc,
        "spin",
        "[components.spin]\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\nresources = { cpu = 0.2, memory = \"32MiB\" }\n",
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let topology: serde_json::Value = vdc
        .api_get("/v1/apps/spin/topology?seconds=3")
        .await
        .json()
        .await
        .unwrap();
    let cpu = topology["components"][0]["cpu_percent"].as_f64().unwrap();
    assert!((12.0..=26.0).contains(&cpu), "a 0.2-CPU limit shows {cpu}%");
    let metrics = vdc.api_get("/metrics").await.text().await.unwrap();
    let throttled: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("vdc_instance_cpu_throttled_seconds_total{") && l.contains("spin/spin/0")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no throttling metric: {metrics}"));
    assert!(
        throttled > 0.5,
        "throttled {throttled} s in ~4 s at 0.2 CPU"
    );
}

#[test]
fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    root();
    let vdc = Vdc::start();
    launch(
        &vdc,
        "forks",
        &format!(
            "[components.hog]\ncommand = [\"python3\", \"{0}/hog.py\"]\nworkdir = \"{0}\"\nenv = {{ HOG = \"forks\" }}\nresources = {{ cpu = 0.5, memory = \"2GiB\" }}\n",
            programs()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = vdc.ok(&["logs", "forks/hog/0"]);
        if log.contains("fork failed") || log.contains("started all") {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let got: u64 = log
        .split("fork failed after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the pids limit did not stop it: {log}"));
    assert!((900..=1024).contains(&got), "stopped after {got} children");
    // Stopping the instance takes every child with it.
    vdc.ok(&["down", "forks"]);
    assert!(processes_matching(&format!("{}/hog.py", programs()))
        .iter()
        .all(|(_, cmd)| !cmd.contains("HOG")));
}

/// Writes an app spec into the test's directory.
fn write_spec(vdc: &Vdc, app: &str, body: &str) -> std::path::PathBuf {
    let path = vdc.dir.path().join(format!("{app}.toml"));
    std::fs::write(&path, format!("app = \"{app}\"\n{body}")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reaches_its_declared_links_and_nothing_else() {
    root();
    let vdc = Vdc::start();
    let web = "[components.web]\ncommand = [\"python3\", \"-m\", \"http.server\", \"${PORT}\", \"--bind\", \"127.0.0.1\"]\n\
               inputs = { http = { protocol = \"http\", health = \"/\" } }\n";

    // Another app with a link of its own: its address must not be reachable.
    let beta = write_spec(
        &vdc,
        "beta",
        &format!("{web}[components.caller]\ncommand = [\"sleep\", \"3600\"]\nlinks = {{ web = \"web.http\" }}\n"),
    );
    vdc.ok(&["up", "-d", beta.to_str().unwrap()]);
    let detail: serde_json::Value = vdc.api_get("/v1/apps/beta").await.json().await.unwrap();
    let beta_link = detail["listeners"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();

    // The node's own address other than loopback, if it has one.
    let host_ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .ok()
        .and_then(|s| s.connect("192.0.2.1:9").ok().map(|_| s))
        .and_then(|s| s.local_addr().ok())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.2".to_owned());
    let api_port = vdc.addr.rsplit(':').next().unwrap().to_owned();
    // The link's address comes from the environment: a shell passes it on.
    let targets = format!(
        "own-link=$VDC_LINK_WEB,other-app-link={beta_link},host-api=127.0.0.1:{api_port},host-address={host_ip}:{api_port},outside=192.0.2.1:80"
    );
    let alpha = write_spec(
        &vdc,
        "alpha",
        &format!(
            "{web}[components.client]\ncommand = [\"sh\", \"-c\", \"TARGETS={targets} exec python3 {0}/reach.py\"]\nworkdir = \"{0}\"\nlinks = {{ web = \"web.http\" }}\n",
            programs()
        ),
    );
    vdc.ok(&["up", "-d", alpha.to_str().unwrap()]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = vdc.ok(&["logs", "alpha/client/0"]);
        if log.contains("done") {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("own-link ok"), "{log}");
    for blocked in ["other-app-link", "host-api", "host-address", "outside"] {
        assert!(
            log.contains(&format!("{blocked} failed")),
            "{blocked} should be unreachable: {log}"
        );
    }
    let ps = vdc.instances("alpha");
    for i in &ps {
        let layers = &i["isolation"];
        assert_eq!(layers["network"], "own", "{i}");
        for layer in ["pid_namespace", "filesystem_view", "unprivileged"] {
            assert_eq!(layers[layer], true, "{layer}: {i}");
        }
        // The program, pid 2 in its own PID namespace, apart from the init
        // vdc supervises.
        let program = i["program_pid"].as_u64().expect("the program's pid");
        assert_ne!(Some(program), i["pid"].as_u64(), "{i}");
        let status = std::fs::read_to_string(format!("/proc/{program}/status")).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.ends_with("\t2"), "{nspid}");
    }
    let table = vdc.ok(&["ps", "alpha"]);
    let row = table.lines().nth(1).unwrap();
    let program = ps[0]["program_pid"].as_u64().unwrap().to_string();
    let init = ps[0]["pid"].as_u64().unwrap().to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(
        cells
            .windows(2)
            .any(|w| w == [program.as_str(), init.as_str()]),
        "PID then INIT: {table}"
    );
    assert!(
        row.ends_with("net+pid+cgroup+fs+user") || row.ends_with("net+pid+fs+user"),
        "{table}"
    );

    // A component that declares egress runs on the host's network.
    let open = write_spec(
        &vdc,
        "gamma",
        &format!(
            "[components.open]\negress = true\ncommand = [\"sh\", \"-c\", \"TARGETS=host-api=127.0.0.1:{api_port} exec python3 {0}/reach.py\"]\nworkdir = \"{0}\"\n",
            programs()
        ),
    );
    vdc.ok(&["up", "-d", open.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = vdc.ok(&["logs", "gamma/open/0"]);
        if log.contains("done") {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("host-api ok"), "{log}");
    assert_eq!(vdc.instances("gamma")[0]["isolation"]["network"], "egress");
}

/// A volume with a `mount` path appears there inside the instance (a bind
/// mount in its own view of the filesystem); the node's directory holds
/// the files, and the host is left as it was (the view makes the mount
/// point, outside the host's software trees).
#[test]
fn a_volume_is_mounted_at_its_path_inside_the_instance_only() {
    root();
    let vdc = Vdc::start();
    let mount = format!("/srv/vdc-test-mount-{}", std::process::id());
    launch(
        &vdc,
        "mounted",
        &format!(
            r#"[components.box]
command = ["sh", "-c", "echo \"$VDC_VOLUME_DATA\" > {mount}/seen; sleep 100"]
volumes = {{ data = {{ mount = "{mount}" }} }}
"#
        ),
    );
    let file = vdc
        .data_dir()
        .join("volumes/default/mounted/box-0/data/seen");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "nothing written through the mount: {}",
            vdc.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    // The instance was told where its volume is: the mount path.
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), mount);
    // Nothing was made on the host.
    assert!(!std::path::Path::new(&mount).exists());
    vdc.ok(&["down", "mounted"]);
}

/// A volume with a `size` is a filesystem of that size (an image
/// loop-mounted at the volume's directory): writes past it fail with "no
/// space left". A restore goes into the image, and a purge leaves no mount
/// and no image behind.
#[test]
fn a_sized_volume_refuses_writes_past_its_size_and_survives_a_restore() {
    root();
    let vdc = Vdc::start();
    launch(
        &vdc,
        "sized",
        r#"[components.box]
command = ["sh", "-c", "[ -f \"$VDC_VOLUME_DATA/keep\" ] || echo kept > \"$VDC_VOLUME_DATA/keep\"; rm -f \"$VDC_VOLUME_DATA/big\"; dd if=/dev/zero of=\"$VDC_VOLUME_DATA/big\" bs=1M count=20 2>&1; echo \"dd exited $?\"; sleep 100"]
volumes = { data = { size = "8MiB" } }
"#,
    );
    let dir = vdc.data_dir().join("volumes/default/sized/box-0/data");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = vdc.ok(&["logs", "sized/box"]);
        if logs.contains("dd exited") {
            assert!(logs.contains("No space left"), "{logs}");
            assert!(!logs.contains("dd exited 0"), "{logs}");
            break;
        }
        assert!(Instant::now() < deadline, "dd never finished: {logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let big = std::fs::metadata(dir.join("big")).unwrap().len();
    assert!(big < 8 << 20, "{big} bytes written into an 8 MiB volume");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let canonical = dir.canonicalize().unwrap();
    assert!(
        mounts.contains(canonical.to_str().unwrap()),
        "the volume is not a mount of its own"
    );

    // Snapshot, change a file, restore: the file is as it was, in the
    // image (the program writes it only when it is missing).
    vdc.ok(&["snapshot", "create", "sized/box", "--name", "sized-1"]);
    std::fs::write(dir.join("keep"), "changed\n").unwrap();
    vdc.ok(&["snapshot", "restore", "sized-1"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).unwrap().trim(),
        "kept"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.contains(canonical.to_str().unwrap()));

    vdc.ok(&["down", "sized", "--purge"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while vdc.data_dir().join("volumes/default/sized").exists() {
        assert!(Instant::now() < deadline, "not purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(canonical.to_str().unwrap()));
    assert!(!vdc.data_dir().join("volume-images/default/sized").exists());
}
