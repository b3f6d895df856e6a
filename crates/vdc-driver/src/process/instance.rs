//! A running instance of the process driver.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::tree::{Tree, KILL_TIMEOUT, POLL};
use crate::cgroup::OomCounter;
use crate::{procfs, DriverError, ExitInfo, InstanceHandle, Usage};

/// How long `stop` waits for the main process after SIGKILL before it
/// reports it as killed anyway, so a process stuck in the kernel cannot hang
/// the agent.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle [`ProcessDriver`](crate::ProcessDriver) returns.
pub(crate) struct ProcessInstance {
    pub instance: String,
    pub pid: u32,
    pub start_ticks: Option<u64>,
    pub child: Child,
    pub tree: Tree,
    pub cgroup_paths: Vec<PathBuf>,
    /// The cgroup's OOM counter at start, to tell at exit whether it rose.
    pub oom_baseline: Option<OomCounter>,
    /// The highest memory peak reported so far, so that the peak never goes
    /// down: v2 kernels before 5.19 have no `memory.peak`, and the /proc
    /// peak of a group shrinks when its largest process exits.
    pub peak_seen: AtomicU64,
    /// The totals read while stopping, returned by `usage` afterwards.
    pub final_usage: Option<Usage>,
    /// Set once the main process has been reaped.
    pub exited: Option<ExitInfo>,
    /// Set when we sent SIGKILL before the main process exited: then a SIGKILL
    /// death is ours, not the OOM killer's.
    pub sigkill_sent: bool,
    /// Set once `stop` has finished.
    pub stopped: Option<ExitInfo>,
    /// True when the main process is the node's init for a confined
    /// instance (outer init, then pid 1, then the program).
    pub under_init: bool,
    /// The program's pid, once found.
    pub program: std::sync::OnceLock<u32>,
}

// === impl ProcessInstance ===

impl ProcessInstance {
    /// The kernel's OOM killer sends SIGKILL; a SIGKILL we did not send while
    /// the cgroup's counter rose is its work.
    fn killed_by_oom(&self, info: &ExitInfo) -> bool {
        if info.signal != Some(libc::SIGKILL) || self.sigkill_sent {
            return false;
        }
        let Some((cgroups, name)) = &self.tree.cgroup else {
            return false;
        };
        cgroups
            .oom_counter(name)
            .is_some_and(|now| now.rose_since(self.oom_baseline))
    }

    /// Reads the usage from the cgroup, or from /proc for the process group.
    fn read_usage(&self) -> Result<Usage, DriverError> {
        let mut usage = match &self.tree.cgroup {
            Some((cgroups, name)) => cgroups.usage(name).map_err(|e| DriverError::Io {
                instance: self.instance.clone(),
                action: format!("read the usage in {}", e.path.display()),
                source: e.source,
            })?,
            None => procfs::group_usage(self.tree.group()),
        };
        let peak = usage.memory_peak_bytes.max(usage.memory_bytes);
        let before = self.peak_seen.fetch_max(peak, Ordering::Relaxed);
        usage.memory_peak_bytes = peak.max(before);
        Ok(usage)
    }

    /// Sleeps for one poll interval, reaping the main process meanwhile if it
    /// exits (a zombie main would otherwise look alive to the group check).
    async fn pause(&mut self) {
        if self.exited.is_none() {
            let _ = timeout(POLL * 2, self.wait()).await;
        } else {
            sleep(POLL * 2).await;
        }
    }
}

#[async_trait]
impl InstanceHandle for ProcessInstance {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn program_pid(&self) -> Option<u32> {
        if !self.under_init {
            return Some(self.pid);
        }
        if let Some(pid) = self.program.get() {
            return Some(*pid);
        }
        // The outer init has one child, pid 1 of the instance; its first
        // child is the program (later ones are orphans it adopted).
        let pid1 = crate::procfs::children(self.pid).into_iter().next()?;
        let program = crate::procfs::children(pid1)
            .into_iter()
            .filter_map(|pid| crate::procfs::ProcStat::read(pid).map(|s| (s.start_ticks, pid)))
            .min()?
            .1;
        Some(*self.program.get_or_init(|| program))
    }

    fn start_ticks(&self) -> Option<u64> {
        self.start_ticks
    }

    fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.cgroup_paths.clone()
    }

    fn usage(&self) -> Result<Usage, DriverError> {
        match self.final_usage {
            Some(usage) => Ok(usage),
            None if self.stopped.is_some() => Err(DriverError::Io {
                instance: self.instance.clone(),
                action: "read the usage".into(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the instance is stopped and its final usage could not be read",
                ),
            }),
            None => self.read_usage(),
        }
    }

    async fn wait(&mut self) -> ExitInfo {
        if let Some(info) = &self.exited {
            return info.clone();
        }
        // Child::wait is cancel-safe, and nothing below is awaited, so a
        // select! that drops this future loses nothing.
        let mut info = match self.child.wait().await {
            Ok(status) => ExitInfo::from_status(status),
            Err(e) => {
                tracing::warn!(instance = %self.instance, pid = self.pid, error = %e, "cannot wait for the main process");
                ExitInfo {
                    code: None,
                    signal: None,
                    oom_killed: false,
                }
            }
        };
        info.oom_killed = self.killed_by_oom(&info);
        tracing::debug!(instance = %self.instance, pid = self.pid, exit = %info, "main process exited");
        self.exited = Some(info.clone());
        info
    }

    async fn stop(&mut self, grace: Duration) -> ExitInfo {
        if let Some(info) = &self.stopped {
            return info.clone();
        }
        let deadline = Instant::now() + grace;
        // Without a cgroup the totals leave with the processes, so the last
        // ones are those read before they are asked to exit.
        let before = self.tree.cgroup.is_none().then(|| self.read_usage());
        // SIGTERM everyone, even when the main process is already gone:
        // children it left behind deserve the same grace.
        self.tree.signal(Signal::SIGTERM);
        if self.exited.is_none() {
            let _ = timeout_at(deadline, self.wait()).await;
        }
        while Instant::now() < deadline && self.tree.is_alive() {
            self.pause().await;
        }
        if self.exited.is_none() || self.tree.is_alive() {
            if self.exited.is_none() {
                self.sigkill_sent = true;
            }
            let deadline = Instant::now() + KILL_TIMEOUT;
            loop {
                self.tree.signal(Signal::SIGKILL);
                if self.exited.is_some() && !self.tree.is_alive() {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(instance = %self.instance, pid = self.pid, "processes survived SIGKILL");
                    break;
                }
                self.pause().await;
            }
        }
        let info = match timeout(REAP_TIMEOUT, self.wait()).await {
            Ok(info) => info,
            Err(_) => {
                tracing::warn!(instance = %self.instance, pid = self.pid, "main process did not exit after SIGKILL");
                ExitInfo::signal(libc::SIGKILL)
            }
        };
        // Everything is dead now, so the cgroup's totals are final.
        match before.unwrap_or_else(|| self.read_usage()) {
            Ok(usage) => self.final_usage = Some(usage.stopped()),
            Err(e) => {
                tracing::warn!(instance = %self.instance, error = %e, "cannot read the final usage");
            }
        }
        if let Err(e) = self.tree.remove_cgroup().await {
            tracing::warn!(instance = %self.instance, error = %e, "cannot remove the cgroup");
        }
        tracing::info!(instance = %self.instance, pid = self.pid, exit = %info, "stopped");
        self.stopped = Some(info.clone());
        info
    }
}
