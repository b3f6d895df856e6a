//! The node's images over the API, the admin's only (images are shared by
//! every tenant of a node): `GET /v1/images`, `GET /v1/images/inspect`,
//! `POST /v1/images/pull` (progress as server-sent events),
//! `POST /v1/images/import`, `POST /v1/images/export`,
//! `DELETE /v1/images?name=REF`, `POST /v1/images/prune`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use vdc_api::{
    ErrorBody, ExportImage, ImageDetail, ImageInfo, ImagePullProgress, ImportImage, PruneImages,
    PrunedImages, PullImage,
};
use vdc_image::pull::Progress;
use vdc_image::{ImageRecord, ImageRef, Store};

use crate::api::ApiError;
use crate::auth::Principal;
use crate::tenants::admin_only;
use crate::ControlPlane;

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/images", get(list).delete(remove))
        .route("/v1/images/inspect", get(inspect))
        .route("/v1/images/pull", post(pull))
        .route("/v1/images/import", post(import))
        .route("/v1/images/export", post(export))
        .route("/v1/images/prune", post(prune))
        .route("/v1/registries/login", post(login))
        .route("/v1/registries/logout", post(logout))
}

/// One change of the credentials file at a time.
static CREDENTIALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn login(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<vdc_api::RegistryLogin>,
) -> Result<StatusCode, ApiError> {
    admin_only(&principal)?;
    if request.registry.trim().is_empty() || request.user.is_empty() {
        return Err(ApiError::BadRequest(
            "a login needs a registry and a user".to_owned(),
        ));
    }
    vdc_image::pull::check_login(
        &request.registry,
        &request.user,
        &request.password,
        control.agent().pull_options(),
    )
    .await
    .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let file = crate::images::credentials_file(control.data_dir());
    let _one = CREDENTIALS.lock().await;
    blocking(move || {
        let mut credentials = vdc_image::pull::Credentials::default();
        credentials.read_docker_config(&file)?;
        credentials.insert(&request.registry, &request.user, &request.password);
        credentials.write_docker_config(&file)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<vdc_api::RegistryLogout>,
) -> Result<StatusCode, ApiError> {
    admin_only(&principal)?;
    let file = crate::images::credentials_file(control.data_dir());
    let _one = CREDENTIALS.lock().await;
    let registry = request.registry.clone();
    let removed = blocking(move || {
        let mut credentials = vdc_image::pull::Credentials::default();
        credentials.read_docker_config(&file)?;
        let removed = credentials.remove(&registry);
        credentials.write_docker_config(&file)?;
        Ok(removed)
    })
    .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no login for {} on this node",
            request.registry
        )))
    }
}

#[derive(Debug, Deserialize)]
struct NameQuery {
    name: String,
}

fn store(control: &ControlPlane) -> Result<Arc<Store>, ApiError> {
    control
        .agent()
        .images()
        .cloned()
        .ok_or_else(|| ApiError::Unprocessable("this node keeps no images".to_owned()))
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, vdc_image::ImageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(image_error)
}

fn image_error(e: vdc_image::ImageError) -> ApiError {
    match e {
        vdc_image::ImageError::NotFound(_) => ApiError::NotFound(e.to_string()),
        vdc_image::ImageError::InUse { .. } => ApiError::Conflict(e.to_string()),
        vdc_image::ImageError::Io { .. } => ApiError::Internal(e.to_string()),
        other => ApiError::Unprocessable(other.to_string()),
    }
}

/// The reference as the store names it: `redis` is
/// `docker.io/library/redis:latest`.
fn full_name(text: &str) -> Result<String, ApiError> {
    ImageRef::parse(text, Path::new("/"))
        .map(|r| r.to_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn info(record: &ImageRecord, used: &std::collections::BTreeMap<String, Vec<String>>) -> ImageInfo {
    ImageInfo {
        name: record.name.clone(),
        digest: record.manifest.clone(),
        layers: record.layers.len(),
        size_bytes: record.size,
        created_ms: record.created_ms,
        last_used_ms: record.last_used_ms,
        used_by: used.get(&record.name).cloned().unwrap_or_default(),
    }
}

async fn list(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let used = crate::images::in_use(&control).await?;
    let records = blocking(move || store.list()).await?;
    Ok(Json(records.iter().map(|r| info(r, &used)).collect()))
}

async fn inspect(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<NameQuery>,
) -> Result<Json<ImageDetail>, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let name = full_name(&q.name)?;
    let used = crate::images::in_use(&control).await?;
    let (record, config) = blocking(move || {
        let record = store
            .get(&name)?
            .ok_or(vdc_image::ImageError::NotFound(name))?;
        let config = store.run_config(&record)?;
        Ok((record, config))
    })
    .await?;
    Ok(Json(ImageDetail {
        image: info(&record, &used),
        config: record.config.clone(),
        layer_digests: record.layers.clone(),
        entrypoint: config.entrypoint,
        cmd: config.cmd,
        env: config.env,
        workdir: config.workdir,
        user: config.user,
    }))
}

async fn pull(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<PullImage>,
) -> Result<Response, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let reference = match ImageRef::parse(&request.reference, Path::new("/")) {
        Ok(ImageRef::Registry(r)) => r,
        Ok(local) => {
            return Err(ApiError::BadRequest(format!(
                "{local} is a file: import it (vdc image import)"
            )))
        }
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    let options = control.agent().pull_options().clone();
    let share = control.agent().image_share().cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let state = std::sync::Mutex::new(ImagePullProgress {
            phase: "fetching".to_owned(),
            ..ImagePullProgress::default()
        });
        let progress_tx = tx.clone();
        let progress = move |p: Progress| {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            match p {
                Progress::Resolved { blobs, .. } => {
                    s.blobs = blobs.into_iter().map(|(d, size)| (d, 0, size)).collect();
                }
                Progress::Blob {
                    digest,
                    done,
                    total,
                } => match s.blobs.iter_mut().find(|(d, _, _)| *d == digest) {
                    Some(blob) => blob.1 = done,
                    None => s.blobs.push((digest, done, total)),
                },
                Progress::Unpacking => s.phase = "unpacking".to_owned(),
            }
            s.done_bytes = s.blobs.iter().map(|(_, done, _)| done).sum();
            s.total_bytes = s.blobs.iter().map(|(_, _, size)| size).sum();
            let data = serde_json::to_string(&*s).unwrap_or_default();
            // A slow reader misses updates, never the end.
            let _ = progress_tx.try_send(SseEvent::default().event("progress").data(data));
        };
        let outcome =
            vdc_image::pull::pull(Arc::clone(&store), &reference, &options, &progress).await;
        let event = match outcome {
            Ok(record) => {
                // The other nodes of a cluster may take it from here.
                if let Some(share) = &share {
                    if let Err(e) = share.offer(&store, &record).await {
                        tracing::warn!(image = %record.name, "cannot offer the image to the other nodes: {e}");
                    }
                }
                let body = info(&record, &Default::default());
                SseEvent::default()
                    .event("done")
                    .data(serde_json::to_string(&body).unwrap_or_default())
            }
            Err(e) => SseEvent::default().event("error").data(
                serde_json::to_string(&ErrorBody {
                    error: e.to_string(),
                    diagnostics: Vec::new(),
                })
                .unwrap_or_default(),
            ),
        };
        let _ = tx.send(event).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

async fn import(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<ImportImage>,
) -> Result<Json<ImageInfo>, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let image = ImageRef::parse(&request.source, Path::new("/"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !image.is_local() {
        return Err(ApiError::BadRequest(format!(
            "{image} is in a registry: pull it (vdc image pull)"
        )));
    }
    let name = image.to_string();
    let record = {
        let store = Arc::clone(&store);
        blocking(move || vdc_image::layout::import(&store, &image, &name)).await?
    };
    if let Some(share) = control.agent().image_share() {
        if let Err(e) = share.offer(&store, &record).await {
            tracing::warn!(image = %record.name, "cannot offer the image to the other nodes: {e}");
        }
    }
    Ok(Json(info(&record, &Default::default())))
}

async fn export(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<ExportImage>,
) -> Result<Json<ImageInfo>, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let name = full_name(&request.name)?;
    let path = std::path::PathBuf::from(&request.path);
    if !path.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let tag = request.tag.unwrap_or_else(|| "latest".to_owned());
    let record = blocking(move || {
        let record = store
            .get(&name)?
            .ok_or(vdc_image::ImageError::NotFound(name))?;
        vdc_image::layout::export(&store, &record, &tag, &path)?;
        Ok(record)
    })
    .await?;
    Ok(Json(info(&record, &Default::default())))
}

async fn remove(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<NameQuery>,
) -> Result<Json<ImageInfo>, ApiError> {
    admin_only(&principal)?;
    let store = store(&control)?;
    let name = full_name(&q.name)?;
    let used = crate::images::in_use(&control).await?;
    if let Some(users) = used.get(&name).filter(|u| !u.is_empty()) {
        return Err(image_error(vdc_image::ImageError::InUse {
            image: name,
            users: users.join(", "),
        }));
    }
    let record = blocking(move || {
        let record = store.remove(&name)?;
        // Its blobs go now unless another image has them.
        store.collect_garbage()?;
        Ok(record)
    })
    .await?;
    Ok(Json(info(&record, &Default::default())))
}

async fn prune(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<PruneImages>,
) -> Result<Json<PrunedImages>, ApiError> {
    admin_only(&principal)?;
    let (removed, freed_bytes) = crate::images::prune(&control, request.unused_for_ms).await?;
    Ok(Json(PrunedImages {
        removed,
        freed_bytes,
    }))
}
