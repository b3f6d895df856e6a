//! Instances' logs: each instance's output, kept on its node under its
//! tenant, served while the app runs and after it was taken down (until a
//! purge deletes them).

use std::io::SeekFrom;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use vdc_api::KeptLogs;
use vdc_model::InstanceId;

use crate::api::{find_app, ApiError};
use crate::auth::Principal;
use crate::ControlPlane;

/// The response header saying whether the app still runs (`running`) or
/// was taken down and these are the logs it left (`gone`).
pub const APP_STATE: &str = "vdc-app-state";

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/logs/{app}", get(list))
        .route("/v1/logs/{app}/{component}/{index}", get(logs))
}

/// Whose logs of `app` the caller reads.
struct Owner {
    tenant: String,
    running: bool,
}

/// The tenant whose logs of `app` are meant: the running app's, or for an
/// app taken down, the caller's own (a tenant) or the one tenant that left
/// logs of that name on this node (the admin; `tenant` when several did).
async fn owner(
    control: &ControlPlane,
    principal: &Principal,
    app: &str,
    tenant: Option<&str>,
) -> Result<Owner, ApiError> {
    let gone = || ApiError::NotFound(format!("no app named `{app}`, and no logs kept of one"));
    // Both become directories of the node: anything but a name (`..`,
    // a slash sent percent-encoded) would walk out of the caller's logs.
    if !vdc_spec::is_valid_name(app) || tenant.is_some_and(|t| !vdc_spec::is_valid_name(t)) {
        return Err(gone());
    }
    match find_app(control, principal, app).await {
        Ok((record, _)) => {
            return Ok(Owner {
                tenant: record.spec.tenant.to_string(),
                running: true,
            })
        }
        Err(ApiError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let candidates: Vec<String> = match (principal.tenant(), tenant) {
        (Some(mine), Some(asked)) if mine != asked => return Err(gone()),
        (Some(mine), _) => vec![mine.to_owned()],
        (None, Some(asked)) => vec![asked.to_owned()],
        (None, None) => control.agent().tenants_with_logs(app),
    };
    let kept: Vec<String> = candidates
        .into_iter()
        .filter(|t| control.agent().app_logs_dir(t, app).is_dir())
        .collect();
    match kept.as_slice() {
        [] => Err(gone()),
        [one] => Ok(Owner {
            tenant: one.clone(),
            running: false,
        }),
        several => Err(ApiError::BadRequest(format!(
            "app `{app}` is gone and left logs under tenants {}: say whose with ?tenant=NAME (vdc logs --tenant)",
            several.join(", ")
        ))),
    }
}

/// The logs an app has on this node: every instance that wrote one.
async fn list(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<KeptLogs>, ApiError> {
    let owner = owner(&control, &principal, &app, q.tenant.as_deref()).await?;
    let dir = control.agent().app_logs_dir(&owner.tenant, &app);
    let mut instances = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            // COMPONENT-INDEX.log; component names may hold `-` too.
            let Some((component, index)) = name
                .strip_suffix(".log")
                .and_then(|stem| stem.rsplit_once('-'))
            else {
                continue;
            };
            if index.parse::<u32>().is_ok() {
                instances.push(format!("{app}/{component}/{index}"));
            }
        }
    }
    instances.sort();
    Ok(Json(KeptLogs {
        app,
        tenant: owner.tenant,
        running: owner.running,
        instances,
    }))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// Lines to show from the end; all when absent.
    tail: Option<usize>,
    /// Whose app, for the admin asking about an app that is gone and whose
    /// name several tenants used.
    tenant: Option<String>,
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

/// An instance's log, optionally followed as it grows (like `tail -f`).
async fn logs(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path((app, component, index)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let owner = owner(&control, &principal, &app, q.tenant.as_deref()).await?;
    let id: InstanceId = format!("{app}/{component}/{index}")
        .parse()
        .map_err(|e: vdc_model::InstanceIdError| ApiError::NotFound(e.to_string()))?;
    let here = &control.agent().node().id;
    let elsewhere = control
        .instances()
        .into_iter()
        .find(|s| s.id == id && &s.node != here);
    // Logs belong to the tenant: another tenant's app of the same name
    // never reads them.
    let path = control.agent().log_path(&owner.tenant, &id);
    let mut file = match (tokio::fs::File::open(&path).await, elsewhere) {
        (Ok(file), _) => file,
        // Logs stay on the node that runs the instance.
        (Err(_), Some(s)) => {
            return Err(ApiError::NotFound(format!(
            "instance {id} runs on node {}: its logs are there (ask that node's API with --addr)",
            s.node
        )))
        }
        (Err(_), None) => return Err(ApiError::NotFound(format!("no logs for instance {id}"))),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let start = match q.tail {
        Some(n) => tail_offset(&mut file, len, n)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let follow = q.follow;
    let shutdown = control.clone();
    let stream = futures_util::stream::unfold((file, false), move |(mut file, done)| {
        let control = shutdown.clone();
        async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) if follow && !control.is_shutting_down() => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(0) => return None,
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (file, false)));
                    }
                    Err(e) => return Some((Err(e), (file, true))),
                }
            }
        }
    });
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .header(APP_STATE, if owner.running { "running" } else { "gone" })
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The offset of the start of the last `n` lines.
async fn tail_offset(file: &mut tokio::fs::File, len: u64, n: usize) -> std::io::Result<u64> {
    let window = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - window)).await?;
    let mut buf = Vec::with_capacity(window as usize);
    file.read_to_end(&mut buf).await?;
    // Skip a final newline so it does not count as an empty last line.
    let end = if buf.last() == Some(&b'\n') {
        buf.len() - 1
    } else {
        buf.len()
    };
    let mut seen = 0;
    for (i, b) in buf[..end].iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return Ok(len - window + i as u64 + 1);
            }
        }
    }
    Ok(len - window)
}
