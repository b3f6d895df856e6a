//! Telemetry over the API: live streams (Server-Sent Events or WebSocket),
//! recent events, the topology with live numbers, and Prometheus text.
//! Documented in docs/telemetry.md.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use vdc_api::{Topology, TopologyComponent, TopologyInstance, TopologyLink};
use vdc_model::InstanceState;
use vdc_telemetry::{Event, Filter, Message, SeriesKind, Subscription, Topic};

use crate::api::{find_app, ApiError};
use crate::auth::Principal;
use crate::{status, ControlPlane};

/// Messages a subscriber may fall behind by before it loses some (and is
/// told how many with a `dropped` message).
const SUBSCRIBER_BUFFER: usize = 1024;

pub(crate) fn router() -> Router<ControlPlane> {
    Router::new()
        .route("/v1/streams/metrics", get(stream_metrics))
        .route("/v1/streams/events", get(stream_events))
        .route("/v1/events", get(recent_events))
        .route("/v1/apps/{app}/topology", get(topology))
        .route("/metrics", get(prometheus))
}

#[derive(Debug, Default, Deserialize)]
struct StreamQuery {
    app: Option<String>,
    component: Option<String>,
    /// Comma-separated series kinds: link, gateway, instance.
    kind: Option<String>,
}

impl StreamQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let kinds = match &self.kind {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|k| match k.trim() {
                        "link" => Ok(SeriesKind::Link),
                        "gateway" => Ok(SeriesKind::Gateway),
                        "instance" => Ok(SeriesKind::Instance),
                        other => Err(ApiError::BadRequest(format!(
                            "unknown series kind `{other}`: expected link, gateway or instance"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Filter {
            tenant: None,
            app: self.app.clone(),
            component: self.component.clone(),
            kinds,
        })
    }
}

async fn stream_metrics(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<StreamQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    stream(control, principal, Topic::Metrics, q, ws.ok()).await
}

async fn stream_events(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<StreamQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    stream(control, principal, Topic::Events, q, ws.ok()).await
}

/// One subscriber: a WebSocket when the client asks to upgrade, else SSE.
async fn stream(
    control: ControlPlane,
    principal: Principal,
    topic: Topic,
    q: StreamQuery,
    ws: Option<WebSocketUpgrade>,
) -> Result<Response, ApiError> {
    if let Some(app) = &q.app {
        find_app(&control, &principal, app).await?;
    }
    let mut filter = q.filter()?;
    // A tenant's stream carries only that tenant's messages.
    filter.tenant = principal.tenant().map(str::to_owned);
    let subscription = control
        .telemetry()
        .bus()
        .subscribe(topic, filter, SUBSCRIBER_BUFFER);
    let shutdown = control.clone();
    if let Some(ws) = ws {
        return Ok(ws.on_upgrade(move |socket| websocket(socket, subscription, shutdown)));
    }
    let stream = futures_util::stream::unfold(
        (subscription, shutdown),
        |(mut subscription, control)| async move {
            let message = tokio::select! {
                m = subscription.recv() => m?,
                _ = control.shutting_down() => return None,
            };
            Some((
                Ok::<_, Infallible>(sse_event(&message)),
                (subscription, control),
            ))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `event: traffic|resources|load|event|dropped`, `data: <the message as
/// JSON>`.
fn sse_event(message: &Message) -> SseEvent {
    let name = match message {
        Message::Traffic(_) => "traffic",
        Message::Resources(_) => "resources",
        Message::Event(_) => "event",
        Message::Load(_) => "load",
        Message::Dropped { .. } => "dropped",
    };
    let data = serde_json::to_string(message).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    SseEvent::default().event(name).data(data)
}

async fn websocket(mut socket: WebSocket, mut subscription: Subscription, control: ControlPlane) {
    loop {
        let message = tokio::select! {
            m = subscription.recv() => match m {
                Some(m) => m,
                None => break,
            },
            // A client closing (or sending anything) ends nothing but its
            // own read; a closed socket ends the subscription.
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
            _ = control.shutting_down() => break,
        };
        let Ok(text) = serde_json::to_string(&message) else {
            continue;
        };
        if socket.send(WsMessage::Text(text.into())).await.is_err() {
            break;
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    app: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn recent_events(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    if let Some(app) = &q.app {
        find_app(&control, &principal, app).await?;
    }
    let app = q.app.clone();
    Ok(Json(control.telemetry().recent_events(
        |e| app.as_deref().is_none_or(|a| e.app == a) && principal.sees(&e.tenant),
        q.limit,
    )))
}

#[derive(Debug, Deserialize)]
struct TopologyQuery {
    #[serde(default = "default_seconds")]
    seconds: usize,
}

fn default_seconds() -> usize {
    5
}

async fn topology(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
    Query(q): Query<TopologyQuery>,
) -> Result<Json<Topology>, ApiError> {
    let (record, _) = find_app(&control, &principal, &app).await?;
    let instances = control.instances();
    let summary = status::summary(&control, &record, &instances);
    let seconds = q.seconds.clamp(1, 60);
    let filter = Filter {
        app: Some(app.clone()),
        ..Filter::default()
    };
    let (rates, usage) = control.telemetry().with_window(|w| {
        (
            w.traffic_rates(&filter, seconds),
            w.resource_usage(&filter, seconds),
        )
    });
    let listeners = control.agent().listeners();

    let links: Vec<TopologyLink> = rates
        .iter()
        .filter(|r| r.kind != SeriesKind::Instance)
        .map(|r| TopologyLink {
            kind: if r.kind == SeriesKind::Gateway {
                "gateway"
            } else {
                "link"
            }
            .to_owned(),
            from: r.tags.component.clone(),
            link: r.tags.link.clone().unwrap_or_default(),
            to: r.tags.target.clone().unwrap_or_default(),
            protocol: r.protocol.clone(),
            address: listeners
                .iter()
                .find(|b| {
                    b.plan.app.as_str() == app
                        && b.plan.target.to_string() == r.tags.target.clone().unwrap_or_default()
                        && listener_matches(&b.plan.kind, &r.tags.component, r.tags.link.as_deref())
                })
                .map(|b| b.address.to_string())
                .unwrap_or_default(),
            requests_per_s: if r.protocol == "http" {
                r.rate.requests_per_s
            } else {
                r.rate.connections_per_s
            },
            errors_per_s: r.rate.errors_per_s,
            connections_per_s: r.rate.connections_per_s,
            connections_active: r.rate.traffic.connections_active,
            bytes_in_per_s: r.rate.bytes_in_per_s,
            bytes_out_per_s: r.rate.bytes_out_per_s,
            latency: r.rate.latency.filter(|l| l.count > 0),
        })
        .collect();

    let components = record
        .spec
        .components
        .values()
        .map(|c| {
            let name = c.name.as_str();
            let mine: Vec<&vdc_model::InstanceStatus> = instances
                .iter()
                .filter(|s| s.id.app == record.spec.name && s.id.component == c.name)
                .collect();
            let inbound: Vec<&TopologyLink> = links
                .iter()
                .filter(|l| l.to.split('.').next() == Some(name))
                .collect();
            let busiest = inbound
                .iter()
                .max_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s))
                .and_then(|l| l.latency);
            let instance_rows: Vec<TopologyInstance> = mine
                .iter()
                .map(|s| {
                    let id = s.id.to_string();
                    let served = rates.iter().find(|r| {
                        r.kind == SeriesKind::Instance
                            && r.tags.instance.as_deref() == Some(id.as_str())
                    });
                    let used = usage
                        .iter()
                        .find(|u| u.tags.instance.as_deref() == Some(id.as_str()));
                    TopologyInstance {
                        id,
                        state: s.state.to_string(),
                        pid: s.pid,
                        restarts: s.restarts,
                        cpu_percent: used.map_or(0.0, |u| u.cpu_percent),
                        memory_bytes: used.map_or(0, |u| u.memory_bytes),
                        requests_per_s: served.map_or(0.0, |r| {
                            if r.protocol == "http" {
                                r.rate.requests_per_s
                            } else {
                                r.rate.connections_per_s
                            }
                        }),
                        errors_per_s: served
                            .map_or(0.0, |r| r.rate.errors_per_s + r.rate.responses_5xx_per_s),
                        p50_ms: served
                            .and_then(|r| r.rate.latency)
                            .filter(|l| l.count > 0)
                            .map(|l| l.p50_ms),
                        p99_ms: served
                            .and_then(|r| r.rate.latency)
                            .filter(|l| l.count > 0)
                            .map(|l| l.p99_ms),
                    }
                })
                .collect();
            TopologyComponent {
                name: name.to_owned(),
                appliance: c.appliance.to_string(),
                desired: if c.appliance.is_builtin() {
                    0
                } else {
                    record.replicas(&c.name)
                },
                ready: mine
                    .iter()
                    .filter(|s| s.state == InstanceState::Ready)
                    .count() as u32,
                restarts: mine.iter().map(|s| s.restarts).sum(),
                requests_per_s: inbound.iter().map(|l| l.requests_per_s).sum::<f64>() + 0.0,
                errors_per_s: inbound.iter().map(|l| l.errors_per_s).sum::<f64>() + 0.0,
                connections_active: inbound.iter().map(|l| l.connections_active).sum(),
                p50_ms: busiest.map(|l| l.p50_ms),
                p99_ms: busiest.map(|l| l.p99_ms),
                cpu_percent: instance_rows.iter().map(|i| i.cpu_percent).sum::<f64>() + 0.0,
                memory_bytes: instance_rows.iter().map(|i| i.memory_bytes).sum(),
                instances: instance_rows,
            }
        })
        .collect();

    Ok(Json(Topology {
        app: record.spec.name.to_string(),
        tenant: record.spec.tenant.to_string(),
        state: summary.state,
        seconds: seconds as u64,
        components,
        links,
    }))
}

fn listener_matches(
    kind: &vdc_reconciler::ListenerKind,
    component: &str,
    link: Option<&str>,
) -> bool {
    match kind {
        vdc_reconciler::ListenerKind::Link {
            component: c,
            link: l,
        } => c.as_str() == component && Some(l.as_str()) == link,
        vdc_reconciler::ListenerKind::Gateway { component: c, .. } => {
            c.as_str() == component && link == Some("gateway")
        }
    }
}

/// Prometheus text exposition format 0.0.4.
async fn prometheus(
    State(control): State<ControlPlane>,
    Extension(principal): Extension<Principal>,
) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        control.telemetry().prometheus(principal.tenant()),
    )
        .into_response()
}
