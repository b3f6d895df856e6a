//! Without root, vdc still runs apps: instances get their own process group
//! but no cgroup, and the server says once that limits are not enforced.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn without_root_instances_run_in_process_groups_with_a_warning() {
    require("setpriv");
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test drops from root to nobody; run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The test binary's directory may not be readable by nobody: use a copy.
    let bin = dir.path().join("vdc");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = dir.path().join("app.toml");
    std::fs::write(
        &spec,
        "app = \"plain\"\n[components.worker]\nreplicas = 2\ncommand = [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["--addr", &addr])
            .args(args)
            .env("VDC_DATA_DIR", dir.path().join("data"))
            .env("HOME", dir.path())
            .stdin(Stdio::null());
        c
    };
    let log = std::fs::File::create(dir.path().join("server.out")).unwrap();
    let mut server = as_nobody(&["server"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = as_nobody(&["up", "-d", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ps = as_nobody(&["ps", "plain", "-o", "json"]).output().unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(list.len(), 2);
    for i in &list {
        assert_eq!(i["isolation"]["network"], "host", "{i}");
        assert_eq!(i["isolation"]["pid_namespace"], false, "{i}");
        assert_eq!(i["isolation"]["unprivileged"], false, "{i}");
        assert_eq!(i["program_pid"], i["pid"], "no init between: {i}");
        let pid = i["pid"].as_i64().unwrap() as i32;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains("65534")),
            "{status}"
        );
        // Its own process group, led by itself.
        assert_eq!(
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                .unwrap()
                .as_raw(),
            pid
        );
    }

    let out = as_nobody(&["server", "stop"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    server.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("server.out")).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("not enforced")).collect();
    assert_eq!(warnings.len(), 1, "one warning about limits: {log}");
    for i in &list {
        assert!(!alive(i["pid"].as_i64().unwrap() as i32));
    }
}
