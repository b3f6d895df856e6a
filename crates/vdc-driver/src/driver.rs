//! The traits between the agent and the ways an instance can run.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::{DriverError, ExitInfo, Isolation, LaunchSpec, Leftover};

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

    /// The main process's start time (field 22 of `/proc/<pid>/stat`), to
    /// recognise the process after an agent restart. `None` when unknown.
    fn start_ticks(&self) -> Option<u64>;

    /// The instance's cgroup directories (one per v1 hierarchy, one on v2);
    /// empty without cgroups. Read them for CPU and memory accounting.
    fn cgroup_paths(&self) -> Vec<PathBuf>;

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
