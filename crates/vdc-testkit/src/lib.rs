//! What the test suites of several crates start for real: a `nats-server`
//! with JetStream on a free loopback port, and an OCI registry (Debian's
//! `docker-registry`, the CNCF distribution registry) with or without
//! basic auth ([`registry`]). A missing binary fails the test with the
//! package to install; it never skips. And what the micro-benchmarks print
//! ([`bench`]).

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod registry;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server -js` storing under a directory; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    ip: String,
    port: u16,
}

impl NatsServer {
    /// Starts one on a free port and waits until it listens. A port taken
    /// by another test between choosing and binding it makes nats-server
    /// exit: then it tries another.
    pub fn start(store_dir: &Path) -> Self {
        Self::start_at(store_dir, "127.0.0.1")
    }

    /// The same, listening on `ip` (a bridge's address).
    pub fn start_at(store_dir: &Path, ip: &str) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(store_dir, ip, free_port()) {
                return server;
            }
        }
        panic!("nats-server did not start on any of 5 free ports");
    }

    /// Starts one on `port` (to restart a server where clients expect it).
    pub fn start_on(store_dir: &Path, port: u16) -> Self {
        Self::try_start(store_dir, "127.0.0.1", port)
            .unwrap_or_else(|| panic!("nats-server could not listen on port {port}"))
    }

    /// `None` if it exited before listening (the port was taken).
    fn try_start(store_dir: &Path, ip: &str, port: u16) -> Option<Self> {
        let child = Command::new(binary())
            .args(["-js", "-a", ip, "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        let mut server = NatsServer {
            child,
            ip: ip.to_owned(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None;
            }
            if TcpStream::connect((ip, port)).is_ok() {
                // Whoever answered, it must be this child: check it lives.
                std::thread::sleep(Duration::from_millis(20));
                return match server.child.try_wait() {
                    Ok(None) => Some(server),
                    _ => None,
                };
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {ip}:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.ip, self.port)
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `nats-server` binary on PATH or in the Debian package's places.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: these tests need a real server \
                 (apt-get install nats-server)"
            )
        })
}
