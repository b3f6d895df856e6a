//! Snapshots of instances' volumes, taken from the host: nothing runs inside
//! the workload. A snapshot freezes the instance (the cgroup freezer, or
//! SIGSTOP of its process group), copies its volumes aside (a reflink per
//! file where the filesystem has them), thaws it, and only then hashes,
//! compresses and stores the copy in the node's content-addressed store
//! (`DATA_DIR/snapshots`). A restore checks every chunk first, then stops
//! the instance, swaps the restored directory in, and starts it again.
//!
//! Scheduled backups (`backup = { every, keep }` in the spec) are taken by
//! the node running each instance, with the same code, and pruned to `keep`.
//!
//! Snapshots live on the node that took them: the API of a server on that
//! node takes, restores, exports and deletes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use vdc_api::{RestoreRequest, Restored, SnapshotRequest, SnapshotSummary, SnapshotTaken};
use vdc_model::{InstanceId, InstanceState};
use vdc_snapshot::{Entry, Manifest, SnapshotError, SnapshotMeta, SnapshotStore};
use vdc_telemetry::EventKind;

use crate::api::{find_app, ApiError};
use crate::auth::Principal;
use crate::ControlPlane;

/// How long an instance may take to freeze before the snapshot gives up.
const FREEZE_WITHIN: Duration = Duration::from_secs(10);

/// How long a restore waits for the restarted instance to be ready before
/// answering anyway.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The longest a restore may be asked to wait for readiness.
const READY_AT_MOST: Duration = Duration::from_secs(600);

/// How long a restore waits for its instance to be ready again.
pub(crate) fn ready_within(timeout_ms: Option<u64>) -> Duration {
    timeout_ms.map_or(READY_WITHIN, |ms| {
        Duration::from_millis(ms).min(READY_AT_MOST)
    })
}

/// How often the backup loop looks for backups that are due.
const BACKUP_CHECK: Duration = Duration::from_secs(1);

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/snapshots", get(list).post(create))
        .route("/v1/snapshots/import", post(import))
        .route("/v1/snapshots/{snapshot}", get(show).delete(delete))
        .route("/v1/snapshots/{snapshot}/restore", post(restore))
        .route("/v1/snapshots/{snapshot}/export", get(export))
}

/// Opens the node's snapshot store.
pub(crate) fn open(data_dir: &std::path::Path) -> Result<Arc<SnapshotStore>, SnapshotError> {
    SnapshotStore::open(&data_dir.join("snapshots")).map(Arc::new)
}

// === taking snapshots ===

/// Takes a snapshot of `id`'s volumes on this node.
pub(crate) async fn take(
    control: &ControlPlane,
    tenant: &str,
    id: &InstanceId,
    name: Option<String>,
    kind: &str,
) -> Result<SnapshotTaken, ApiError> {
    let started = Instant::now();
    let agent = control.agent();
    if !agent.instances().iter().any(|s| &s.id == id) {
        return Err(not_here(control, id));
    }
    let volumes = agent.volumes_dir(tenant, id);
    let staging = control.snapshots().root().join("staging").join(format!(
        "{}-{}",
        id.slug(),
        crate::telemetry::now_ms()
    ));
    if let Some(parent) = staging.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", parent.display())))?;
    }
    // Frozen from here to the thaw: only the copy happens meanwhile.
    let method = agent
        .freeze(id, FREEZE_WITHIN)
        .await
        .map_err(|e| ApiError::Conflict(format!("cannot freeze {id}: {e}")))?;
    let frozen_at = Instant::now();
    let staged = {
        let (volumes, staging) = (volumes.clone(), staging.clone());
        tokio::task::spawn_blocking(move || {
            if volumes.exists() {
                vdc_snapshot::stage(&volumes, &staging)
            } else {
                // An instance that has not written its volumes yet.
                std::fs::create_dir_all(&staging)
                    .map(|()| vdc_snapshot::StageReport::default())
                    .map_err(|source| SnapshotError::Io {
                        path: staging.clone(),
                        op: "create the staging directory",
                        source,
                    })
            }
        })
        .await
    };
    let thawed = agent.thaw(id, method).await;
    let frozen = frozen_at.elapsed();
    let cleanup = |staging: PathBuf| async move {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(staging)).await;
    };
    let staged = match staged {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            cleanup(staging).await;
            return Err(ApiError::Internal(format!(
                "cannot copy the volumes of {id}: {e}"
            )));
        }
        Err(e) => {
            cleanup(staging).await;
            return Err(ApiError::Internal(format!(
                "cannot copy the volumes of {id}: {e}"
            )));
        }
    };
    if let Err(e) = thawed {
        tracing::error!(instance = %id, "cannot thaw after a snapshot: {e}");
    }

    let component = control
        .store()
        .app(id.app.as_str())
        .await?
        .and_then(|(record, _)| record.spec.components.get(&id.component).cloned());
    let meta = SnapshotMeta {
        tenant: tenant.to_owned(),
        app: id.app.to_string(),
        component: id.component.to_string(),
        index: id.index,
        volume: component
            .map(|c| {
                c.volumes
                    .keys()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        name,
        created_ms: crate::telemetry::now_ms(),
        frozen_ms: millis(frozen),
        node: agent.node().id.0.clone(),
        kind: kind.to_owned(),
    };
    let captured = {
        let (store, staging) = (control.snapshots().clone(), staging.clone());
        tokio::task::spawn_blocking(move || store.capture(&staging, meta)).await
    };
    cleanup(staging).await;
    let manifest = match captured {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(snapshot_error(e)),
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "cannot store the snapshot: {e}"
            )))
        }
    };
    // In a cluster the snapshot is also kept in the cluster's object store,
    // so any node can restore it, even after this one is gone.
    let shared = match control.cluster().and_then(|c| c.objects.clone()) {
        Some(objects) => {
            match crate::moves::upload(control.snapshots(), &objects, &manifest.id).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(instance = %id, "snapshot kept on this node only: {e}");
                    false
                }
            }
        }
        None => false,
    };
    let summary = summary(&manifest);
    let freeze = match method {
        vdc_driver::FreezeMethod::CgroupFreezer => "cgroup-freezer",
        vdc_driver::FreezeMethod::Sigstop => "sigstop",
    };
    control.telemetry().event(
        EventKind::Snapshot,
        tenant,
        id.app.as_str(),
        Some(id.component.as_str()),
        Some(&id.to_string()),
        format!(
            "{kind} snapshot {}: {} file(s), {} stored; frozen {} ms ({freeze}, {}){}",
            short(&manifest.id),
            summary.files,
            human_bytes(summary.stored_bytes),
            summary.frozen_ms,
            if staged.reflinked { "reflink" } else { "copy" },
            if shared {
                "; in the cluster's object store"
            } else {
                ""
            },
        ),
    );
    Ok(SnapshotTaken {
        snapshot: summary,
        freeze: freeze.to_owned(),
        reflinked: staged.reflinked,
        total_ms: millis(started.elapsed()),
    })
}

async fn create(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<SnapshotRequest>,
) -> Result<(StatusCode, Json<SnapshotTaken>), ApiError> {
    let (id, tenant) = target(&control, &principal, &request.target).await?;
    if let Some(node) = elsewhere(&control, &id).await? {
        // Its volumes are on another node: that node takes the snapshot.
        let answer = crate::tasks::run_on(
            &control,
            &node,
            vdc_model::TaskRequest::Snapshot {
                instance: id.to_string(),
                name: request.name.clone(),
            },
        )
        .await?;
        let taken: SnapshotTaken = serde_json::from_value(answer)
            .map_err(|e| ApiError::Internal(format!("node {node} answered oddly: {e}")))?;
        return Ok((StatusCode::CREATED, Json(taken)));
    }
    if let Some(name) = &request.name {
        check_name(name)?;
        let store = control.snapshots().clone();
        let taken = {
            let name = name.clone();
            blocking(move || {
                Ok(store
                    .list()?
                    .into_iter()
                    .any(|m| m.meta.name.as_deref() == Some(name.as_str())))
            })
            .await?
        };
        if taken {
            return Err(ApiError::Conflict(format!(
                "a snapshot is already named `{name}`"
            )));
        }
    }
    let taken = take(&control, &tenant, &id, request.name, "manual").await?;
    Ok((StatusCode::CREATED, Json(taken)))
}

// === reading ===

#[derive(Deserialize)]
struct ListQuery {
    app: Option<String>,
}

async fn list(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<SnapshotSummary>>, ApiError> {
    let store = control.snapshots().clone();
    let mut all = blocking(move || store.list()).await?;
    if let Some(objects) = control.cluster().and_then(|c| c.objects.clone()) {
        let local: std::collections::BTreeSet<String> = all.iter().map(|m| m.id.clone()).collect();
        for id in shared_ids(&objects).await? {
            if local.contains(&id) {
                continue;
            }
            let Ok(bytes) = crate::moves::fetch(&objects, &format!("manifest.{id}")).await else {
                continue;
            };
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                if m.compute_id() == m.id {
                    all.push(m);
                }
            }
        }
        all.sort_by_key(|m| std::cmp::Reverse(m.meta.created_ms));
    }
    Ok(Json(
        all.iter()
            .filter(|m| principal.sees(&m.meta.tenant))
            .filter(|m| q.app.as_deref().is_none_or(|a| a == m.meta.app))
            .map(summary)
            .collect(),
    ))
}

async fn show(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<SnapshotSummary>, ApiError> {
    let manifest = find(&control, &principal, &key).await?;
    Ok(Json(summary(&manifest)))
}

async fn delete(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let manifest = find(&control, &principal, &key).await?;
    let store = control.snapshots().clone();
    let id = manifest.id.clone();
    blocking(move || store.delete(&id)).await?;
    if let Some(objects) = control.cluster().and_then(|c| c.objects.clone()) {
        // Its blobs stay: other snapshots may share them.
        let _ = objects.delete(format!("manifest.{}", manifest.id)).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A snapshot the principal may see, by id, unique id prefix or name.
async fn find(
    control: &ControlPlane,
    principal: &Principal,
    key: &str,
) -> Result<Manifest, ApiError> {
    let manifest = find_any(control, key).await?;
    if !principal.sees(&manifest.meta.tenant) {
        return Err(ApiError::NotFound(format!("no snapshot `{key}`")));
    }
    Ok(manifest)
}

/// A snapshot on this node, or brought from the cluster's object store.
pub(crate) async fn find_any(control: &ControlPlane, key: &str) -> Result<Manifest, ApiError> {
    let store = control.snapshots().clone();
    let owned = key.to_owned();
    let manifest = match blocking(move || store.find(&owned)).await {
        Ok(m) => m,
        // Not on this node: a cluster keeps snapshots in its object store.
        Err(ApiError::NotFound(_)) if control.cluster().is_some_and(|c| c.objects.is_some()) => {
            fetch_shared(control, key).await?
        }
        Err(e) => return Err(e),
    };
    Ok(manifest)
}

/// The node an instance is assigned to, when it is not this one (a
/// cluster only).
async fn elsewhere(
    control: &ControlPlane,
    id: &InstanceId,
) -> Result<Option<vdc_model::NodeId>, ApiError> {
    if control.cluster().is_none() {
        return Ok(None);
    }
    let me = &control.agent().node().id;
    Ok(control
        .store()
        .assignment(&id.to_string())
        .await?
        .map(|(a, _)| a.node)
        .filter(|node| node != me))
}

/// Brings a snapshot of the cluster's object store to this node, by full id
/// or unique id prefix.
async fn fetch_shared(control: &ControlPlane, key: &str) -> Result<Manifest, ApiError> {
    let Some(objects) = control.cluster().and_then(|c| c.objects.clone()) else {
        return Err(ApiError::NotFound(format!("no snapshot `{key}`")));
    };
    let ids = shared_ids(&objects).await?;
    let key_lower = key.to_ascii_lowercase();
    let mut matching: Vec<String> = ids
        .iter()
        .filter(|id| key_lower.len() >= 6 && id.starts_with(&key_lower))
        .cloned()
        .collect();
    if matching.is_empty() {
        // By name: the names are in the manifests.
        for id in &ids {
            let Ok(bytes) = crate::moves::fetch(&objects, &format!("manifest.{id}")).await else {
                continue;
            };
            if serde_json::from_slice::<Manifest>(&bytes)
                .is_ok_and(|m| m.meta.name.as_deref() == Some(key))
            {
                matching.push(id.clone());
            }
        }
    }
    let id = match matching.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ApiError::NotFound(format!(
                "no snapshot `{key}` on this node or in the cluster"
            )))
        }
        many => {
            return Err(ApiError::BadRequest(format!(
                "`{key}` matches {} snapshots in the cluster: give more of the id",
                many.len()
            )))
        }
    };
    crate::moves::download(control.snapshots(), &objects, &id)
        .await
        .map_err(ApiError::Unprocessable)?;
    let store = control.snapshots().clone();
    blocking(move || store.find(&id)).await
}

/// The ids of the snapshots in the cluster's object store.
async fn shared_ids(
    objects: &async_nats::jetstream::object_store::ObjectStore,
) -> Result<Vec<String>, ApiError> {
    let mut list = objects
        .list()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot list the cluster's snapshots: {e}")))?;
    let mut ids = Vec::new();
    while let Some(info) = list.next().await {
        let info = info
            .map_err(|e| ApiError::Internal(format!("cannot list the cluster's snapshots: {e}")))?;
        if info.deleted {
            continue;
        }
        if let Some(id) = info.name.strip_prefix("manifest.") {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

// === restoring ===

async fn restore(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    body: Option<Json<RestoreRequest>>,
) -> Result<Json<Restored>, ApiError> {
    let request = body.map(|Json(r)| r).unwrap_or_default();
    let manifest = find(&control, &principal, &key).await?;
    let target_name = request.to.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/{}",
            manifest.meta.app, manifest.meta.component, manifest.meta.index
        )
    });
    let (id, tenant) = target(&control, &principal, &target_name).await?;
    if manifest.meta.tenant != tenant {
        // A snapshot is its tenant's data: never another tenant's volumes,
        // whoever asks (the admin included).
        return Err(ApiError::Conflict(format!(
            "snapshot {} belongs to another tenant than `{}`: a snapshot is restored into its own tenant's apps only",
            short(&manifest.id),
            id.app
        )));
    }
    if let Some(node) = elsewhere(&control, &id).await? {
        let answer = crate::tasks::run_on(
            &control,
            &node,
            vdc_model::TaskRequest::Restore {
                snapshot: manifest.id.clone(),
                instance: id.to_string(),
                timeout_ms: request.timeout_ms,
            },
        )
        .await?;
        let restored: Restored = serde_json::from_value(answer)
            .map_err(|e| ApiError::Internal(format!("node {node} answered oddly: {e}")))?;
        return Ok(Json(restored));
    }
    let restored = restore_into(
        &control,
        &manifest,
        &tenant,
        &id,
        ready_within(request.timeout_ms),
    )
    .await?;
    control.telemetry().event(
        EventKind::Snapshot,
        &tenant,
        id.app.as_str(),
        Some(id.component.as_str()),
        Some(&id.to_string()),
        format!(
            "restored snapshot {}: {} file(s), {}; down {} ms",
            short(&manifest.id),
            restored.files,
            human_bytes(restored.bytes),
            restored.downtime_ms
        ),
    );
    Ok(Json(restored))
}

/// Replaces `id`'s volumes with the snapshot: verify everything first (a
/// corrupted snapshot changes nothing), stop the instance and keep it
/// stopped, swap the restored directory in, let it start again.
pub(crate) async fn restore_into(
    control: &ControlPlane,
    manifest: &Manifest,
    tenant: &str,
    id: &InstanceId,
    ready_within: Duration,
) -> Result<Restored, ApiError> {
    {
        let store = control.snapshots().clone();
        let snapshot = manifest.id.clone();
        blocking(move || store.verify(&snapshot)).await?;
    }
    if !control.hold(id) {
        return Err(ApiError::Conflict(format!(
            "{id} is already being restored"
        )));
    }
    let result = swap_in(control, manifest, tenant, id).await;
    control.release(id);
    let (report, stopped_at, was_running) = result?;
    let ready = if was_running {
        wait_ready(control, id, ready_within).await
    } else {
        false
    };
    Ok(Restored {
        snapshot: manifest.id.clone(),
        instance: id.to_string(),
        files: report.files,
        bytes: report.bytes,
        downtime_ms: millis(stopped_at.elapsed()),
        ready,
    })
}

/// Stops `id` (held by the caller) and restores into its volumes.
async fn swap_in(
    control: &ControlPlane,
    manifest: &Manifest,
    tenant: &str,
    id: &InstanceId,
) -> Result<(vdc_snapshot::RestoreReport, Instant, bool), ApiError> {
    let agent = control.agent();
    let stopped_at = Instant::now();
    let was_running = agent.instances().iter().any(|s| &s.id == id);
    if was_running {
        agent.stop_now(id);
        let deadline = Instant::now() + Duration::from_secs(120);
        while agent.instances().iter().any(|s| &s.id == id) {
            if Instant::now() > deadline {
                return Err(ApiError::Internal(format!(
                    "{id} did not stop within 2 minutes; nothing was restored"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let volumes = agent.volumes_dir(tenant, id);
    if let Some(parent) = volumes.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", parent.display())))?;
    }
    // Sized volumes are images mounted there: the restore writes plain
    // directories, which the next start takes into the images.
    agent
        .unmount_volumes(tenant, id)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot unmount the volumes of {id}: {e}")))?;
    let store = control.snapshots().clone();
    let snapshot = manifest.id.clone();
    let report = blocking(move || store.restore(&snapshot, &volumes)).await?;
    Ok((report, stopped_at, was_running))
}

/// Waits until `id` runs and is ready again.
async fn wait_ready(control: &ControlPlane, id: &InstanceId, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if control
            .agent()
            .instances()
            .iter()
            .any(|s| &s.id == id && s.state == InstanceState::Ready)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// === export and import ===

async fn export(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let manifest = find(&control, &principal, &key).await?;
    // Written to a file first: the format ends with a checksum of all of it,
    // and the body then streams from disk whatever the snapshot's size.
    let file = control.snapshots().root().join("staging").join(format!(
        "export-{}-{}",
        short(&manifest.id),
        crate::telemetry::now_ms()
    ));
    {
        let (store, file, id) = (
            control.snapshots().clone(),
            file.clone(),
            manifest.id.clone(),
        );
        blocking(move || {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|source| SnapshotError::Io {
                    path: parent.to_path_buf(),
                    op: "create the staging directory",
                    source,
                })?;
            }
            let out = std::fs::File::create(&file).map_err(|source| SnapshotError::Io {
                path: file.clone(),
                op: "create the export file",
                source,
            })?;
            let mut out = std::io::BufWriter::new(out);
            store.export(&id, &mut out)?;
            std::io::Write::flush(&mut out).map_err(|source| SnapshotError::Io {
                path: file.clone(),
                op: "write the export file",
                source,
            })
        })
        .await?;
    }
    let opened = tokio::fs::File::open(&file)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot open {}: {e}", file.display())))?;
    // The open file stays readable after its name is gone.
    let _ = tokio::fs::remove_file(&file).await;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.vdcsnap\"", short(&manifest.id)),
            ),
        ],
        body,
    )
        .into_response())
}

async fn import(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    body: Body,
) -> Result<(StatusCode, Json<SnapshotSummary>), ApiError> {
    let file = control
        .snapshots()
        .root()
        .join("staging")
        .join(format!("import-{}", crate::telemetry::now_ms()));
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", parent.display())))?;
    }
    let written = receive(body, &file).await;
    let result = match written {
        Ok(()) => {
            let (store, path) = (control.snapshots().clone(), file.clone());
            blocking(move || {
                let input = std::fs::File::open(&path).map_err(|source| SnapshotError::Io {
                    path: path.clone(),
                    op: "open the uploaded file",
                    source,
                })?;
                store.import(&mut std::io::BufReader::new(input))
            })
            .await
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&file).await;
    let manifest = result?;
    if !principal.sees(&manifest.meta.tenant) {
        // Imported by a tenant that does not own it: keep nothing.
        let (store, id) = (control.snapshots().clone(), manifest.id.clone());
        let _ = blocking(move || store.delete(&id)).await;
        return Err(ApiError::BadRequest(format!(
            "the snapshot belongs to tenant `{}`",
            manifest.meta.tenant
        )));
    }
    Ok((StatusCode::CREATED, Json(summary(&manifest))))
}

/// Writes a request body to `file`.
async fn receive(body: Body, file: &std::path::Path) -> Result<(), ApiError> {
    let io =
        |e: std::io::Error| ApiError::Internal(format!("cannot write {}: {e}", file.display()));
    let mut out = tokio::fs::File::create(file).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the upload was cut short: {e}")))?;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(())
}

// === scheduled backups ===

/// Takes the backups that are due on this node's instances, and prunes
/// older ones to `keep`, until shutdown.
pub(crate) async fn run_backups(control: ControlPlane, shutdown: CancellationToken) {
    // Newest backup per instance, learned from the store at the first look.
    let mut last: Option<BTreeMap<InstanceId, u64>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BACKUP_CHECK) => {}
        }
        if last.is_none() {
            let store = control.snapshots().clone();
            match blocking(move || store.list()).await {
                Ok(all) => last = Some(newest_backups(&all)),
                Err(e) => {
                    tracing::warn!("cannot read the snapshot store: {}", e.message());
                    continue;
                }
            }
        }
        let Some(last) = last.as_mut() else {
            continue;
        };
        let apps = match control.store().apps().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::warn!("backups: cannot read the apps: {e}");
                continue;
            }
        };
        let now = crate::telemetry::now_ms();
        for status in control.agent().instances() {
            if status.state != InstanceState::Ready {
                continue;
            }
            let id = status.id;
            let Some(app) = apps.iter().find(|a| a.spec.name == id.app) else {
                continue;
            };
            let Some(policy) = app
                .spec
                .components
                .get(&id.component)
                .and_then(|c| c.backup)
            else {
                continue;
            };
            // The first backup of an instance comes one period after it
            // is first seen, not at once.
            let previous = *last.entry(id.clone()).or_insert(now);
            if now.saturating_sub(previous) < millis(policy.every) {
                continue;
            }
            last.insert(id.clone(), now);
            let tenant = app.spec.tenant.to_string();
            match take(&control, &tenant, &id, None, "backup").await {
                Ok(taken) => {
                    tracing::info!(instance = %id, snapshot = %short(&taken.snapshot.id), frozen_ms = taken.snapshot.frozen_ms, "backup taken");
                    let store = control.snapshots().clone();
                    let (app_name, component, index, keep) = (
                        id.app.to_string(),
                        id.component.to_string(),
                        id.index,
                        policy.keep as usize,
                    );
                    let volume = taken.snapshot.volumes.clone();
                    match blocking(move || {
                        store.retain(&app_name, &component, index, &volume, "backup", keep)
                    })
                    .await
                    {
                        Ok(deleted) if !deleted.is_empty() => {
                            tracing::info!(instance = %id, deleted = deleted.len(), "older backups deleted");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(instance = %id, "cannot prune backups: {}", e.message())
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(instance = %id, "backup failed: {}", e.message());
                    control.telemetry().event(
                        EventKind::Warning,
                        &tenant,
                        id.app.as_str(),
                        Some(id.component.as_str()),
                        Some(&id.to_string()),
                        format!("backup failed: {}", e.message()),
                    );
                }
            }
        }
    }
}

/// The newest backup of each instance, from the store.
fn newest_backups(all: &[Manifest]) -> BTreeMap<InstanceId, u64> {
    let mut out = BTreeMap::new();
    for m in all.iter().filter(|m| m.meta.kind == "backup") {
        let Ok(id) =
            format!("{}/{}/{}", m.meta.app, m.meta.component, m.meta.index).parse::<InstanceId>()
        else {
            continue;
        };
        let newest = out.entry(id).or_insert(0);
        *newest = (*newest).max(m.meta.created_ms);
    }
    out
}

// === helpers ===

/// The instance `APP/COMPONENT[/INDEX]` names, and its tenant. `running`:
/// it must run on this node now (to snapshot it).
async fn target(
    control: &ControlPlane,
    principal: &Principal,
    target: &str,
) -> Result<(InstanceId, String), ApiError> {
    let parts: Vec<&str> = target.split('/').collect();
    let (app, component, index) = match parts.as_slice() {
        [app, component] => (*app, *component, 0),
        [app, component, index] => (
            *app,
            *component,
            index.parse::<u32>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{index}` in `{target}` is not an instance index: expected APP/COMPONENT or APP/COMPONENT/INDEX"
                ))
            })?,
        ),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "`{target}` is not an instance: expected APP/COMPONENT or APP/COMPONENT/INDEX"
            )))
        }
    };
    let (record, _) = find_app(control, principal, app).await?;
    let spec = record
        .spec
        .components
        .iter()
        .find(|(name, _)| name.as_str() == component)
        .map(|(_, c)| c)
        .ok_or_else(|| ApiError::NotFound(format!("app `{app}` has no component `{component}`")))?;
    if spec.volumes.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "component `{component}` of `{app}` has no volumes: there is nothing to snapshot or restore"
        )));
    }
    let id: InstanceId = format!("{app}/{component}/{index}")
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("`{target}`: {e}")))?;
    Ok((id, record.spec.tenant.to_string()))
}

/// Why an instance cannot be snapshotted here.
fn not_here(control: &ControlPlane, id: &InstanceId) -> ApiError {
    match control.instances().into_iter().find(|s| &s.id == id) {
        Some(s) => ApiError::Conflict(format!(
            "{id} runs on node {}, not on this one ({})",
            s.node,
            control.agent().node().id
        )),
        None => ApiError::Conflict(format!("{id} is not running")),
    }
}

/// A snapshot name: 1 to 63 letters, digits, `.`, `_` or `-`, and not
/// something that looks like an id.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "`{name}` is not a snapshot name: expected 1 to 63 letters, digits, `.`, `_` or `-`, not all hex digits (those read as an id)"
        )))
    }
}

pub(crate) fn summary(m: &Manifest) -> SnapshotSummary {
    SnapshotSummary {
        id: m.id.clone(),
        name: m.meta.name.clone(),
        tenant: m.meta.tenant.clone(),
        app: m.meta.app.clone(),
        component: m.meta.component.clone(),
        index: m.meta.index,
        volumes: m.meta.volume.clone(),
        kind: m.meta.kind.clone(),
        node: m.meta.node.clone(),
        created_ms: m.meta.created_ms,
        frozen_ms: m.meta.frozen_ms,
        files: m
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count() as u64,
        logical_bytes: m.logical_bytes,
        stored_bytes: m.stored_bytes,
    }
}

/// Runs blocking snapshot-store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(snapshot_error),
        Err(e) => Err(ApiError::Internal(format!("snapshot work failed: {e}"))),
    }
}

fn snapshot_error(e: SnapshotError) -> ApiError {
    match &e {
        SnapshotError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        SnapshotError::Ambiguous { .. } => ApiError::BadRequest(e.to_string()),
        SnapshotError::Archive { .. } | SnapshotError::MissingBlob { .. } => {
            ApiError::Unprocessable(e.to_string())
        }
        _ if e.is_corruption() => ApiError::Unprocessable(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn human_bytes(n: u64) -> String {
    vdc_spec::Bytes(n).to_string()
}
