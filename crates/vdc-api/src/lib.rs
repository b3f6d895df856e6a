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
    /// Whether this server leads the control loops (always, without NATS).
    #[serde(default)]
    pub leader: bool,
    /// The term it leads in; absent while another server leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
}

/// `POST /v1/apps`: submit (create or update) an app.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

// === telemetry views ===

/// `GET /v1/apps/{app}/topology`: the app as a graph with live numbers,
/// averaged over the last `seconds` seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    pub app: String,
    pub tenant: String,
    pub state: AppState,
    pub seconds: u64,
    pub components: Vec<TopologyComponent>,
    /// Links and gateways, with their traffic.
    pub links: Vec<TopologyLink>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopologyComponent {
    pub name: String,
    pub appliance: String,
    pub desired: u32,
    pub ready: u32,
    pub restarts: u32,
    /// Traffic into the component: every link and gateway leading to it.
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub connections_active: u64,
    /// Latency of the busiest link or gateway leading to the component.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Sum over its instances; 100 is one core.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub instances: Vec<TopologyInstance>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopologyInstance {
    pub id: String,
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// Requests (HTTP) or connections (TCP) it served per second.
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopologyLink {
    /// `link` or `gateway`.
    pub kind: String,
    /// The calling component (for a gateway: the component declaring it).
    pub from: String,
    /// The link's name, or `gateway`.
    pub link: String,
    /// `component.input` the traffic goes to.
    pub to: String,
    pub protocol: String,
    pub address: String,
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub connections_per_s: f64,
    pub connections_active: u64,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    pub latency: Option<vdc_telemetry::Latency>,
}

// === tenants ===

/// Limits as a person writes them: `cpu = "4"` or `"500m"`, `memory =
/// "8GiB"`, `instances = 20`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub cpu: String,
    pub memory: String,
    pub instances: u32,
}

/// Prices as decimals of the currency unit, up to six places (`"0.0012"`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesSpec {
    #[serde(default)]
    pub cpu_minute: Option<String>,
    #[serde(default)]
    pub gib_minute: Option<String>,
    #[serde(default)]
    pub burst_cpu_minute: Option<String>,
    #[serde(default)]
    pub burst_gib_minute: Option<String>,
}

/// `POST /v1/tenants`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    #[serde(default)]
    pub burst: Option<QuotaSpec>,
    #[serde(default)]
    pub prices: Option<PricesSpec>,
    /// Users other than their own the tenant's instances may run as.
    #[serde(default)]
    pub run_as: Vec<String>,
}

/// `PUT /v1/tenants/{tenant}/quota`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    #[serde(default)]
    pub burst: Option<QuotaSpec>,
}

/// `PUT /v1/tenants/{tenant}/run-as`: the users other than their own
/// that the tenant's instances may run as (replaces the list).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRunAs {
    pub run_as: Vec<String>,
}

/// `GET /v1/logs/{app}`: the instances whose logs this node keeps for an
/// app, running or taken down.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptLogs {
    pub app: String,
    pub tenant: String,
    /// `false`: the app was taken down; these are the logs it left.
    pub running: bool,
    /// `APP/COMPONENT/INDEX`, sorted.
    pub instances: Vec<String>,
}

/// A tenant as the API shows it (never its token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    /// `None`: no limit.
    pub quota: Option<vdc_model::Quota>,
    pub burst: Option<vdc_model::Quota>,
    pub prices: vdc_model::Prices,
    /// What its apps reserve now.
    pub reserved: vdc_model::Usage,
    pub apps: u32,
    pub created_at_ms: u64,
    pub token_rotated_at_ms: u64,
    /// Users other than their own the tenant's instances may run as.
    #[serde(default)]
    pub run_as: Vec<String>,
}

/// The answer to creating a tenant or rotating its token: the only time the
/// token is shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantToken {
    pub tenant: TenantView,
    pub token: String,
}

// === scaling ===

/// `POST /v1/apps/{app}/components/{component}/scale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub replicas: u32,
}

/// `POST /v1/apps/{app}/components/{component}/autoscale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleRequest {
    pub enabled: bool,
}

/// A component's replicas, bounds, and what the autoscaler last decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleView {
    pub app: String,
    pub component: String,
    pub replicas: u32,
    pub ready: u32,
    pub min: u32,
    pub max: u32,
    /// Whether the autoscaler may change the count now.
    pub autoscale: bool,
    /// Why it may not, when it may not: "no SLA", "min = max", "turned off".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub autoscale_off_because: Option<String>,
    /// The SLA it keeps, as written: "web.http: p99 <= 50ms".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sla: Option<String>,
    /// Who set the count last, when it was not the spec.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub set_by: Option<String>,
    /// Replicas running above the tenant's quota, billed at burst prices.
    pub in_burst: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_decision: Option<ScaleDecision>,
}

/// One decision of the autoscaler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    pub at_ms: u64,
    /// `up`, `down` or `hold`.
    pub direction: String,
    pub replicas: u32,
    pub reason: String,
    /// What stopped it short, if anything.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limited_by: Option<String>,
}

/// `POST /v1/self/load`: an instance reports how loaded it is. Either its
/// utilization (1.0 is at capacity), or a queue depth and the depth it
/// aims at (their ratio is then its utilization).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadReport {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queue: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queue_target: Option<u64>,
}

/// What `GET /v1/self` tells an instance about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfView {
    pub instance: String,
    pub tenant: String,
    pub scale: ScaleView,
}

/// A node of the pool, as `GET /v1/nodes` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    pub address: String,
    /// `ready`, `draining` or `down`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// Millicores and bytes the node offers.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// What the instances assigned to it reserve.
    pub allocated_cpu_millis: u64,
    pub allocated_memory_bytes: u64,
    /// The filesystem of its data directory (volumes, snapshots): size and
    /// free space, as of its last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// Instances assigned to it.
    pub instances: usize,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Unix milliseconds when its agent started.
    pub started_ms: u64,
}

/// `POST /v1/nodes/{node}/drain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// `true` to empty the node and keep new instances off it; `false` to
    /// let it take instances again.
    pub draining: bool,
}

/// `POST /v1/snapshots`: take a snapshot of an instance's volumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// `APP/COMPONENT` (instance 0) or `APP/COMPONENT/INDEX`.
    pub target: String,
    /// A name to find it by, unique among snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A snapshot as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// The content hash that names it (64 hex digits); any unique prefix of
    /// 6 or more finds it too.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tenant: String,
    pub app: String,
    pub component: String,
    pub index: u32,
    /// The volumes it holds, comma-separated.
    pub volumes: String,
    /// `manual`, `backup`, `move` or `import`.
    pub kind: String,
    /// The node whose snapshot store holds it.
    pub node: String,
    pub created_ms: u64,
    /// How long the instance was frozen while its volumes were copied.
    pub frozen_ms: u64,
    pub files: u64,
    /// Size of the files, and what the snapshot's (compressed, deduplicated)
    /// blobs take.
    pub logical_bytes: u64,
    pub stored_bytes: u64,
}

/// What `POST /v1/snapshots` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotTaken {
    pub snapshot: SnapshotSummary,
    /// `cgroup-freezer` or `sigstop`.
    pub freeze: String,
    /// Whether the frozen copy used copy-on-write clones (reflinks).
    pub reflinked: bool,
    /// From the request to the stored snapshot.
    pub total_ms: u64,
}

/// `POST /v1/snapshots/{snapshot}/restore`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// `APP/COMPONENT[/INDEX]` whose volumes are replaced; the instance the
    /// snapshot was taken of when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// How long to wait for the instance to be ready again before
    /// answering (default 60 s, at most 10 minutes); `ready` says whether
    /// it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub snapshot: String,
    /// The instance whose volumes were replaced.
    pub instance: String,
    pub files: u64,
    pub bytes: u64,
    /// From stopping the instance to it being ready again with the restored
    /// data (or to the restore's end when it did not run before).
    pub downtime_ms: u64,
    /// Whether the instance was ready again when the answer was sent.
    pub ready: bool,
}

// === images ===

/// An image a node has, as `GET /v1/images` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The reference it was pulled or imported by, in full.
    pub name: String,
    /// `sha256:…` of its manifest.
    pub digest: String,
    pub layers: usize,
    /// Bytes of its blobs as stored (compressed layers).
    pub size_bytes: u64,
    pub created_ms: u64,
    pub last_used_ms: u64,
    /// Instances of this node running from it.
    pub used_by: Vec<String>,
}

/// `GET /v1/images/inspect?name=REF`: an image and what it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDetail {
    pub image: ImageInfo,
    pub config: String,
    /// The layers' digests, bottom first.
    pub layer_digests: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// `POST /v1/images/pull`: answered with server-sent events, `progress`
/// (`ImagePullProgress`) while blobs come, then `done` (`ImageInfo`) or
/// `error` (`ErrorBody`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullImage {
    pub reference: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePullProgress {
    /// Bytes received of all the image's blobs, and their total.
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Per blob: digest, bytes received, size.
    pub blobs: Vec<(String, u64, u64)>,
    /// `fetching` or `unpacking`.
    pub phase: String,
}

/// `POST /v1/images/import`: an OCI layout or archive on the server's
/// machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportImage {
    /// `oci:/DIR[:TAG]` or `oci-archive:/FILE[:TAG]` (absolute paths).
    pub source: String,
}

/// `POST /v1/images/export`: an image written as an OCI archive on the
/// server's machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportImage {
    pub name: String,
    /// Absolute path of the archive to write.
    pub path: String,
    /// The tag inside the archive (default `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `POST /v1/images/prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneImages {
    /// Images unused for this long go, unless an app refers to them
    /// (default 0: every image no app refers to and no instance uses).
    #[serde(default)]
    pub unused_for_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedImages {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
}

/// `POST /v1/registries/login`: credentials a node pulls with, checked
/// against the registry first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub registry: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("registry", &self.registry)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/registries/logout`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogout {
    pub registry: String,
}
