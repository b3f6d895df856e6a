//! `vdc move APP/COMPONENT/INDEX --to NODE`: an instance goes to another
//! node of the cluster, and its callers keep the address they use (links
//! and gateways balance over the pool, wherever the instance runs).
//!
//! A stateless instance moves make-before-break: its assignment names the
//! new node, which starts a copy; the old node stops its own once the new
//! one is ready (the same path a drain takes). No request fails.
//!
//! A stateful instance takes its volumes along, in two passes so that the
//! downtime covers only what changed:
//!
//! | phase | who acts | what it does |
//! | --- | --- | --- |
//! | `requested` | `from` | snapshot while running, upload its blobs |
//! | `staged` | `to` | download, lay it out as the instance's volumes |
//! | `seeded` | `from` | stop the instance (held stopped), snapshot the delta, upload |
//! | `stopped` | `to` | download the delta, restore, take the assignment |
//! | `switched` | `to` | done once the instance is ready there |
//!
//! Snapshot blobs travel through the cluster's JetStream object store
//! (bucket `vdc-snapshots`): a blob already there is not sent again, and
//! every blob is checked against its hash when it lands. Each node acts in
//! its round (woken by a watch on the `Moves` bucket) and advances the
//! record with compare-and-set; a step that fails marks the move `failed`
//! with why, and the old node runs the instance again with its own data.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use vdc_model::{Assignment, InstanceId, InstanceState, MovePhase, MoveRecord, NodeId, NodeState};
use vdc_snapshot::{SnapshotError, SnapshotMeta, SnapshotStore};
use vdc_store::{wall_ms, StoreError};
use vdc_telemetry::EventKind;

use crate::api::{find_app, ApiError};
use crate::auth::Principal;
use crate::control::lock;
use crate::ControlPlane;

/// The object store bucket snapshot blobs travel through.
pub(crate) const OBJECTS: &str = "vdc-snapshots";

/// What this node is doing for moves: one task per instance at a time.
#[derive(Default)]
pub(crate) struct Moving {
    busy: Mutex<BTreeSet<String>>,
}

/// `POST /v1/moves`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveRequest {
    /// `APP/COMPONENT/INDEX`.
    instance: String,
    to: String,
}

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/moves", post(request_move))
        .route("/v1/moves/{app}/{component}/{index}", get(show_move))
}

/// Opens (or creates) the object store blobs travel through.
pub(crate) async fn objects(client: async_nats::Client) -> Result<ObjectStore, String> {
    let js = async_nats::jetstream::new(client);
    if let Ok(store) = js.get_object_store(OBJECTS).await {
        return Ok(store);
    }
    match js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: OBJECTS.to_owned(),
            description: Some("vdc snapshot blobs and manifests".to_owned()),
            ..Default::default()
        })
        .await
    {
        Ok(store) => Ok(store),
        // Another node created it meanwhile.
        Err(e) => js
            .get_object_store(OBJECTS)
            .await
            .map_err(|_| format!("cannot create the object store {OBJECTS}: {e}")),
    }
}

// === API ===

async fn request_move(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<MoveRequest>,
) -> Result<(StatusCode, Json<MoveRecord>), ApiError> {
    let Some(cluster) = control.cluster() else {
        return Err(ApiError::BadRequest(
            "this server runs alone: an instance can only move between nodes of a cluster (vdc server --nats)".to_owned(),
        ));
    };
    let id: InstanceId = request.instance.parse().map_err(|e| {
        ApiError::BadRequest(format!(
            "`{}` is not an instance: expected APP/COMPONENT/INDEX ({e})",
            request.instance
        ))
    })?;
    let (record, _) = find_app(&control, &principal, id.app.as_str()).await?;
    let component = record
        .spec
        .components
        .get(&id.component)
        .ok_or_else(|| ApiError::NotFound(format!("no instance {id}")))?;
    let key = id.to_string();
    let (assignment, _) = control
        .store()
        .assignment(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{id} is not placed on any node")))?;
    let to = NodeId(request.to.clone());
    if assignment.node == to {
        return Err(ApiError::Conflict(format!("{id} already runs on {to}")));
    }
    let now = wall_ms();
    let node = control
        .store()
        .node(&to.0)
        .await?
        .map(|(n, _)| n)
        .ok_or_else(|| ApiError::NotFound(format!("no node named `{to}`")))?;
    match node.state(now, cluster.timeout_ms()) {
        NodeState::Ready => {}
        state => {
            return Err(ApiError::Conflict(format!(
                "node {to} is {state}: it takes no instances"
            )))
        }
    }
    for (key, value) in &component.placement.labels {
        if node.info.labels.get(key) != Some(value) {
            return Err(ApiError::Conflict(format!(
                "node {to} does not have the label {key}={value} that component `{}` needs",
                id.component
            )));
        }
    }
    let existing = control.store().move_record(&key).await?;
    if let Some((m, _)) = &existing {
        if !m.phase.is_over() {
            return Err(ApiError::Conflict(format!(
                "{id} is already moving from {} to {} ({:?})",
                m.from, m.to, m.phase
            )));
        }
    }
    let record = MoveRecord::requested(
        key.clone(),
        assignment.node.clone(),
        to,
        !component.volumes.is_empty(),
        now,
    );
    match control
        .store()
        .put_move(&record, existing.map(|(_, rev)| rev))
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::Conflict(format!(
                "{id} was asked to move by someone else just now"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    control.telemetry().event(
        EventKind::Placement,
        record_tenant(&control, &id).as_str(),
        id.app.as_str(),
        Some(id.component.as_str()),
        Some(&key),
        format!(
            "moving from {} to {}{}",
            record.from,
            record.to,
            if record.stateful {
                " with its volumes"
            } else {
                ""
            }
        ),
    );
    Ok((StatusCode::ACCEPTED, Json(record)))
}

async fn show_move(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path((app, component, index)): Path<(String, String, u32)>,
) -> Result<Json<MoveRecord>, ApiError> {
    find_app(&control, &principal, &app).await?;
    let key = format!("{app}/{component}/{index}");
    control
        .store()
        .move_record(&key)
        .await?
        .map(|(m, _)| Json(m))
        .ok_or_else(|| ApiError::NotFound(format!("{key} was never moved")))
}

/// How long after a failed move the leader tries again to move an instance
/// off a draining node.
const RETRY_AFTER_MS: u64 = 30_000;

/// The leader's drain of an instance with volumes: a move to `to` (the
/// node the scheduler chose), unless one is under way or failed just now.
pub(crate) async fn move_off_draining(
    control: &ControlPlane,
    id: &InstanceId,
    from: &NodeId,
    to: &NodeId,
    now: u64,
) -> Result<(), StoreError> {
    let key = id.to_string();
    let existing = control.store().move_record(&key).await?;
    if let Some((m, _)) = &existing {
        let failed_lately =
            m.phase == MovePhase::Failed && now.saturating_sub(m.requested_ms) < RETRY_AFTER_MS;
        if !m.phase.is_over() || failed_lately {
            return Ok(());
        }
    }
    let record = MoveRecord::requested(key, from.clone(), to.clone(), true, now);
    match control
        .store()
        .put_move(&record, existing.map(|(_, rev)| rev))
        .await
    {
        Ok(_) => {
            announce(control, &record);
            Ok(())
        }
        // Someone else wrote it first: theirs stands.
        Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn record_tenant(control: &ControlPlane, id: &InstanceId) -> String {
    control.tenant_of(id.app.as_str())
}

// === the node's part ===

/// Starts this node's part of every move that waits on it. Called from the
/// node's round; each step runs in its own task, one per instance.
pub(crate) async fn advance(control: &ControlPlane) -> Result<(), StoreError> {
    let Some(cluster) = control.cluster() else {
        return Ok(());
    };
    let me = control.agent().node().id.clone();
    for (record, revision) in control.store().moves().await? {
        // Once the instance is assigned elsewhere (or the move failed), the
        // old node no longer holds it stopped.
        if record.from == me
            && matches!(
                record.phase,
                MovePhase::Switched | MovePhase::Done | MovePhase::Failed
            )
        {
            if let Ok(id) = record.instance.parse::<InstanceId>() {
                control.release(&id);
            }
        }
        let mine = match record.phase {
            MovePhase::Requested | MovePhase::Seeded => record.from == me,
            MovePhase::Staged | MovePhase::Stopped | MovePhase::Switched => record.to == me,
            MovePhase::Done | MovePhase::Failed => false,
        };
        if !mine {
            continue;
        }
        if !lock(&cluster.moving.busy).insert(record.instance.clone()) {
            continue;
        }
        let control = control.clone();
        tokio::spawn(async move {
            let instance = record.instance.clone();
            let outcome = step(&control, record.clone()).await;
            let next = match outcome {
                Ok(Some(next)) => Some(next),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%instance, "move failed: {error}");
                    let mut failed = record.clone();
                    failed.phase = MovePhase::Failed;
                    failed.error = Some(error);
                    Some(failed)
                }
            };
            if let Some(next) = next {
                match control.store().put_move(&next, Some(revision)).await {
                    Ok(_) => announce(&control, &next),
                    Err(e) => tracing::warn!(%instance, "cannot advance the move: {e}"),
                }
            }
            if let Some(cluster) = control.cluster() {
                lock(&cluster.moving.busy).remove(&instance);
            }
        });
    }
    Ok(())
}

/// One step of a move on this node: the record's next state, or `None`
/// when there is nothing to do yet.
async fn step(
    control: &ControlPlane,
    mut record: MoveRecord,
) -> Result<Option<MoveRecord>, String> {
    let id: InstanceId = record
        .instance
        .parse()
        .map_err(|e| format!("`{}` is not an instance: {e}", record.instance))?;
    let objects = control
        .cluster()
        .and_then(|c| c.objects.clone())
        .ok_or("the cluster's object store is not reachable from this node")?;
    match record.phase {
        MovePhase::Requested if !record.stateful => {
            switch(control, &id, &record.to).await?;
            record.phase = MovePhase::Switched;
            Ok(Some(record))
        }
        MovePhase::Requested => {
            let tenant = control.owner_of(id.app.as_str()).await?;
            let taken = crate::snapshots::take(control, &tenant, &id, None, "move")
                .await
                .map_err(|e| format!("cannot snapshot {id} on {}: {}", record.from, e.message()))?;
            upload(control.snapshots(), &objects, &taken.snapshot.id).await?;
            record.snapshots.push(taken.snapshot.id);
            record.phase = MovePhase::Staged;
            Ok(Some(record))
        }
        MovePhase::Staged => {
            let snapshot = record
                .snapshots
                .last()
                .cloned()
                .ok_or("no snapshot to stage")?;
            download(control.snapshots(), &objects, &snapshot).await?;
            restore(control, &snapshot, None, &id).await?;
            record.phase = MovePhase::Seeded;
            Ok(Some(record))
        }
        MovePhase::Seeded => {
            // From here the instance is down until it is ready on `to`.
            control.hold(&id);
            let agent = control.agent();
            agent.stop_now(&id);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while agent.instances().iter().any(|s| s.id == id) {
                if tokio::time::Instant::now() > deadline {
                    control.release(&id);
                    return Err(format!("{id} did not stop within 2 minutes"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            record.stopped_ms = Some(wall_ms());
            let manifest = capture_stopped(control, &id).await?;
            upload(control.snapshots(), &objects, &manifest).await?;
            record.snapshots.push(manifest);
            record.phase = MovePhase::Stopped;
            Ok(Some(record))
        }
        MovePhase::Stopped => {
            let snapshot = record
                .snapshots
                .last()
                .cloned()
                .ok_or("no final snapshot")?;
            download(control.snapshots(), &objects, &snapshot).await?;
            // Files unchanged since the first pass are linked, not copied:
            // the downtime follows what changed.
            restore(control, &snapshot, record.snapshots.first().cloned(), &id).await?;
            switch(control, &id, &record.to).await?;
            record.phase = MovePhase::Switched;
            Ok(Some(record))
        }
        MovePhase::Switched => {
            let ready = control
                .agent()
                .instances()
                .iter()
                .any(|s| s.id == id && s.state == InstanceState::Ready);
            if !ready {
                return Ok(None);
            }
            let now = wall_ms();
            record.downtime_ms = Some(record.stopped_ms.map_or(0, |s| now.saturating_sub(s)));
            record.phase = MovePhase::Done;
            Ok(Some(record))
        }
        MovePhase::Done | MovePhase::Failed => Ok(None),
    }
}

/// Points the instance's assignment at `to`, keeping its revision.
async fn switch(control: &ControlPlane, id: &InstanceId, to: &NodeId) -> Result<(), String> {
    let key = id.to_string();
    for _ in 0..10 {
        let (assignment, revision) = control
            .store()
            .assignment(&key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{id} is no longer placed"))?;
        let moved = Assignment {
            node: to.clone(),
            revision: assignment.revision,
            at_ms: wall_ms(),
        };
        match control
            .store()
            .cas_assignment(&key, &moved, Some(revision))
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("the assignment of {id} kept changing"))
}

/// Snapshots a stopped instance's volumes: nothing writes to them, so the
/// store reads them in place (no freeze, no staging copy), and chunks it
/// already has from the first pass are only hashed.
async fn capture_stopped(control: &ControlPlane, id: &InstanceId) -> Result<String, String> {
    let tenant = control.owner_of(id.app.as_str()).await?;
    let volumes = control.agent().volumes_dir(&tenant, id);
    let meta = SnapshotMeta {
        tenant,
        app: id.app.to_string(),
        component: id.component.to_string(),
        index: id.index,
        volume: String::new(),
        name: None,
        created_ms: wall_ms(),
        frozen_ms: 0,
        node: control.agent().node().id.0.clone(),
        kind: "move".to_owned(),
    };
    let store = control.snapshots().clone();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&volumes).map_err(|e| e.to_string())?;
        store
            .capture(&volumes, meta)
            .map(|m| m.id)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?;
    result.map_err(|e| format!("cannot snapshot the stopped {id}: {e}"))
}

/// Lays out a local snapshot as the instance's volumes on this node; over
/// `base` (the first pass, which the volumes hold) when given.
async fn restore(
    control: &ControlPlane,
    snapshot: &str,
    base: Option<String>,
    id: &InstanceId,
) -> Result<(), String> {
    let tenant = control.owner_of(id.app.as_str()).await?;
    let volumes = control.agent().volumes_dir(&tenant, id);
    control
        .agent()
        .unmount_volumes(&tenant, id)
        .await
        .map_err(|e| format!("cannot unmount the volumes of {id}: {e}"))?;
    let store = control.snapshots().clone();
    let snapshot = snapshot.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = volumes.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        match base {
            Some(base) if volumes.exists() => store.restore_over(&snapshot, &volumes, &base),
            _ => store.restore(&snapshot, &volumes),
        }
        .map(drop)
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot restore the volumes of {id}: {e}"))
}

/// Sends a local snapshot's blobs (those the object store lacks) and its
/// manifest to the object store.
pub(crate) async fn upload(
    store: &Arc<SnapshotStore>,
    objects: &ObjectStore,
    id: &str,
) -> Result<(), String> {
    let manifest = {
        let (store, id) = (store.clone(), id.to_owned());
        blocking(move || store.find(&id)).await?
    };
    let hashes: BTreeSet<String> = manifest.chunks().map(|c| c.hash.clone()).collect();
    for hash in hashes {
        let name = format!("blob.{hash}");
        if objects.info(&name).await.is_ok() {
            continue;
        }
        let bytes = {
            let (store, hash) = (store.clone(), hash.clone());
            blocking(move || store.read_blob(&hash)).await?
        };
        objects
            .put(name.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| format!("cannot upload blob {hash}: {e}"))?;
    }
    let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    objects
        .put(
            format!("manifest.{}", manifest.id).as_str(),
            &mut json.as_slice(),
        )
        .await
        .map_err(|e| format!("cannot upload manifest {}: {e}", manifest.id))?;
    Ok(())
}

/// Fetches a snapshot from the object store into the local store: the
/// blobs it lacks (each checked against its hash), then the manifest
/// (checked against its id).
pub(crate) async fn download(
    store: &Arc<SnapshotStore>,
    objects: &ObjectStore,
    id: &str,
) -> Result<(), String> {
    let manifest_bytes = fetch(objects, &format!("manifest.{id}")).await?;
    let manifest: vdc_snapshot::Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("manifest {id} from the object store is not valid: {e}"))?;
    let hashes: BTreeSet<String> = manifest.chunks().map(|c| c.hash.clone()).collect();
    for hash in hashes {
        if store.has_blob(&hash) {
            continue;
        }
        let bytes = fetch(objects, &format!("blob.{hash}")).await?;
        let (store, hash) = (store.clone(), hash.clone());
        blocking(move || store.write_blob(&hash, &bytes)).await?;
    }
    let store = store.clone();
    blocking(move || store.write_manifest(&manifest)).await
}

pub(crate) async fn fetch(objects: &ObjectStore, name: &str) -> Result<Vec<u8>, String> {
    let mut object = objects
        .get(name)
        .await
        .map_err(|e| format!("cannot fetch {name} from the object store: {e}"))?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read {name} from the object store: {e}"))?;
    Ok(bytes)
}

/// [`crate::snapshots::blocking`], with the error as text.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, String> {
    crate::snapshots::blocking(f).await.map_err(|e| e.message())
}

fn announce(control: &ControlPlane, record: &MoveRecord) {
    let Ok(id) = record.instance.parse::<InstanceId>() else {
        return;
    };
    let reason = match record.phase {
        MovePhase::Done => format!(
            "moved from {} to {}; down {} ms",
            record.from,
            record.to,
            record.downtime_ms.unwrap_or(0)
        ),
        MovePhase::Failed => format!(
            "move from {} to {} failed: {}",
            record.from,
            record.to,
            record.error.as_deref().unwrap_or("unknown")
        ),
        phase => format!("move from {} to {}: {phase:?}", record.from, record.to).to_lowercase(),
    };
    control.telemetry().event(
        EventKind::Placement,
        &control.tenant_of(id.app.as_str()),
        id.app.as_str(),
        Some(id.component.as_str()),
        Some(&record.instance),
        reason,
    );
}
