//! The traits between the agent and the ways an instance can run.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::{DriverError, ExitInfo, Isolation, LaunchSpec, Leftover, Usage};

/// Runs instances of one appliance kind on this node.
///
/// Implementations: [`ProcessDriver`](crate::ProcessDriver) (real processes)
/// and [`FakeDriver`](crate::fake::FakeDriver) (for tests of other crates).
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The appliance kind, such as "process".
    fn kind(&self) -> &'static str;

    /// What this driver can enforce on this node; decided once at creation.
    fn isolation(&self) -> &Isolation;

    /// Starts one instance. On error nothing is left behind: no process, no
    /// cgroup (the log file may have been created).
    async fn start(&self, spec: &LaunchSpec) -> Result<Box<dyn InstanceHandle>, DriverError>;

    /// Best-effort clean-up of an instance left by a previous run of the agent
    /// (it crashed): kills the process group `pid` if it still exists and was
    /// started by us (the start time must match `start_ticks`), kills whatever
    /// is still in the cgroup, then removes the cgroup. Finding nothing is not
    /// an error.
    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError>;

    /// Suspends every process of a running instance so that what it keeps
    /// on disk holds still: the cgroup freezer when the instance has a
    /// cgroup with one, SIGSTOP to its process group otherwise. Returns once
    /// all of them are stopped (or fails within `within`, thawing again).
    /// Always pair with [`thaw`](Driver::thaw), whatever happens between.
    async fn freeze(
        &self,
        target: &FreezeTarget,
        within: Duration,
    ) -> Result<FreezeMethod, DriverError>;

    /// Lets a frozen instance run again.
    async fn thaw(&self, target: &FreezeTarget, method: FreezeMethod) -> Result<(), DriverError>;

    /// Runs a command inside a running instance, as the instance runs: in
    /// its cgroup and, when confined, its namespaces, view of the
    /// filesystem and user, under its system-call filter. Kills it after
    /// `request.timeout`. For health probes (and, later, `vdc exec`).
    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutcome, DriverError>;
}

/// A command to run inside a running instance.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// For messages.
    pub instance: String,
    /// As in [`LaunchSpec::cgroup_name`](crate::LaunchSpec::cgroup_name).
    pub cgroup_name: String,
    /// The instance's main process (what `start` returned).
    pub pid: u32,
    /// The program (looked up in `env`'s `PATH`) and its arguments.
    pub command: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// How the instance is confined, when it is: the command joins it.
    pub confine: Option<crate::Confinement>,
    pub timeout: Duration,
}

/// How a command run in an instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    /// `None` when it was killed at its timeout.
    pub exit: Option<ExitInfo>,
    /// The start of what it wrote (stdout and stderr), for messages.
    pub output: String,
}

impl ExecOutcome {
    pub fn succeeded(&self) -> bool {
        self.exit.as_ref().is_some_and(|e| e.code == Some(0))
    }
}

/// A running instance to freeze: what names it to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreezeTarget {
    /// For messages.
    pub instance: String,
    /// As in [`LaunchSpec::cgroup_name`](crate::LaunchSpec::cgroup_name).
    pub cgroup_name: String,
    /// The main process, also its process group.
    pub pid: u32,
}

/// How an instance was frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeMethod {
    /// The cgroup freezer: nothing in the instance can run or notice.
    CgroupFreezer,
    /// SIGSTOP to the process group; SIGCONT thaws. Processes that left the
    /// group keep running.
    Sigstop,
}

/// One started instance.
///
/// Dropping a handle does not stop the instance: it keeps running (the agent
/// may be restarting) and can later be cleaned up with [`Driver::reap`]. To
/// end an instance, or to clean up after it exited by itself, call
/// [`InstanceHandle::stop`].
#[async_trait]
pub trait InstanceHandle: Send + Sync {
    /// The main process's pid, which is also its process group id.
    fn pid(&self) -> u32;

    /// The program's own pid, when an init stands between it and
    /// [`pid`](InstanceHandle::pid) (a confined instance): `None` until the
    /// init has started it. By default, the main process is the program.
    fn program_pid(&self) -> Option<u32> {
        Some(self.pid())
    }

    /// The main process's start time (field 22 of `/proc/<pid>/stat`), to
    /// recognise the process after an agent restart. `None` when unknown.
    fn start_ticks(&self) -> Option<u64>;

    /// The instance's cgroup directories (one per v1 hierarchy, one on v2);
    /// empty without cgroups. [`usage`](InstanceHandle::usage) reads them.
    fn cgroup_paths(&self) -> Vec<PathBuf>;

    /// Reads the instance's resource usage now.
    ///
    /// With a cgroup it comes from the cgroup files and covers every process
    /// of the instance, including exited children and those that left the
    /// process group; the totals only grow. Without, it is summed from
    /// `/proc` over the processes now in the instance's process group, which
    /// misses children that exited unless a member of the group waited for
    /// them, and drops the main process's share once it has been reaped: see
    /// [`UsageSource::Proc`](crate::UsageSource::Proc).
    ///
    /// Cheap enough to call every second: with a cgroup about ten reads of
    /// small cgroupfs files; without, one read of `/proc/<pid>/stat` per
    /// process on the node. It does not block on anything but those reads.
    ///
    /// [`memory_peak_bytes`](Usage::memory_peak_bytes) never decreases from
    /// one call to the next. After [`stop`](InstanceHandle::stop) it returns
    /// the totals read while stopping — the cgroup's final ones, just before
    /// it was removed; without a cgroup, those read before the processes
    /// were signalled — with no memory or tasks in use. Fails when the cgroup
    /// cannot be read, for example because another agent removed it.
    fn usage(&self) -> Result<Usage, DriverError>;

    /// Waits for the main process to exit. Cancel-safe: it can be polled in
    /// `select!` repeatedly, and returns the same answer once it has one.
    /// Other processes of the instance may still run; call
    /// [`stop`](InstanceHandle::stop) to end them and remove the cgroup.
    async fn wait(&mut self) -> ExitInfo;

    /// Sends SIGTERM to the whole process group (and everything in the
    /// cgroup), waits up to `grace` for it all to exit, then SIGKILLs what is
    /// left — the process group and, with cgroups, every process in the
    /// cgroup, including those that left the group with `setsid` — reaps the
    /// main process and removes the cgroup. Idempotent: later calls return the
    /// same answer at once. Returns how the main process ended.
    async fn stop(&mut self, grace: Duration) -> ExitInfo;
}
