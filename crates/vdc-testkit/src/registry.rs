//! The CNCF distribution registry (`docker-registry` in Debian) on a free
//! loopback port, storing under a directory, optionally behind basic auth
//! or behind a token service as Docker Hub's; killed when dropped. Images
//! are pushed to it with skopeo.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    token_service: Option<TokenService>,
}

/// How a registry checks who pulls and pushes.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Anyone,
    /// HTTP basic auth on every request.
    Basic(&'a str, &'a str),
    /// Bearer tokens from a token service that takes basic auth, as Docker
    /// Hub, GHCR or Harbor do.
    Token(&'a str, &'a str),
}

impl Registry {
    /// Starts one that anyone may pull from and push to.
    pub fn start(dir: &Path) -> Registry {
        Self::start_full(dir, Auth::Anyone, Vec::new())
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
        Self::start_full(dir, Auth::Anyone, prefix)
    }

    /// Starts one that needs `user` and `password` (basic auth over a
    /// bcrypt htpasswd file, as the registry wants it).
    pub fn start_with_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Self::start_full(dir, Auth::Basic(user, password), Vec::new())
    }

    /// Starts one that takes only bearer tokens, with a token service that
    /// gives them to `user` and `password` (the registry's `auth.token`
    /// setting: the registry answers 401 naming the service's realm, the
    /// client asks the realm for a token with its credentials and the
    /// scope it needs, and the registry checks the token's signature,
    /// issuer, audience, expiry and access).
    pub fn start_with_token_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Self::start_full(dir, Auth::Token(user, password), Vec::new())
    }

    /// How many tokens the token service gave (0 without one).
    pub fn tokens_issued(&self) -> usize {
        self.token_service
            .as_ref()
            .map_or(0, |t| t.issued.load(Ordering::SeqCst))
    }

    fn start_full(dir: &Path, auth: Auth<'_>, prefix: Vec<String>) -> Registry {
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("docker-registry is not installed: run .ci/run (or apt-get install docker-registry)");
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let mut auth_section = String::new();
        let mut token_service = None;
        let mut credentials = None;
        match auth {
            Auth::Anyone => {}
            Auth::Basic(user, password) => {
                let hash = bcrypt::hash(password, 5).unwrap();
                let htpasswd = dir.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                auth_section = format!(
                    "auth:\n  htpasswd:\n    realm: vdc-test\n    path: {}\n",
                    htpasswd.display()
                );
                credentials = Some(format!("{user}:{password}"));
            }
            Auth::Token(user, password) => {
                let service = TokenService::start(dir, user, password);
                auth_section = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    service.realm,
                    service.root_bundle.display()
                );
                token_service = Some(service);
                credentials = Some(format!("{user}:{password}"));
            }
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
                    credentials,
                    prefix,
                    token_service,
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

/// The registry's name in tokens (their audience) and their issuer.
const SERVICE: &str = "vdc-test-registry";
const ISSUER: &str = "vdc-test-token-service";

/// A token service on a free loopback port: `GET /token?service=…&scope=…`
/// with the right basic credentials gets a JWT (ES256, signed by a key whose
/// self-signed certificate is the registry's root bundle and travels in the
/// token's `x5c` header) granting what the scopes ask; anything else gets
/// 401. Stopped when dropped.
struct TokenService {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    issued: Arc<AtomicUsize>,
    realm: String,
    root_bundle: PathBuf,
}

impl TokenService {
    fn start(dir: &Path, user: &str, password: &str) -> TokenService {
        use base64::Engine as _;
        let signer = rcgen::generate_simple_self_signed(vec![ISSUER.to_owned()]).unwrap();
        let root_bundle = dir.join("token-root.pem");
        std::fs::write(&root_bundle, signer.cert.pem()).unwrap();
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(signer.key_pair.serialize_pem().as_bytes())
                .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![
            base64::engine::general_purpose::STANDARD.encode(signer.cert.der())
        ]);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let thread = {
            let server = Arc::clone(&server);
            let issued = Arc::clone(&issued);
            let user = user.to_owned();
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let authorized = request.headers().iter().any(|h| {
                        h.field.equiv("Authorization") && h.value.as_str() == basic.as_str()
                    });
                    let query = request.url().split_once('?').map_or("", |(_, q)| q);
                    let mut access = Vec::new();
                    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                        if name != "scope" {
                            continue;
                        }
                        // repository:NAME:pull,push
                        let mut parts = value.splitn(3, ':');
                        if let (Some(kind), Some(name), Some(actions)) =
                            (parts.next(), parts.next(), parts.next())
                        {
                            access.push(serde_json::json!({
                                "type": kind,
                                "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>(),
                            }));
                        }
                    }
                    let json =
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                    if !authorized {
                        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                        let _ = request.respond(
                            tiny_http::Response::from_string(body)
                                .with_status_code(401)
                                .with_header(json),
                        );
                        continue;
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let n = issued.fetch_add(1, Ordering::SeqCst);
                    let claims = serde_json::json!({
                        "iss": ISSUER,
                        "sub": user,
                        "aud": SERVICE,
                        "exp": now + 300,
                        "nbf": now - 10,
                        "iat": now,
                        "jti": format!("vdc-test-{n}"),
                        "access": access,
                    });
                    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                    let body = serde_json::json!({
                        "token": token,
                        "access_token": token,
                        "expires_in": 300,
                    })
                    .to_string();
                    let _ =
                        request.respond(tiny_http::Response::from_string(body).with_header(json));
                }
            })
        };
        TokenService {
            server,
            thread: Some(thread),
            issued,
            realm: format!("http://127.0.0.1:{port}/token"),
            root_bundle,
        }
    }
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("realm", &self.realm)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
