//! The CNCF distribution registry (`docker-registry` in Debian) on a free
//! loopback port, storing under a directory, optionally behind basic auth;
//! killed when dropped. Images are pushed to it with skopeo.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    /// `user:password` when it needs them.
    pub credentials: Option<String>,
    /// A command the registry and pushes run under (`ip netns exec NS`).
    prefix: Vec<String>,
}

impl Registry {
    /// Starts one that anyone may pull from and push to.
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, None)
    }

    /// Starts one in the network namespace `ns` (on its loopback, which
    /// only that namespace reaches), pushes included.
    pub fn start_in_netns(dir: &Path, ns: &str) -> Registry {
        let prefix = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            ns.to_owned(),
        ];
        Self::start_full(dir, None, prefix)
    }

    /// Starts one that needs `user` and `password` (basic auth over a
    /// bcrypt htpasswd file, as the registry wants it).
    pub fn start_with_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Self::start_with(dir, Some((user, password)))
    }

    fn start_with(dir: &Path, auth: Option<(&str, &str)>) -> Registry {
        Self::start_full(dir, auth, Vec::new())
    }

    fn start_full(dir: &Path, auth: Option<(&str, &str)>, prefix: Vec<String>) -> Registry {
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("docker-registry is not installed: run .ci/run (or apt-get install docker-registry)");
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let mut auth_section = String::new();
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 5).unwrap();
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: vdc-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                    storage.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let mut command = match prefix.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(binary);
                    c
                }
                None => Command::new(binary),
            };
            let mut child = command
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(10);
            let listening = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if listening(&prefix, port) {
                    break true;
                }
                assert!(
                    Instant::now() < deadline,
                    "docker-registry did not listen within 10 s: {}",
                    std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            if listening {
                return Registry {
                    child,
                    port,
                    storage,
                    credentials: auth.map(|(u, p)| format!("{u}:{p}")),
                    prefix,
                };
            }
        }
        panic!("docker-registry did not start on any of 5 free ports");
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps blobs: `…/blobs/sha256/AB/ABCD…/data`.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `source` (a skopeo source: `oci:DIR:TAG`, `oci-archive:FILE`)
    /// to `REGISTRY/repository`.
    pub fn push(&self, source: &str, repository: &str) {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("skopeo");
                c
            }
            None => Command::new("skopeo"),
        };
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = &self.credentials {
            cmd.arg("--dest-creds").arg(creds);
        }
        let out = cmd
            .arg(source)
            .arg(format!("docker://{}/{repository}", self.host()))
            .output()
            .expect("skopeo is not installed: run .ci/run (or apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether something listens on the loopback `port`, seen from the
/// namespace the prefix runs commands in.
fn listening(prefix: &[String], port: u16) -> bool {
    if prefix.is_empty() {
        return TcpStream::connect(("127.0.0.1", port)).is_ok();
    }
    Command::new(&prefix[0])
        .args(&prefix[1..])
        .args([
            "python3",
            "-c",
            &format!("import socket; socket.create_connection(('127.0.0.1', {port}), 1)"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
