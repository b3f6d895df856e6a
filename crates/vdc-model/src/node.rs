//! Nodes of the pool and the stored form of a submitted app.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vdc_spec::{AppSpec, ComponentName, Resources};

use crate::NodeId;

/// A machine running the vdc agent, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// The node's public address, where gateways are reachable.
    pub address: IpAddr,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
}

/// An app as submitted: the desired state of one app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub spec: AppSpec,
    /// Bumped on every submission that changes the spec.
    pub revision: u64,
    /// The file the spec came from, as the user named it.
    pub file: String,
    /// The spec text as submitted, so it can be shown and exported.
    pub source: String,
    pub submitted_at_ms: u64,
    /// The app revision at which each component's spec last changed; an
    /// instance started from an older revision is replaced.
    pub component_revisions: BTreeMap<ComponentName, u64>,
    /// Set by `down`: the app stays recorded until its instances are gone.
    pub deleting: bool,
}

impl AppRecord {
    /// The record for a new submission, given the app's previous record if
    /// it had one. Only components whose spec changed get the new revision,
    /// so resubmitting an unchanged file restarts nothing.
    pub fn submit(
        spec: AppSpec,
        file: String,
        source: String,
        now_ms: u64,
        previous: Option<&AppRecord>,
    ) -> AppRecord {
        let revision = previous.map_or(1, |p| p.revision + 1);
        let component_revisions = spec
            .components
            .iter()
            .map(|(name, component)| {
                let unchanged = previous
                    .filter(|p| !p.deleting)
                    .and_then(|p| {
                        Some((
                            p.spec.components.get(name)?,
                            p.component_revisions.get(name)?,
                        ))
                    })
                    .filter(|(old, _)| *old == component);
                (name.clone(), unchanged.map_or(revision, |(_, rev)| *rev))
            })
            .collect();
        AppRecord {
            spec,
            revision,
            file,
            source,
            submitted_at_ms: now_ms,
            component_revisions,
            deleting: false,
        }
    }

    /// The revision instances of `component` must have been started from.
    pub fn component_revision(&self, component: &ComponentName) -> u64 {
        self.component_revisions
            .get(component)
            .copied()
            .unwrap_or(self.revision)
    }
}
