//! The HTTP/JSON API (documented in docs/api.md). Every CLI command goes
//! through it.

use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use vdc_api::{AppDetail, AppSummary, ErrorBody, Health, SubmitApp, Submitted};
use vdc_model::{AppRecord, InstanceStatus};
use vdc_spec::Diagnostic;
use vdc_store::StoreError;

use crate::auth::Principal;
use crate::{status, ControlPlane};

/// The largest request body accepted: an app spec of the largest size
/// allowed, even with every character escaped in JSON.
const MAX_BODY: usize = 2 * vdc_spec::MAX_SPEC_BYTES + (64 << 10);

pub(crate) fn router(control: ControlPlane) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/apps", get(list_apps).post(submit))
        .route("/v1/apps/{app}", get(show_app).delete(down))
        .route("/v1/instances", get(list_instances))
        .route("/v1/shutdown", post(shutdown))
        .merge(crate::logs::router())
        .merge(crate::streams::router())
        .merge(crate::tenants::router())
        .merge(crate::scale::router())
        .merge(crate::nodes::router())
        .merge(crate::image_api::router())
        .merge(crate::snapshots::router())
        .merge(crate::moves::router())
        .layer(axum::middleware::from_fn_with_state(
            control.clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(control)
}

// === errors ===

#[derive(Debug)]
pub(crate) enum ApiError {
    NotFound(String),
    BadRequest(String),
    Invalid(Vec<Diagnostic>),
    Conflict(String),
    /// A well-formed request the server cannot carry out with what it has
    /// (a corrupted snapshot).
    Unprocessable(String),
    Internal(String),
}

impl ApiError {
    /// The one-line message, for events and logs.
    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::NotFound(m)
            | ApiError::BadRequest(m)
            | ApiError::Conflict(m)
            | ApiError::Unprocessable(m)
            | ApiError::Internal(m) => m.clone(),
            ApiError::Invalid(d) => format!("the app spec has {} problem(s)", d.len()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(error) => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error,
                    diagnostics: vec![],
                },
            ),
            ApiError::NotFound(error) => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    error,
                    diagnostics: vec![],
                },
            ),
            ApiError::Conflict(error) => (
                StatusCode::CONFLICT,
                ErrorBody {
                    error,
                    diagnostics: vec![],
                },
            ),
            ApiError::Unprocessable(error) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody {
                    error,
                    diagnostics: vec![],
                },
            ),
            ApiError::Internal(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorBody {
                    error,
                    diagnostics: vec![],
                },
            ),
            ApiError::Invalid(diagnostics) => {
                let errors = diagnostics
                    .iter()
                    .filter(|d| d.severity == vdc_spec::Severity::Error)
                    .count();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorBody {
                        error: format!("the app spec has {errors} error(s)"),
                        diagnostics,
                    },
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// Every error answer is JSON: the extractors' own rejections (a body that
/// is not JSON, a field of the wrong type, a query that does not parse, a
/// body too large, an unknown path) come as plain text, and are wrapped here.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let error = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_owned(),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    (
        parts,
        Json(ErrorBody {
            error,
            diagnostics: vec![],
        }),
    )
        .into_response()
}

// === handlers ===

async fn health(State(control): State<ControlPlane>) -> Json<Health> {
    let agent = control.agent();
    Json(Health {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        data_dir: control.data_dir().display().to_string(),
        api: control.api_addr().to_string(),
        node: agent.node().clone(),
        isolation_warning: agent.driver().isolation().warning.clone(),
        leader: control.is_leader(),
        term: control.term(),
    })
}

async fn list_apps(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<AppSummary>>, ApiError> {
    let mut apps = control.store().apps().await?;
    apps.retain(|a| principal.sees(a.spec.tenant.as_str()));
    let instances = control.instances();
    Ok(Json(
        apps.iter()
            .map(|a| status::summary(&control, a, &instances))
            .collect(),
    ))
}

async fn show_app(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
) -> Result<Json<AppDetail>, ApiError> {
    let (record, _) = find_app(&control, &principal, &app).await?;
    let instances = control.instances();
    Ok(Json(status::detail(&control, &record, &instances)))
}

/// An app the caller may see; 404 for one that does not exist and for one
/// of another tenant alike.
pub(crate) async fn find_app(
    control: &ControlPlane,
    principal: &Principal,
    app: &str,
) -> Result<(AppRecord, u64), ApiError> {
    control
        .store()
        .app(app)
        .await?
        .filter(|(record, _)| principal.sees(record.spec.tenant.as_str()))
        .ok_or_else(|| ApiError::NotFound(format!("no app named `{app}`")))
}

/// A 500 with a JSON body, for the middleware.
pub(crate) fn internal(message: String) -> Response {
    ApiError::Internal(message).into_response()
}

async fn submit(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<SubmitApp>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let base_dir = PathBuf::from(&request.base_dir);
    let mut validated = vdc_spec::parse(&request.source, &request.file, &base_dir)
        .map_err(|d| ApiError::Invalid(d.0))?;
    crate::tenants::claim(&principal, &request.source, &mut validated.spec)?;
    let root_forbidden = crate::tenants::admit_users(&control, &principal, &validated.spec).await?;
    let name = validated.spec.name.to_string();
    {
        let previous = control.store().app(&name).await?;
        let previous = previous
            .as_ref()
            .filter(|(p, _)| p.spec.tenant == validated.spec.tenant)
            .map(|(p, _)| &p.spec);
        crate::images::admit(&control, &principal, &validated.spec, previous).await?;
    }

    // Compare-and-set so two concurrent submissions cannot both win.
    loop {
        let apps = control.store().apps().await?;
        check_gateways(&apps, &validated.spec)?;
        let previous = control.store().app(&name).await?;
        if let Some((p, _)) = &previous {
            if p.spec.tenant != validated.spec.tenant {
                // Say nothing about whose it is.
                return Err(ApiError::Conflict(format!(
                    "the app name `{name}` is not available: choose another"
                )));
            }
            if p.deleting {
                return Err(ApiError::Conflict(format!(
                    "app `{name}` is being taken down; submit it again once `vdc down` has finished"
                )));
            }
            // The same file again changes nothing, unless what the tenant
            // may run as changed since (a container held back as root
            // starts once the admin allows it).
            if p.spec == validated.spec && p.root_forbidden == root_forbidden {
                return Ok((
                    StatusCode::OK,
                    Json(Submitted {
                        app: name,
                        revision: p.revision,
                        changed: false,
                        warnings: validated.warnings,
                    }),
                ));
            }
        }
        let mut record = AppRecord::submit(
            validated.spec.clone(),
            request.file.clone(),
            request.source.clone(),
            crate::telemetry::now_ms(),
            previous.as_ref().map(|(p, _)| p),
            &crate::auth::new_incarnation(),
        );
        record.root_forbidden = root_forbidden;
        if previous
            .as_ref()
            .is_some_and(|(p, _)| p.root_forbidden != root_forbidden)
        {
            // What the tenant may run as changed since: its containers
            // start again under the new rule (one held back as root
            // starts, one running as root stops if the leave was taken).
            for (name, component) in &record.spec.components {
                if component.appliance == vdc_spec::Appliance::Container {
                    record
                        .component_revisions
                        .insert(name.clone(), record.revision);
                }
            }
        }
        control.refresh_pool().await?;
        admit(&control, &apps, &record)?;
        crate::tenants::admit_quota(&control, &apps, &record).await?;
        if previous.is_none() {
            // A new app of a purged one's name starts with empty volumes,
            // and keeps them.
            control
                .store()
                .unmark_purged(record.spec.tenant.as_str(), &name)
                .await?;
        }
        match control
            .store()
            .put_app(&record, previous.as_ref().map(|(_, rev)| *rev))
            .await
        {
            Ok(_) => {
                control.wake();
                let changed: Vec<&str> = record
                    .component_revisions
                    .iter()
                    .filter(|(_, rev)| **rev == record.revision)
                    .map(|(name, _)| name.as_str())
                    .collect();
                control.telemetry().event(
                    vdc_telemetry::EventKind::SpecApplied,
                    record.spec.tenant.as_str(),
                    &name,
                    None,
                    None,
                    format!(
                        "revision {} from {}; components new or changed: {}",
                        record.revision,
                        record.file,
                        if changed.is_empty() {
                            "none".to_owned()
                        } else {
                            changed.join(", ")
                        }
                    ),
                );
                let status = if previous.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                return Ok((
                    status,
                    Json(Submitted {
                        app: name,
                        revision: record.revision,
                        changed: true,
                        warnings: validated.warnings,
                    }),
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Refuses a gateway port another app already holds on this node.
fn check_gateways(apps: &[AppRecord], spec: &vdc_spec::AppSpec) -> Result<(), ApiError> {
    for other in apps.iter().filter(|a| a.spec.name != spec.name) {
        for theirs in other
            .spec
            .components
            .values()
            .filter_map(|c| c.gateway.as_ref().map(|g| (c, g)))
        {
            for mine in spec
                .components
                .values()
                .filter_map(|c| c.gateway.as_ref().map(|g| (c, g)))
            {
                let overlap = theirs.1.port == mine.1.port
                    && (theirs.1.address == mine.1.address
                        || theirs.1.address.is_unspecified()
                        || mine.1.address.is_unspecified());
                if overlap && other.spec.tenant == spec.tenant {
                    return Err(ApiError::Conflict(format!(
                        "port {} of the gateway of component `{}` is already used by the gateway of `{}/{}`",
                        mine.1.port, mine.0.name, other.spec.name, theirs.0.name
                    )));
                }
                if overlap {
                    // Another tenant's: say that it is taken, not by whom.
                    return Err(ApiError::Conflict(format!(
                        "port {} of the gateway of component `{}` is already taken on this node",
                        mine.1.port, mine.0.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Admission: the whole app must fit on the pool next to what runs now, or
/// nothing of it is applied.
pub(crate) fn admit(
    control: &ControlPlane,
    apps: &[AppRecord],
    record: &AppRecord,
) -> Result<(), ApiError> {
    let mut with_new: Vec<AppRecord> = apps
        .iter()
        .filter(|a| a.spec.name != record.spec.name)
        .cloned()
        .collect();
    with_new.push(record.clone());
    let instances: Vec<InstanceStatus> = control
        .instances()
        .into_iter()
        .filter(|s| s.id.app != record.spec.name)
        .collect();
    let (nodes, draining) = control.pool();
    let plan = vdc_reconciler::reconcile(&with_new, &instances, &nodes, &draining);
    let reasons: Vec<String> = plan
        .unplaced
        .into_iter()
        .filter(|u| u.instance.app == record.spec.name)
        .map(|u| u.reason)
        .collect();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!(
            "app `{}` does not fit in the pool: {}",
            record.spec.name,
            reasons.join("; ")
        )))
    }
}

#[derive(Deserialize)]
struct DownQuery {
    /// Also delete the app's volumes once its instances are gone.
    #[serde(default)]
    purge: bool,
}

async fn down(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
    Query(q): Query<DownQuery>,
) -> Result<StatusCode, ApiError> {
    loop {
        let (mut record, revision) = find_app(&control, &principal, &app).await?;
        if record.deleting && (record.purge || !q.purge) {
            return Ok(StatusCode::ACCEPTED);
        }
        record.deleting = true;
        record.purge |= q.purge;
        match control.store().put_app(&record, Some(revision)).await {
            Ok(_) => {
                control.wake();
                control.telemetry().event(
                    vdc_telemetry::EventKind::AppDown,
                    record.spec.tenant.as_str(),
                    &app,
                    None,
                    None,
                    if q.purge {
                        "down requested: stopping every instance, then deleting its volumes"
                    } else {
                        "down requested: stopping every instance; volumes are kept"
                    },
                );
                return Ok(StatusCode::ACCEPTED);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[derive(Deserialize)]
struct InstancesQuery {
    app: Option<String>,
}

async fn list_instances(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<InstancesQuery>,
) -> Result<Json<Vec<InstanceStatus>>, ApiError> {
    if let Some(app) = &q.app {
        find_app(&control, &principal, app).await?;
    }
    Ok(Json(
        control
            .instances()
            .into_iter()
            .filter(|s| q.app.as_deref().is_none_or(|a| s.id.app.as_str() == a))
            .filter(|s| principal.sees(&control.tenant_of(s.id.app.as_str())))
            .collect(),
    ))
}

async fn shutdown(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    if !principal.is_admin() {
        return Err(ApiError::NotFound("no such resource".to_owned()));
    }
    control.shutdown();
    Ok(StatusCode::ACCEPTED)
}
