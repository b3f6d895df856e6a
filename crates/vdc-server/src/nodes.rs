//! The pool's nodes over the API: `GET /v1/nodes` and
//! `POST /v1/nodes/{node}/drain`. Both are the admin's: tenants see their
//! apps, not the machines under them.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use vdc_api::{DrainRequest, NodeSummary};
use vdc_model::NodeState;
use vdc_store::wall_ms;

use crate::api::ApiError;
use crate::auth::Principal;
use crate::tenants::admin_only;
use crate::ControlPlane;

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/nodes", get(list))
        .route("/v1/nodes/{node}/drain", post(drain))
}

async fn list(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<NodeSummary>>, ApiError> {
    admin_only(&principal)?;
    Ok(Json(summaries(&control).await?))
}

pub(crate) async fn summaries(control: &ControlPlane) -> Result<Vec<NodeSummary>, ApiError> {
    let now = wall_ms();
    let apps = control.store().apps().await?;
    let Some(cluster) = control.cluster() else {
        // Embedded: the one node, always ready, running what its agent runs.
        let node = control.agent().node();
        let disk = crate::node::disk(control.data_dir());
        let instances = control.agent().instances();
        let allocated = instances
            .iter()
            .filter(|s| !s.state.is_leaving())
            .filter_map(|s| {
                let app = apps.iter().find(|a| a.spec.name == s.id.app)?;
                Some(app.spec.components.get(&s.id.component)?.resources)
            })
            .fold(vdc_spec::Resources::default(), vdc_spec::Resources::plus);
        return Ok(vec![NodeSummary {
            name: node.id.0.clone(),
            address: node.address.to_string(),
            state: NodeState::Ready.to_string(),
            labels: node.labels.clone(),
            cpu_millis: node.capacity.cpu.0,
            memory_bytes: node.capacity.memory.0,
            allocated_cpu_millis: allocated.cpu.0,
            allocated_memory_bytes: allocated.memory.0,
            disk_total_bytes: disk.map(|d| d.total_bytes),
            disk_free_bytes: disk.map(|d| d.free_bytes),
            instances: instances.len(),
            heartbeat_age_ms: 0,
            started_ms: 0,
        }]);
    };
    let assignments = control.store().assignments().await?;
    let mut out = Vec::new();
    for (record, _) in control.store().nodes().await? {
        let (allocated, count) = crate::cluster::allocated(&apps, &assignments, &record.info.id);
        out.push(NodeSummary {
            name: record.info.id.0.clone(),
            address: record.info.address.to_string(),
            state: record.state(now, cluster.timeout_ms()).to_string(),
            labels: record.info.labels.clone(),
            cpu_millis: record.info.capacity.cpu.0,
            memory_bytes: record.info.capacity.memory.0,
            allocated_cpu_millis: allocated.cpu.0,
            allocated_memory_bytes: allocated.memory.0,
            disk_total_bytes: record.info.disk.map(|d| d.total_bytes),
            disk_free_bytes: record.info.disk.map(|d| d.free_bytes),
            instances: count,
            heartbeat_age_ms: now.saturating_sub(record.heartbeat_ms),
            started_ms: record.started_ms,
        });
    }
    Ok(out)
}

async fn drain(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
    Json(request): Json<DrainRequest>,
) -> Result<Json<NodeSummary>, ApiError> {
    admin_only(&principal)?;
    if control.cluster().is_none() {
        return Err(ApiError::Conflict(
            "an embedded server is a pool of one node: there is nowhere to move its instances \
             (run servers and agents on NATS to drain a node)"
                .to_owned(),
        ));
    }
    let updated = control
        .store()
        .update_node(&node, |record| {
            let change = record.draining != request.draining;
            record.draining = request.draining;
            change
        })
        .await?;
    if updated.is_none() {
        return Err(ApiError::NotFound(format!("no node `{node}` in the pool")));
    }
    control.wake();
    summaries(&control)
        .await?
        .into_iter()
        .find(|n| n.name == node)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no node `{node}` in the pool")))
}
