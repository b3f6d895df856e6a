//! An instance's process tree: its process group and, with cgroups, every
//! process in its cgroup — the second catches what left the group (`setsid`).

use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use tokio::time::{sleep, Instant};

use crate::cgroup::{CgroupError, CgroupName, Cgroups};
use crate::procfs;

/// How often to look again while waiting for processes to die.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// How long SIGKILL may take to empty a tree before we give up and say so.
/// Only processes stuck in the kernel (uninterruptible sleep) take long.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `rmdir` may keep failing with `EBUSY` while the kernel finishes
/// tearing the last processes down.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The processes of one instance.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    /// The process group, `None` when it cannot be trusted to be ours.
    pub pgid: Option<i32>,
    /// The group leader's start time, to notice when, long after the leader
    /// was reaped, its pid (and so the group id) names someone else.
    pub leader_ticks: Option<u64>,
    pub cgroup: Option<(Arc<dyn Cgroups>, CgroupName)>,
}

// === impl Tree ===

impl Tree {
    /// Sends `signal` to the process group and to every process in the cgroup.
    /// Processes already gone are not an error.
    pub fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.group() {
            match killpg(Pid::from_raw(pgid), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!(pgid, %signal, error = %e, "cannot signal process group"),
            }
        }
        if let Some((cgroups, name)) = &self.cgroup {
            if signal == Signal::SIGKILL {
                if let Err(e) = cgroups.kill_all(name) {
                    tracing::warn!(cgroup = %name, error = %e, "cannot kill the processes of the cgroup");
                }
                return;
            }
            for pid in cgroups.pids(name).unwrap_or_default() {
                if let Ok(pid) = i32::try_from(pid) {
                    if is_safe_target(pid) {
                        let _ = kill(Pid::from_raw(pid), signal);
                    }
                }
            }
        }
    }

    /// True while any process of the group or cgroup is alive. Zombies do
    /// not count: they are dead, and if the agent runs as pid 1 nobody might
    /// ever reap the orphaned ones.
    pub fn is_alive(&self) -> bool {
        if let Some(pgid) = self.group() {
            // The cheap check first; only a group that answers needs the
            // /proc scan that tells zombies apart.
            if killpg(Pid::from_raw(pgid), None).is_ok() && !procfs::group_members(pgid).is_empty()
            {
                return true;
            }
        }
        if let Some((cgroups, name)) = &self.cgroup {
            if let Ok(pids) = cgroups.pids(name) {
                return pids.into_iter().any(procfs::is_running);
            }
        }
        false
    }

    /// The process group id, when it is safe to signal and still ours.
    ///
    /// The kernel does not hand out a pid while a process group of that id
    /// exists, so while the group has members it is ours. Once it is empty and
    /// the leader reaped, a new process may get the pid and lead a group of
    /// its own; a live process with that pid but another start time is that
    /// case. Its absence means any group left is ours.
    pub fn group(&self) -> Option<i32> {
        let pgid = self.pgid.filter(|&p| is_safe_target(p))?;
        let Ok(pid) = u32::try_from(pgid) else {
            return None;
        };
        match (procfs::ProcStat::read(pid), self.leader_ticks) {
            (Some(stat), Some(ticks)) if stat.start_ticks != ticks => None,
            _ => Some(pgid),
        }
    }

    /// SIGKILLs the tree until nothing in it is alive, or `KILL_TIMEOUT`
    /// passes. Returns false when something survived.
    pub async fn kill(&self) -> bool {
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            self.signal(Signal::SIGKILL);
            if !self.is_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(POLL).await;
        }
    }

    /// Removes the cgroup, retrying while the kernel still counts processes
    /// in it (and killing any that appear).
    pub async fn remove_cgroup(&self) -> Result<(), CgroupError> {
        let Some((cgroups, name)) = &self.cgroup else {
            return Ok(());
        };
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            match cgroups.remove(name) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    let _ = cgroups.kill_all(name);
                    sleep(POLL * 2).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Never signal init, "every process" (-1), our own group (0 or ours).
pub(crate) fn is_safe_target(pid: i32) -> bool {
    pid > 1 && pid != getpgrp().as_raw() && u32::try_from(pid).ok() != Some(std::process::id())
}
