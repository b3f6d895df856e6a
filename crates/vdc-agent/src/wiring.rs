//! Applying the wiring plan: binding the listeners of links and gateways on
//! this node's data plane and pointing each at its target's balancing set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use vdc_dataplane::ProxySpec;
use vdc_reconciler::{ListenerKind, ListenerPlan};

use crate::{lock, Agent};

/// How long connections on a removed listener may take to finish.
const UNBIND_GRACE: Duration = Duration::from_secs(2);

/// A listener the data plane holds, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerBinding {
    pub plan: ListenerPlan,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WiringError {
    #[error("cannot bind {key}: {message}")]
    Bind { key: String, message: String },
    /// A link's stable address was taken by another program while vdc was
    /// not holding it; the link got a new address.
    #[error(
        "link {key} could not get its address {old} back ({message}); it now listens on {new}"
    )]
    Moved {
        key: String,
        old: SocketAddr,
        new: SocketAddr,
        message: String,
    },
}

impl Agent {
    /// Makes the data plane hold exactly the listeners in `plans`. Links bind
    /// their address from `known` when they have one (their identity must
    /// not change), else a fresh loopback port. Returns every binding now
    /// held, and what could not be done.
    pub async fn apply_wiring(
        &self,
        plans: &[ListenerPlan],
        known: &BTreeMap<String, SocketAddr>,
    ) -> (Vec<ListenerBinding>, Vec<WiringError>) {
        let mut errors = Vec::new();
        let wanted: BTreeSet<&str> = plans.iter().map(|p| p.key.as_str()).collect();
        let stale: Vec<String> = lock(&self.inner.listeners)
            .keys()
            .filter(|k| !wanted.contains(k.as_str()))
            .cloned()
            .collect();
        for key in stale {
            self.inner.dataplane.unbind(&key, UNBIND_GRACE).await;
            lock(&self.inner.listeners).remove(&key);
        }

        for plan in plans {
            let mut current = lock(&self.inner.listeners).get(&plan.key).cloned();
            // Another node recorded the link's address first: the link
            // listens there on every node.
            let recorded = known.get(&plan.key).copied();
            if let (Some(c), Some(addr)) = (&current, recorded) {
                if plan.fixed_address().is_none() && c.address != addr {
                    self.inner.dataplane.unbind(&plan.key, UNBIND_GRACE).await;
                    lock(&self.inner.listeners).remove(&plan.key);
                    current = None;
                }
            }
            if current.as_ref().is_some_and(|c| &c.plan == plan) {
                continue;
            }
            let wanted_addr = plan
                .fixed_address()
                .or_else(|| current.as_ref().map(|c| c.address))
                .or(recorded)
                .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
            let backends = self.inner.backends_for((
                plan.app.clone(),
                plan.target.component.clone(),
                plan.target.input.clone(),
            ));
            let spec = || ProxySpec {
                name: plan.key.clone(),
                protocol: plan.protocol,
                backends: backends.clone(),
                max_connections: None,
            };
            let bound = match self
                .inner
                .dataplane
                .bind(&plan.key, wanted_addr, spec())
                .await
            {
                Ok(addr) => Ok(addr),
                Err(e)
                    if matches!(plan.kind, ListenerKind::Link { .. })
                        && wanted_addr.port() != 0 =>
                {
                    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                    match self.inner.dataplane.bind(&plan.key, any, spec()).await {
                        Ok(new) => {
                            errors.push(WiringError::Moved {
                                key: plan.key.clone(),
                                old: wanted_addr,
                                new,
                                message: e.to_string(),
                            });
                            Ok(new)
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match bound {
                Ok(address) => {
                    lock(&self.inner.listeners).insert(
                        plan.key.clone(),
                        ListenerBinding {
                            plan: plan.clone(),
                            address,
                        },
                    );
                }
                Err(e) => errors.push(WiringError::Bind {
                    key: plan.key.clone(),
                    message: e.to_string(),
                }),
            }
        }
        (self.listeners(), errors)
    }

    /// The listeners the data plane holds now.
    pub fn listeners(&self) -> Vec<ListenerBinding> {
        lock(&self.inner.listeners).values().cloned().collect()
    }
}
