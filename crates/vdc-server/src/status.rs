//! Views of an app for the API: its summary, components, listeners and
//! instances, computed from desired state and what the node observes.

use vdc_api::{AppDetail, AppState, AppSummary, ComponentStatus, ListenerStatus};
use vdc_model::{AppRecord, InstanceState, InstanceStatus};
use vdc_reconciler::ListenerKind;
use vdc_spec::Protocol;

use crate::ControlPlane;

/// True when an instance counts as ready for its app's current revision.
pub(crate) fn is_current_and_ready(app: &AppRecord, s: &InstanceStatus) -> bool {
    s.state == InstanceState::Ready && s.revision >= app.component_revision(&s.id.component)
}

pub(crate) fn summary(
    control: &ControlPlane,
    app: &AppRecord,
    instances: &[InstanceStatus],
) -> AppSummary {
    let mine: Vec<&InstanceStatus> = instances
        .iter()
        .filter(|s| s.id.app == app.spec.name)
        .collect();
    let desired: u32 = app
        .spec
        .components
        .values()
        .filter(|c| !c.appliance.is_builtin())
        .map(|c| app.replicas(&c.name))
        .sum();
    let ready = mine
        .iter()
        .filter(|s| is_current_and_ready(app, s) && s.id.index < desired_of(app, s))
        .count() as u32;
    let troubled = mine.iter().any(|s| {
        matches!(s.state, InstanceState::Unhealthy)
            || (s.state == InstanceState::Backoff && s.restarts > 0)
    });
    let state = if app.deleting {
        AppState::Stopping
    } else if ready >= desired {
        AppState::Ready
    } else if troubled {
        AppState::Degraded
    } else {
        AppState::Starting
    };
    let mut unplaced = control.unplaced(app.spec.name.as_str());
    unplaced.extend(control.wiring_errors(app.spec.name.as_str()));
    AppSummary {
        name: app.spec.name.to_string(),
        tenant: app.spec.tenant.to_string(),
        revision: app.revision,
        file: app.file.clone(),
        state,
        desired,
        ready,
        gateways: gateways(control, app),
        unplaced,
    }
}

fn desired_of(app: &AppRecord, s: &InstanceStatus) -> u32 {
    app.replicas(&s.id.component)
}

/// Gateway URLs as a user would type them: a wildcard bind is shown with the
/// node's address.
fn gateways(control: &ControlPlane, app: &AppRecord) -> Vec<String> {
    control
        .agent()
        .listeners()
        .into_iter()
        .filter(|b| b.plan.app == app.spec.name)
        .filter_map(|b| match b.plan.kind {
            ListenerKind::Gateway { .. } => {
                let mut addr = b.address;
                if addr.ip().is_unspecified() {
                    addr.set_ip(control.agent().node().address);
                }
                Some(match b.plan.protocol {
                    Protocol::Http => format!("http://{addr}/"),
                    Protocol::Tcp => format!("tcp://{addr}"),
                })
            }
            ListenerKind::Link { .. } => None,
        })
        .collect()
}

pub(crate) fn detail(
    control: &ControlPlane,
    app: &AppRecord,
    instances: &[InstanceStatus],
) -> AppDetail {
    let components = app
        .spec
        .components
        .values()
        .map(|c| ComponentStatus {
            name: c.name.to_string(),
            appliance: c.appliance.to_string(),
            desired: if c.appliance.is_builtin() {
                0
            } else {
                app.replicas(&c.name)
            },
            ready: instances
                .iter()
                .filter(|s| s.id.app == app.spec.name && s.id.component == c.name)
                .filter(|s| is_current_and_ready(app, s))
                .count() as u32,
            inputs: c
                .inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.protocol.to_string()))
                .collect(),
            links: c
                .links
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    let stats = control.agent().dataplane().listeners();
    let listeners = control
        .agent()
        .listeners()
        .into_iter()
        .filter(|b| b.plan.app == app.spec.name)
        .map(|b| {
            let s = stats
                .iter()
                .find(|l| l.key == b.plan.key)
                .map(|l| l.stats)
                .unwrap_or_default();
            ListenerStatus {
                key: b.plan.key.clone(),
                kind: match b.plan.kind {
                    ListenerKind::Link { .. } => "link".to_owned(),
                    ListenerKind::Gateway { .. } => "gateway".to_owned(),
                },
                address: b.address.to_string(),
                protocol: b.plan.protocol.to_string(),
                target: b.plan.target.to_string(),
                requests: s.requests,
                errors: s.errors_no_backend
                    + s.errors_refused
                    + s.errors_reset
                    + s.errors_timeout
                    + s.errors_other
                    + s.responses_5xx,
                connections_active: s.connections_active,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
            }
        })
        .collect();
    AppDetail {
        summary: summary(control, app, instances),
        components,
        listeners,
        instances: instances
            .iter()
            .filter(|s| s.id.app == app.spec.name)
            .cloned()
            .collect(),
    }
}
