//! The HTTP/JSON API between the CLI (or any client) and the control plane:
//! request and response bodies, and the paths they travel on.
//!
//! **Invariant:** these types are the wire format. Field names are stable and
//! documented in `docs/api.md`; add fields, never rename them.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vdc_model::{InstanceStatus, NodeInfo};
use vdc_spec::Diagnostic;

/// The default address of the API.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7700";

/// `GET /v1/health`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    pub pid: u32,
    pub data_dir: String,
    pub api: String,
    pub node: NodeInfo,
    /// Why instances on this node are not fully isolated, if they are not.
    pub isolation_warning: Option<String>,
}

/// `POST /v1/apps`: submit (create or update) an app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitApp {
    /// The file name as the user gave it, for diagnostics.
    pub file: String,
    /// The absolute directory holding the file: relative paths resolve here.
    pub base_dir: String,
    pub source: String,
}

/// The reply to a submission.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submitted {
    pub app: String,
    pub revision: u64,
    /// False when the submitted spec equals the running one.
    pub changed: bool,
    pub warnings: Vec<Diagnostic>,
}

/// An error reply: a one-line message, and diagnostics for a rejected spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// The overall state of an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// Some instances are not ready yet.
    Starting,
    /// Every desired instance is ready.
    Ready,
    /// Instances that were ready are not (exited, unhealthy, backing off).
    Degraded,
    /// Being taken down.
    Stopping,
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppState::Starting => "starting",
            AppState::Ready => "ready",
            AppState::Degraded => "degraded",
            AppState::Stopping => "stopping",
        })
    }
}

/// `GET /v1/apps` (a list) and part of `GET /v1/apps/{app}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: String,
    pub tenant: String,
    pub revision: u64,
    pub file: String,
    pub state: AppState,
    /// Instances wanted across process components.
    pub desired: u32,
    pub ready: u32,
    /// URLs (http) or addresses (tcp) of the app's gateways.
    pub gateways: Vec<String>,
    /// Instances that cannot be placed, with the reason.
    pub unplaced: Vec<String>,
}

/// `GET /v1/apps/{app}`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppDetail {
    pub summary: AppSummary,
    pub components: Vec<ComponentStatus>,
    pub listeners: Vec<ListenerStatus>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub appliance: String,
    pub desired: u32,
    pub ready: u32,
    pub inputs: BTreeMap<String, String>,
    /// Link name -> `component.input` it leads to.
    pub links: BTreeMap<String, String>,
}

/// A link address or gateway the data plane holds for the app, with its
/// counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub key: String,
    /// `link` or `gateway`.
    pub kind: String,
    pub address: String,
    pub protocol: String,
    /// `component.input` traffic goes to.
    pub target: String,
    pub requests: u64,
    pub errors: u64,
    pub connections_active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// `GET /v1/instances[?app=APP]` lists [`InstanceStatus`] as is.
pub type InstanceList = Vec<InstanceStatus>;
