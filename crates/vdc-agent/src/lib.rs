//! The node agent: runs the instances placed on this node, watches their
//! health, restarts them when they exit, and keeps the node's data plane
//! pointed at the instances that are ready.
//!
//! **Invariant:** the agent decides nothing about *which* instances should
//! exist: it carries out start, stop and replace requests and reports what it
//! observes. Every process it starts goes through a [`vdc_driver::Driver`],
//! every address through the [`vdc_dataplane::DataPlane`].

#![forbid(unsafe_code)]

mod collect;
mod confine;
pub mod container;
mod env;
mod expose;
mod probe;
mod supervisor;
mod users;
mod volumes;
mod wiring;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use vdc_dataplane::{Backends, DataPlane, Endpoint};
use vdc_driver::Driver;
use vdc_model::{InstanceId, InstanceState, InstanceStatus, Isolation, NodeInfo};
use vdc_spec::{AppName, ComponentName, ComponentSpec, Protocol, TenantName, TerminalName};
use vdc_store::InstanceRecord;

pub use collect::Collected;
pub use container::ImageShare;
pub use users::{UidRange, INSTANCE_USER};
pub use wiring::{ListenerBinding, WiringError};

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: NodeInfo,
    /// Where instance logs and volumes live.
    pub data_dir: PathBuf,
    /// Prefix of every cgroup this agent creates, unique per data directory
    /// so two agents on one machine never touch each other's instances.
    pub cgroup_prefix: String,
    /// When set, every instance runs in its own namespaces.
    pub confine: Option<Confine>,
    /// The soft limit on open files instances start with: the node raises
    /// its own to the hard limit, which programs should not inherit (some
    /// walk every possible descriptor).
    pub instance_nofile: Option<u64>,
    /// Connections each confined instance's own link listener holds at
    /// once, so one instance cannot take the whole data plane's share.
    pub link_connections: Option<usize>,
    /// The node's images, which containers run from; none: no containers.
    pub images: Option<Arc<vdc_image::Store>>,
    /// How images are pulled from registries.
    pub pull: vdc_image::pull::PullOptions,
    /// Where the pool's nodes share images (a cluster's object store).
    pub image_share: Option<Arc<dyn ImageShare>>,
}

/// How the node confines instances. Each runs under `init` in a sandbox
/// of its own (`vdc-sandbox`): its own user from `uids` (or the one its
/// spec names), no capabilities, a system-call filter, its own view of the
/// filesystem in which the data directory is hidden, and PID, IPC, mount
/// and cgroup namespaces. Each also gets a network namespace (pinned in
/// `dir`) with only loopback, in which the data plane places the
/// instance's link addresses, unless its component declares egress; its
/// inputs are reached by connecting into it (`connector`, which the data
/// plane also uses).
#[derive(Clone)]
pub struct Confine {
    pub dir: Arc<vdc_netns::NetnsDir>,
    pub connector: Arc<vdc_netns::NetnsConnector>,
    pub init: vdc_sandbox::PidInit,
    pub uids: UidRange,
}

impl std::fmt::Debug for Confine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confine")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// A request to run one instance.
#[derive(Clone, Debug)]
pub struct StartInstance {
    pub id: InstanceId,
    pub tenant: TenantName,
    pub revision: u64,
    pub component: ComponentSpec,
    /// The stable address of each of the component's links, and the
    /// protocol of the input it leads to.
    pub links: BTreeMap<TerminalName, (SocketAddr, Protocol)>,
    /// How the instance reaches the platform API, when it may.
    pub platform: Option<PlatformAccess>,
    /// A container must not run as uid 0 (its app's tenant may not run
    /// anything as root).
    pub root_forbidden: bool,
}

/// The platform API as an instance sees it: an address and a token scoped to
/// the instance (it can report its load and ask for replicas of its own
/// component, nothing else).
#[derive(Clone)]
pub struct PlatformAccess {
    /// The API's address on the node.
    pub api: SocketAddr,
    pub token: String,
}

impl std::fmt::Debug for PlatformAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformAccess")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// Where a confined instance finds the platform API inside its namespace:
/// an address of its own loopback, on the API's port, that the data plane
/// forwards to the node's API.
pub fn platform_address_in_namespace(api: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], api.port()))
}

/// The node agent. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.inner.config.node.id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: AgentConfig,
    driver: Arc<dyn Driver>,
    dataplane: DataPlane,
    isolation: Isolation,
    instances: Mutex<BTreeMap<InstanceId, Slot>>,
    /// One balancing set per target input, shared by every listener leading
    /// there.
    targets: Mutex<BTreeMap<TargetKey, Backends>>,
    listeners: Mutex<BTreeMap<String, ListenerBinding>>,
    changes: broadcast::Sender<InstanceStatus>,
    /// Cumulative counters at the previous collection, per listener and per
    /// endpoint, to turn them into per-second deltas.
    collected: Mutex<collect::Previous>,
    /// Ready instances of other nodes, per target input, reached through
    /// their node's ingress.
    remote: Mutex<BTreeMap<TargetKey, Vec<Endpoint>>>,
    /// Per input of each instance this node runs, the listener through which
    /// other nodes reach it.
    ingress: Mutex<BTreeMap<(InstanceId, TerminalName), expose::Ingress>>,
    /// Instances asked to stop without waiting for what is in flight.
    hurried: Mutex<std::collections::BTreeSet<InstanceId>>,
    /// Instances frozen for a snapshot: their health checks wait.
    frozen: Mutex<std::collections::BTreeSet<InstanceId>>,
    /// Bumped on every freeze and thaw, so a probe that overlapped one is
    /// not counted.
    freezes: std::sync::atomic::AtomicU64,
    /// The uids confined instances hold now.
    uids: users::Uids,
    /// One fetch (pull or import) per image at a time.
    fetching: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why an instance could not be frozen or thawed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("instance {0} does not run on this node")]
    NotRunning(InstanceId),
    #[error("instance {0} is already frozen")]
    AlreadyFrozen(InstanceId),
    #[error(transparent)]
    Driver(#[from] vdc_driver::DriverError),
}

/// A balancing set's identity: the app, component and input traffic goes to.
pub type TargetKey = (AppName, ComponentName, TerminalName);

/// An instance the agent runs.
struct Slot {
    record: InstanceRecord,
    stop: CancellationToken,
    tenant: TenantName,
    /// The two latest readings of its kernel accounting, for rates.
    usage: Option<UsageReading>,
    /// Bytes in its volumes, as last measured.
    volume_bytes: Option<u64>,
    previous_usage: Option<UsageReading>,
}

/// One reading of an instance's resource use and when it was taken.
#[derive(Clone, Copy, Debug)]
struct UsageReading {
    usage: vdc_driver::Usage,
    at: std::time::Instant,
}

// === impl Agent ===

impl Agent {
    pub fn new(config: AgentConfig, driver: Arc<dyn Driver>, dataplane: DataPlane) -> Self {
        // Each layer as this node applies it: confinement and cgroups are
        // independent (a node under `ip netns exec` may see no cgroup
        // filesystem yet confine its instances).
        let confined = config.confine.is_some();
        let isolation = Isolation {
            network: if confined {
                vdc_model::Network::Own
            } else {
                vdc_model::Network::Host
            },
            pid_namespace: confined,
            cgroup_limits: driver.isolation().cgroups.is_some(),
            filesystem_view: confined,
            unprivileged: confined,
        };
        let (changes, _) = broadcast::channel(1024);
        let uids = users::Uids::new(
            config
                .confine
                .as_ref()
                .map_or(UidRange::DEFAULT, |c| c.uids),
            &config.data_dir.to_string_lossy(),
        );
        Self {
            inner: Arc::new(Inner {
                config,
                driver,
                dataplane,
                isolation,
                instances: Mutex::new(BTreeMap::new()),
                targets: Mutex::new(BTreeMap::new()),
                listeners: Mutex::new(BTreeMap::new()),
                changes,
                collected: Mutex::new(collect::Previous::default()),
                remote: Mutex::new(BTreeMap::new()),
                ingress: Mutex::new(BTreeMap::new()),
                frozen: Mutex::new(std::collections::BTreeSet::new()),
                hurried: Mutex::new(std::collections::BTreeSet::new()),
                freezes: std::sync::atomic::AtomicU64::new(0),
                uids,
                fetching: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn node(&self) -> &NodeInfo {
        &self.inner.config.node
    }

    /// The node's images, when it keeps any.
    pub fn images(&self) -> Option<&Arc<vdc_image::Store>> {
        self.inner.config.images.as_ref()
    }

    /// How the node pulls images.
    pub fn pull_options(&self) -> &vdc_image::pull::PullOptions {
        &self.inner.config.pull
    }

    /// Where the pool's nodes share images, in a cluster.
    pub fn image_share(&self) -> Option<&Arc<dyn ImageShare>> {
        self.inner.config.image_share.as_ref()
    }

    pub fn dataplane(&self) -> &DataPlane {
        &self.inner.dataplane
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }

    /// How instances are confined, when they are.
    pub fn confine(&self) -> Option<&Confine> {
        self.inner.config.confine.as_ref()
    }

    /// Every status change of every instance, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<InstanceStatus> {
        self.inner.changes.subscribe()
    }

    /// The instances this agent runs now.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        lock(&self.inner.instances)
            .values()
            .map(|s| s.record.status.clone())
            .collect()
    }

    /// What must be remembered to clean up after a crash.
    pub fn records(&self) -> Vec<InstanceRecord> {
        lock(&self.inner.instances)
            .values()
            .map(|s| s.record.clone())
            .collect()
    }

    /// Where an app of `tenant`'s keeps its instances' logs on this node.
    pub fn app_logs_dir(&self, tenant: &str, app: &str) -> PathBuf {
        self.inner.app_dir("logs", tenant, app)
    }

    /// The tenants that have logs of an app of this name on this node.
    pub fn tenants_with_logs(&self, app: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.inner.config.data_dir.join("logs")) else {
            return Vec::new();
        };
        let mut tenants: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(app).is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        tenants.sort();
        tenants
    }

    /// The log file of an instance of `tenant`'s.
    pub fn log_path(&self, tenant: &str, id: &InstanceId) -> PathBuf {
        self.inner.log_path(tenant, id)
    }

    /// Starts an instance; it is supervised until [`Agent::stop`]. Starting
    /// an instance the agent already runs does nothing.
    pub fn start(&self, request: StartInstance) {
        let mut instances = lock(&self.inner.instances);
        if instances.contains_key(&request.id) {
            return;
        }
        let status = InstanceStatus {
            image: None,
            id: request.id.clone(),
            node: self.inner.config.node.id.clone(),
            state: InstanceState::Pending,
            revision: request.revision,
            pid: None,
            program_pid: None,
            locators: BTreeMap::new(),
            restarts: 0,
            started_at_ms: None,
            since_ms: now_ms(),
            isolation: match self.inner.isolation {
                i if i.network == vdc_model::Network::Own && request.component.egress => {
                    Isolation {
                        network: vdc_model::Network::Egress,
                        ..i
                    }
                }
                other => other,
            },
            last_exit: None,
            message: None,
        };
        let stop = CancellationToken::new();
        instances.insert(
            request.id.clone(),
            Slot {
                record: InstanceRecord {
                    status: status.clone(),
                    pid: None,
                    start_ticks: None,
                    cgroup_name: None,
                    exposed: BTreeMap::new(),
                },
                stop: stop.clone(),
                tenant: request.tenant.clone(),
                usage: None,
                previous_usage: None,
                volume_bytes: None,
            },
        );
        drop(instances);
        let _ = self.inner.changes.send(status);
        tokio::spawn(supervisor::supervise(self.inner.clone(), request, stop));
    }

    /// Sets the ready instances other nodes run, per target input: they join
    /// this node's balancing sets beside the local ones.
    pub fn set_remote_endpoints(&self, remote: BTreeMap<TargetKey, Vec<Endpoint>>) {
        let changed: Vec<TargetKey> = {
            let mut current = lock(&self.inner.remote);
            let keys: std::collections::BTreeSet<TargetKey> =
                current.keys().chain(remote.keys()).cloned().collect();
            let changed = keys
                .into_iter()
                .filter(|k| current.get(k) != remote.get(k))
                .collect();
            *current = remote;
            changed
        };
        let mut done = std::collections::BTreeSet::new();
        for (app, component, _) in changed {
            if done.insert((app.clone(), component.clone())) {
                self.inner.refresh_backends(&app, &component);
            }
        }
    }

    /// Where the volumes of `tenant`'s app's instances live on this node.
    /// Data belongs to a tenant and an app name: a tenant keeps it across
    /// `down` and `up`, another tenant's app of the same name never sees it.
    pub fn app_volumes_dir(&self, tenant: &str, app: &str) -> PathBuf {
        self.inner.app_dir("volumes", tenant, app)
    }

    /// Unmounts the images of an instance's sized volumes, leaving plain
    /// directories (for a restore, which writes there while the instance
    /// is stopped; its next start takes the files into the image).
    pub async fn unmount_volumes(&self, tenant: &str, id: &InstanceId) -> Result<(), String> {
        let dir = self.volumes_dir(tenant, id);
        tokio::task::spawn_blocking(move || volumes::unmount_under(&dir))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Deletes what an app left on this node, for `down --purge`: unmounts
    /// its volumes' images, then removes its volumes, their images, its
    /// logs and what its containers' writable layers left, so a later app
    /// of the same name starts with nothing. Says
    /// whether there was anything to delete.
    pub async fn purge(&self, tenant: &str, app: &str) -> Result<bool, String> {
        let dir = self.app_volumes_dir(tenant, app);
        let images = self.inner.app_dir("volume-images", tenant, app);
        let logs = self.inner.app_dir("logs", tenant, app);
        let containers = self.inner.app_dir("containers", tenant, app);
        tokio::task::spawn_blocking(move || {
            volumes::unmount_under(&dir)?;
            let mut deleted = false;
            for d in [&dir, &images, &logs, &containers] {
                match std::fs::remove_dir_all(d) {
                    Ok(()) => deleted = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot delete {}: {e}", d.display())),
                }
            }
            Ok(deleted)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Where an instance's volumes live on this node: one directory per
    /// volume inside it.
    pub fn volumes_dir(&self, tenant: &str, id: &InstanceId) -> PathBuf {
        self.inner.volumes_dir(tenant, id)
    }

    /// Suspends every process of a running instance (see
    /// [`Driver::freeze`]); its health checks wait until [`Agent::thaw`].
    pub async fn freeze(
        &self,
        id: &InstanceId,
        within: Duration,
    ) -> Result<vdc_driver::FreezeMethod, FreezeError> {
        let target = self.freeze_target(id)?;
        if !lock(&self.inner.frozen).insert(id.clone()) {
            return Err(FreezeError::AlreadyFrozen(id.clone()));
        }
        self.inner
            .freezes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.inner.driver.freeze(&target, within).await {
            Ok(method) => Ok(method),
            Err(e) => {
                lock(&self.inner.frozen).remove(id);
                Err(e.into())
            }
        }
    }

    /// Lets a frozen instance run again.
    pub async fn thaw(
        &self,
        id: &InstanceId,
        method: vdc_driver::FreezeMethod,
    ) -> Result<(), FreezeError> {
        let target = self.freeze_target(id);
        let thawed = match target {
            Ok(target) => self
                .inner
                .driver
                .thaw(&target, method)
                .await
                .map_err(FreezeError::from),
            Err(e) => Err(e),
        };
        self.inner
            .freezes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        lock(&self.inner.frozen).remove(id);
        thawed
    }

    fn freeze_target(&self, id: &InstanceId) -> Result<vdc_driver::FreezeTarget, FreezeError> {
        let pid = lock(&self.inner.instances)
            .get(id)
            .and_then(|slot| slot.record.status.pid)
            .ok_or_else(|| FreezeError::NotRunning(id.clone()))?;
        Ok(vdc_driver::FreezeTarget {
            instance: id.to_string(),
            cgroup_name: self.inner.cgroup_name(id),
            pid,
        })
    }

    /// Asks an instance to stop: it leaves the balancing set at once, gets
    /// SIGTERM and its grace period, and is forgotten once gone.
    pub fn stop(&self, id: &InstanceId) {
        if let Some(slot) = lock(&self.inner.instances).get(id) {
            slot.stop.cancel();
        }
    }

    /// Stops an instance without letting what is in flight finish first
    /// (its connections are cut when it exits): for a restore, whose
    /// clients must not keep talking to the old data.
    pub fn stop_now(&self, id: &InstanceId) {
        lock(&self.inner.hurried).insert(id.clone());
        self.stop(id);
    }

    /// Requests and connections in flight to `instance` through this node's
    /// data plane, whether it is still balanced to or already taken out.
    pub fn in_flight(&self, instance: &InstanceId) -> u64 {
        self.inner.in_flight(instance)
    }

    /// Stops every instance and closes every listener, waiting for both.
    pub async fn shutdown(&self, grace: Duration) {
        let ids: Vec<InstanceId> = lock(&self.inner.instances).keys().cloned().collect();
        for id in &ids {
            self.stop(id);
        }
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
        while !lock(&self.inner.instances).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner
            .dataplane
            .shutdown(Duration::from_millis(500))
            .await;
        lock(&self.inner.listeners).clear();
    }
}

// === impl Inner ===

impl Inner {
    /// `DATA_DIR/KIND/TENANT/APP`: what an app keeps on the node, under
    /// its tenant.
    fn app_dir(&self, kind: &str, tenant: &str, app: &str) -> PathBuf {
        self.config.data_dir.join(kind).join(tenant).join(app)
    }

    fn log_path(&self, tenant: &str, id: &InstanceId) -> PathBuf {
        self.app_dir("logs", tenant, id.app.as_str())
            .join(format!("{}-{}.log", id.component, id.index))
    }

    /// A container's writable layer and overlayfs' work directory.
    fn container_dir(&self, tenant: &str, id: &InstanceId) -> PathBuf {
        self.app_dir("containers", tenant, id.app.as_str())
            .join(format!("{}-{}", id.component, id.index))
    }

    fn volume_path(&self, tenant: &str, id: &InstanceId, volume: &str) -> PathBuf {
        self.volumes_dir(tenant, id).join(volume)
    }

    /// The image file behind a sized volume.
    fn volume_image(&self, tenant: &str, id: &InstanceId, volume: &str) -> PathBuf {
        self.app_dir("volume-images", tenant, id.app.as_str())
            .join(format!("{}-{}", id.component, id.index))
            .join(format!("{volume}.ext4"))
    }

    fn volumes_dir(&self, tenant: &str, id: &InstanceId) -> PathBuf {
        self.app_dir("volumes", tenant, id.app.as_str())
            .join(format!("{}-{}", id.component, id.index))
    }

    /// Whether a probe that started at freeze epoch `epoch` may count: the
    /// instance was not frozen or thawed meanwhile.
    fn probe_counts(&self, id: &InstanceId, epoch: u64) -> bool {
        self.freezes.load(std::sync::atomic::Ordering::SeqCst) == epoch
            && !lock(&self.frozen).contains(id)
    }

    fn cgroup_name(&self, id: &InstanceId) -> String {
        format!("{}/{}", self.config.cgroup_prefix, id.slug())
    }

    /// Applies `f` to an instance's record, publishes the new status, and
    /// re-points the data plane if readiness changed.
    fn update(&self, id: &InstanceId, f: impl FnOnce(&mut InstanceRecord)) {
        let (status, serving_changed) = {
            let mut instances = lock(&self.instances);
            let Some(slot) = instances.get_mut(id) else {
                return;
            };
            let previous = slot.record.clone();
            let before = slot.record.status.state.serves_traffic();
            let before_locators = slot.record.status.locators.clone();
            let state_before = slot.record.status.state;
            f(&mut slot.record);
            if slot.record == previous {
                return;
            }
            let status = &mut slot.record.status;
            if status.state != state_before {
                status.since_ms = now_ms();
            }
            let changed = before != status.state.serves_traffic()
                || (status.state.serves_traffic() && before_locators != status.locators);
            (status.clone(), changed)
        };
        if serving_changed {
            self.refresh_backends(&status.id.app, &status.id.component);
            self.refresh_ingress(&status);
        }
        let _ = self.changes.send(status);
    }

    /// Points the node ingress of an instance (if it has one) at it while
    /// it serves and at nothing otherwise, at once: other nodes route to it
    /// as soon as they see it ready, which may be before this node's next
    /// round.
    fn refresh_ingress(&self, status: &InstanceStatus) {
        let ingress = lock(&self.ingress);
        for (input, locator) in &status.locators {
            if let Some(i) = ingress.get(&(status.id.clone(), input.clone())) {
                i.backends.set(if status.state.serves_traffic() {
                    vec![Endpoint {
                        instance: status.id.to_string(),
                        addr: locator.0,
                    }]
                } else {
                    Vec::new()
                });
            }
        }
    }

    /// Keeps the latest kernel accounting reading of an instance.
    fn record_volume_bytes(&self, id: &InstanceId, bytes: u64) {
        if let Some(slot) = lock(&self.instances).get_mut(id) {
            slot.volume_bytes = Some(bytes);
        }
    }

    fn record_usage(&self, id: &InstanceId, usage: vdc_driver::Usage) {
        if let Some(slot) = lock(&self.instances).get_mut(id) {
            slot.previous_usage = slot.usage.take();
            slot.usage = Some(UsageReading {
                usage,
                at: std::time::Instant::now(),
            });
        }
    }

    fn in_flight(&self, instance: &InstanceId) -> u64 {
        let name = instance.to_string();
        lock(&self.targets)
            .iter()
            .filter(|((app, component, _), _)| {
                app == &instance.app && component == &instance.component
            })
            .map(|(_, backends)| backends.in_flight(&name))
            .sum()
    }

    /// Forgets a stopped instance.
    fn remove(&self, id: &InstanceId) {
        let removed = lock(&self.instances).remove(id);
        if let Some(slot) = removed {
            self.refresh_backends(&id.app, &id.component);
            let mut status = slot.record.status;
            status.state = InstanceState::Stopped;
            status.since_ms = now_ms();
            let _ = self.changes.send(status);
        }
    }

    /// Recomputes the balancing sets of every input of `component` from the
    /// instances that serve traffic now.
    fn refresh_backends(&self, app: &AppName, component: &ComponentName) {
        let mut per_input: BTreeMap<TerminalName, Vec<Endpoint>> = BTreeMap::new();
        for slot in lock(&self.instances).values() {
            let status = &slot.record.status;
            if &status.id.app != app || &status.id.component != component {
                continue;
            }
            if !status.state.serves_traffic() {
                continue;
            }
            for (input, locator) in &status.locators {
                per_input.entry(input.clone()).or_default().push(Endpoint {
                    instance: status.id.to_string(),
                    addr: locator.0,
                });
            }
        }
        for ((r_app, r_component, input), endpoints) in lock(&self.remote).iter() {
            if r_app == app && r_component == component {
                per_input
                    .entry(input.clone())
                    .or_default()
                    .extend(endpoints.iter().cloned());
            }
        }
        let targets = lock(&self.targets);
        for ((t_app, t_component, input), backends) in targets.iter() {
            if t_app == app && t_component == component {
                backends.set(per_input.remove(input).unwrap_or_default());
            }
        }
    }

    /// The balancing set for an input, created on first use and filled with
    /// the instances ready now.
    fn backends_for(&self, key: TargetKey) -> Backends {
        let created = {
            let mut targets = lock(&self.targets);
            if let Some(b) = targets.get(&key) {
                return b.clone();
            }
            let b = Backends::new(format!("{}/{}.{}", key.0, key.1, key.2));
            targets.insert(key.clone(), b.clone());
            b
        };
        self.refresh_backends(&key.0, &key.1);
        created
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section is a plain read or a whole-value write).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
