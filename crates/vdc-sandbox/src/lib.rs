//! An instance's confinement: what its program can see and do, set up by
//! the instance's own init before the program's first instruction.
//!
//! A confined instance runs as three processes (see [`init`](PidInit)): an
//! outer init in the host's PID namespace, pid 1 of a PID namespace of the
//! instance's own, and the program as pid 2. Pid 1 builds the instance's
//! view of the filesystem from a [`Sandbox`] and starts the program with
//! the least privilege that plan allows:
//!
//! - **its own filesystem view** ([`view`]): a new root on a tmpfs, with the
//!   host's software trees (`/usr`, `/etc`, `/opt`, `/var`, ...) bound
//!   read-only and `nosuid`; empty, private `/tmp`, `/var/tmp`, `/dev/shm`,
//!   `/run` and home; a minimal `/dev`; its own `/proc` with the kernel's
//!   sensitive files masked; `/sys` and its own cgroup read-only. The
//!   homes of the host's users, the node's data directory (other
//!   instances' volumes, logs, the platform's keys) and everything not
//!   listed are absent. Its working directory and volumes are bound in at
//!   their paths.
//! - **its own user** ([`user`]): an unprivileged uid and gid (or a user
//!   the admin allowed), no supplementary groups, every capability gone
//!   from all sets (a root the admin allowed keeps the small set container
//!   runtimes give root), and `no_new_privs`, so no setuid program brings
//!   any back.
//! - **a system-call filter** ([`seccomp`]): an allowlist in the spirit of
//!   Docker's default profile, stricter where tenants must not reach each
//!   other (no `ptrace`, no new namespaces, no `mount`, no keyrings, no
//!   `bpf`, no `io_uring`).
//!
//! The outer init also gives the instance IPC and cgroup namespaces of its
//! own, so System V objects and the cgroup tree above it are out of sight.
//! The network namespace is joined before any of this, by the driver.
//!
//! **Architecture invariant:** everything here runs in the instance's own
//! inits, fresh single-threaded executions of the node's binary, never in
//! the agent; a step that fails stops the start (exit 125, the reason on
//! the instance's stderr) rather than running the program with less
//! confinement than planned. The only `unsafe` blocks are the two
//! `pre_exec` hooks of the inits, each with its `// SAFETY:` comment.

#![deny(unsafe_code)]

mod error;
mod init;
mod mounts;
pub mod seccomp;
pub mod user;
pub mod view;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::SandboxError;
pub use init::{run_if_requested, PidInit, INIT_ARG};
pub use mounts::unescape as unescape_mountinfo;

// === types ===

/// What an instance's program may see and who it runs as: built by the
/// agent for each start, carried to the instance's init on its command
/// line, applied there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Who the program runs as.
    pub user: User,
    /// Where the program starts; the same path in the view as on the host.
    pub workdir: PathBuf,
    /// Host paths the program sees read-only at their own path, beyond the
    /// trees every view shows: its working directory, its program when it
    /// lives elsewhere. Paths already visible are left as they are.
    pub expose: Vec<PathBuf>,
    /// Host paths the program must not see even inside a tree the view
    /// shows: the node's data directory. Covered with an empty directory.
    pub hide: Vec<PathBuf>,
    /// The directories the program may write besides its private scratch
    /// directories: its volumes.
    pub volumes: Vec<Volume>,
    /// The cgroup hierarchies shown read-only under `/sys/fs/cgroup`, each
    /// rooted at the instance's own cgroup.
    pub cgroup: CgroupView,
    /// A container's root filesystem: its image's layers under a
    /// writable layer of its own, instead of the host's trees. Then
    /// `expose` and `hide` are unused (nothing of the host is there) and
    /// the volumes' targets are paths inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRoot>,
}

/// The overlay a container runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRoot {
    /// The image's unpacked layers, top first (overlayfs' `lowerdir`).
    pub lowers: Vec<PathBuf>,
    /// The instance's writable layer and overlayfs' work directory, on one
    /// file system; empty at each start (what a container writes outside
    /// its volumes does not outlive its run).
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The container's host name.
    pub hostname: String,
}

/// The user an instance's program runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Its name, added to the view's `/etc/passwd` and `/etc/group` when
    /// the host has no entry for the uid or gid.
    pub name: String,
}

/// A writable directory of the host shown at `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// Which cgroup files the program sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupView {
    /// An empty `/sys/fs/cgroup`.
    #[default]
    None,
    /// The unified hierarchy.
    V2,
    /// The v1 hierarchies mounted at these host paths (such as
    /// `/sys/fs/cgroup/memory`), each shown at the same path.
    V1 { hierarchies: Vec<PathBuf> },
}

// === impl Sandbox ===

impl Sandbox {
    /// The program's home directory in the view: private, empty and its
    /// own (`/root` for root).
    pub fn home(&self) -> PathBuf {
        self.user.home()
    }

    /// The plan as one command-line argument for the init.
    pub fn to_arg(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn from_arg(arg: &str) -> Result<Sandbox, serde_json::Error> {
        serde_json::from_str(arg)
    }
}

impl User {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `/home/NAME`, or `/root` for root.
    pub fn home(&self) -> PathBuf {
        if self.is_root() {
            PathBuf::from("/root")
        } else {
            Path::new("/home").join(&self.name)
        }
    }
}

/// Whether instances can be confined on this node, or why not: the system
/// call filter must build for this architecture and the kernel must take
/// filters. Cheap; call it once at start.
pub fn supported() -> Result<(), String> {
    seccomp::Filters::build().map_err(|e| e.to_string())?;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Err("the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox {
            user: User {
                uid: 1_879_048_193,
                gid: 1_879_048_193,
                name: "instance".into(),
            },
            workdir: "/srv/shop".into(),
            expose: vec!["/srv/shop".into()],
            hide: vec!["/var/lib/vdc".into()],
            volumes: vec![Volume {
                source: "/var/lib/vdc/volumes/acme/shop/db-0/data".into(),
                target: "/data".into(),
            }],
            cgroup: CgroupView::V1 {
                hierarchies: vec!["/sys/fs/cgroup/memory".into()],
            },
            image: None,
        }
    }

    #[test]
    fn the_plan_round_trips_through_its_argument() {
        let mut plan = sandbox();
        assert_eq!(Sandbox::from_arg(&plan.to_arg()).unwrap(), plan);
        plan.image = Some(ImageRoot {
            lowers: vec!["/var/lib/vdc/images/layers/ab".into()],
            upper: "/var/lib/vdc/containers/acme/shop/web-0/upper".into(),
            work: "/var/lib/vdc/containers/acme/shop/web-0/work".into(),
            hostname: "web-0".into(),
        });
        assert_eq!(Sandbox::from_arg(&plan.to_arg()).unwrap(), plan);
    }

    #[test]
    fn homes_are_private_and_named() {
        let mut plan = sandbox();
        assert_eq!(plan.home(), Path::new("/home/instance"));
        plan.user.uid = 0;
        assert_eq!(plan.home(), Path::new("/root"));
    }
}
