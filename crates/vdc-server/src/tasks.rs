//! Work one node asks of another in a cluster, for what only the node that
//! runs an instance can do: its volumes are on that node's disk, and agents
//! serve no API to the network. The asking server writes a [`NodeTask`] to
//! the `Tasks` bucket; the node named in it runs it in its round (woken by
//! the bucket's watch) and writes the outcome back; the asking server
//! answers its client with it and deletes the task.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use vdc_model::{InstanceId, NodeId, NodeTask, TaskRequest, TaskState};
use vdc_store::{wall_ms, StoreError};

use crate::api::ApiError;
use crate::control::lock;
use crate::ControlPlane;

/// How long a server waits for another node to carry out a task.
const WAIT: Duration = Duration::from_secs(300);

/// A task no node took up for this long is given up (its node is gone).
const STALE_MS: u64 = 600_000;

/// The tasks this node is running now.
#[derive(Default)]
pub(crate) struct Running {
    ids: Mutex<BTreeSet<String>>,
}

/// Has `node` carry out `request`, and returns what it answered.
pub(crate) async fn run_on(
    control: &ControlPlane,
    node: &NodeId,
    request: TaskRequest,
) -> Result<serde_json::Value, ApiError> {
    let id = format!("{}-{}", wall_ms(), rand_suffix());
    let task = NodeTask {
        id: id.clone(),
        node: node.clone(),
        created_ms: wall_ms(),
        request,
        state: TaskState::Pending,
    };
    control.store().put_task(&task, None).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut changes =
        vdc_store::Changes::new(control.store().kv().clone(), &[vdc_store::Bucket::Tasks]).await;
    let outcome = loop {
        match control.store().task(&id).await? {
            Some((t, _)) => match t.state {
                TaskState::Pending => {}
                TaskState::Done { result } => break Ok(result),
                TaskState::Failed { status, message } => break Err(error(status, message)),
            },
            None => {
                break Err(ApiError::Internal(format!(
                    "the task for node {node} vanished"
                )))
            }
        }
        if tokio::time::Instant::now() > deadline {
            break Err(ApiError::Internal(format!(
                "node {node} did not carry out the request within {WAIT:?}"
            )));
        }
        tokio::select! {
            () = changes.next() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    let _ = control.store().delete_task(&id).await;
    outcome
}

/// Runs the tasks waiting for this node. Called from the node's round.
pub(crate) async fn advance(control: &ControlPlane) -> Result<(), StoreError> {
    let Some(cluster) = control.cluster() else {
        return Ok(());
    };
    let me = control.agent().node().id.clone();
    let now = wall_ms();
    for (task, revision) in control.store().tasks().await? {
        if now.saturating_sub(task.created_ms) > STALE_MS {
            let _ = control.store().delete_task(&task.id).await;
            continue;
        }
        if task.node != me || task.state != TaskState::Pending {
            continue;
        }
        if !lock(&cluster.tasks.ids).insert(task.id.clone()) {
            continue;
        }
        let control = control.clone();
        tokio::spawn(async move {
            let state = match execute(&control, &task.request).await {
                Ok(result) => TaskState::Done { result },
                Err(e) => TaskState::Failed {
                    status: status(&e),
                    message: e.message(),
                },
            };
            let done = NodeTask {
                state,
                ..task.clone()
            };
            if let Err(e) = control.store().put_task(&done, Some(revision)).await {
                tracing::warn!(task = %task.id, "cannot report a task's outcome: {e}");
            }
            if let Some(cluster) = control.cluster() {
                lock(&cluster.tasks.ids).remove(&task.id);
            }
        });
    }
    Ok(())
}

async fn execute(
    control: &ControlPlane,
    request: &TaskRequest,
) -> Result<serde_json::Value, ApiError> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| ApiError::Internal(format!("cannot encode the answer: {e}")))
    };
    match request {
        TaskRequest::Snapshot { instance, name } => {
            let id = parse(instance)?;
            let tenant = control
                .owner_of(id.app.as_str())
                .await
                .map_err(ApiError::NotFound)?;
            let taken =
                crate::snapshots::take(control, &tenant, &id, name.clone(), "manual").await?;
            json(serde_json::to_value(taken))
        }
        TaskRequest::Restore {
            snapshot,
            instance,
            timeout_ms,
        } => {
            let id = parse(instance)?;
            let manifest = crate::snapshots::find_any(control, snapshot).await?;
            let tenant = control
                .owner_of(id.app.as_str())
                .await
                .map_err(ApiError::NotFound)?;
            let restored = crate::snapshots::restore_into(
                control,
                &manifest,
                &tenant,
                &id,
                crate::snapshots::ready_within(*timeout_ms),
            )
            .await?;
            json(serde_json::to_value(restored))
        }
    }
}

fn parse(instance: &str) -> Result<InstanceId, ApiError> {
    instance
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("`{instance}` is not an instance: {e}")))
}

fn status(e: &ApiError) -> u16 {
    match e {
        ApiError::NotFound(_) => 404,
        ApiError::BadRequest(_) => 400,
        ApiError::Conflict(_) => 409,
        ApiError::Unprocessable(_) | ApiError::Invalid(_) => 422,
        ApiError::Internal(_) => 500,
    }
}

fn error(status: u16, message: String) -> ApiError {
    match status {
        404 => ApiError::NotFound(message),
        400 => ApiError::BadRequest(message),
        409 => ApiError::Conflict(message),
        422 => ApiError::Unprocessable(message),
        _ => ApiError::Internal(message),
    }
}

/// A few random hex digits, so two servers asking in the same millisecond
/// do not collide.
fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall_ms());
    format!("{:08x}", h.finish() as u32)
}
