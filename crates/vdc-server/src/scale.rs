//! Scaling: a component's replica count set by hand (`vdc scale`), by the
//! autoscaler keeping its SLA, or by the component itself through the
//! platform API. Every change goes through [`set_replicas`], which checks
//! the bounds, the tenant's quota (and burst allowance) and the pool, writes
//! with compare-and-set, and says what it did in an event.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use tokio_util::sync::CancellationToken;
use vdc_api::{AutoscaleRequest, LoadReport, ScaleDecision, ScaleRequest, ScaleView, SelfView};
use vdc_autoscaler::{Direction, Room, Second, Signals};
use vdc_model::{AppRecord, InstanceId, InstanceStatus, Scale, Tenant, Usage};
use vdc_spec::{ComponentSpec, Resources};
use vdc_store::StoreError;
use vdc_telemetry::{
    EventKind, Filter, LoadSample, Message, SeriesKind, Subscription, Tags, Topic,
};

use crate::api::{find_app, ApiError};
use crate::auth::{InstanceCaller, Principal};
use crate::ControlPlane;

/// How long an instance's load report counts.
const LOAD_FRESH: Duration = Duration::from_secs(10);
/// How long an instance's request for replicas keeps the autoscaler from
/// going below it.
const REQUEST_FRESH: Duration = Duration::from_secs(60);
/// How a count set by an instance is recorded: "instance shop/web/1".
const BY_INSTANCE: &str = "instance ";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Messages the autoscaler's subscription buffers between passes: resource
/// samples of every instance pass its filter too.
const LOAD_BUFFER: usize = 1 << 16;

/// Attempts at a compare-and-set write before giving up.
const WRITE_ATTEMPTS: usize = 5;

type ComponentKey = (String, String);

/// What the autoscaler remembers and what instances reported. In memory: a
/// restarted server relearns within seconds.
#[derive(Debug, Default)]
pub(crate) struct Scaling {
    state: Mutex<ScalingState>,
}

#[derive(Debug, Default)]
struct ScalingState {
    autoscaler: BTreeMap<ComponentKey, vdc_autoscaler::State>,
    last: BTreeMap<ComponentKey, ScaleDecision>,
    loads: BTreeMap<InstanceId, (f64, Instant)>,
}

impl Scaling {
    fn lock(&self) -> MutexGuard<'_, ScalingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what an app's components taught the autoscaler.
    pub(crate) fn forget_app(&self, app: &str) {
        let mut s = self.lock();
        s.autoscaler.retain(|(a, _), _| a != app);
        s.last.retain(|(a, _), _| a != app);
        s.loads.retain(|id, _| id.app.as_str() != app);
    }

    /// Keeps the load reports received since the last call.
    fn take_loads(&self, loads: &mut Subscription) {
        let mut s = self.lock();
        while let Some(message) = loads.try_recv() {
            match message {
                Message::Load(report) => {
                    let Some(id) = report
                        .tags
                        .instance
                        .as_deref()
                        .and_then(|i| i.parse::<InstanceId>().ok())
                    else {
                        continue;
                    };
                    s.loads.insert(id, (report.utilization, Instant::now()));
                }
                Message::Dropped { count } => {
                    tracing::warn!("the autoscaler missed {count} messages with load reports");
                }
                _ => {}
            }
        }
    }

    /// The component's own signals that are still fresh: the loads its
    /// instances reported, and the count one of them asked for (kept in
    /// the app record, so whichever server took the request, the leader
    /// knows).
    fn signals(
        &self,
        app: &str,
        component: &str,
        current: u32,
        scale: Option<&Scale>,
        now_ms: u64,
    ) -> Signals {
        let mut s = self.lock();
        s.loads.retain(|_, (_, at)| at.elapsed() < LOAD_FRESH);
        let reports: Vec<f64> = s
            .loads
            .iter()
            .filter(|(id, _)| {
                id.app.as_str() == app && id.component.as_str() == component && id.index < current
            })
            .map(|(_, (u, _))| *u)
            .collect();
        Signals {
            utilization: (!reports.is_empty()).then(|| reports.iter().sum()),
            requested: scale
                .filter(|s| {
                    s.by.starts_with(BY_INSTANCE)
                        && now_ms.saturating_sub(s.at_ms) < millis(REQUEST_FRESH)
                })
                .map(|s| s.replicas),
        }
    }

    fn changed_by_hand(&self, app: &str, component: &str, now: u64, up: bool) {
        let mut s = self.lock();
        let state = s
            .autoscaler
            .entry((app.to_owned(), component.to_owned()))
            .or_default();
        state.changed_by_hand(now, if up { Direction::Up } else { Direction::Down });
    }
}

// === setting replicas ===

/// Who changes a replica count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetBy {
    Hand,
    Autoscaler,
    Instance(InstanceId),
}

impl std::fmt::Display for SetBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetBy::Hand => f.write_str("vdc scale"),
            SetBy::Autoscaler => f.write_str("autoscaler"),
            SetBy::Instance(id) => write!(f, "{BY_INSTANCE}{id}"),
        }
    }
}

/// Sets a component's replica count; returns the count before. `visible`
/// says whether the caller may see the app's tenant (404 otherwise).
pub(crate) async fn set_replicas(
    control: &ControlPlane,
    app: &str,
    component: &str,
    replicas: u32,
    by: &SetBy,
    why: Option<&str>,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> Result<u32, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (record, revision) = control
            .store()
            .app(app)
            .await?
            .filter(|(r, _)| visible(r.spec.tenant.as_str()))
            .ok_or_else(|| ApiError::NotFound(format!("no app named `{app}`")))?;
        let spec = component_of(&record, component)?;
        if record.deleting {
            return Err(ApiError::Conflict(format!(
                "app `{app}` is being taken down"
            )));
        }
        let bounds = spec.replicas;
        if replicas < bounds.min || replicas > bounds.max {
            return Err(ApiError::BadRequest(format!(
                "{replicas} replicas is outside the bounds of {app}/{component}: min {}, max {} (change them in the spec to go further)",
                bounds.min, bounds.max
            )));
        }
        let before = record.replicas(&spec.name);
        if before == replicas {
            return Ok(before);
        }
        let mut next = record.clone();
        let autoscale = record.scale.get(&spec.name).is_none_or(|s| s.autoscale);
        next.scale.insert(
            spec.name.clone(),
            Scale {
                replicas,
                autoscale,
                by: by.to_string(),
                at_ms: crate::telemetry::now_ms(),
            },
        );
        if replicas > before {
            let apps = control.store().apps().await?;
            crate::tenants::admit_quota(control, &apps, &next).await?;
            crate::api::admit(control, &apps, &next)?;
        }
        match control.store().put_app(&next, Some(revision)).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        let reason = match (by, why) {
            (SetBy::Autoscaler, Some(why)) => why.to_owned(),
            (_, Some(why)) => format!("{by}: {why}; {before} → {replicas} replicas"),
            (_, None) => format!("{by}: {before} → {replicas} replicas"),
        };
        control.telemetry().event(
            EventKind::Scaled,
            record.spec.tenant.as_str(),
            app,
            Some(component),
            None,
            reason,
        );
        if *by != SetBy::Autoscaler {
            control.scaling().changed_by_hand(
                app,
                component,
                crate::telemetry::now_s(),
                replicas > before,
            );
        }
        control.wake();
        return Ok(before);
    }
    Err(ApiError::Conflict(format!(
        "{app}/{component} kept changing while its replicas were being set; try again"
    )))
}

/// Turns autoscaling of a component on or off.
async fn set_autoscale(
    control: &ControlPlane,
    principal: &Principal,
    app: &str,
    component: &str,
    enabled: bool,
) -> Result<(), ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (record, revision) = find_app(control, principal, app).await?;
        let spec = component_of(&record, component)?;
        if enabled && !spec.inputs.values().any(|i| i.sla.is_some()) {
            return Err(ApiError::BadRequest(format!(
                "{app}/{component} has no SLA to keep: give one of its inputs an `sla` in the spec"
            )));
        }
        let mut next = record.clone();
        let replicas = record.replicas(&spec.name);
        let scale = next.scale.entry(spec.name.clone()).or_insert(Scale {
            replicas,
            autoscale: true,
            by: "spec".to_owned(),
            at_ms: crate::telemetry::now_ms(),
        });
        if scale.autoscale == enabled {
            return Ok(());
        }
        scale.autoscale = enabled;
        match control.store().put_app(&next, Some(revision)).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        control.telemetry().event(
            EventKind::Scaled,
            record.spec.tenant.as_str(),
            app,
            Some(component),
            None,
            format!(
                "autoscaling turned {}; {replicas} replicas",
                if enabled { "on" } else { "off" }
            ),
        );
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "{app}/{component} kept changing; try again"
    )))
}

fn component_of<'a>(record: &'a AppRecord, component: &str) -> Result<&'a ComponentSpec, ApiError> {
    let spec = record
        .spec
        .components
        .values()
        .find(|c| c.name.as_str() == component)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "app `{}` has no component `{component}`",
                record.spec.name
            ))
        })?;
    if spec.appliance.is_builtin() {
        return Err(ApiError::BadRequest(format!(
            "component `{component}` is a {} served by the data plane itself; it has no replicas to scale",
            spec.appliance
        )));
    }
    Ok(spec)
}

// === the autoscaler's loop ===

/// Decides every autoscaled component once a second, just after the
/// second's telemetry is collected.
pub(crate) async fn run(control: ControlPlane, shutdown: CancellationToken) {
    // Load reports arrive on the bus from every node's API, whichever
    // server leads; every server keeps them, for when it leads.
    let mut loads = control.telemetry().bus().subscribe(
        Topic::Metrics,
        Filter::all().with_kinds([SeriesKind::Instance]),
        LOAD_BUFFER,
    );
    loop {
        // After the collector has taken the second.
        let wait = crate::telemetry::until_next_second(
            crate::telemetry::COLLECT_AFTER + Duration::from_millis(35),
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        control.scaling().take_loads(&mut loads);
        // Only the leader scales; a follower's memory of the past is kept
        // for when it leads.
        if !control.is_leader() {
            continue;
        }
        if let Err(e) = pass(&control).await {
            tracing::warn!("autoscaler pass failed: {e}");
        }
    }
}

async fn pass(control: &ControlPlane) -> Result<(), StoreError> {
    let Some(now) = control.telemetry().with_window(|w| w.newest_ts()) else {
        return Ok(());
    };
    let apps = control.store().apps().await?;
    let tenants: BTreeMap<String, Tenant> = control
        .store()
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.name.to_string(), t))
        .collect();
    let instances = control.instances();
    let capacity = control.pool_capacity();
    for app in apps.iter().filter(|a| !a.deleting) {
        for component in app.spec.components.values() {
            let key = (app.spec.name.to_string(), component.name.to_string());
            if !app.autoscaled(&component.name) {
                control.scaling().lock().autoscaler.remove(&key);
                continue;
            }
            let Some((input, sla)) = component
                .inputs
                .values()
                .find_map(|i| Some((i, i.sla.as_ref()?)))
            else {
                continue;
            };
            let target = format!("{}.{}", component.name, input.name);
            let from = now.saturating_sub(sla.window.as_secs());
            let seconds: Vec<Second> = control
                .telemetry()
                .with_window(|w| w.target_seconds(app.spec.name.as_str(), &target, from))
                .into_iter()
                .map(|s| Second {
                    ts: s.ts,
                    requests: s.requests,
                    arrivals: s.arrivals,
                    errors: s.errors,
                    latency: s.latency,
                })
                .collect();
            let current = app.replicas(&component.name);
            let ready = ready_of(app, component, &instances, current);
            let room = room(
                app,
                component,
                &apps,
                tenants.get(app.spec.tenant.as_str()),
                capacity,
            );
            let signals = control.scaling().signals(
                &key.0,
                &key.1,
                current,
                app.scale.get(&component.name),
                crate::telemetry::now_ms(),
            );
            let decision = {
                let mut scaling = control.scaling().lock();
                let state = scaling.autoscaler.entry(key.clone()).or_default();
                let decision = vdc_autoscaler::decide(
                    &vdc_autoscaler::Input {
                        now,
                        sla,
                        min: component.replicas.min,
                        max: component.replicas.max,
                        current,
                        ready,
                        room,
                        seconds: &seconds,
                        signals,
                    },
                    state,
                );
                scaling.last.insert(
                    key.clone(),
                    ScaleDecision {
                        at_ms: crate::telemetry::now_ms(),
                        direction: match decision.direction {
                            Direction::Up => "up",
                            Direction::Down => "down",
                            Direction::Hold => "hold",
                        }
                        .to_owned(),
                        replicas: decision.replicas,
                        reason: decision.reason.clone(),
                        limited_by: decision.limited.map(|l| l.to_string()),
                    },
                );
                decision
            };
            if decision.newly_limited {
                control.telemetry().event(
                    EventKind::ScaleLimited,
                    app.spec.tenant.as_str(),
                    app.spec.name.as_str(),
                    Some(component.name.as_str()),
                    None,
                    decision.reason.clone(),
                );
            }
            if decision.changes() {
                let set = set_replicas(
                    control,
                    &key.0,
                    &key.1,
                    decision.replicas,
                    &SetBy::Autoscaler,
                    Some(&decision.reason),
                    &|_| true,
                )
                .await;
                if let Err(e) = set {
                    control.telemetry().event(
                        EventKind::Warning,
                        app.spec.tenant.as_str(),
                        app.spec.name.as_str(),
                        Some(component.name.as_str()),
                        None,
                        format!(
                            "the autoscaler could not set {} replicas: {}",
                            decision.replicas,
                            e.message()
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

fn ready_of(
    app: &AppRecord,
    component: &ComponentSpec,
    instances: &[InstanceStatus],
    current: u32,
) -> u32 {
    instances
        .iter()
        .filter(|s| s.id.app == app.spec.name && s.id.component == component.name)
        .filter(|s| s.id.index < current && crate::status::is_current_and_ready(app, s))
        .count() as u32
}

/// How many replicas of `component` the quota, the burst allowance, the
/// app budget and the pool leave room for, counting what the component
/// holds now as its own.
fn room(
    app: &AppRecord,
    component: &ComponentSpec,
    apps: &[AppRecord],
    tenant: Option<&Tenant>,
    capacity: Resources,
) -> Room {
    let per = component.resources;
    let held = app.replicas(&component.name);
    let mine = Usage::of(per.times(held), held);
    let minus = |total: Usage| Usage {
        cpu: vdc_spec::MilliCpu(total.cpu.0.saturating_sub(mine.cpu.0)),
        memory: vdc_spec::Bytes(total.memory.0.saturating_sub(mine.memory.0)),
        instances: total.instances.saturating_sub(mine.instances),
    };
    let (tenant_total, _) = crate::tenants::reserved_by(apps, app.spec.tenant.as_str(), None);
    let others = minus(tenant_total);
    let fits = |cpu: u64, memory: u64, instances: Option<u32>, used: Usage| -> u32 {
        // Nothing reserved per replica: no limit from this dimension.
        let by = |limit: u64, used: u64, each: u64| {
            limit
                .saturating_sub(used)
                .checked_div(each)
                .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let mut n = by(cpu, used.cpu.0, per.cpu.0).min(by(memory, used.memory.0, per.memory.0));
        if let Some(instances) = instances {
            n = n.min(instances.saturating_sub(used.instances));
        }
        n
    };
    let (quota, burst) = match tenant.and_then(|t| t.quota.map(|q| (q, t.burst))) {
        None => (u32::MAX, u32::MAX),
        Some((q, b)) => {
            let quota = fits(q.cpu.0, q.memory.0, Some(q.instances), others);
            let burst = match b {
                Some(b) => fits(
                    q.cpu.0.saturating_add(b.cpu.0),
                    q.memory.0.saturating_add(b.memory.0),
                    Some(q.instances.saturating_add(b.instances)),
                    others,
                ),
                None => quota,
            };
            (quota, burst)
        }
    };
    let budget = match app.spec.budget {
        None => u32::MAX,
        Some(budget) => fits(
            budget.cpu.0,
            budget.memory.0,
            None,
            minus(Usage::of(app.reserved(), 0)),
        ),
    };
    let pool_used = apps
        .iter()
        .filter(|a| !a.deleting)
        .fold(Resources::default(), |acc, a| acc.plus(a.reserved()));
    let pool = fits(
        capacity.cpu.0,
        capacity.memory.0,
        None,
        minus(Usage::of(pool_used, 0)),
    );
    Room {
        quota,
        burst,
        budget,
        pool,
    }
}

// === the API ===

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route(
            "/v1/apps/{app}/components/{component}/scale",
            get(show).post(scale),
        )
        .route(
            "/v1/apps/{app}/components/{component}/autoscale",
            post(autoscale),
        )
        .route("/v1/self", get(show_self))
        .route("/v1/self/load", post(report_load))
        .route("/v1/self/replicas", post(ask_replicas))
}

/// A component's scaling as the API shows it.
pub(crate) async fn view(
    control: &ControlPlane,
    record: &AppRecord,
    component: &ComponentSpec,
) -> Result<ScaleView, ApiError> {
    let instances = control.instances();
    let apps = control.store().apps().await?;
    let tenant = control
        .store()
        .tenant(record.spec.tenant.as_str())
        .await?
        .map(|(t, _)| t);
    let room = room(
        record,
        component,
        &apps,
        tenant.as_ref(),
        control.pool_capacity(),
    );
    let current = record.replicas(&component.name);
    let sla = component.inputs.values().find_map(|i| {
        let sla = i.sla.as_ref()?;
        let mut parts = Vec::new();
        if let Some(latency) = sla.latency {
            parts.push(latency.to_string());
        }
        if let Some(errors) = sla.max_error_ratio {
            parts.push(format!("errors <= {}%", errors * 100.0));
        }
        Some(format!(
            "{}.{}: {} over {}s",
            component.name,
            i.name,
            parts.join(", "),
            sla.window.as_secs()
        ))
    });
    let scale = record.scale.get(&component.name);
    let off_because = if sla.is_none() {
        Some("no SLA".to_owned())
    } else if component.replicas.min >= component.replicas.max {
        Some(format!("min = max = {}", component.replicas.max))
    } else if scale.is_some_and(|s| !s.autoscale) {
        Some("turned off".to_owned())
    } else {
        None
    };
    let key = (record.spec.name.to_string(), component.name.to_string());
    let last = control.scaling().lock().last.get(&key).cloned();
    Ok(ScaleView {
        app: record.spec.name.to_string(),
        component: component.name.to_string(),
        replicas: current,
        ready: ready_of(record, component, &instances, current),
        min: component.replicas.min,
        max: component.replicas.max,
        autoscale: off_because.is_none(),
        autoscale_off_because: off_because,
        sla,
        set_by: scale.map(|s| s.by.clone()),
        in_burst: current.saturating_sub(room.quota),
        last_decision: last,
    })
}

/// The scaling of a component the caller may see, as it is now.
async fn current_view(
    control: &ControlPlane,
    principal: &Principal,
    app: &str,
    component: &str,
) -> Result<Json<ScaleView>, ApiError> {
    let (record, _) = find_app(control, principal, app).await?;
    let spec = component_of(&record, component)?;
    Ok(Json(view(control, &record, spec).await?))
}

async fn show(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path((app, component)): Path<(String, String)>,
) -> Result<Json<ScaleView>, ApiError> {
    current_view(&control, &principal, &app, &component).await
}

async fn scale(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path((app, component)): Path<(String, String)>,
    Json(request): Json<ScaleRequest>,
) -> Result<Json<ScaleView>, ApiError> {
    set_replicas(
        &control,
        &app,
        &component,
        request.replicas,
        &SetBy::Hand,
        None,
        &|tenant| principal.sees(tenant),
    )
    .await?;
    current_view(&control, &principal, &app, &component).await
}

async fn autoscale(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path((app, component)): Path<(String, String)>,
    Json(request): Json<AutoscaleRequest>,
) -> Result<Json<ScaleView>, ApiError> {
    set_autoscale(&control, &principal, &app, &component, request.enabled).await?;
    current_view(&control, &principal, &app, &component).await
}

/// The caller's own app record and component.
async fn own(
    control: &ControlPlane,
    caller: &InstanceCaller,
) -> Result<(AppRecord, ComponentSpec), ApiError> {
    let gone = || {
        ApiError::NotFound(format!(
            "instance {} is not part of a running app",
            caller.id
        ))
    };
    let (record, _) = control
        .store()
        .app(caller.id.app.as_str())
        .await?
        .ok_or_else(gone)?;
    let spec = record
        .spec
        .components
        .get(&caller.id.component)
        .cloned()
        .ok_or_else(gone)?;
    Ok((record, spec))
}

async fn show_self(
    State(control): State<ControlPlane>,
    Extension(caller): Extension<InstanceCaller>,
) -> Result<Json<SelfView>, ApiError> {
    let (record, spec) = own(&control, &caller).await?;
    Ok(Json(SelfView {
        instance: caller.id.to_string(),
        tenant: caller.tenant.clone(),
        scale: view(&control, &record, &spec).await?,
    }))
}

async fn report_load(
    State(control): State<ControlPlane>,
    Extension(caller): Extension<InstanceCaller>,
    Json(report): Json<LoadReport>,
) -> Result<axum::http::StatusCode, ApiError> {
    let utilization =
        match (report.utilization, report.queue, report.queue_target) {
            (Some(u), None, None) => u,
            (None, Some(queue), Some(target)) if target > 0 => queue as f64 / target as f64,
            (None, Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "`queue_target` must be more than 0".to_owned(),
                ))
            }
            _ => return Err(ApiError::BadRequest(
                "report either `utilization` (1.0 is at capacity) or `queue` with `queue_target`"
                    .to_owned(),
            )),
        };
    if !utilization.is_finite() || !(0.0..=1000.0).contains(&utilization) {
        return Err(ApiError::BadRequest(format!(
            "utilization {utilization} is out of range: expected 0 to 1000 (1.0 is at capacity)"
        )));
    }
    // On the bus, so the leading server's autoscaler has it wherever this
    // instance runs, and subscribers see it.
    control.telemetry().bus().publish(
        Topic::Metrics,
        Message::Load(LoadSample {
            ts_ms: crate::telemetry::now_ms(),
            tags: Tags::new(
                caller.tenant.clone(),
                caller.id.app.to_string(),
                caller.id.component.to_string(),
            )
            .with_instance(caller.id.to_string()),
            utilization,
        }),
    );
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn ask_replicas(
    State(control): State<ControlPlane>,
    Extension(caller): Extension<InstanceCaller>,
    Json(request): Json<ScaleRequest>,
) -> Result<Json<ScaleView>, ApiError> {
    let app = caller.id.app.to_string();
    let component = caller.id.component.to_string();
    set_replicas(
        &control,
        &app,
        &component,
        request.replicas,
        &SetBy::Instance(caller.id.clone()),
        Some("asked for it"),
        &|_| true,
    )
    .await?;
    let (record, spec) = own(&control, &caller).await?;
    Ok(Json(view(&control, &record, &spec).await?))
}
