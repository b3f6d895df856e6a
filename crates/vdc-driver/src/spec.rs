//! What the agent asks a driver to run, and what it remembers to clean up later.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a driver needs to start one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The instance's name, "shop/web/0": used in errors and logs only.
    pub instance: String,
    /// The cgroup leaf for this instance, unique on the node and chosen by the
    /// agent, such as "vdc-7f3a/shop.web.0". At most one '/', no "." or ".."
    /// components. The parent ("vdc-7f3a") is created when missing and removed
    /// with its last instance.
    pub cgroup_name: String,
    /// The program: looked up in `PATH` when it has no '/', otherwise taken
    /// relative to `workdir`.
    pub program: String,
    pub args: Vec<String>,
    /// Added to (or overriding) the agent's own environment. A `PATH` here is
    /// also the one used to find `program`.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// Both stdout and stderr are appended here. The file (and its parent
    /// directories) are created when missing. The instance writes to it
    /// directly, so it keeps logging while the agent is down.
    pub log_file: PathBuf,
    /// The soft limit on open files the program starts with, when not the
    /// agent's own.
    pub nofile: Option<u64>,
    pub limits: Limits,
    /// Namespaces to run the instance in, when the node confines instances.
    pub confine: Option<Confinement>,
}

/// How a confined instance runs: under the node's init, in a PID
/// namespace of its own, confined by a sandbox (its view of the
/// filesystem, its user, its system-call filter), and in its own network
/// namespace unless it declared egress.
#[derive(Clone)]
pub struct Confinement {
    /// The network namespace to join; `None`: the host's network.
    pub netns: Option<std::sync::Arc<vdc_netns::Netns>>,
    /// The init that builds the sandbox and runs the program.
    pub init: vdc_sandbox::PidInit,
    /// What the program sees and who it runs as. The driver adds the
    /// program itself to what is exposed when the view would not show it,
    /// and the instance's cgroup.
    pub sandbox: vdc_sandbox::Sandbox,
}

impl std::fmt::Debug for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confinement")
            .field("netns", &self.netns.as_ref().map(|ns| ns.path().to_owned()))
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

impl PartialEq for Confinement {
    fn eq(&self, other: &Self) -> bool {
        self.netns.as_ref().map(|ns| ns.path()) == other.netns.as_ref().map(|ns| ns.path())
            && self.sandbox == other.sandbox
    }
}

impl Eq for Confinement {}

/// Resource limits enforced through cgroups when the node supports them.
/// `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time per wall-clock second, in thousandths of a CPU (1000 = one CPU).
    pub cpu_millis: Option<u64>,
    /// Memory, in bytes; swap is not allowed on top of it.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids_max: Option<u64>,
}

/// What the agent persists about a running instance so that, after a crash of
/// the agent, the next run can find the instance and clean it up with
/// [`Driver::reap`](crate::Driver::reap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// The main process, which is also the leader of the instance's process group.
    pub pid: u32,
    /// The main process's start time (field 22 of `/proc/<pid>/stat`), so that a
    /// new process that happens to reuse the pid is not mistaken for ours.
    pub start_ticks: Option<u64>,
    pub cgroup_name: String,
}
