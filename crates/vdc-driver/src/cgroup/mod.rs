//! Access to cgroups, behind the [`Cgroups`] trait so that the driver's logic
//! can be tested against a directory tree instead of the kernel.
//!
//! The trait is deliberately synchronous and makes one attempt per call:
//! cgroupfs operations do not block, and the waiting and retrying (until a
//! cgroup is empty, until `rmdir` stops failing with `EBUSY`) belongs to the
//! async caller, which can sleep without holding a runtime thread.

mod fs;
mod name;
mod usage;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use self::fs::{FsCgroups, DEFAULT_ROOT};
pub use self::name::{CgroupName, InvalidCgroupName};
use crate::{CgroupVersion, Limits, Usage};

/// The cgroup operations the process driver needs, for one leaf at a time.
pub trait Cgroups: Send + Sync + fmt::Debug {
    /// Which cgroup interface this is.
    fn version(&self) -> CgroupVersion;

    /// Controllers among `cpu`, `memory` and `pids` whose limits cannot be
    /// enforced here (not mounted, not enabled); empty when all work.
    fn missing_controllers(&self) -> Vec<&'static str>;

    /// The leaf's directories (one per v1 hierarchy, one on v2), whether or
    /// not they exist.
    fn paths(&self, name: &CgroupName) -> Vec<PathBuf>;

    /// Where the hierarchies the leaves live in are mounted (one per v1
    /// controller in use, the root on v2): what an instance is shown of
    /// its own cgroup, rooted at its leaf.
    fn hierarchies(&self) -> Vec<PathBuf>;

    /// True when at least one of the leaf's directories exists.
    fn exists(&self, name: &CgroupName) -> bool;

    /// Creates the leaf (and its parent when the name has one), enables the
    /// controllers it needs, and writes `limits`. An existing leaf is reused,
    /// and only the limits given are written.
    /// On error, the leaf directories created by this call are removed again.
    fn create(&self, name: &CgroupName, limits: &Limits) -> Result<(), CgroupError>;

    /// The `cgroup.procs` files a process writes "0" into to join the leaf.
    fn procs_files(&self, name: &CgroupName) -> Vec<PathBuf>;

    /// Every process in the leaf, sorted, without duplicates. A leaf that does
    /// not exist has none.
    fn pids(&self, name: &CgroupName) -> Result<Vec<u32>, CgroupError>;

    /// One pass of SIGKILL to every process in the leaf: `cgroup.kill` on v2
    /// when the kernel has it, otherwise a signal to each pid listed. Callers
    /// repeat until [`pids`](Cgroups::pids) is empty, since a process may
    /// fork between the listing and the signal.
    fn kill_all(&self, name: &CgroupName) -> Result<(), CgroupError>;

    /// The leaf's out-of-memory counter, to compare before and after a death.
    fn oom_counter(&self, name: &CgroupName) -> Option<OomCounter>;

    /// The leaf's resource usage, from its accounting files: totals over
    /// every process that ever ran in it, exited ones included. Controllers
    /// or files the node lacks read as 0. Fails when the leaf does not exist
    /// (or a file that exists cannot be read). About ten small reads of
    /// cgroupfs, which do not block.
    fn usage(&self, name: &CgroupName) -> Result<Usage, CgroupError>;

    /// Asks the kernel to freeze (`true`) or thaw (`false`) every process in
    /// the leaf: `cgroup.freeze` on v2, `freezer.state` on v1. Returns
    /// `Ok(false)` when the node has no freezer for it. Freezing takes
    /// effect asynchronously: poll [`is_frozen`](Cgroups::is_frozen).
    fn set_frozen(&self, name: &CgroupName, frozen: bool) -> Result<bool, CgroupError>;

    /// Whether the kernel reports every process of the leaf frozen.
    fn is_frozen(&self, name: &CgroupName) -> Result<bool, CgroupError>;

    /// One attempt to remove the leaf directories, and the parent when that
    /// leaves it empty. Fails with `EBUSY` while processes remain; a leaf
    /// already gone is fine.
    fn remove(&self, name: &CgroupName) -> Result<(), CgroupError>;
}

/// A cgroup file or directory operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct CgroupError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// A counter that rises when the kernel acts on a memory limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomCounter {
    /// Processes killed by the OOM killer (v2 `memory.events`, v1
    /// `memory.oom_control` since Linux 4.13): exact.
    Kills(u64),
    /// Times the limit was hit (v1 `memory.failcnt` on older kernels): a
    /// SIGKILL after a rise is very likely, but not surely, the OOM killer.
    LimitHits(u64),
}

// === impl CgroupError ===

impl CgroupError {
    pub(crate) fn new(path: impl Into<PathBuf>, source: io::Error) -> CgroupError {
        CgroupError {
            path: path.into(),
            source,
        }
    }

    /// True when the cgroup still has processes (`rmdir` gave `EBUSY`).
    pub fn is_busy(&self) -> bool {
        self.source.raw_os_error() == Some(libc::EBUSY)
    }
}

// === impl OomCounter ===

impl OomCounter {
    /// True when `self`, read after a death, is higher than `before`.
    pub fn rose_since(&self, before: Option<OomCounter>) -> bool {
        match (before, *self) {
            (Some(OomCounter::Kills(a)), OomCounter::Kills(b)) => b > a,
            (Some(OomCounter::LimitHits(a)), OomCounter::LimitHits(b)) => b > a,
            // Without a baseline the leaf was fresh, so any count is new.
            (None, OomCounter::Kills(b) | OomCounter::LimitHits(b)) => b > 0,
            _ => false,
        }
    }

    /// True when the counter counts kills rather than limit hits.
    pub fn is_exact(&self) -> bool {
        matches!(self, OomCounter::Kills(_))
    }
}

#[cfg(test)]
mod tests;
