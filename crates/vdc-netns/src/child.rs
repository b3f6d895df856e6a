//! What a child process does between `fork` and `exec` to start its life
//! inside the instance's network namespace: the descriptor is opened before
//! the fork, and the child only makes one system call.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use crate::Netns;

// === types ===

/// The network side of one instance's isolation, applied by the child
/// itself after `fork` and before `exec`: it joins the instance's network
/// namespace (`setns`), so the program sees only `lo` and the data plane's
/// listeners for its links. Everything else that confines an instance (its
/// PID, mount, IPC and cgroup namespaces, its user, its system-call
/// filter) is done by its init.
///
/// Build it before spawning; [`apply_in_child`](Self::apply_in_child) runs
/// in the child.
#[derive(Debug, Default)]
pub struct IsolationPlan {
    netns: Option<File>,
}

// === impl IsolationPlan ===

impl IsolationPlan {
    /// A plan that changes nothing; add to it with the builder methods.
    pub fn new() -> Self {
        IsolationPlan::default()
    }

    /// Joins `netns`. Keeps a descriptor of it (close-on-exec, so the
    /// program does not inherit it) until the plan is dropped.
    pub fn network(mut self, netns: &Netns) -> io::Result<Self> {
        self.netns = Some(File::from(netns.as_fd().try_clone_to_owned()?));
        Ok(self)
    }

    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.netns.is_none()
    }

    /// Applies the plan to the calling process. Meant for the child between
    /// `fork` and `exec` (`Command::pre_exec`), and safe there: it only
    /// makes a system call (`setns`) on a descriptor opened before the
    /// fork, and allocates nothing, not even for an error (`Errno` is a
    /// plain number; turn it into an `io::Error` with
    /// `io::Error::from_raw_os_error(e as i32)`).
    ///
    /// Call it after joining the cgroup.
    pub fn apply_in_child(&self) -> Result<(), Errno> {
        if let Some(netns) = &self.netns {
            setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_plan_changes_nothing() {
        let plan = IsolationPlan::new();
        assert!(plan.is_empty());
        assert_eq!(plan.apply_in_child(), Ok(()));
    }
}
