//! The command-line interface: commands, flags and their help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// vdc: a virtual data center in one binary. Declare an app as a topology of
/// components, launch it with one command, and watch it run.
#[derive(Debug, Parser)]
#[command(name = "vdc", version, propagate_version = true)]
pub struct Cli {
    /// Address of the vdc API.
    #[arg(long, global = true, env = "VDC_ADDR", default_value = vdc_api::DEFAULT_API_ADDR)]
    pub addr: String,

    /// The token to authenticate with [default: the one `vdc login` saved,
    /// else the admin token of the local data directory].
    #[arg(long, global = true, env = "VDC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Output format of listings.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// Only `vdc usage`: comma-separated values.
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch an app: wait until every component is ready, print its gateways,
    /// then show a live status until Ctrl-C (which takes the app down).
    Up(UpArgs),
    /// Check an app spec without running anything.
    Validate {
        /// The app spec file (TOML).
        file: PathBuf,
    },
    /// List apps.
    Apps,
    /// List instances.
    Ps {
        /// Only this app's instances.
        app: Option<String>,
    },
    /// Show an instance's output (stdout and stderr).
    Logs {
        /// APP/COMPONENT or APP/COMPONENT/INDEX.
        target: String,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each instance.
        #[arg(long)]
        tail: Option<usize>,
        /// Whose app (the admin, for an app taken down whose name several
        /// tenants used).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Take an app down: stop its instances cleanly and forget it. Its
    /// volumes stay on their nodes (a new app of the same name gets them)
    /// unless --purge.
    Down {
        app: String,
        /// Return at once instead of waiting until every instance is gone.
        #[arg(long)]
        no_wait: bool,
        /// Also delete the app's volumes on every node once its instances
        /// are gone. Snapshots are kept.
        #[arg(long)]
        purge: bool,
    },
    /// Run the control plane and a local agent in the foreground, or stop one.
    Server(ServerArgs),
    /// Run a node agent that joins a cluster: it runs the instances the
    /// leading server places on it (`vdc agent --join nats://HOST:4222`).
    Agent(AgentArgs),
    /// The pool's nodes: list them, drain one, let it take instances again.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Move an instance to another node of the cluster. Callers keep the
    /// address they use. A stateless instance starts on the new node before
    /// the old copy stops; one with volumes takes them along (a snapshot
    /// while it runs, then the delta once stopped) and is down only for the
    /// second pass.
    Move {
        /// APP/COMPONENT/INDEX.
        instance: String,
        /// The node to move it to.
        #[arg(long)]
        to: String,
        /// Seconds to wait for the instance to be ready on its new node;
        /// past it, the command fails.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Snapshots of instances' volumes, taken from the host: create, list,
    /// restore, export to a file, import.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// The node's images (admin): pull from a registry, import from an OCI
    /// layout or archive, list, inspect, remove, prune, export.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Credentials the node pulls images with (admin).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Lifecycle events (instances started, ready, exited; specs applied; placements).
    Events {
        /// Only this app's events.
        app: Option<String>,
        /// Keep printing events as they happen.
        #[arg(short, long)]
        follow: bool,
        /// How many past events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A one-shot snapshot of an app's traffic and resource use.
    Stats {
        app: String,
        /// Seconds to average rates over.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Usage and bills: what each component reserved and used, minute by
    /// minute, and what it costs at the tenant's prices.
    Usage {
        /// Only this tenant (a tenant's token always sees only its own).
        #[arg(long)]
        tenant: Option<String>,
        /// Start: unix seconds, or relative to now (`-1h`, `-30m`, `-7d`).
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End (exclusive), same forms [default: now].
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
    },
    /// Print the token the other commands send (from --token, VDC_TOKEN,
    /// `vdc login`, or the local admin token), for other clients:
    /// curl -H "Authorization: Bearer $(vdc token)" ...
    Token,
    /// Save a token for later commands (read from stdin when not given).
    Login {
        /// The token; prefer stdin or VDC_TOKEN so it stays out of the shell history.
        #[arg(long = "with-token")]
        with_token: Option<String>,
    },
    /// Manage tenants: create them, set their quotas, rotate their tokens.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Set a component's replica count (within its min and max and the
    /// tenant's quota), or show its scaling and the autoscaler's last
    /// decision when no count is given.
    Scale {
        /// APP/COMPONENT.
        target: String,
        /// The replica count to set.
        replicas: Option<u32>,
        /// Return once the count is set, without waiting for the instances.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for that many instances to be ready (or gone);
        /// past it, the command fails.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Let the autoscaler keep a component's SLA (`on`), or keep its count
    /// as set by hand (`off`).
    Autoscale {
        /// APP/COMPONENT.
        target: String,
        #[arg(value_enum)]
        state: Switch,
    },
    /// A live view of apps, refreshed every second (q or Ctrl-C quits, s changes the sort).
    Top {
        /// Only this app.
        app: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Nodes with their state, capacity, what is allocated and their labels.
    List,
    /// Move every instance off a node (each new copy is ready before the
    /// old one stops) and keep new ones off it.
    Drain { name: String },
    /// Let a drained node take instances again.
    Undrain { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Check a user and password against a registry and keep them for
    /// pulls (in the data directory, readable by the server only). The
    /// password is read from stdin.
    Login {
        /// HOST[:PORT], or docker.io.
        registry: String,
        #[arg(short, long)]
        user: String,
    },
    /// Forget the credentials of a registry.
    Logout { registry: String },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from its registry, with progress.
    Pull {
        /// A reference: `redis:7`, `registry.example:5000/shop/web:1.4`,
        /// `…@sha256:…`.
        reference: String,
    },
    /// The images on the node: name, digest, layers, size, users.
    #[command(alias = "ls")]
    List,
    /// One image: its digests and what it runs.
    Inspect { reference: String },
    /// Remove an image no instance runs from (its blobs go too unless
    /// another image has them).
    #[command(alias = "remove")]
    Rm { reference: String },
    /// Remove the images no app refers to and no instance uses.
    Prune {
        /// Only those unused for this long, e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        unused_for: Option<String>,
    },
    /// Import an OCI image layout (a directory) or archive (a tar), as
    /// written by `skopeo copy … oci:DIR` or `oci-archive:FILE`; `:TAG`
    /// picks one of several images. A path of the server's machine.
    Import { source: String },
    /// Write an image as an OCI archive (a path of the server's machine).
    Export {
        reference: String,
        file: PathBuf,
        /// The tag inside the archive.
        #[arg(long, default_value = "latest")]
        tag: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Freeze an instance, copy its volumes, thaw it, and store the copy
    /// (content-addressed, compressed, checksummed).
    Create {
        /// APP/COMPONENT (instance 0) or APP/COMPONENT/INDEX.
        target: String,
        /// A name to find it by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Snapshots on this node, newest first.
    List {
        /// Only this app's.
        app: Option<String>,
    },
    /// One snapshot, by id, unique id prefix or name.
    Show { snapshot: String },
    /// Delete a snapshot (blobs no other snapshot uses go too).
    Delete { snapshot: String },
    /// Replace an instance's volumes with a snapshot: the instance stops,
    /// gets the snapshot's data, and starts again. A snapshot that does not
    /// check out (a bad checksum, a missing or truncated blob) is refused
    /// and nothing changes.
    Restore {
        snapshot: String,
        /// APP/COMPONENT[/INDEX] to restore into [default: the instance it
        /// was taken of].
        #[arg(long)]
        to: Option<String>,
        /// Seconds to wait for the instance to be ready again; past it, the
        /// command fails (the data is restored all the same).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Write a snapshot to one self-contained, checksummed file.
    Export {
        snapshot: String,
        /// The file to write, or a directory to write `ID.vdcsnap` into.
        file: std::path::PathBuf,
    },
    /// Read a file written by `export` into this node's snapshots.
    Import { file: std::path::PathBuf },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The cluster's NATS server(s), e.g. nats://10.0.0.1:4222.
    #[arg(long, value_name = "URL")]
    pub join: String,
    #[command(flatten)]
    pub opts: ServerOpts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its token (shown once).
    Create {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Price of one CPU-minute within the quota (a decimal, up to 6 places).
        #[arg(long)]
        price_cpu_minute: Option<String>,
        /// Price of one GiB-minute of memory within the quota.
        #[arg(long)]
        price_gib_minute: Option<String>,
        /// Price of one CPU-minute above the quota.
        #[arg(long)]
        price_burst_cpu_minute: Option<String>,
        /// Price of one GiB-minute above the quota.
        #[arg(long)]
        price_burst_gib_minute: Option<String>,
        /// A user other than their own that the tenant's instances may run
        /// as (a component's `user`: a user name of the nodes, UID[:GID],
        /// or `root`); repeat for more.
        #[arg(long = "allow-user", value_name = "USER")]
        run_as: Vec<String>,
    },
    /// List tenants (a tenant's token sees only itself).
    List,
    /// Show one tenant: quota, burst allowance, prices, what it reserves.
    Show { name: String },
    /// Set (or, with no limits given, remove) a tenant's quota and burst allowance.
    SetQuota {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Give a tenant a new token; the old one stops working at once.
    RotateToken { name: String },
    /// Set the users other than their own that a tenant's instances may run
    /// as (a component's `user`); none given: only their own.
    RunAs {
        name: String,
        #[arg(value_name = "USER")]
        users: Vec<String>,
    },
}

/// A quota and a burst allowance, each all-or-nothing.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Quota: CPUs (`4`, `500m`).
    #[arg(long, requires_all = ["memory", "instances"])]
    pub cpu: Option<String>,
    /// Quota: memory (`8GiB`).
    #[arg(long, requires_all = ["cpu", "instances"])]
    pub memory: Option<String>,
    /// Quota: instances.
    #[arg(long, requires_all = ["cpu", "memory"])]
    pub instances: Option<u32>,
    /// Burst allowance above the quota: CPUs.
    #[arg(long, requires_all = ["burst_memory", "burst_instances", "cpu"])]
    pub burst_cpu: Option<String>,
    /// Burst allowance: memory.
    #[arg(long, requires_all = ["burst_cpu", "burst_instances"])]
    pub burst_memory: Option<String>,
    /// Burst allowance: instances.
    #[arg(long, requires_all = ["burst_cpu", "burst_memory"])]
    pub burst_instances: Option<u32>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The app spec file (TOML).
    pub file: PathBuf,
    /// Return once the app is ready, leaving a background server running.
    #[arg(short, long)]
    pub detach: bool,
    /// Seconds to wait for every component to become ready.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub server: ServerOpts,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub action: Option<ServerAction>,
    /// Run the server in the background (its log in DATA_DIR/server.log)
    /// and return once it answers.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub opts: ServerOpts,
}

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Stop the server at --addr and every instance it runs.
    Stop,
}

/// Options of a server started by `vdc server` or by `vdc up`.
#[derive(Debug, Clone, Args)]
pub struct ServerOpts {
    /// Where state, logs and volumes live [default: the user's data directory].
    #[arg(long, env = "VDC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the state in NATS JetStream (key-value bucket `vdc-state`) at
    /// this URL, e.g. nats://127.0.0.1:4222, instead of a file in the data
    /// directory.
    #[arg(long, env = "VDC_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// Where the API listens [default: --addr].
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// This node's name [default: the host name].
    #[arg(long, alias = "name")]
    pub node_name: Option<String>,
    /// With --nats: how long the leader lease holds without a renewal.
    /// Servers sharing a bucket elect one to run the control loops; the
    /// others take over this long after it stops renewing. e.g. 6s, 2s,
    /// 500ms.
    #[arg(long, value_name = "DURATION", default_value = "6s", value_parser = parse_ttl)]
    pub leader_ttl: std::time::Duration,
    /// Do not record latency histograms (counters are still kept); only
    /// useful to measure what measuring costs.
    #[arg(long)]
    pub no_measurements: bool,
    /// Threads carrying the data plane's traffic (links, gateways, node
    /// ingresses), each with its own event loop; 0: one per CPU vdc may
    /// run on.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dataplane_threads: usize,
    /// Run instances without their own namespaces, on the host's shared
    /// loopback (the only mode without root).
    #[arg(long)]
    pub shared_loopback: bool,
    /// The uids confined instances run as, one each: FIRST:COUNT. Give
    /// each node on one machine a range of its own.
    #[arg(long, value_name = "FIRST:COUNT", default_value_t = vdc_server::UidRange::DEFAULT)]
    pub instance_uids: vdc_server::UidRange,
    /// This node's labels, which components' placement constraints match:
    /// `disk=ssd,zone=a`.
    #[arg(long, value_name = "K=V,...", value_parser = parse_labels, default_value = "")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// With NATS: the address other nodes reach this one at [default: this
    /// machine's address on the route to NATS].
    #[arg(long, value_name = "IP")]
    pub node_address: Option<std::net::IpAddr>,
    /// With NATS: how long a node may go without a heartbeat before it is
    /// down and its instances are placed elsewhere (it stops them itself
    /// after two thirds of this).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_ttl)]
    pub node_timeout: std::time::Duration,
    /// A registry (HOST[:PORT]) to pull images from over plain HTTP; the
    /// local host always is. Repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// A mirror tried before a registry: REGISTRY=MIRROR (such as
    /// docker.io=mirror.example:5000). Repeatable.
    #[arg(long, value_name = "REGISTRY=MIRROR", value_parser = parse_mirror)]
    pub registry_mirror: Vec<(String, String)>,
}

/// `docker.io=mirror.example:5000`.
fn parse_mirror(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((registry, mirror)) if !registry.is_empty() && !mirror.is_empty() => {
            Ok((registry.trim().to_owned(), mirror.trim().to_owned()))
        }
        _ => Err(format!("`{text}` is not REGISTRY=MIRROR")),
    }
}

/// `disk=ssd,zone=a` -> labels.
fn parse_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut labels = std::collections::BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not a label: expected KEY=VALUE"));
        };
        let (k, v) = (k.trim(), v.trim());
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        };
        if !valid(k) || !valid(v) {
            return Err(format!(
                "`{pair}`: keys and values are 1 to 63 letters, digits, `.`, `_`, `-` or `/`"
            ));
        }
        if labels.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    Ok(labels)
}

impl Cli {
    /// Servers log what they do; client commands only warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match &self.command {
            Command::Server(ServerArgs {
                action: None,
                detach: false,
                ..
            })
            | Command::Agent(_) => "info",
            _ => "warn",
        }
    }
}

impl ServerOpts {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The mirrors by registry, in the order given.
    pub fn registry_mirrors(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut mirrors = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (registry, mirror) in &self.registry_mirror {
            mirrors
                .entry(registry.clone())
                .or_default()
                .push(mirror.clone());
        }
        mirrors
    }
}

/// `VDC_DATA_DIR`, else `$XDG_DATA_HOME/vdc`, else `~/.local/share/vdc`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VDC_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vdc")
}

/// Where `vdc login` keeps the token: `$XDG_CONFIG_HOME/vdc/token`, else
/// `~/.config/vdc/token`.
pub fn token_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vdc").join("token"))
}

/// A duration such as `6s`, `2.5s`, `500ms` or `1m`.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 6s, 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{unit}` is not a unit: use ms, s or m")),
    };
    if !(0.03..=3600.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range (30ms to 1h)"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `vdc …` command of the README and the docs, as its words,
    /// with where it is: the lines of code blocks (but TOML, JSON, Rust,
    /// YAML and `text` ones) that start with `vdc` or `$ vdc`, comments cut
    /// and continuation lines joined. (Inline code names commands more
    /// than it gives them: `vdc down`, `vdc up FILE [-d]`.) Environment
    /// assignments before a command are dropped.
    fn documented_commands() -> Vec<(String, Vec<String>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
        let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let mut lines = Vec::new();
            let mut fence: Option<bool> = None;
            for (n, line) in text.replace("\\\n", " ").lines().enumerate() {
                let trimmed = line.trim_start();
                if let Some(lang) = trimmed.strip_prefix("```") {
                    fence = match fence {
                        Some(_) => None,
                        None => Some(!matches!(lang, "toml" | "json" | "rust" | "yaml" | "text")),
                    };
                    continue;
                }
                if fence == Some(true) {
                    let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
                    lines.push((n, command.split(" #").next().unwrap_or_default().to_owned()));
                }
            }
            for (n, line) in lines {
                let mut words = line.split_whitespace().peekable();
                while words
                    .peek()
                    .is_some_and(|w| w.contains('=') && !w.starts_with('-'))
                {
                    words.next();
                }
                let words: Vec<String> = words.map(str::to_owned).collect();
                if words.first().map(String::as_str) == Some("vdc") {
                    found.push((format!("{name}:{}: {}", n + 1, line.trim()), words));
                }
            }
        }
        found
    }

    #[test]
    fn every_documented_command_parses() {
        let commands = documented_commands();
        assert!(
            commands.len() > 25,
            "{} commands found: {commands:#?}",
            commands.len()
        );
        let mut wrong = Vec::new();
        for (at, words) in commands {
            // Shell syntax after the command (a pipe, `&`) is not vdc's.
            let words: Vec<&String> = words
                .iter()
                .take_while(|w| !matches!(w.as_str(), "|" | "&" | "&&" | ">" | "2>&1"))
                .collect();
            if let Err(e) = Cli::try_parse_from(words) {
                if !matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) {
                    wrong.push(format!(
                        "{at}\n  {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
