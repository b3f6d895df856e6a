//! `vdc server --nats`: the state lives in NATS JetStream, not in the data
//! directory, so a server with a new data directory finds it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `nats-server` with JetStream on a free loopback port; killed on drop.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start(store_dir: &Path) -> Self {
        require("nats-server");
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = NatsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app of one web instance whose command line names `marker`, so the
/// test can find its processes.
fn app(vdc: &Vdc, name: &str, marker: &Path) -> std::path::PathBuf {
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"app = "{name}"
[components.web]
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1", "--directory", "{}"]
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
