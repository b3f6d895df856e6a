//! What a child process does between `fork` and `exec` to start its life
//! inside the instance's namespaces: everything it needs is prepared before
//! the fork, and the child only makes system calls.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::{Netns, NetnsDir};

/// The scratch directories an instance gets empty and to itself: the two
/// world-writable ones where programs leave files and Unix sockets for
/// each other, and `/var/tmp`, which systemd's `PrivateTmp` covers too.
const SCRATCH_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

// === types ===

/// The isolation of one instance's processes, applied by the child itself
/// after `fork` and before `exec`:
///
/// 1. join the instance's network namespace (`setns`), so the program sees
///    only `lo` and the data plane's listeners for its links;
/// 2. take a private copy of the mount table (`unshare(CLONE_NEWNS)`),
///    marked as a *slave* of the host's: mounts made inside never reach the
///    host, while unmounts on the host (a removed namespace pin) still reach
///    the instance and do not leave copies alive;
/// 3. unmount the directories given to [`hide`](Self::hide) (the namespace
///    directory), so the instance cannot open other instances' namespaces;
/// 4. mount an empty tmpfs on each private scratch directory (`/tmp`, ...);
/// 5. bind-mount each directory given to [`bind`](Self::bind) (volumes) at
///    its target, visible to the instance only.
///
/// Build it before spawning; [`apply_in_child`](Self::apply_in_child) runs
/// in the child. A private PID namespace cannot be entered this way (see
/// [`PidInit`](crate::PidInit)).
#[derive(Debug, Default)]
pub struct IsolationPlan {
    netns: Option<File>,
    hide: Vec<CString>,
    tmpfs: Vec<Tmpfs>,
    /// (source, target) of each bind mount.
    binds: Vec<(CString, CString)>,
}

/// One tmpfs to mount in the child, with its options rendered before the
/// fork.
#[derive(Debug)]
struct Tmpfs {
    target: CString,
    options: CString,
}

// === impl IsolationPlan ===

impl IsolationPlan {
    /// A plan that changes nothing; add to it with the builder methods.
    pub fn new() -> Self {
        IsolationPlan::default()
    }

    /// The usual plan for an instance: its network namespace `netns`, the
    /// namespace directory `dir` hidden, and private, empty `/tmp`,
    /// `/var/tmp` and `/dev/shm` (those that exist on this host) with no
    /// size limit of their own. Files there are memory charged to the
    /// instance's cgroup, so its memory limit bounds them.
    ///
    /// A private directory hides what the host has under it, from the
    /// program's own path to files named in its environment. Keep what an
    /// instance needs out of them, or spare the ones that hold it with
    /// [`keep_visible`](Self::keep_visible).
    pub fn for_instance(netns: &Netns, dir: &NetnsDir) -> io::Result<Self> {
        let mut plan = IsolationPlan::new().network(netns)?.hide(dir.path())?;
        for scratch in SCRATCH_DIRS {
            if Path::new(scratch).is_dir() {
                plan = plan.tmpfs(Path::new(scratch), None)?;
            }
        }
        Ok(plan)
    }

    /// Joins `netns`. Keeps a descriptor of it (close-on-exec, so the
    /// program does not inherit it) until the plan is dropped.
    pub fn network(mut self, netns: &Netns) -> io::Result<Self> {
        self.netns = Some(File::from(netns.as_fd().try_clone_to_owned()?));
        Ok(self)
    }

    /// Unmounts `path` (and everything below it) in the child's copy of the
    /// mount table. A path that is not a mount point is left as it is.
    pub fn hide(mut self, path: &Path) -> io::Result<Self> {
        self.hide.push(c_path(path)?);
        Ok(self)
    }

    /// Mounts an empty tmpfs on `path` (which must exist), world-writable
    /// with the sticky bit like `/tmp`, limited to `size_bytes` if given.
    pub fn tmpfs(mut self, path: &Path, size_bytes: Option<u64>) -> io::Result<Self> {
        let options = match size_bytes {
            Some(size) => format!("mode=1777,size={size}"),
            None => "mode=1777".to_owned(),
        };
        self.tmpfs.push(Tmpfs {
            target: c_path(path)?,
            options: CString::new(options).map_err(io::Error::other)?,
        });
        Ok(self)
    }

    /// Bind-mounts the directory `source` at `target` (which must exist and
    /// must not be under a private scratch directory) in the child's mount
    /// table: the instance sees `source`'s files at `target`; the host
    /// keeps seeing whatever `target` held.
    pub fn bind(mut self, source: &Path, target: &Path) -> io::Result<Self> {
        self.binds.push((c_path(source)?, c_path(target)?));
        Ok(self)
    }

    /// Drops the tmpfs mounts that would hide `path`, such as the program
    /// or its working directory when they live under `/tmp`. (The working
    /// directory itself is entered before the plan applies and would stay
    /// usable, but not through its absolute path.)
    pub fn keep_visible(mut self, path: &Path) -> Self {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        self.tmpfs.retain(|tmpfs| {
            !path.starts_with(Path::new(OsStr::from_bytes(tmpfs.target.as_bytes())))
        });
        self
    }

    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.netns.is_none()
            && self.hide.is_empty()
            && self.tmpfs.is_empty()
            && self.binds.is_empty()
    }

    /// Applies the plan to the calling process. Meant for the child between
    /// `fork` and `exec` (`Command::pre_exec`), and safe there: it only
    /// makes system calls (`setns`, `unshare`, `mount`, `umount2`) on
    /// descriptors and strings built before the fork, and allocates
    /// nothing, not even for an error (`Errno` is a plain number; turn it
    /// into an `io::Error` with `io::Error::from_raw_os_error(e as i32)`).
    ///
    /// Call it after joining the cgroup. Do not call it in a process with
    /// other threads: `unshare(CLONE_NEWNS)` would move only the calling
    /// thread, and other threads could see the mounts change.
    pub fn apply_in_child(&self) -> Result<(), Errno> {
        if let Some(netns) = &self.netns {
            setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        }
        if self.hide.is_empty() && self.tmpfs.is_empty() && self.binds.is_empty() {
            return Ok(());
        }
        unshare(CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&CStr>,
        )?;
        for path in &self.hide {
            match umount2(path.as_c_str(), MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        for tmpfs in &self.tmpfs {
            mount(
                Some(c"tmpfs"),
                tmpfs.target.as_c_str(),
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(tmpfs.options.as_c_str()),
            )?;
        }
        for (source, target) in &self.binds {
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&CStr>,
            )?;
        }
        Ok(())
    }
}

/// `path` as a C string, made before the fork so that the child does not
/// allocate.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_that_would_hide_the_program_are_spared() {
        let plan = IsolationPlan::new()
            .tmpfs(Path::new("/tmp"), None)
            .unwrap()
            .tmpfs(Path::new("/dev/shm"), Some(1 << 20))
            .unwrap();
        assert_eq!(
            plan.tmpfs[1].options.to_str().unwrap(),
            "mode=1777,size=1048576"
        );
        let plan = plan.keep_visible(Path::new("/tmp/app/bin/server"));
        let targets: Vec<&CStr> = plan.tmpfs.iter().map(|t| t.target.as_c_str()).collect();
        assert_eq!(targets, [c"/dev/shm"]);
        // Component-wise: /tmpfoo is not under /tmp.
        let plan = plan.keep_visible(Path::new("/dev/shmem/x"));
        assert_eq!(plan.tmpfs.len(), 1);
        let plan = plan.keep_visible(Path::new("/dev/shm"));
        assert!(plan.is_empty());
    }

    #[test]
    fn paths_with_nul_bytes_are_refused_before_the_fork() {
        let err = IsolationPlan::new().hide(Path::new("/a\0b")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
