//! A harness for end-to-end tests: a real `vdc server` in a temporary data
//! directory on a free port, driven through the real `vdc` binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod load;

pub const BIN: &str = env!("CARGO_BIN_EXE_vdc");

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .canonicalize()
        .expect("examples dir")
}

pub use vdc_testkit::free_port;

/// Fails the test with a clear message when a tool the test needs is missing
/// (CI installs every one of them; a test never skips silently).
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run .ci/run (or apt-get install it) before these tests"
    );
}

/// A vdc server and its data directory, stopped and removed on drop.
pub struct Vdc {
    pub dir: tempfile::TempDir,
    pub addr: String,
    server: Option<Child>,
    /// Flags every `vdc server` this harness starts gets.
    server_args: Vec<String>,
    /// The open-file limit (soft and hard) servers start with, when set.
    open_files: Option<u64>,
}

impl Vdc {
    /// A data directory and address, no server yet. The directory holds
    /// the specs too, so it is the instances' working directory: readable
    /// by their users.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        open_to_instances(dir.path());
        Self {
            dir,
            addr: format!("127.0.0.1:{}", free_port()),
            server: None,
            server_args: Vec::new(),
            open_files: None,
        }
    }

    /// Starts `vdc server` and waits until it answers.
    pub fn start() -> Self {
        let mut vdc = Self::new();
        vdc.spawn_server();
        vdc
    }

    /// Starts `vdc server ARGS...` and waits until it answers.
    pub fn start_with(args: &[&str]) -> Self {
        let mut vdc = Self::new();
        vdc.spawn_server_with(args);
        vdc
    }

    /// Starts `vdc server ARGS...` on this data directory and address (and
    /// keeps ARGS for later starts).
    pub fn spawn_server_with(&mut self, args: &[&str]) {
        self.server_args = args.iter().map(|a| a.to_string()).collect();
        self.spawn_server();
    }

    /// Starts later servers with this open-file limit, as a service
    /// manager would (`ulimit -n`).
    pub fn set_open_files(&mut self, limit: u64) {
        self.open_files = Some(limit);
    }

    /// Starts `vdc server` on this data directory and address.
    pub fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .unwrap();
        let mut command = match self.open_files {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    BIN,
                ]);
                sh
            }
            None => Command::new(BIN),
        };
        let child = command
            .args(["server", "--api", &self.addr, "--data-dir"])
            .arg(self.data_dir())
            .args(&self.server_args)
            .env("VDC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        self.wait_up();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin token the server created in its data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .expect("the server writes its admin token")
            .trim()
            .to_owned()
    }

    /// A GET of the API with the admin token.
    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.api_get_as(path, &self.admin_token()).await
    }

    pub async fn api_get_as(&self, path: &str, token: &str) -> reqwest::Response {
        http()
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.is_up() {
            assert!(
                Instant::now() < deadline,
                "server at {} did not come up: {}",
                self.addr,
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the server answers HTTP (with any status: 401 too). A
    /// bare TCP connect is not enough: the socket accepts connections while
    /// the server is still setting up (writing its admin token, for one).
    pub fn is_up(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let request = format!(
            "GET /v1/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    /// Runs `vdc --addr ADDR ARGS...` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--addr")
            .arg(&self.addr)
            .args(args)
            .env("VDC_DATA_DIR", self.data_dir())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("VDC_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `vdc --addr ADDR ARGS...` with `input` on its stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .arg("--addr")
            .arg(&self.addr)
            .args(args)
            .env("VDC_DATA_DIR", self.data_dir())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("VDC_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `vdc tenant create NAME ARGS...`; returns the tenant's token.
    pub fn create_tenant(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["tenant", "create", name];
        all.extend_from_slice(args);
        self.ok(&all).trim().to_owned()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vdc {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a copy of an example whose gateways use free ports and whose
    /// commands point at the examples directory. Returns the file and the
    /// gateway ports in the order they appear.
    pub fn example(&self, name: &str) -> (PathBuf, Vec<u16>) {
        let examples = examples_dir();
        let text = std::fs::read_to_string(examples.join(name)).unwrap();
        // The example's files beside it, as in the repository: the
        // instances see their working directory, not the repository.
        for dir in ["shop", "stack"] {
            copy_dir(&examples.join(dir), &self.dir.path().join(dir));
        }
        let key = "gateway = { port = ";
        let mut ports = Vec::new();
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(pos) = rest.find(key) {
            out.push_str(&rest[..pos + key.len()]);
            let after = &rest[pos + key.len()..];
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let port = free_port();
            ports.push(port);
            out.push_str(&port.to_string());
            rest = &after[digits..];
        }
        out.push_str(rest);
        let text = out;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (path, ports)
    }

    /// `vdc ps APP -o json`.
    pub fn instances(&self, app: &str) -> Vec<Value> {
        let out = self.ok(&["ps", app, "-o", "json"]);
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    }

    /// The pid of every instance of `app`.
    pub fn pids(&self, app: &str) -> Vec<i32> {
        self.instances(app)
            .iter()
            .map(|i| i["pid"].as_i64().unwrap() as i32)
            .collect()
    }

    pub fn pid_of(&self, app: &str, instance: &str) -> Option<i32> {
        self.instances(app)
            .iter()
            .find(|i| instance_name(i) == instance)
            .and_then(|i| i["pid"].as_i64())
            .map(|p| p as i32)
    }

    /// Waits until `check` holds on the app's instances.
    pub fn wait_instances(
        &self,
        app: &str,
        what: &str,
        mut check: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.instances(app);
            if check(&list) {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {list:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL: no clean-up of any kind.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    pub fn stop_server(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.server.take()?;
        signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vdc {
    fn drop(&mut self) {
        self.stop_server();
        // A server started by `up -d` in this data directory.
        if self.is_up() {
            let _ = self.run(&["server", "stop"]);
        }
    }
}

/// Runs the CLI with an explicit token (a tenant's), not the admin's.
pub fn as_token(vdc: &Vdc, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--addr", &vdc.addr])
        .args(args)
        .env("VDC_TOKEN", token)
        .env("XDG_CONFIG_HOME", vdc.dir.path().join("config"))
        .env("VDC_DATA_DIR", vdc.dir.path().join("elsewhere"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn instance_name(v: &Value) -> String {
    let id = &v["id"];
    format!(
        "{}/{}/{}",
        id["app"].as_str().unwrap_or_default(),
        id["component"].as_str().unwrap_or_default(),
        id["index"]
    )
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

pub fn alive(pid: i32) -> bool {
    // A zombie is as good as gone: it only waits for its parent to reap it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Every process whose command line mentions `needle`.
pub fn processes_matching(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            found.push((pid, cmd));
        }
    }
    found
}

/// Prices for `vdc tenant create`: quota and burst apart, so a bill tells
/// which is which.
pub const PRICES: [&str; 8] = [
    "--price-cpu-minute",
    "0.01",
    "--price-gib-minute",
    "0.001",
    "--price-burst-cpu-minute",
    "0.03",
    "--price-burst-gib-minute",
    "0.003",
];

/// The directory of the test programs (`tests/programs`), as a string to
/// put in specs.
/// Copies the files of `from` (one level) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Makes a directory readable by anyone: instances run as users of their
/// own, and a temporary directory is its creator's only.
pub fn open_to_instances(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The test programs, each run as `python3 PROGRAMS/NAME.py` from a
/// component whose working directory is this one (an instance sees its
/// working directory and the host's software, not the rest of the host).
pub fn programs() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .display()
        .to_string()
}

/// A keep-alive HTTP client for the gateway.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// CPU time the cgroup of process `pid` has used, in seconds: the kernel's
/// own count (cgroup v1 `cpuacct.usage`), whatever the processes inside.
/// The `value` of the shop's JSON answer at `url`, asked up to 50 times
/// 50 ms apart while it is not a success (after its database was killed,
/// a web server's pooled connection to it died with it); `None` if never.
pub async fn value_when_served(client: &reqwest::Client, url: &str) -> Option<Value> {
    for _ in 0..50 {
        let r = client.get(url).send().await.unwrap();
        if r.status().is_success() {
            return Some(r.json::<Value>().await.unwrap()["value"].clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

pub fn cgroup_cpu_seconds(pid: i32) -> f64 {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            controllers
                .split(',')
                .any(|c| c == "cpuacct")
                .then(|| path.to_owned())
        })
        .unwrap();
    let ns: u64 = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ns as f64 / 1e9
}

// === images ===

pub fn umoci(dir: &Path, args: &[&str]) {
    let out = Command::new("umoci")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("umoci is not installed: run .ci/run (or apt-get install umoci)");
    assert!(out.status.success(), "umoci {args:?}: {out:?}");
}

/// `DIR/images:web`, an OCI layout built with umoci: busybox (static) as
/// /bin/*, a user `app` (1000), a page in /srv/www; it serves that
/// directory with busybox httpd as `app`.
pub fn build_image(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox is not installed: run .ci/run (or apt-get install busybox-static)"
    );
    umoci(dir, &["init", "--layout", "images"]);
    umoci(dir, &["new", "--image", "images:web"]);
    umoci(dir, &["unpack", "--image", "images:web", "bundle"]);
    let root = dir.join("bundle/rootfs");
    for d in ["bin", "etc", "srv/www", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let applets = [
        "sh", "ls", "id", "cat", "echo", "sleep", "httpd", "touch", "mkdir", "wc", "grep",
        "hostname",
    ];
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/srv:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    std::fs::write(root.join("srv/www/index.html"), "served from the image\n").unwrap();
    nix::unistd::chown(&root.join("srv"), Some(1000.into()), Some(1000.into())).unwrap();
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    umoci(dir, &["repack", "--image", "images:web", "bundle"]);
    umoci(
        dir,
        &[
            "config",
            "--image",
            "images:web",
            "--config.entrypoint",
            "/bin/httpd",
            "--config.cmd",
            "-f",
            "--config.user",
            "app",
            "--config.workingdir",
            "/srv",
            "--config.env",
            "GREETING=from-image",
        ],
    );
    dir.join("images")
}
