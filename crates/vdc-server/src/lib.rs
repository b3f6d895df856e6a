//! The control plane with its local agent: the store, the control loop that
//! reconciles desired and actual state, and the HTTP/JSON API.
//!
//! **Invariant:** decisions are made by the pure crates (`vdc-reconciler`,
//! `vdc-scheduler`, `vdc-spec`); this crate only feeds them state, carries out
//! their plans through the agent, and serves the API.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod cluster;
mod control;
mod image_api;
mod images;
mod logs;
mod metering;
mod moves;
mod node;
mod nodes;
mod open_files;
mod scale;
mod serve;
mod snapshots;
mod status;
mod streams;
mod tasks;
mod telemetry;
mod tenants;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vdc_agent::{Agent, AgentConfig};
use vdc_dataplane::{DataPlane, DataPlaneConfig};
use vdc_driver::{Driver, Leftover, ProcessDriver};
use vdc_store::{Leadership, NatsStore, RedbStore, StateStore, Store};
use vdc_telemetry::EventKind;

pub use auth::Principal;
pub use cluster::{JoinError, DEFAULT_NODE_TIMEOUT};
pub use control::ControlPlane;
pub use telemetry::Telemetry;
pub use tokio_util::sync::CancellationToken;
pub use vdc_agent::UidRange;

/// The JetStream key-value bucket the state lives in with
/// [`ServerConfig::nats`].
pub const NATS_BUCKET: &str = "vdc-state";

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where state, logs and volumes live.
    pub data_dir: PathBuf,
    /// A NATS server (`nats://HOST:PORT`) whose JetStream key-value bucket
    /// [`NATS_BUCKET`] holds the state instead of `state.redb` in the data
    /// directory. Logs, volumes and keys stay in the data directory.
    pub nats: Option<String>,
    /// Where the API listens.
    pub api: SocketAddr,
    /// The node's name; defaults to the host name.
    pub node_name: Option<String>,
    /// Whether the data plane records latencies (counters are always kept).
    /// Off only to measure what measuring costs.
    pub measure: bool,
    /// How many threads carry the data plane's traffic; 0: one per CPU the
    /// process may use.
    pub dataplane_threads: usize,
    /// Whether instances get their own namespaces when the node allows it
    /// (root). Off: they share the host's loopback.
    pub confine: bool,
    /// The uids confined instances get, one each.
    pub instance_uids: UidRange,
    /// With [`ServerConfig::nats`]: how long the leader lease holds without
    /// a renewal (servers sharing a bucket elect one to run the control
    /// loops). Ignored without NATS: an embedded server always leads.
    pub leader_ttl: Duration,
    /// A server (takes part in leading the control loops and serves the
    /// API) or only a node agent (`vdc agent --join`).
    pub role: Role,
    /// With NATS: the address other nodes reach this one at (its ingress
    /// and gateways); by default the address of the route to NATS.
    pub node_address: Option<std::net::IpAddr>,
    /// The node's labels, which placement constraints match.
    pub labels: std::collections::BTreeMap<String, String>,
    /// With NATS: how long a node may go without a heartbeat before it is
    /// down and its instances are placed elsewhere.
    pub node_timeout: Duration,
    /// Registries (`host[:port]`) pulled from over plain HTTP (the local
    /// host always is).
    pub insecure_registries: Vec<String>,
    /// Registry -> mirrors tried first.
    pub registry_mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a process of a cluster does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Control plane and node.
    #[default]
    Server,
    /// Node only: runs what the leading server assigns to it.
    Agent,
}

/// The default of [`ServerConfig::leader_ttl`].
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] vdc_store::StoreError),
    #[error("cannot listen for the API on {addr}: {source}")]
    ApiBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Api(#[source] std::io::Error),
    #[error("cannot join the pool: {0}")]
    Join(#[from] JoinError),
    #[error("cannot open the snapshot store: {0}")]
    Snapshots(#[from] vdc_snapshot::SnapshotError),
    #[error("cannot join the cluster bus: {0}")]
    Bus(#[from] vdc_telemetry::NatsBusError),
    #[error(transparent)]
    DataPlane(#[from] vdc_dataplane::DataPlaneError),
    #[error("`vdc agent` needs a cluster to join (a NATS URL)")]
    AgentWithoutCluster,
}

/// A running server, before it is asked to stop.
pub struct Server {
    pub control: ControlPlane,
    pub api_addr: SocketAddr,
    api_listener: tokio::net::TcpListener,
    /// The API for this node's instances, on loopback.
    instance_listener: tokio::net::TcpListener,
    budget: open_files::Budget,
    shutdown: CancellationToken,
    /// The election this server takes part in (NATS only).
    leadership: Option<Leadership>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("api", &self.api_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store, cleans up after a previous crash, and binds the API.
    /// Nothing runs until [`Server::run`].
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let data_dir = config
            .data_dir
            .canonicalize()
            .unwrap_or(config.data_dir.clone());
        // The node's keys, logs and every instance's volumes live here:
        // nobody but this server's user may even look (instances never see
        // it anyway; a path that leaks into one still leads nowhere).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| ServerError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                },
            )?;
        }
        let mut nats_client = None;
        let kv: Arc<dyn Store> = match &config.nats {
            Some(url) => {
                let store = NatsStore::connect(url, NATS_BUCKET).await?;
                nats_client = Some(store.client().clone());
                Arc::new(store)
            }
            None if config.role == Role::Agent => return Err(ServerError::AgentWithoutCluster),
            None => {
                let path = data_dir.join("state.redb");
                let store = RedbStore::open(&path)?;
                // The state names every tenant's token hash: the owner's only.
                let _ = std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                );
                Arc::new(store)
            }
        };
        let store = StateStore::new(kv);
        let api_listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| ServerError::ApiBind {
                addr: config.api,
                source,
            })?;
        let api_addr = api_listener.local_addr().map_err(ServerError::Api)?;
        // Instances reach the API on a listener of their own, so that the
        // public one's per-client limit does not count every instance of
        // the node as one client (they all come from loopback).
        let instance_api = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        let instance_listener =
            tokio::net::TcpListener::bind(instance_api)
                .await
                .map_err(|source| ServerError::ApiBind {
                    addr: instance_api,
                    source,
                })?;
        let instance_api = instance_listener.local_addr().map_err(ServerError::Api)?;

        let driver: Arc<dyn Driver> = Arc::new(ProcessDriver::detect());
        if let Some(warning) = &driver.isolation().warning {
            tracing::warn!("{warning}");
        }
        let mut node = node::detect(config.node_name.clone(), &data_dir);
        node.labels = config.labels.clone();
        let shared = config.nats.is_some();
        reap_leftovers(&store, driver.as_ref(), shared.then_some(&node.id)).await?;
        let cluster_node = match &config.nats {
            Some(url) => {
                let address = match config.node_address {
                    Some(a) => a,
                    None => node::route_to(url).await,
                };
                node.address = address;
                let incarnation =
                    node::incarnation(&data_dir).map_err(|source| ServerError::DataDir {
                        path: data_dir.join("node.id").display().to_string(),
                        source,
                    })?;
                let objects = match &nats_client {
                    Some(client) => match moves::objects(client.clone()).await {
                        Ok(objects) => Some(objects),
                        Err(e) => {
                            tracing::warn!("{e}: instances with volumes cannot move");
                            None
                        }
                    },
                    None => None,
                };
                Some(cluster::ClusterNode::new(
                    config.node_timeout,
                    address,
                    incarnation,
                    objects,
                ))
            }
            None => None,
        };
        let (leadership, leader) = if config.role == Role::Agent {
            // Never leads; the sender is dropped, so nothing ever changes.
            (None, tokio::sync::watch::channel(None).1)
        } else if shared {
            let me = format!("{}/{}", node.id, std::process::id());
            let (leadership, rx) = Leadership::new(store.kv().clone(), me, config.leader_ttl);
            (Some(leadership), rx)
        } else {
            // Alone on its redb file (the file is locked): leads for good.
            (None, tokio::sync::watch::channel(Some(1)).1)
        };

        let (instance_nofile, budget) = open_files::raise();
        tracing::info!(
            "open files: {} (the API holds up to {} connections, {} per client, and {} for instances; the data plane proxies up to {} connections)",
            budget.limit,
            budget.api,
            budget.api_per_client,
            budget.api_instances,
            budget.dataplane
        );
        let confine = if config.confine {
            confinement(&data_dir, config.instance_uids)
        } else {
            None
        };
        let mut dataplane_config = DataPlaneConfig {
            measure: config.measure,
            threads: config.dataplane_threads,
            max_connections: budget.dataplane,
            ..DataPlaneConfig::default()
        };
        if let Some(confine) = &confine {
            dataplane_config.connector = confine.connector.clone();
        }
        let agent = Agent::new(
            AgentConfig {
                node,
                data_dir: data_dir.clone(),
                cgroup_prefix: node::cgroup_prefix(&data_dir),
                confine,
                instance_nofile,
                link_connections: Some(budget.dataplane / 8),
                images: images::open(&data_dir),
                pull: images::pull_options(&data_dir, &config),
                image_share: cluster_node
                    .as_ref()
                    .and_then(|n| n.objects.clone())
                    .map(|objects| {
                        Arc::new(images::ObjectShare { objects }) as Arc<dyn vdc_agent::ImageShare>
                    }),
            },
            driver,
            DataPlane::with_config(dataplane_config)?,
        );
        let shutdown = CancellationToken::new();
        let instance_key = auth::InstanceKey::load_or_create(&data_dir).map_err(|source| {
            ServerError::DataDir {
                path: data_dir.join("instance.key").display().to_string(),
                source,
            }
        })?;
        let telemetry = match &nats_client {
            Some(client) => Telemetry::on_nats(client.clone(), &agent.node().id.0).await?,
            None => Telemetry::new(),
        };
        let snapshots = snapshots::open(&data_dir)?;
        let control = ControlPlane::new(
            store,
            telemetry,
            snapshots,
            agent,
            data_dir.clone(),
            api_addr,
            instance_api,
            shutdown.clone(),
            instance_key,
            control::Cluster {
                leader,
                shared,
                node: cluster_node,
            },
        );
        if config.role == Role::Server {
            auth::bootstrap_admin(&control, &data_dir).await?;
            tenants::bootstrap_default(&control).await?;
        }
        control.heartbeat().await?;
        Ok(Server {
            control,
            api_addr,
            api_listener,
            instance_listener,
            budget,
            shutdown,
            leadership,
        })
    }

    /// A token that stops the server when cancelled (as `POST /v1/shutdown`
    /// does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs the control loop and the API until the shutdown token is
    /// cancelled, then stops every instance cleanly.
    pub async fn run(self) -> Result<(), ServerError> {
        let control = self.control.clone();
        let election = self.leadership.map(|l| {
            let me = l.me().to_owned();
            let store = l.store().clone();
            tokio::spawn(announce_leadership(control.clone(), me.clone()));
            (me, store, tokio::spawn(l.run()))
        });
        let loop_task = tokio::spawn(control.clone().run());
        let node_tasks = control.cluster().is_some().then(|| {
            (
                tokio::spawn(control.clone().run_heartbeats()),
                tokio::spawn(control.clone().run_node()),
            )
        });
        let metering = tokio::spawn(metering::run(control.clone(), self.shutdown.clone()));
        let backups = tokio::spawn(snapshots::run_backups(
            control.clone(),
            self.shutdown.clone(),
        ));
        let autoscaler = tokio::spawn(scale::run(control.clone(), self.shutdown.clone()));
        let image_gc = tokio::spawn(images::gc_loop(control.clone()));
        let collector = tokio::spawn(
            control
                .telemetry()
                .clone()
                .run_collector(control.agent().clone(), self.shutdown.clone()),
        );
        // The API stays up until every instance has stopped, so a client
        // that waits for it to go away (`vdc server stop`) knows they are
        // gone.
        let stopped = CancellationToken::new();
        let stopping = tokio::spawn({
            let (token, stopped, control) =
                (self.shutdown.clone(), stopped.clone(), control.clone());
            async move {
                token.cancelled().await;
                let _ = loop_task.await;
                if let Some((heartbeats, node)) = node_tasks {
                    let _ = node.await;
                    heartbeats.abort();
                    // The pool places this node's instances elsewhere now,
                    // while they drain here.
                    control.leave().await;
                }
                let _ = collector.await;
                let _ = metering.await;
                let _ = backups.await;
                let _ = autoscaler.await;
                let _ = image_gc.await;
                if let Some((me, store, election)) = election {
                    election.abort();
                    // The loops have stopped: hand the lease over now
                    // rather than after its ttl.
                    match vdc_store::release(store.as_ref(), &me).await {
                        Ok(true) => tracing::info!("released the leader lease"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("cannot release the leader lease: {e}"),
                    }
                }
                control.agent().shutdown(Duration::from_secs(10)).await;
                control.persist_all().await;
                // Every namespace is gone with its instance: let go of the
                // directory's mount so the data directory can be removed.
                if let Some(confine) = control.agent().confine() {
                    let unmounted =
                        vdc_netns::NetnsDir::open(confine.dir.path()).and_then(|d| d.unmount());
                    if let Err(e) = unmounted {
                        tracing::warn!("cannot unmount the namespace directory: {e}");
                    }
                }
                stopped.cancel();
            }
        });
        let app = api::router(control.clone());
        let public = serve::serve(
            self.api_listener,
            app.clone(),
            serve::Limits {
                connections: self.budget.api,
                per_client: Some(self.budget.api_per_client),
                header_read_timeout: serve::HEADER_READ_TIMEOUT,
            },
            stopped.clone(),
        );
        let instances = serve::serve(
            self.instance_listener,
            app,
            serve::Limits {
                connections: self.budget.api_instances,
                per_client: None,
                header_read_timeout: serve::HEADER_READ_TIMEOUT,
            },
            stopped,
        );
        tokio::join!(public, instances);
        let _ = stopping.await;
        Ok(())
    }
}

/// Sets up namespaces and sandboxes for instances, when the node allows
/// it; otherwise says once why instances are not confined.
fn confinement(data_dir: &std::path::Path, uids: UidRange) -> Option<vdc_agent::Confine> {
    if let Err(why) = vdc_netns::supported() {
        tracing::warn!("instances are not confined: they run as this server's user, on the host's loopback: {why}");
        return None;
    }
    if let Err(why) = vdc_sandbox::supported() {
        tracing::warn!("instances are not confined: they run as this server's user, on the host's loopback: {why}");
        return None;
    }
    let dir = match vdc_netns::NetnsDir::open(data_dir.join("netns")) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(
                "instances share the host's loopback: cannot prepare network namespaces: {e}"
            );
            return None;
        }
    };
    // Namespaces left by a previous run: their instances were reaped.
    let _ = dir.remove_all();
    tracing::info!(
        "instances are confined: each runs as its own user (uids {uids}) in its own namespaces, filesystem view and system-call filter"
    );
    Some(vdc_agent::Confine {
        dir: Arc::new(dir),
        connector: Arc::new(vdc_netns::NetnsConnector::new(Duration::from_secs(2))),
        init: vdc_sandbox::PidInit::current_exe(),
        uids,
    })
}

/// Logs and emits an event each time this server starts leading.
async fn announce_leadership(control: ControlPlane, me: String) {
    let mut rx = control.leader();
    let mut announced = None;
    loop {
        let term = *rx.borrow_and_update();
        // The lease is renewed every few hundred milliseconds and each renewal
        // wakes this watch: only a new term is news.
        if let Some(term) = term.filter(|term| announced != Some(*term)) {
            announced = Some(term);
            let text = format!("server {me} leads (term {term})");
            tracing::info!("{text}");
            control
                .telemetry()
                .event(EventKind::Leadership, "default", "", None, None, text);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Kills what a previous run of the server left behind (it was killed before
/// it could stop its instances), so the control loop starts from a clean
/// node and restarts what is desired. With `only_node` (a store shared with
/// other servers), only that node's records: the others belong to servers
/// that may still run them.
async fn reap_leftovers(
    store: &StateStore,
    driver: &dyn Driver,
    only_node: Option<&vdc_model::NodeId>,
) -> Result<(), ServerError> {
    for record in store.instances().await? {
        if only_node.is_some_and(|node| &record.status.node != node) {
            continue;
        }
        if let Some(pid) = record.pid {
            let leftover = Leftover {
                pid,
                start_ticks: record.start_ticks,
                cgroup_name: record.cgroup_name.clone().unwrap_or_default(),
            };
            if let Err(e) = driver.reap(&leftover).await {
                tracing::warn!(instance = %record.status.id, "cannot clean up a leftover process: {e}");
            } else {
                tracing::info!(instance = %record.status.id, pid, "cleaned up an instance left by a previous run");
            }
        }
        store
            .kv()
            .delete(vdc_store::Bucket::Instances, &record.key())
            .await?;
        // Records written before they were keyed by node.
        store
            .kv()
            .delete(vdc_store::Bucket::Instances, &record.status.id.to_string())
            .await?;
    }
    Ok(())
}
