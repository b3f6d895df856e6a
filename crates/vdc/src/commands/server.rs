//! `vdc server` (foreground), `vdc server stop`, and starting a server for
//! `vdc up`, in this process or in the background.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use vdc_server::{CancellationToken, Role, Server, ServerConfig};

use crate::cli::{AgentArgs, ServerOpts};
use crate::client::Client;
use crate::exit::{fail, Code};

/// The API address a server should use: `--api`, else `--addr`.
pub fn api_addr(addr: &str, opts: &ServerOpts) -> anyhow::Result<SocketAddr> {
    if let Some(api) = opts.api {
        return Ok(api);
    }
    addr.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| {
            format!("`{addr}` is not an address a server can listen on (expected IP:PORT)")
        })
}

fn config(addr: &str, opts: &ServerOpts) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        data_dir: opts.data_dir(),
        nats: opts.nats.clone(),
        api: api_addr(addr, opts)?,
        node_name: opts.node_name.clone(),
        leader_ttl: opts.leader_ttl,
        measure: !opts.no_measurements,
        dataplane_threads: opts.dataplane_threads,
        confine: !opts.shared_loopback,
        instance_uids: opts.instance_uids,
        role: Role::Server,
        node_address: opts.node_address,
        labels: opts.labels.clone(),
        node_timeout: opts.node_timeout,
        insecure_registries: opts.insecure_registry.clone(),
        registry_mirrors: opts.registry_mirrors(),
    })
}

/// `vdc agent --join URL`: a node of a cluster, until Ctrl-C or SIGTERM.
pub async fn agent(args: &AgentArgs) -> anyhow::Result<()> {
    let opts = &args.opts;
    if opts.nats.as_ref().is_some_and(|n| n != &args.join) {
        return Err(fail(
            Code::Failure,
            "give the cluster once, with --join (--nats is for servers)",
        ));
    }
    let mut config = config("127.0.0.1:0", opts)?;
    config.nats = Some(args.join.clone());
    config.role = Role::Agent;
    let server = Server::start(config.clone()).await?;
    tracing::info!(
        "vdc agent: node {} joined the pool at {} (platform API for its instances on http://{}), data in {}",
        server.control.agent().node().id,
        args.join,
        server.api_addr,
        config.data_dir.display()
    );
    tokio::spawn(stop_on_signals(server.shutdown_token()));
    server.run().await?;
    tracing::info!("vdc agent stopped");
    Ok(())
}

/// `vdc server`: runs until Ctrl-C, SIGTERM or `vdc server stop`.
pub async fn foreground(addr: &str, opts: &ServerOpts) -> anyhow::Result<()> {
    let config = config(addr, opts)?;
    let server = Server::start(config.clone()).await?;
    let token = server.shutdown_token();
    tracing::info!(
        "vdc server listening on http://{}, data in {}{}",
        server.api_addr,
        config.data_dir.display(),
        match &config.nats {
            Some(url) => format!(", state in NATS at {url}"),
            None => String::new(),
        }
    );
    tokio::spawn(stop_on_signals(token));
    server.run().await?;
    tracing::info!("vdc server stopped");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn stop_on_signals(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}

/// A server running inside this process (foreground `vdc up`).
pub struct Embedded {
    pub token: CancellationToken,
    pub task: JoinHandle<Result<(), vdc_server::ServerError>>,
}

pub async fn start_embedded(addr: &str, opts: &ServerOpts) -> anyhow::Result<Embedded> {
    let server = Server::start(config(addr, opts)?).await?;
    let token = server.shutdown_token();
    let task = tokio::spawn(server.run());
    Ok(Embedded { token, task })
}

impl Embedded {
    /// Stops every instance and the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await.context("the server task failed")??;
        Ok(())
    }
}

/// `vdc server -d`: a background server, unless one already answers.
pub async fn detached(client: &Client, addr: &str, opts: &ServerOpts) -> anyhow::Result<()> {
    if client.is_up().await {
        return Err(fail(
            Code::Failure,
            format!("a server already answers at {addr}; `vdc server stop` stops it"),
        ));
    }
    start_background(client, addr, opts).await?;
    eprintln!(
        "vdc server runs in the background at {addr} (log: {})",
        opts.data_dir().join("server.log").display()
    );
    Ok(())
}

/// Starts `vdc server` as a background process and waits until it answers.
pub async fn start_background(
    client: &Client,
    addr: &str,
    opts: &ServerOpts,
) -> anyhow::Result<()> {
    let config = config(addr, opts)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let log_path = config.data_dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the vdc executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("--api")
        .arg(config.api.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the server log")?)
        .stderr(log)
        // Its own process group: Ctrl-C in this terminal must not reach it.
        .process_group(0);
    if let Some(url) = &config.nats {
        command.arg("--nats").arg(url);
    }
    if let Some(name) = &opts.node_name {
        command.arg("--node-name").arg(name);
    }
    command
        .arg("--leader-ttl")
        .arg(format!("{}ms", opts.leader_ttl.as_millis()));
    if opts.no_measurements {
        command.arg("--no-measurements");
    }
    if opts.dataplane_threads != 0 {
        command
            .arg("--dataplane-threads")
            .arg(opts.dataplane_threads.to_string());
    }
    if opts.shared_loopback {
        command.arg("--shared-loopback");
    }
    for registry in &opts.insecure_registry {
        command.arg("--insecure-registry").arg(registry);
    }
    for (registry, mirror) in &opts.registry_mirror {
        command
            .arg("--registry-mirror")
            .arg(format!("{registry}={mirror}"));
    }
    command
        .arg("--instance-uids")
        .arg(opts.instance_uids.to_string())
        .arg("--node-timeout")
        .arg(format!("{}ms", opts.node_timeout.as_millis()));
    if !opts.labels.is_empty() {
        let labels: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        command.arg("--labels").arg(labels.join(","));
    }
    if let Some(ip) = opts.node_address {
        command.arg("--node-address").arg(ip.to_string());
    }
    let mut child = command
        .spawn()
        .context("cannot start a background server")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if client.is_up().await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(fail(
                Code::Failure,
                format!(
                    "the background server exited ({status}) before answering: {} (log: {})",
                    last.trim(),
                    log_path.display()
                ),
            ));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(fail(
                Code::Failure,
                format!(
                    "the background server did not answer within 15s (log: {})",
                    log_path.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `vdc server stop`.
pub async fn stop(client: &Client) -> anyhow::Result<()> {
    let local = client
        .addr()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let pid = if local {
        client
            .get::<vdc_api::Health>("/v1/health")
            .await
            .ok()
            .map(|h| h.pid)
    } else {
        None
    };
    client.post_empty("/v1/shutdown").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client.is_up().await {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the server at {} is still up after 60s", client.addr());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The API closes last, but the process still has to exit (and let go of
    // its data directory) before another server can use it. When it runs on
    // this machine, wait for that too.
    if let Some(pid) = pid {
        while process_runs(pid) {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the server process {pid} is still running 60s after its API closed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("server at {} stopped", client.addr());
    Ok(())
}

/// Whether a local process runs (a zombie has exited: it only waits to be
/// reaped). A pid of another machine is not found here, which is the same
/// as gone for our purpose.
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}
