//! Node ingress: how other nodes' data planes reach the instances this node
//! runs. Each input of each instance gets one listener on the node's address
//! that forwards connections, byte for byte, to wherever the instance listens
//! now (inside its namespace when it is confined). The ingress port outlives
//! restarts of the instance, so other nodes keep one endpoint per instance.
//!
//! Traffic through an ingress is measured by the caller's node, where the
//! link or gateway is; the ingress itself is not reported, so nothing is
//! counted twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use vdc_dataplane::{Backends, Endpoint, ProxySpec};
use vdc_model::InstanceId;
use vdc_spec::{Protocol, TerminalName};

use crate::{lock, Agent};

/// How long connections through an ingress may finish once its instance is
/// gone.
const INGRESS_GRACE: Duration = Duration::from_secs(2);

/// One input's ingress.
pub(crate) struct Ingress {
    pub(crate) address: SocketAddr,
    pub(crate) backends: Backends,
}

fn key(id: &InstanceId, input: &TerminalName) -> String {
    format!("ingress:{id}.{input}")
}

impl Agent {
    /// Keeps one ingress on `ip` per input of every instance this node runs,
    /// pointed at the instance while it is ready (and at nothing otherwise),
    /// and closes those of instances that are gone. The addresses land in
    /// the instances' records ([`vdc_store::InstanceRecord::exposed`]).
    pub async fn expose(&self, ip: IpAddr) {
        let instances: Vec<(InstanceId, BTreeMap<TerminalName, SocketAddr>, bool)> =
            lock(&self.inner.instances)
                .values()
                .map(|slot| {
                    let status = &slot.record.status;
                    let locators = status
                        .locators
                        .iter()
                        .map(|(input, locator)| (input.clone(), locator.0))
                        .collect();
                    (status.id.clone(), locators, status.state.serves_traffic())
                })
                .collect();
        let live: BTreeSet<(InstanceId, TerminalName)> = instances
            .iter()
            .flat_map(|(id, locators, _)| locators.keys().map(|i| (id.clone(), i.clone())))
            .collect();

        let gone: Vec<(InstanceId, TerminalName)> = lock(&self.inner.ingress)
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for (id, input) in gone {
            // An instance that restarts has no locators for a moment: its
            // ingress stays while the instance does.
            if instances.iter().any(|(i, _, _)| i == &id) {
                continue;
            }
            lock(&self.inner.ingress).remove(&(id.clone(), input.clone()));
            self.inner
                .dataplane
                .unbind(&key(&id, &input), INGRESS_GRACE)
                .await;
        }

        for (id, locators, ready) in instances {
            for (input, addr) in locators {
                let endpoints = if ready {
                    vec![Endpoint {
                        instance: id.to_string(),
                        addr,
                    }]
                } else {
                    Vec::new()
                };
                let existing = lock(&self.inner.ingress)
                    .get(&(id.clone(), input.clone()))
                    .map(|i| (i.backends.clone(), i.address));
                let address = match existing {
                    Some((backends, address)) => {
                        backends.set(endpoints);
                        address
                    }
                    None => {
                        let name = key(&id, &input);
                        // Fail fast: the calling node retries elsewhere.
                        let backends = Backends::fail_fast(name.clone());
                        backends.set(endpoints);
                        let spec = ProxySpec {
                            name: name.clone(),
                            protocol: Protocol::Tcp,
                            backends: backends.clone(),
                            max_connections: None,
                        };
                        match self
                            .inner
                            .dataplane
                            .bind(&name, SocketAddr::new(ip, 0), spec)
                            .await
                        {
                            Ok(address) => {
                                lock(&self.inner.ingress).insert(
                                    (id.clone(), input.clone()),
                                    Ingress { address, backends },
                                );
                                address
                            }
                            Err(e) => {
                                tracing::warn!(instance = %id, %input, "cannot open the node ingress: {e}");
                                continue;
                            }
                        }
                    }
                };
                self.inner.update(&id, |record| {
                    record.exposed.insert(input.to_string(), address);
                });
            }
        }
    }
}
