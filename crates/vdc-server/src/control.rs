//! The control loop: read desired state, observe actual state, let the
//! reconciler decide, carry out its plan. Level-triggered: it runs on every
//! change and once a second regardless, so a missed event only delays it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use vdc_agent::{Agent, ListenerBinding, StartInstance};
use vdc_model::{AppRecord, InstanceId, InstanceState, InstanceStatus};
use vdc_telemetry::EventKind;

use crate::cluster::PoolView;
use crate::telemetry::Telemetry;
use vdc_reconciler::{Action, ListenerKind};
use vdc_store::{InstanceRecord, StateStore, StoreError};

/// How this server shares the store with others.
pub(crate) struct Cluster {
    /// `Some(term)` while this server leads.
    pub leader: watch::Receiver<Option<u64>>,
    /// Whether other servers may share the store.
    pub shared: bool,
    /// This node's part in a cluster (a shared store).
    pub node: Option<crate::cluster::ClusterNode>,
}

/// The control plane; cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

struct Inner {
    store: StateStore,
    agent: Agent,
    telemetry: Telemetry,
    /// The last state seen per instance, to turn status changes into events.
    last_seen: Mutex<BTreeMap<InstanceId, InstanceState>>,
    /// App name -> tenant, as of the last pass.
    tenants: Mutex<BTreeMap<String, String>>,
    /// Each app's incarnation, as last read from the store.
    incarnations: Mutex<BTreeMap<String, String>>,
    data_dir: PathBuf,
    api: SocketAddr,
    /// The API's listener for instances (reached through their
    /// namespaces' forwarders, or directly with egress).
    instance_api: SocketAddr,
    wake: Notify,
    shutdown: CancellationToken,
    /// Per app: instances the scheduler could not place, with the reason.
    unplaced: Mutex<BTreeMap<String, Vec<String>>>,
    /// Listener problems of the last pass, per listener key.
    wiring_errors: Mutex<BTreeMap<String, String>>,
    /// Signs the tokens instances call the platform with.
    instance_key: crate::auth::InstanceKey,
    /// The autoscaler's memory and what instances reported.
    scaling: crate::scale::Scaling,
    /// `Some(term)` while this server leads the control loops.
    leader: watch::Receiver<Option<u64>>,
    /// Whether other servers share the store (NATS): then only records of
    /// this node are this server's to clean up.
    shared: bool,
    cluster: Option<crate::cluster::ClusterNode>,
    /// This node's snapshots.
    snapshots: Arc<vdc_snapshot::SnapshotStore>,
    /// The apps the last look at purged volumes saw.
    apps_seen: Mutex<Option<BTreeSet<String>>>,
    /// Instances kept stopped while their volumes are restored.
    held: Mutex<BTreeSet<InstanceId>>,
}

impl ControlPlane {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: StateStore,
        telemetry: Telemetry,
        snapshots: Arc<vdc_snapshot::SnapshotStore>,
        agent: Agent,
        data_dir: PathBuf,
        api: SocketAddr,
        instance_api: SocketAddr,
        shutdown: CancellationToken,
        instance_key: crate::auth::InstanceKey,
        cluster: Cluster,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                agent,
                telemetry,
                snapshots,
                last_seen: Mutex::new(BTreeMap::new()),
                tenants: Mutex::new(BTreeMap::new()),
                incarnations: Mutex::new(BTreeMap::new()),
                data_dir,
                api,
                instance_api,
                wake: Notify::new(),
                shutdown,
                unplaced: Mutex::new(BTreeMap::new()),
                wiring_errors: Mutex::new(BTreeMap::new()),
                instance_key,
                scaling: crate::scale::Scaling::default(),
                leader: cluster.leader,
                shared: cluster.shared,
                cluster: cluster.node,
                apps_seen: Mutex::new(None),
                held: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    pub fn store(&self) -> &StateStore {
        &self.inner.store
    }

    pub fn agent(&self) -> &Agent {
        &self.inner.agent
    }

    pub(crate) fn snapshots(&self) -> &Arc<vdc_snapshot::SnapshotStore> {
        &self.inner.snapshots
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// This node's part in a cluster, when the store is shared.
    pub(crate) fn cluster(&self) -> Option<&crate::cluster::ClusterNode> {
        self.inner.cluster.as_ref()
    }

    /// Every instance of the pool: this node's alone, or in a cluster those
    /// every live node reports.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        match self.cluster() {
            Some(c) => c.with_view(PoolView::instances),
            None => self.inner.agent.instances(),
        }
    }

    /// The nodes that take instances, and those draining.
    pub(crate) fn pool(&self) -> (Vec<vdc_model::NodeInfo>, BTreeSet<vdc_model::NodeId>) {
        match self.cluster() {
            Some(c) => c.with_view(PoolView::schedulable),
            None => (vec![self.inner.agent.node().clone()], BTreeSet::new()),
        }
    }

    /// What the pool's schedulable nodes offer together.
    pub(crate) fn pool_capacity(&self) -> vdc_spec::Resources {
        match self.cluster() {
            Some(c) => c.with_view(PoolView::capacity),
            None => self.inner.agent.node().capacity,
        }
    }

    /// The incarnation of the app of that name, as last read from the
    /// store; `None` when there is no such app.
    pub(crate) fn incarnation_of(&self, app: &str) -> Option<String> {
        lock(&self.inner.incarnations).get(app).cloned()
    }

    /// The tenant owning `app`, as of the last pass; `default` for an app
    /// the pass has not seen (for what only shows or counts). Where it
    /// decides a path on disk, [`owner_of`](Self::owner_of).
    pub fn tenant_of(&self, app: &str) -> String {
        lock(&self.inner.tenants)
            .get(app)
            .cloned()
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The tenant owning `app`: as of the last pass, else as the store
    /// says now (an app submitted since); an error for an app that is not
    /// there, never a guess, as it decides where volumes are.
    pub(crate) async fn owner_of(&self, app: &str) -> Result<String, String> {
        if let Some(tenant) = lock(&self.inner.tenants).get(app) {
            return Ok(tenant.clone());
        }
        match self.inner.store.app(app).await {
            Ok(Some((record, _))) => Ok(record.spec.tenant.to_string()),
            Ok(None) => Err(format!("no app named `{app}`")),
            Err(e) => Err(format!("cannot read app `{app}`: {e}")),
        }
    }

    pub(crate) fn instance_key(&self) -> &crate::auth::InstanceKey {
        &self.inner.instance_key
    }

    pub(crate) fn scaling(&self) -> &crate::scale::Scaling {
        &self.inner.scaling
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.inner.data_dir
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.inner.api
    }

    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves when the server starts shutting down: streams end then.
    pub async fn shutting_down(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// The term this server leads in, `None` while another server leads.
    /// An embedded server (redb) always leads, in term 1.
    pub fn term(&self) -> Option<u64> {
        *self.inner.leader.borrow()
    }

    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// Resolves once this server leads (at once if it does).
    pub(crate) async fn leading(&self) {
        let mut rx = self.inner.leader.clone();
        if rx.wait_for(Option::is_some).await.is_err() {
            // Nobody will ever make this server lead.
            std::future::pending::<()>().await;
        }
    }

    /// Whether an instance record in the store is this server's: every
    /// record when the store is its own, only this node's when shared.
    pub(crate) fn owns(&self, record: &InstanceRecord) -> bool {
        !self.inner.shared || record.status.node == self.inner.agent.node().id
    }

    /// A receiver of the term this server leads in.
    pub(crate) fn leader(&self) -> watch::Receiver<Option<u64>> {
        self.inner.leader.clone()
    }

    /// Asks the loop for a pass now (after a submission or a `down`).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn unplaced(&self, app: &str) -> Vec<String> {
        lock(&self.inner.unplaced)
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    pub fn wiring_errors(&self, app: &str) -> Vec<String> {
        let prefix = format!("{app}/");
        lock(&self.inner.wiring_errors)
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Runs until shutdown. Passes run only while this server leads; what
    /// the local agent reports is recorded either way.
    pub async fn run(self) {
        let mut changes = self.inner.agent.subscribe();
        let mut leader = self.leader();
        // In a cluster, other servers' API calls and other nodes' reports
        // change the store: a pass follows at once, not at the next tick.
        let mut store_changes = match self.cluster() {
            Some(_) => Some(
                vdc_store::Changes::new(
                    self.inner.store.kv().clone(),
                    &[vdc_store::Bucket::Apps, vdc_store::Bucket::Instances],
                )
                .await,
            ),
            None => None,
        };
        loop {
            if self.is_leader() {
                let pass = if self.cluster().is_some() {
                    self.pass_cluster().await
                } else {
                    self.pass().await
                };
                if let Err(e) = pass {
                    tracing::error!("control loop pass failed: {e}");
                }
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                // A pass at once on becoming leader; a closed channel (the
                // embedded server) never changes again.
                Ok(()) = leader.changed() => {}
                change = changes.recv() => match change {
                    Ok(status) => self.persist(status).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.persist_all().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = async {
                    match &mut store_changes {
                        Some(c) => c.next().await,
                        None => std::future::pending().await,
                    }
                } => tokio::time::sleep(crate::cluster::SETTLE).await,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Some(c) = &mut store_changes {
                c.drain();
            }
            // Take every change queued meanwhile before the next pass.
            while let Ok(status) = changes.try_recv() {
                self.persist(status).await;
            }
        }
    }

    /// Turns a status change into a lifecycle event.
    fn announce(&self, status: &InstanceStatus) {
        let before = lock(&self.inner.last_seen).insert(status.id.clone(), status.state);
        if status.state == InstanceState::Stopped {
            lock(&self.inner.last_seen).remove(&status.id);
        }
        if before == Some(status.state) {
            return;
        }
        let Some((kind, reason)) = lifecycle_event(before, status) else {
            return;
        };
        let app = status.id.app.as_str();
        self.inner.telemetry.event(
            kind,
            &self.tenant_of(app),
            app,
            Some(status.id.component.as_str()),
            Some(&status.id.to_string()),
            reason,
        );
    }

    /// Records what the node runs, so a restarted server can clean up.
    async fn persist(&self, status: InstanceStatus) {
        self.announce(&status);
        let result = if status.state == InstanceState::Stopped {
            self.inner
                .store
                .delete_instance(&status.id.to_string(), &status.node.0)
                .await
                .map(drop)
        } else {
            match self
                .inner
                .agent
                .records()
                .into_iter()
                .find(|r| r.status.id == status.id)
            {
                Some(record) => self.inner.store.put_instance(&record).await,
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            tracing::error!(instance = %status.id, "cannot record instance state: {e}");
        }
    }

    /// Writes every instance record (after missed changes, and at shutdown).
    pub(crate) async fn persist_all(&self) {
        let records: Vec<InstanceRecord> = self.inner.agent.records();
        let live: BTreeSet<String> = records.iter().map(InstanceRecord::key).collect();
        for record in &records {
            if let Err(e) = self.inner.store.put_instance(record).await {
                tracing::error!("cannot record instance state: {e}");
            }
        }
        // Only this node's records: with a shared store, other nodes keep
        // theirs.
        if let Ok(stored) = self.inner.store.instances().await {
            for r in stored.into_iter().filter(|r| self.owns(r)) {
                if !live.contains(&r.key()) {
                    let _ = self
                        .inner
                        .store
                        .delete_instance(&r.status.id.to_string(), &r.status.node.0)
                        .await;
                }
            }
        }
    }

    /// One reconciliation pass.
    async fn pass(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let agent = &self.inner.agent;
        let apps = store.apps().await?;
        self.remember_tenants(&apps);
        self.purge_volumes(&apps).await?;

        // Wiring first: instances need their link addresses in their
        // environment when they start.
        let plans = vdc_reconciler::wiring(&apps);
        let known: BTreeMap<String, SocketAddr> =
            store.link_addresses().await?.into_iter().collect();
        let (bindings, errors) = agent.apply_wiring(&plans, &known).await;
        for binding in &bindings {
            if matches!(binding.plan.kind, ListenerKind::Link { .. })
                && known.get(&binding.plan.key) != Some(&binding.address)
            {
                store
                    .put_link_address(&binding.plan.key, binding.address)
                    .await?;
            }
        }
        for key in known.keys() {
            let app = key.split('/').next().unwrap_or_default();
            if !apps.iter().any(|a| a.spec.name.as_str() == app) {
                store.delete_link_address(key).await?;
            }
        }
        self.record_wiring_errors(&errors);

        let instances = agent.instances();
        let plan =
            vdc_reconciler::reconcile(&apps, &instances, &[agent.node().clone()], &BTreeSet::new());
        self.record_unplaced(plan.unplaced);

        for action in plan.actions {
            match action {
                Action::Start {
                    instance, revision, ..
                } => {
                    let Some(app) = apps.iter().find(|a| a.spec.name == instance.app) else {
                        continue;
                    };
                    let reason =
                        format!("placed on node {} (revision {revision})", agent.node().id);
                    if self.start_instance(app, &bindings, instance.clone(), revision) {
                        self.placement_event(&instance, reason);
                    }
                }
                Action::Stop {
                    instance, reason, ..
                } => {
                    tracing::info!(%instance, "stopping: {reason}");
                    agent.stop(&instance);
                }
                Action::Replace {
                    instance, revision, ..
                } => {
                    tracing::info!(%instance, revision, "replacing with a new revision");
                    agent.stop(&instance);
                }
                Action::Forget { app } => self.forget_app(&app).await?,
            }
        }
        Ok(())
    }

    /// Deletes this node's volumes of apps taken down with `--purge`, when
    /// an app has gone since the last look (and on the first).
    pub(crate) async fn purge_volumes(&self, apps: &[AppRecord]) -> Result<(), StoreError> {
        let now: BTreeSet<String> = apps.iter().map(|a| a.spec.name.to_string()).collect();
        let gone = {
            let mut seen = lock(&self.inner.apps_seen);
            let gone = seen.as_ref().is_none_or(|seen| !seen.is_subset(&now));
            *seen = Some(now.clone());
            gone
        };
        if !gone {
            return Ok(());
        }
        let running: BTreeSet<String> = self
            .inner
            .agent
            .instances()
            .into_iter()
            .map(|s| s.id.app.to_string())
            .collect();
        for (tenant, app) in self.inner.store.purged().await? {
            let reused = apps
                .iter()
                .any(|a| a.spec.name.as_str() == app && a.spec.tenant.as_str() == tenant);
            if reused || running.contains(&app) {
                continue;
            }
            match self.inner.agent.purge(&tenant, &app).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(%tenant, %app, "deleted the volumes and logs of a purged app")
                }
                Err(e) => tracing::warn!(%tenant, %app, "cannot delete the volumes and logs: {e}"),
            }
        }
        Ok(())
    }

    pub(crate) fn remember_tenants(&self, apps: &[AppRecord]) {
        *lock(&self.inner.tenants) = apps
            .iter()
            .map(|a| (a.spec.name.to_string(), a.spec.tenant.to_string()))
            .collect();
        *lock(&self.inner.incarnations) = apps
            .iter()
            .map(|a| (a.spec.name.to_string(), a.id.clone()))
            .collect();
    }

    pub(crate) fn record_wiring_errors(&self, errors: &[vdc_agent::WiringError]) {
        *lock(&self.inner.wiring_errors) = errors
            .iter()
            .map(|e| {
                let key = match e {
                    vdc_agent::WiringError::Bind { key, .. }
                    | vdc_agent::WiringError::Moved { key, .. } => key.clone(),
                };
                tracing::warn!("{e}");
                (key, e.to_string())
            })
            .collect();
    }

    pub(crate) fn record_unplaced(&self, unplaced: Vec<vdc_scheduler::Unplaced>) {
        let mut per_app: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for u in unplaced {
            per_app
                .entry(u.instance.app.to_string())
                .or_default()
                .push(u.reason);
        }
        *lock(&self.inner.unplaced) = per_app;
    }

    /// Asks the local agent to run an instance of `app`; false when a link
    /// it needs has no listener yet (the next round tries again).
    pub(crate) fn start_instance(
        &self,
        app: &AppRecord,
        bindings: &[ListenerBinding],
        instance: InstanceId,
        revision: u64,
    ) -> bool {
        if lock(&self.inner.held).contains(&instance) {
            tracing::debug!(%instance, "held stopped while its volumes are restored");
            return false;
        }
        let Some(mut request) = start_request(app, bindings, instance, revision) else {
            return false;
        };
        request.platform = Some(vdc_agent::PlatformAccess {
            api: self.inner.instance_api,
            token: self.inner.instance_key.token_for(&request.id, &app.id),
        });
        self.inner.agent.start(request);
        true
    }

    pub(crate) fn placement_event(&self, instance: &InstanceId, reason: String) {
        let app = instance.app.as_str();
        self.inner.telemetry.event(
            EventKind::Placement,
            &self.tenant_of(app),
            app,
            Some(instance.component.as_str()),
            Some(&instance.to_string()),
            reason,
        );
    }

    /// Keeps an instance stopped (its starts are skipped) until
    /// [`ControlPlane::release`].
    pub(crate) fn hold(&self, instance: &InstanceId) -> bool {
        lock(&self.inner.held).insert(instance.clone())
    }

    /// Lets a held instance start again (nothing if it is not held).
    pub(crate) fn release(&self, instance: &InstanceId) {
        if lock(&self.inner.held).remove(instance) {
            self.wake();
        }
    }

    /// Drops everything kept about an app whose instances are all gone.
    pub(crate) async fn forget_app(&self, app: &vdc_spec::AppName) -> Result<(), StoreError> {
        tracing::info!(%app, "app taken down");
        let tenant = self.tenant_of(app.as_str());
        let purge = self
            .inner
            .store
            .app(app.as_str())
            .await?
            .is_some_and(|(record, _)| record.purge);
        if purge {
            // Every node deletes its volumes of the app when it sees this.
            self.inner
                .store
                .mark_purged(&tenant, app.as_str(), crate::telemetry::now_ms())
                .await?;
        }
        self.inner.store.delete_app(app.as_str()).await?;
        self.inner.telemetry.forget_app(app.as_str());
        self.inner.scaling.forget_app(app.as_str());
        self.inner.telemetry.event(
            EventKind::AppDown,
            &tenant,
            app.as_str(),
            None,
            None,
            "every instance stopped; the app is forgotten",
        );
        Ok(())
    }
}

/// Everything an agent needs to run one instance of `app`.
fn start_request(
    app: &AppRecord,
    bindings: &[ListenerBinding],
    instance: vdc_model::InstanceId,
    revision: u64,
) -> Option<StartInstance> {
    let component = app.spec.components.get(&instance.component)?.clone();
    let mut links = BTreeMap::new();
    for (link, target) in &component.links {
        let key = format!("{}/{}.{link}", app.spec.name, component.name);
        let binding = bindings.iter().find(|b| b.plan.key == key)?;
        let protocol = app.spec.link_input(target)?.protocol;
        links.insert(link.clone(), (binding.address, protocol));
    }
    Some(StartInstance {
        id: instance,
        tenant: app.spec.tenant.clone(),
        revision,
        component,
        links,
        platform: None,
        root_forbidden: app.root_forbidden,
    })
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lifecycle event a status change makes, if any, with its reason as a
/// sentence fragment a person reads in `vdc events`.
fn lifecycle_event(
    before: Option<InstanceState>,
    status: &InstanceStatus,
) -> Option<(EventKind, String)> {
    let why = |default: &str| status.message.clone().unwrap_or_else(|| default.to_owned());
    Some(match status.state {
        InstanceState::Starting if status.restarts > 0 => (
            EventKind::InstanceRestarted,
            format!(
                "restart {} (pid {}); the previous run {}",
                status.restarts,
                status.pid.unwrap_or(0),
                status
                    .last_exit
                    .as_deref()
                    .map_or_else(|| "ended".to_owned(), past_tense)
            ),
        ),
        InstanceState::Starting => (
            EventKind::InstanceStarted,
            format!("pid {} on node {}", status.pid.unwrap_or(0), status.node),
        ),
        InstanceState::Ready if before == Some(InstanceState::Unhealthy) => (
            EventKind::HealthChanged,
            "health checks pass again".to_owned(),
        ),
        InstanceState::Ready => (EventKind::InstanceReady, "health checks pass".to_owned()),
        InstanceState::Unhealthy => (EventKind::InstanceUnhealthy, why("health checks fail")),
        InstanceState::Backoff => (EventKind::InstanceExited, why("exited")),
        InstanceState::Stopped => (EventKind::InstanceStopped, "stopped".to_owned()),
        InstanceState::Pending | InstanceState::Stopping => return None,
    })
}

/// An exit as the driver words it ("exited with code 2", "killed by signal
/// 9 (SIGKILL)") after "the previous run": "was killed", not "killed".
fn past_tense(exit: &str) -> String {
    if exit.starts_with("killed") {
        format!("was {exit}")
    } else {
        exit.to_owned()
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use vdc_driver::ExitInfo;

    fn status(state: InstanceState, restarts: u32, last_exit: Option<ExitInfo>) -> InstanceStatus {
        InstanceStatus {
            image: None,
            id: "shop/web/0".parse().unwrap(),
            node: vdc_model::NodeId("n1".into()),
            state,
            revision: 1,
            pid: Some(4242),
            program_pid: None,
            locators: BTreeMap::new(),
            restarts,
            started_at_ms: None,
            since_ms: 0,
            isolation: vdc_model::Isolation::CONFINED,
            last_exit: last_exit.as_ref().map(|e| e.to_string()),
            message: last_exit.as_ref().map(|e| format!("{e}; restarting")),
        }
    }

    #[test]
    fn every_reason_reads_as_a_sentence() {
        let mut lines = Vec::new();
        for exit in [
            ExitInfo::code(2),
            ExitInfo::signal(9),
            ExitInfo::signal(15),
            ExitInfo::oom(),
        ] {
            for (before, s) in [
                (
                    Some(InstanceState::Ready),
                    status(InstanceState::Backoff, 0, Some(exit.clone())),
                ),
                (
                    Some(InstanceState::Backoff),
                    status(InstanceState::Starting, 1, Some(exit.clone())),
                ),
            ] {
                let (kind, reason) = lifecycle_event(before, &s).unwrap();
                lines.push(format!("{kind:?}: {reason}"));
            }
        }
        for (before, state) in [
            (None, InstanceState::Starting),
            (Some(InstanceState::Starting), InstanceState::Ready),
            (Some(InstanceState::Ready), InstanceState::Unhealthy),
            (Some(InstanceState::Unhealthy), InstanceState::Ready),
            (Some(InstanceState::Ready), InstanceState::Stopped),
        ] {
            let mut s = status(state, 0, None);
            if state == InstanceState::Unhealthy {
                s.message =
                    Some("health check of input `http` failed: GET /healthz answered 500".into());
            }
            let (kind, reason) = lifecycle_event(before, &s).unwrap();
            lines.push(format!("{kind:?}: {reason}"));
        }
        expect_test::expect![[r#"
            InstanceExited: exited with code 2; restarting
            InstanceRestarted: restart 1 (pid 4242); the previous run exited with code 2
            InstanceExited: killed by signal 9 (SIGKILL); restarting
            InstanceRestarted: restart 1 (pid 4242); the previous run was killed by signal 9 (SIGKILL)
            InstanceExited: killed by signal 15 (SIGTERM); restarting
            InstanceRestarted: restart 1 (pid 4242); the previous run was killed by signal 15 (SIGTERM)
            InstanceExited: killed by the kernel: out of memory; restarting
            InstanceRestarted: restart 1 (pid 4242); the previous run was killed by the kernel: out of memory
            InstanceStarted: pid 4242 on node n1
            InstanceReady: health checks pass
            InstanceUnhealthy: health check of input `http` failed: GET /healthz answered 500
            HealthChanged: health checks pass again
            InstanceStopped: stopped"#]].assert_eq(&lines.join("\n"));
        assert!(lifecycle_event(None, &status(InstanceState::Pending, 0, None)).is_none());
    }
}
