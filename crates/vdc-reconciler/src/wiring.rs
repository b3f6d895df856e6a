//! Wiring: the data-plane listeners an app's links and gateways need.
//!
//! Only what the spec declares gets an address: one listener per link of a
//! process component (its stable address, the link's identity) and one per
//! gateway. Nothing else is wired.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use vdc_model::AppRecord;
use vdc_spec::{AppName, Appliance, ComponentName, LinkTarget, Protocol, TenantName, TerminalName};

/// What a listener is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ListenerKind {
    /// The stable address of `component`'s link `link`, used by its instances.
    Link {
        component: ComponentName,
        link: TerminalName,
    },
    /// A gateway on the node's address.
    Gateway {
        component: ComponentName,
        address: IpAddr,
        port: u16,
    },
}

/// One listener the data plane must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerPlan {
    /// Unique per app and terminal, stable across revisions: `shop/web.db`,
    /// `shop/lb:gateway`.
    pub key: String,
    pub tenant: TenantName,
    pub app: AppName,
    pub kind: ListenerKind,
    pub protocol: Protocol,
    /// The input traffic is forwarded to, within the same app.
    pub target: LinkTarget,
}

impl ListenerPlan {
    /// The fixed address a gateway binds; links get theirs allocated once and
    /// kept in the store.
    pub fn fixed_address(&self) -> Option<SocketAddr> {
        match &self.kind {
            ListenerKind::Gateway { address, port, .. } => Some(SocketAddr::new(*address, *port)),
            ListenerKind::Link { .. } => None,
        }
    }
}

/// The listeners `apps` need. Links of an app being taken down stay until its
/// instances are gone, so they can finish; its gateways close at once.
pub fn wiring(apps: &[AppRecord]) -> Vec<ListenerPlan> {
    let mut plans = Vec::new();
    for app in apps {
        let name = &app.spec.name;
        for component in app.spec.components.values() {
            if !component.appliance.is_builtin() {
                for (link, target) in &component.links {
                    let Some(input) = app.spec.link_input(target) else {
                        continue;
                    };
                    plans.push(ListenerPlan {
                        key: format!("{name}/{}.{link}", component.name),
                        tenant: app.spec.tenant.clone(),
                        app: name.clone(),
                        kind: ListenerKind::Link {
                            component: component.name.clone(),
                            link: link.clone(),
                        },
                        protocol: input.protocol,
                        target: target.clone(),
                    });
                }
            }
            let Some(gateway) = component.gateway.as_ref().filter(|_| !app.deleting) else {
                continue;
            };
            // A built-in balancer's gateway leads straight to its backend:
            // the data plane is the balancer.
            let target = match component.appliance {
                Appliance::BuiltinHttpLb => component.links.values().next().cloned(),
                Appliance::Process | Appliance::Container => Some(LinkTarget {
                    component: component.name.clone(),
                    input: gateway.input.clone(),
                }),
            };
            let Some(target) = target else { continue };
            let protocol = match component.appliance {
                Appliance::BuiltinHttpLb => Protocol::Http,
                Appliance::Process | Appliance::Container => app
                    .spec
                    .link_input(&target)
                    .map_or(Protocol::Tcp, |i| i.protocol),
            };
            plans.push(ListenerPlan {
                key: format!("{name}/{}:gateway", component.name),
                tenant: app.spec.tenant.clone(),
                app: name.clone(),
                kind: ListenerKind::Gateway {
                    component: component.name.clone(),
                    address: gateway.address,
                    port: gateway.port,
                },
                protocol,
                target,
            });
        }
    }
    plans
}
