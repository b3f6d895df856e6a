//! A node of a cluster: many servers and agents sharing one NATS JetStream
//! store.
//!
//! The leading server does not start instances itself: its pass writes an
//! [`Assignment`] per instance (which node, which revision). Every node —
//! each server's local agent and each `vdc agent --join` — runs exactly the
//! instances assigned to it ([`ControlPlane::sync_node`]), reports them in the
//! Instances bucket, heartbeats its [`NodeRecord`], and opens an ingress per
//! input of its instances so other nodes' data planes reach them. A node
//! silent for longer than the node timeout is down: the leader places its
//! instances elsewhere, and the node itself, having failed to heartbeat for
//! two thirds of that time, has already stopped them (it fences itself), so
//! an instance never runs twice for longer than the timeout allows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vdc_dataplane::Endpoint;
use vdc_model::{
    Assignment, InstanceId, InstanceState, InstanceStatus, NodeId, NodeInfo, NodeRecord, NodeState,
};
use vdc_reconciler::{Action, ListenerKind};
use vdc_spec::{Bytes, MilliCpu, Resources, TerminalName};
use vdc_store::{wall_ms, Bucket, Changes, InstanceRecord, StoreError};
use vdc_telemetry::EventKind;

use crate::control::{lock, ControlPlane};

/// How long a node may stay silent before it is down, by default.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often each node reads its assignments and the pool without being
/// woken by a change: the level-triggered safety net under the watches
/// (and what notices a node going down, which writes nothing).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long a round waits after a change for the rest of a burst (a pass
/// writes many assignments) before reading the pool.
pub(crate) const SETTLE: Duration = Duration::from_millis(20);

/// The buckets whose changes start a node's round: what to run, where the
/// others' instances are, what to wire.
const NODE_WATCHES: [Bucket; 6] = [
    Bucket::Assignments,
    Bucket::Instances,
    Bucket::Apps,
    Bucket::Links,
    Bucket::Moves,
    Bucket::Tasks,
];

/// How long one round may wait on the store.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an instance moved to another node keeps running here, at most,
/// waiting for its replacement to be ready.
const MOVE_GRACE: Duration = Duration::from_secs(30);

/// This process's part in a cluster.
pub(crate) struct ClusterNode {
    pub(crate) timeout: Duration,
    /// Where other nodes reach this one's ingress and gateways.
    pub(crate) address: IpAddr,
    /// Tells this node's agent from another one claiming the same name.
    pub(crate) incarnation: String,
    view: Mutex<PoolView>,
    /// When the last heartbeat was written.
    last_heartbeat: Mutex<Option<Instant>>,
    /// Whether this node stopped its instances after losing the store.
    fenced: Mutex<bool>,
    /// The leader's memory of each node's state, for events.
    node_states: Mutex<BTreeMap<NodeId, NodeState>>,
    /// Where snapshot blobs travel between nodes (`vdc move`).
    pub(crate) objects: Option<async_nats::jetstream::object_store::ObjectStore>,
    /// This node's part of moves in progress.
    pub(crate) moving: crate::moves::Moving,
    /// Tasks other servers asked of this node, running now.
    pub(crate) tasks: crate::tasks::Running,
}

/// The pool as last read from the store.
#[derive(Clone, Debug, Default)]
pub(crate) struct PoolView {
    pub(crate) nodes: Vec<(NodeRecord, NodeState)>,
    pub(crate) reports: Vec<InstanceRecord>,
    pub(crate) assignments: BTreeMap<String, Assignment>,
}

impl PoolView {
    /// Reads the pool from the store, judging nodes at the wall clock's
    /// now (returned too).
    async fn read(
        store: &vdc_store::StateStore,
        timeout_ms: u64,
    ) -> Result<(PoolView, u64), StoreError> {
        let assignments = store.assignments().await?;
        let reports = store.instances().await?;
        let now = wall_ms();
        let nodes = store
            .nodes()
            .await?
            .into_iter()
            .map(|(r, _)| {
                let state = r.state(now, timeout_ms);
                (r, state)
            })
            .collect();
        let view = PoolView {
            nodes,
            reports,
            assignments,
        };
        Ok((view, now))
    }

    fn state_of(&self, node: &NodeId) -> Option<NodeState> {
        self.nodes
            .iter()
            .find(|(r, _)| &r.info.id == node)
            .map(|(_, s)| *s)
    }

    /// Every instance running on a node that is not down, once: the copy on
    /// its assigned node when it runs on two (moving).
    pub(crate) fn instances(&self) -> Vec<InstanceStatus> {
        let mut by_id: BTreeMap<String, &InstanceRecord> = BTreeMap::new();
        for r in &self.reports {
            if self.state_of(&r.status.node) == Some(NodeState::Down) {
                continue;
            }
            let id = r.status.id.to_string();
            let assigned_here = self
                .assignments
                .get(&id)
                .is_some_and(|a| a.node == r.status.node);
            if assigned_here || !by_id.contains_key(&id) {
                by_id.insert(id, r);
            }
        }
        by_id.into_values().map(|r| r.status.clone()).collect()
    }

    /// Nodes that take new instances, and those being drained (which count
    /// what they hold but take nothing new).
    pub(crate) fn schedulable(&self) -> (Vec<NodeInfo>, BTreeSet<NodeId>) {
        let nodes = self
            .nodes
            .iter()
            .filter(|(_, s)| *s != NodeState::Down)
            .map(|(r, _)| r.info.clone())
            .collect();
        let draining = self
            .nodes
            .iter()
            .filter(|(_, s)| *s == NodeState::Draining)
            .map(|(r, _)| r.info.id.clone())
            .collect();
        (nodes, draining)
    }

    /// What the nodes that take new instances offer together.
    pub(crate) fn capacity(&self) -> Resources {
        self.nodes
            .iter()
            .filter(|(_, s)| *s == NodeState::Ready)
            .fold(Resources::default(), |acc, (r, _)| {
                acc.plus(r.info.capacity)
            })
    }
}

impl ClusterNode {
    pub(crate) fn new(
        timeout: Duration,
        address: IpAddr,
        incarnation: String,
        objects: Option<async_nats::jetstream::object_store::ObjectStore>,
    ) -> Self {
        Self {
            timeout,
            address,
            incarnation,
            view: Mutex::new(PoolView::default()),
            last_heartbeat: Mutex::new(None),
            fenced: Mutex::new(false),
            node_states: Mutex::new(BTreeMap::new()),
            objects,
            moving: crate::moves::Moving::default(),
            tasks: crate::tasks::Running::default(),
        }
    }

    /// Runs `f` on the pool as last read, without copying it.
    pub(crate) fn with_view<T>(&self, f: impl FnOnce(&PoolView) -> T) -> T {
        f(&lock(&self.view))
    }

    pub(crate) fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "node name `{name}` is taken by another agent (its last heartbeat was {age_ms} ms ago); \
         give this one another name with --node-name"
    )]
    NameTaken { name: String, age_ms: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ControlPlane {
    /// Writes this node's record: its capacity, labels and a fresh
    /// heartbeat, keeping what an operator set (draining). Refuses to take
    /// over a name another live agent heartbeats under.
    pub(crate) async fn heartbeat(&self) -> Result<(), JoinError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let store = self.store();
        let mut info = self.agent().node().clone();
        info.address = cluster.address;
        info.disk = crate::node::disk(self.data_dir());
        // A previous agent of this name that died without leaving goes
        // silent within the timeout: wait that long for it before refusing.
        let give_up = Instant::now() + cluster.timeout + Duration::from_secs(1);
        for _ in 0..1000 {
            let now = wall_ms();
            let existing = store.node(&info.id.0).await?;
            let (draining, started_ms, expected) = match &existing {
                Some((r, rev)) => {
                    let live = r.state(now, cluster.timeout_ms()) != NodeState::Down;
                    if r.incarnation != cluster.incarnation && live && !self.has_joined() {
                        if Instant::now() < give_up {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        return Err(JoinError::NameTaken {
                            name: info.id.0.clone(),
                            age_ms: now.saturating_sub(r.heartbeat_ms),
                        });
                    }
                    let started = if r.incarnation == cluster.incarnation {
                        r.started_ms
                    } else {
                        now
                    };
                    (r.draining, started, Some(*rev))
                }
                None => (false, now, None),
            };
            let record = NodeRecord {
                info: info.clone(),
                heartbeat_ms: now,
                started_ms,
                draining,
                incarnation: cluster.incarnation.clone(),
            };
            match store.put_node(&record, expected).await {
                Ok(_) => {
                    *lock(&cluster.last_heartbeat) = Some(Instant::now());
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Says the node is leaving (a clean stop): the pool places its
    /// instances elsewhere at once instead of after the timeout.
    pub(crate) async fn leave(&self) {
        let id = &self.agent().node().id.0;
        let left = self.store().update_node(id, |record| {
            record.heartbeat_ms = 0;
            true
        });
        if let Err(e) = left.await {
            tracing::warn!("cannot say this node leaves: {e}");
        }
    }

    fn has_joined(&self) -> bool {
        self.cluster()
            .is_some_and(|c| lock(&c.last_heartbeat).is_some())
    }

    /// Heartbeats every timeout / 5 until shutdown.
    pub(crate) async fn run_heartbeats(self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let every = (cluster.timeout / 5).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = self.shutting_down() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match tokio::time::timeout(cluster.timeout / 3, self.heartbeat()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot heartbeat: {e}"),
                Err(_) => tracing::warn!("cannot heartbeat: the store did not answer"),
            }
        }
    }

    /// Runs this node's share until shutdown: on every change to what it
    /// follows in the store (and at least every [`SYNC_EVERY`]), bring the
    /// local agent to what is assigned to this node; meanwhile a watchdog
    /// fences the node when its heartbeats stop getting through, however
    /// long a round waits on the store.
    pub(crate) async fn run_node(self) {
        let watchdog = tokio::spawn(self.clone().fence_watchdog());
        let mut changes = Changes::new(self.store().kv().clone(), &NODE_WATCHES).await;
        loop {
            match tokio::time::timeout(SYNC_TIMEOUT, self.sync_node()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot read the pool: {e}"),
                Err(_) => tracing::warn!("the pool did not answer within {SYNC_TIMEOUT:?}"),
            }
            tokio::select! {
                _ = self.shutting_down() => break,
                _ = changes.next() => tokio::time::sleep(SETTLE).await,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
            // The round reads everything: notices up to here are covered.
            changes.drain();
        }
        watchdog.abort();
    }

    /// Stops every local instance while the node is fenced.
    async fn fence_watchdog(self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let agent = self.agent();
        loop {
            tokio::select! {
                _ = self.shutting_down() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if !self.must_fence() {
                *lock(&cluster.fenced) = false;
                continue;
            }
            let first = !std::mem::replace(&mut *lock(&cluster.fenced), true);
            if first {
                tracing::error!(
                    "no heartbeat got through for {:?}: stopping every instance of this node; the pool places them elsewhere",
                    cluster.timeout * 2 / 3
                );
                self.node_event(
                    &agent.node().id,
                    "lost the cluster store: stopped its instances",
                );
            }
            for s in agent.instances() {
                agent.stop(&s.id);
            }
        }
    }

    /// Whether this node has gone too long without a heartbeat: its
    /// instances may be running elsewhere soon, so it stops them.
    fn must_fence(&self) -> bool {
        let Some(cluster) = self.cluster() else {
            return false;
        };
        let last = *lock(&cluster.last_heartbeat);
        last.is_some_and(|t| t.elapsed() > cluster.timeout * 2 / 3)
    }

    /// Reads the pool from the store now, for a decision that cannot wait
    /// for the next round: admitting a submission (a server that has just
    /// started has not had a round yet).
    pub(crate) async fn refresh_pool(&self) -> Result<(), StoreError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let (view, _) = PoolView::read(self.store(), cluster.timeout_ms()).await?;
        *lock(&cluster.view) = view;
        Ok(())
    }

    /// One round of this node's share: listeners, instances, remote
    /// endpoints and ingress.
    pub(crate) async fn sync_node(&self) -> Result<(), StoreError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let agent = self.agent();
        let me = agent.node().id.clone();

        if self.must_fence() {
            return Ok(());
        }

        let store = self.store();
        let apps = store.apps().await?;
        let (view, now) = PoolView::read(store, cluster.timeout_ms()).await?;
        *lock(&cluster.view) = view.clone();
        self.remember_tenants(&apps);
        self.purge_volumes(&apps).await?;

        // Listeners: every node holds every link and gateway, so a caller
        // anywhere reaches its link at the same address.
        let plans = vdc_reconciler::wiring(&apps);
        let known: BTreeMap<String, std::net::SocketAddr> =
            store.link_addresses().await?.into_iter().collect();
        let (bindings, errors) = agent.apply_wiring(&plans, &known).await;
        let mut settled = true;
        for binding in &bindings {
            if matches!(binding.plan.kind, ListenerKind::Link { .. })
                && !known.contains_key(&binding.plan.key)
            {
                // First node to bind the link records its address; the
                // others take that one on their next round.
                let holds = store
                    .create_link_address(&binding.plan.key, binding.address)
                    .await?;
                settled &= holds == binding.address;
            }
        }
        self.record_wiring_errors(&errors);

        // Instances: exactly those assigned here.
        let running = agent.instances();
        for (id, assignment) in view.assignments.iter().filter(|(_, a)| a.node == me) {
            let Ok(instance) = id.parse::<InstanceId>() else {
                continue;
            };
            match running.iter().find(|s| s.id == instance) {
                None if settled => {
                    let Some(app) = apps.iter().find(|a| a.spec.name == instance.app) else {
                        continue;
                    };
                    let live_bindings: Vec<_> = bindings
                        .iter()
                        .filter(|b| {
                            !matches!(b.plan.kind, ListenerKind::Link { .. })
                                || known.get(&b.plan.key).is_none_or(|a| *a == b.address)
                        })
                        .cloned()
                        .collect();
                    self.start_instance(app, &live_bindings, instance, assignment.revision);
                }
                None => {}
                Some(s) if s.revision < assignment.revision && !s.state.is_leaving() => {
                    tracing::info!(%instance, revision = assignment.revision, "replacing with a new revision");
                    agent.stop(&instance);
                }
                Some(_) => {}
            }
        }
        for s in running.iter().filter(|s| !s.state.is_leaving()) {
            let id = s.id.to_string();
            match view.assignments.get(&id) {
                None => {
                    tracing::info!(instance = %s.id, "no longer assigned to this node: stopping");
                    agent.stop(&s.id);
                }
                Some(a) if a.node != me => {
                    // Moved: make way once the new copy serves, or after a
                    // grace period.
                    let replacement_ready = view.reports.iter().any(|r| {
                        r.status.id == s.id
                            && r.status.node == a.node
                            && r.status.state.serves_traffic()
                    });
                    let waited = now.saturating_sub(a.at_ms)
                        > u64::try_from(MOVE_GRACE.as_millis()).unwrap_or(u64::MAX);
                    if replacement_ready || waited {
                        tracing::info!(instance = %s.id, to = %a.node, "moved to another node: stopping here");
                        agent.stop(&s.id);
                    }
                }
                Some(_) => {}
            }
        }

        // Ready instances of other nodes join the balancing sets.
        let mut remote: BTreeMap<vdc_agent::TargetKey, Vec<Endpoint>> = BTreeMap::new();
        for r in &view.reports {
            if r.status.node == me
                || !r.status.state.serves_traffic()
                || view.state_of(&r.status.node) == Some(NodeState::Down)
                || view.state_of(&r.status.node).is_none()
            {
                continue;
            }
            for (input, addr) in &r.exposed {
                let Ok(input) = input.parse::<TerminalName>() else {
                    continue;
                };
                remote
                    .entry((
                        r.status.id.app.clone(),
                        r.status.id.component.clone(),
                        input,
                    ))
                    .or_default()
                    .push(Endpoint {
                        instance: r.status.id.to_string(),
                        addr: *addr,
                    });
            }
        }
        agent.set_remote_endpoints(remote);
        agent.expose(cluster.address).await;
        crate::moves::advance(self).await?;
        crate::tasks::advance(self).await?;
        Ok(())
    }

    /// The leader's pass in a cluster: place what is missing by writing
    /// assignments, take back what is not wanted, and re-place what ran on
    /// nodes that went down or are draining.
    pub(crate) async fn pass_cluster(&self) -> Result<(), StoreError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let store = self.store();
        let apps = store.apps().await?;
        self.remember_tenants(&apps);
        let (view, now) = PoolView::read(store, cluster.timeout_ms()).await?;
        self.announce_nodes(&view.nodes, now);

        // The instances as the reconciler must see them: each assigned one
        // on a ready node (as its node reports it, or pending until it
        // does); assignments on down or draining nodes are left out, so the
        // reconciler places them again.
        let mut instances: Vec<InstanceStatus> = Vec::new();
        for (id, a) in &view.assignments {
            if view.state_of(&a.node) != Some(NodeState::Ready) {
                continue;
            }
            let Ok(instance) = id.parse::<InstanceId>() else {
                continue;
            };
            let reported = view
                .reports
                .iter()
                .find(|r| r.status.id == instance && r.status.node == a.node);
            instances.push(match reported {
                Some(r) => r.status.clone(),
                None => pending(instance, a),
            });
        }
        // Copies still running where they are no longer assigned are on
        // their way out: they hold their resources until gone, and an app
        // is forgotten only once they are.
        for r in &view.reports {
            let id = r.status.id.to_string();
            let state = view.state_of(&r.status.node);
            if state == Some(NodeState::Down) || state.is_none() {
                continue;
            }
            if view
                .assignments
                .get(&id)
                .is_some_and(|a| a.node == r.status.node)
            {
                continue;
            }
            let mut status = r.status.clone();
            status.state = InstanceState::Stopping;
            instances.push(status);
        }

        let (infos, draining) = view.schedulable();
        let plan = vdc_reconciler::reconcile(&apps, &instances, &infos, &draining);
        self.record_unplaced(plan.unplaced);
        for action in plan.actions {
            match action {
                Action::Start {
                    instance,
                    node,
                    revision,
                } => {
                    let id = instance.to_string();
                    let from = view.assignments.get(&id).map(|a| a.node.clone());
                    // Off a draining node, an instance with volumes moves
                    // with its data rather than starting empty elsewhere.
                    if let Some(old) = from.as_ref().filter(|old| {
                        **old != node && view.state_of(old) == Some(NodeState::Draining)
                    }) {
                        let stateful = apps
                            .iter()
                            .find(|a| a.spec.name == instance.app)
                            .and_then(|a| a.spec.components.get(&instance.component))
                            .is_some_and(|c| !c.volumes.is_empty());
                        if stateful {
                            crate::moves::move_off_draining(self, &instance, old, &node, now)
                                .await?;
                            continue;
                        }
                    }
                    store
                        .put_assignment(
                            &id,
                            &Assignment {
                                node: node.clone(),
                                revision,
                                at_ms: now,
                            },
                        )
                        .await?;
                    let reason = match from {
                        Some(old) if old != node => format!(
                            "placed on node {node} (revision {revision}), away from node {old} ({})",
                            view.state_of(&old).map_or("gone".to_owned(), |s| s.to_string())
                        ),
                        _ => format!("placed on node {node} (revision {revision})"),
                    };
                    self.placement_event(&instance, reason);
                }
                Action::Stop {
                    instance, reason, ..
                } => {
                    tracing::info!(%instance, "stopping: {reason}");
                    store.delete_assignment(&instance.to_string()).await?;
                }
                Action::Replace {
                    instance,
                    node,
                    revision,
                } => {
                    tracing::info!(%instance, revision, "replacing with a new revision");
                    store
                        .put_assignment(
                            &instance.to_string(),
                            &Assignment {
                                node,
                                revision,
                                at_ms: now,
                            },
                        )
                        .await?;
                }
                Action::Forget { app } => {
                    for id in view.assignments.keys() {
                        if id.parse::<InstanceId>().is_ok_and(|i| i.app == app) {
                            store.delete_assignment(id).await?;
                        }
                    }
                    self.forget_app(&app).await?;
                }
            }
        }

        // Link addresses of apps that are gone.
        for (key, _) in store.link_addresses().await? {
            let app = key.split('/').next().unwrap_or_default();
            if !apps.iter().any(|a| a.spec.name.as_str() == app) {
                store.delete_link_address(&key).await?;
            }
        }
        // Reports left by down nodes, once their instances run elsewhere.
        for r in &view.reports {
            if view.state_of(&r.status.node) != Some(NodeState::Down) {
                continue;
            }
            let moved = view
                .assignments
                .get(&r.status.id.to_string())
                .is_none_or(|a| a.node != r.status.node);
            if moved {
                store
                    .delete_instance(&r.status.id.to_string(), &r.status.node.0)
                    .await?;
            }
        }
        Ok(())
    }

    /// Emits an event for each node whose state changed since the last pass.
    fn announce_nodes(&self, nodes: &[(NodeRecord, NodeState)], now: u64) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let changes: Vec<(NodeId, Option<NodeState>, NodeState, u64)> = {
            let mut states = lock(&cluster.node_states);
            nodes
                .iter()
                .filter_map(|(r, state)| {
                    let before = states.insert(r.info.id.clone(), *state);
                    (before != Some(*state)).then(|| {
                        (
                            r.info.id.clone(),
                            before,
                            *state,
                            now.saturating_sub(r.heartbeat_ms),
                        )
                    })
                })
                .collect()
        };
        for (node, before, state, silent_ms) in changes {
            let reason = match (before, state) {
                (None, NodeState::Down) => continue,
                (None, _) => format!("joined the pool ({state})"),
                (Some(_), NodeState::Down) => format!(
                    "down: no heartbeat for {:.1} s (timeout {:?}); its instances are placed elsewhere",
                    silent_ms as f64 / 1000.0,
                    cluster.timeout
                ),
                (Some(NodeState::Down), _) => format!("back ({state})"),
                (Some(_), NodeState::Draining) => "draining: taking no new instances, moving its instances off".to_owned(),
                (Some(_), NodeState::Ready) => "ready: taking new instances again".to_owned(),
            };
            tracing::info!(%node, "{reason}");
            self.node_event(&node, &reason);
        }
    }

    fn node_event(&self, node: &NodeId, reason: &str) {
        self.telemetry()
            .event(EventKind::Node, "", "", None, Some(&node.0), reason);
    }
}

/// An instance assigned to a node that has not reported it yet.
fn pending(id: InstanceId, a: &Assignment) -> InstanceStatus {
    InstanceStatus {
        image: None,
        id,
        node: a.node.clone(),
        state: InstanceState::Pending,
        revision: a.revision,
        pid: None,
        program_pid: None,
        locators: BTreeMap::new(),
        restarts: 0,
        started_at_ms: None,
        since_ms: a.at_ms,
        isolation: vdc_model::Isolation::PROCESS_GROUP,
        last_exit: None,
        message: None,
    }
}

/// What the resources of a set of instances add up to.
pub(crate) fn allocated(
    apps: &[vdc_model::AppRecord],
    assignments: &BTreeMap<String, Assignment>,
    node: &NodeId,
) -> (Resources, usize) {
    let mut total = Resources {
        cpu: MilliCpu(0),
        memory: Bytes(0),
    };
    let mut count = 0;
    for (id, _) in assignments.iter().filter(|(_, a)| &a.node == node) {
        let Ok(id) = id.parse::<InstanceId>() else {
            continue;
        };
        let resources = apps
            .iter()
            .find(|app| app.spec.name == id.app)
            .and_then(|app| app.spec.components.get(&id.component))
            .map(|c| c.resources);
        if let Some(r) = resources {
            total = total.plus(r);
            count += 1;
        }
    }
    (total, count)
}
