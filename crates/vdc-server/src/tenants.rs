//! Tenants over the API: creating them, their quotas and tokens, and the
//! quota check every submission passes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use vdc_api::{CreateTenant, PricesSpec, QuotaSpec, SetQuota, SetRunAs, TenantToken, TenantView};
use vdc_model::{Admission, AppRecord, Prices, Quota, Tenant, Usage};
use vdc_spec::{AppSpec, TenantName};
use vdc_store::StoreError;

use crate::api::ApiError;
use crate::auth::{self, Principal, ADMIN};
use crate::telemetry::now_ms;
use crate::ControlPlane;

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/tenants", get(list).post(create))
        .route("/v1/tenants/{tenant}", get(show))
        .route("/v1/tenants/{tenant}/quota", put(set_quota))
        .route("/v1/tenants/{tenant}/run-as", put(set_run_as))
        .route("/v1/tenants/{tenant}/token", post(rotate))
        .route("/v1/tenants/{tenant}/bill", get(bill))
        .route("/v1/usage", get(usage))
}

#[derive(Debug, serde::Deserialize)]
struct PeriodQuery {
    /// Unix seconds; the period starts at the minute holding it. Default: the
    /// beginning.
    from: Option<u64>,
    /// Unix seconds; the period ends before the minute holding it. Default:
    /// now (closed minutes only exist up to about a minute ago).
    to: Option<u64>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    tenant: Option<String>,
}

impl PeriodQuery {
    fn minutes(&self) -> (vdc_metering::Minute, vdc_metering::Minute) {
        let to = self.to.unwrap_or_else(|| now_ms() / 1000 + 60);
        (
            vdc_metering::Minute::of(self.from.unwrap_or(0)),
            vdc_metering::Minute::of(to),
        )
    }

    fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "unknown format `{other}`: expected json or csv"
            ))),
        }
    }
}

fn csv_response(text: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "text/csv; charset=utf-8")], text).into_response()
}

/// A tenant's bill for a period: its prices applied to its ledger, quota
/// and burst apart.
async fn bill(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PeriodQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (tenant, _) = find(&control, &principal, &name).await?;
    let csv = q.csv()?;
    let (from, to) = q.minutes();
    let entries = crate::metering::entries(&control, Some(&name), from, to).await?;
    let p = tenant.prices;
    let prices = vdc_metering::Prices::from_micros(
        p.cpu_minute_micros,
        p.gib_minute_micros,
        p.burst_cpu_minute_micros,
        p.burst_gib_minute_micros,
    );
    let bill = vdc_metering::Bill::compute(&entries, &prices, from, to);
    Ok(if csv {
        csv_response(bill.to_csv())
    } else {
        Json(bill).into_response()
    })
}

/// The ledger itself, one entry per component and minute.
async fn usage(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    axum::extract::Query(q): axum::extract::Query<PeriodQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let tenant = match (principal.tenant(), q.tenant.as_deref()) {
        (Some(mine), Some(asked)) if mine != asked => return Err(not_found(asked)),
        (Some(mine), _) => Some(mine.to_owned()),
        (None, asked) => asked.map(str::to_owned),
    };
    let csv = q.csv()?;
    let (from, to) = q.minutes();
    let entries = crate::metering::entries(&control, tenant.as_deref(), from, to).await?;
    Ok(if csv {
        csv_response(vdc_metering::usage_csv(&entries))
    } else {
        Json(entries).into_response()
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no tenant named `{name}`"))
}

pub(crate) fn admin_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such resource".to_owned()))
    }
}

fn parse_quota(field: &str, spec: &QuotaSpec) -> Result<Quota, ApiError> {
    let bad =
        |what: &str, e: vdc_spec::UnitError| ApiError::BadRequest(format!("{field}.{what}: {e}"));
    Ok(Quota {
        cpu: vdc_spec::parse_cpu(&spec.cpu).map_err(|e| bad("cpu", e))?,
        memory: vdc_spec::parse_memory(&spec.memory).map_err(|e| bad("memory", e))?,
        instances: spec.instances,
    })
}

/// `"0.0012"` -> 1200 millionths.
fn parse_money(field: &str, text: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "prices.{field}: `{text}` is not a price: expected a decimal number with at most 6 decimals, like \"0.0012\""
        ))
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

fn parse_prices(spec: &PricesSpec) -> Result<Prices, ApiError> {
    let get =
        |field: &str, v: &Option<String>| v.as_deref().map_or(Ok(0), |t| parse_money(field, t));
    Ok(Prices {
        cpu_minute_micros: get("cpu_minute", &spec.cpu_minute)?,
        gib_minute_micros: get("gib_minute", &spec.gib_minute)?,
        burst_cpu_minute_micros: get("burst_cpu_minute", &spec.burst_cpu_minute)?,
        burst_gib_minute_micros: get("burst_gib_minute", &spec.burst_gib_minute)?,
    })
}

/// What one app reserves: CPU and memory of its process instances, at the
/// replica counts set now.
pub(crate) fn usage_of(app: &AppRecord) -> Usage {
    let instances = app
        .spec
        .components
        .values()
        .filter(|c| !c.appliance.is_builtin())
        .map(|c| app.replicas(&c.name))
        .sum();
    Usage::of(app.reserved(), instances)
}

/// What a tenant's apps reserve, leaving out `except`.
pub(crate) fn reserved_by(apps: &[AppRecord], tenant: &str, except: Option<&str>) -> (Usage, u32) {
    apps.iter()
        .filter(|a| a.spec.tenant.as_str() == tenant && !a.deleting)
        .filter(|a| except.is_none_or(|e| a.spec.name.as_str() != e))
        .fold((Usage::default(), 0), |(u, n), a| {
            (u.plus(usage_of(a)), n + 1)
        })
}

async fn view(control: &ControlPlane, tenant: &Tenant) -> Result<TenantView, StoreError> {
    let apps = control.store().apps().await?;
    let (reserved, count) = reserved_by(&apps, tenant.name.as_str(), None);
    Ok(TenantView {
        name: tenant.name.to_string(),
        quota: tenant.quota,
        burst: tenant.burst,
        prices: tenant.prices,
        reserved,
        apps: count,
        created_at_ms: tenant.created_at_ms,
        token_rotated_at_ms: tenant.token_rotated_at_ms,
        run_as: tenant.run_as.clone(),
    })
}

// === handlers ===

async fn list(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    let mut out = Vec::new();
    for t in control.store().tenants().await? {
        if principal.sees(t.name.as_str()) {
            out.push(view(&control, &t).await?);
        }
    }
    Ok(Json(out))
}

async fn show(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let (tenant, _) = find(&control, &principal, &name).await?;
    Ok(Json(view(&control, &tenant).await?))
}

async fn find(
    control: &ControlPlane,
    principal: &Principal,
    name: &str,
) -> Result<(Tenant, u64), ApiError> {
    if !principal.sees(name) {
        return Err(not_found(name));
    }
    control
        .store()
        .tenant(name)
        .await?
        .ok_or_else(|| not_found(name))
}

async fn create(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<CreateTenant>,
) -> Result<(StatusCode, Json<TenantToken>), ApiError> {
    admin_only(&principal)?;
    let name = TenantName::new(&request.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if name.as_str() == ADMIN {
        return Err(ApiError::BadRequest(
            "the tenant name `admin` is reserved".to_owned(),
        ));
    }
    let token = auth::new_token(name.as_str());
    let now = now_ms();
    let tenant = Tenant {
        name: name.clone(),
        token_sha256: auth::sha256_hex(&token),
        quota: request
            .quota
            .as_ref()
            .map(|q| parse_quota("quota", q))
            .transpose()?,
        burst: request
            .burst
            .as_ref()
            .map(|q| parse_quota("burst", q))
            .transpose()?,
        prices: request
            .prices
            .as_ref()
            .map(parse_prices)
            .transpose()?
            .unwrap_or_default(),
        created_at_ms: now,
        token_rotated_at_ms: now,
        run_as: parse_run_as(&request.run_as)?,
    };
    match control.store().put_tenant(&tenant, None).await {
        Ok(_) => Ok((
            StatusCode::CREATED,
            Json(TenantToken {
                tenant: view(&control, &tenant).await?,
                token,
            }),
        )),
        Err(StoreError::Conflict { .. }) => Err(ApiError::Conflict(format!(
            "tenant `{name}` already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn set_quota(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Json(request): Json<SetQuota>,
) -> Result<Json<TenantView>, ApiError> {
    admin_only(&principal)?;
    loop {
        let (mut tenant, revision) = find(&control, &principal, &name).await?;
        tenant.quota = request
            .quota
            .as_ref()
            .map(|q| parse_quota("quota", q))
            .transpose()?;
        tenant.burst = request
            .burst
            .as_ref()
            .map(|q| parse_quota("burst", q))
            .transpose()?;
        match control.store().put_tenant(&tenant, Some(revision)).await {
            Ok(_) => return Ok(Json(view(&control, &tenant).await?)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Which users other than their own the tenant's instances may run as.
async fn set_run_as(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Json(request): Json<SetRunAs>,
) -> Result<Json<TenantView>, ApiError> {
    admin_only(&principal)?;
    let run_as = parse_run_as(&request.run_as)?;
    loop {
        let (mut tenant, revision) = find(&control, &principal, &name).await?;
        tenant.run_as = run_as.clone();
        match control.store().put_tenant(&tenant, Some(revision)).await {
            Ok(_) => return Ok(Json(view(&control, &tenant).await?)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Users as a component's `user` names them, each checked as the spec
/// checks it.
fn parse_run_as(users: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for user in users {
        if !vdc_spec::is_user(user) {
            return Err(ApiError::BadRequest(format!(
                "run_as: `{user}` is not a user: expected a user name like \"postgres\", \"root\", or a uid like \"1000\" or \"1000:1000\""
            )));
        }
        if !out.contains(user) {
            out.push(user.clone());
        }
    }
    Ok(out)
}

/// A new token; the old one stops working at once.
async fn rotate(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TenantToken>, ApiError> {
    loop {
        let (mut tenant, revision) = find(&control, &principal, &name).await?;
        let token = auth::new_token(&name);
        tenant.token_sha256 = auth::sha256_hex(&token);
        tenant.token_rotated_at_ms = now_ms();
        match control.store().put_tenant(&tenant, Some(revision)).await {
            Ok(_) => {
                return Ok(Json(TenantToken {
                    tenant: view(&control, &tenant).await?,
                    token,
                }))
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

// === submissions ===

/// Settles whose app a submission is. A tenant's token owns what it submits:
/// a spec without `tenant` becomes the caller's, a spec naming another
/// tenant is refused. The admin may submit for any existing tenant.
pub(crate) fn claim(
    principal: &Principal,
    source: &str,
    spec: &mut AppSpec,
) -> Result<(), ApiError> {
    let Principal::Tenant(mine) = principal else {
        return Ok(());
    };
    let explicit = toml::from_str::<toml::Table>(source).is_ok_and(|t| t.contains_key("tenant"));
    if !explicit {
        spec.tenant =
            TenantName::new(mine.as_str()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    } else if spec.tenant.as_str() != mine {
        return Err(ApiError::BadRequest(format!(
            "the spec names tenant `{}`, but this token belongs to tenant `{mine}`",
            spec.tenant
        )));
    }
    Ok(())
}

/// Admission of the users a spec's components run as: the admin may name
/// any; a tenant only its own instances' users and those the admin allowed
/// it (`root` included). A container's user is one of its image's, not of
/// the node, so only root needs leave there (the image's uids are the
/// node's). Returns whether the app's containers must not run as root,
/// which only the node that starts one can tell from its image.
pub(crate) async fn admit_users(
    control: &ControlPlane,
    principal: &Principal,
    spec: &AppSpec,
) -> Result<bool, ApiError> {
    if principal.is_admin() {
        return Ok(false);
    }
    let asked: Vec<(&str, &str)> = spec
        .components
        .values()
        .filter_map(|c| Some((c, c.user.as_deref()?)))
        .filter(|(c, user)| c.appliance != vdc_spec::Appliance::Container || names_root(user))
        .map(|(c, user)| (c.name.as_str(), user))
        .collect();
    let tenant_name = spec.tenant.as_str();
    let allowed = control
        .store()
        .tenant(tenant_name)
        .await?
        .map(|(t, _)| t.run_as)
        .unwrap_or_default();
    for (component, user) in asked {
        if !allowed.iter().any(|a| a == user) {
            return Err(ApiError::Conflict(format!(
                "component `{component}` asks to run as `{user}`, which tenant `{tenant_name}` may not: instances run as users of their own unless the admin allows others (vdc tenant run-as {tenant_name} {user})"
            )));
        }
    }
    Ok(!allowed.iter().any(|a| a == "root"))
}

/// Whether a container's `user` names uid 0 without looking at its image:
/// `root`, `0`, or either with a group.
fn names_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("root" | "0"))
}

/// Admission against the tenant's quota: what the tenant's other apps
/// reserve plus what this one asks for must fit the quota, or the burst
/// allowance above it. Refusals name the quota, the request and what is in
/// use.
pub(crate) async fn admit_quota(
    control: &ControlPlane,
    apps: &[AppRecord],
    record: &AppRecord,
) -> Result<Admission, ApiError> {
    let tenant_name = record.spec.tenant.as_str();
    let Some((tenant, _)) = control.store().tenant(tenant_name).await? else {
        return Err(ApiError::BadRequest(format!(
            "no tenant named `{tenant_name}`"
        )));
    };
    let (in_use, others) = reserved_by(apps, tenant_name, Some(record.spec.name.as_str()));
    let asked = usage_of(record);
    match tenant.admit(in_use.plus(asked)) {
        Admission::Refused => {
            let quota = tenant.quota.map_or("none".to_owned(), |q| q.to_string());
            let burst = tenant.burst.map_or("none".to_owned(), |q| q.to_string());
            Err(ApiError::Conflict(format!(
                "tenant `{tenant_name}` quota exceeded: app `{}` asks for {asked}; {others} other app(s) already reserve {in_use}; quota {quota}; burst allowance {burst}",
                record.spec.name
            )))
        }
        other => Ok(other),
    }
}

/// Creates the `default` tenant, without limits, at first start.
pub(crate) async fn bootstrap_default(control: &ControlPlane) -> Result<(), StoreError> {
    let name = TenantName::default_tenant();
    if control.store().tenant(name.as_str()).await?.is_some() {
        return Ok(());
    }
    let now = now_ms();
    let tenant = Tenant {
        token_sha256: auth::sha256_hex(&auth::new_token(name.as_str())),
        name,
        quota: None,
        burst: None,
        prices: Prices::default(),
        created_at_ms: now,
        token_rotated_at_ms: now,
        run_as: Vec::new(),
    };
    match control.store().put_tenant(&tenant, None).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_exactly() {
        assert_eq!(parse_money("x", "0.0012").ok(), Some(1200));
        assert_eq!(parse_money("x", "3").ok(), Some(3_000_000));
        assert_eq!(parse_money("x", ".5").ok(), Some(500_000));
        for bad in [
            "",
            ".",
            "1.2345678",
            "-1",
            "1e3",
            "abc",
            "99999999999999999999",
        ] {
            assert!(parse_money("x", bad).is_err(), "{bad}");
        }
    }
}
