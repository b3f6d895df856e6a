//! Mount operations with their step named on failure, and the mount table
//! read back from `/proc/self/mountinfo`.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::error::{Context, SandboxError};

/// Mounts a new tmpfs at `target` with `options` (such as `mode=1777`).
pub(crate) fn tmpfs(target: &Path, options: &str, flags: MsFlags) -> Result<(), SandboxError> {
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .context(|| format!("mount a tmpfs at {}", target.display()))
}

/// Mounts a filesystem of the kernel's (`proc`, `sysfs`, `cgroup2`, ...).
pub(crate) fn special(
    fstype: &str,
    target: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SandboxError> {
    mount(Some(fstype), target, Some(fstype), flags, data)
        .context(|| format!("mount {fstype} at {}", target.display()))
}

/// Binds `source` at `target` (and, with `recursive`, the mounts below it).
pub(crate) fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), SandboxError> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .context(|| format!("bind {} at {}", source.display(), target.display()))
}

/// How a mount is set again after it is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-only, no setuid, no device files.
    ReadOnly,
    /// Writable, no setuid, no device files.
    Writable,
    /// Device nodes bound from the host: read-write, no setuid, no exec.
    Devices,
}

/// Sets the per-mount flags of the mount at `target`, keeping `noexec`
/// and the access-time policy it has. Only this mount: its own source
/// filesystem and other mounts of it are untouched.
pub(crate) fn restrict(target: &Path, access: Access) -> Result<(), SandboxError> {
    let current = statvfs(target).context(|| format!("read the flags of {}", target.display()))?;
    let had = current.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    for (have, keep) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if had.contains(have) {
            flags |= keep;
        }
    }
    match access {
        Access::ReadOnly => flags |= MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
        Access::Writable => flags |= MsFlags::MS_NODEV,
        Access::Devices => flags |= MsFlags::MS_NOEXEC,
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .context(|| format!("set the mount flags of {}", target.display()))
}

/// Sets every mount at or below each of `roots` read-only (as
/// [`restrict`]), the way a recursive bind of a host tree must be made safe
/// at once. The mount table is read from `mountinfo` (this process's, in a
/// `/proc` of its PID namespace).
pub(crate) fn restrict_trees(roots: &[PathBuf], mountinfo: &Path) -> Result<(), SandboxError> {
    let table = fs::read_to_string(mountinfo).context(|| "read the mount table".to_owned())?;
    for target in mount_points_in(&table, |point| roots.iter().any(|r| point.starts_with(r))) {
        match restrict(&target, Access::ReadOnly) {
            Ok(()) => {}
            // A mount point of the host tree that is not reachable (hidden
            // by a mount over its parent) cannot be reached here either.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The mount points of a mount table (`/proc/self/mountinfo`'s text) that
/// `wanted` keeps, parents before children.
fn mount_points_in(table: &str, wanted: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|point| wanted(point))
        .collect();
    points.sort_by_key(|p| p.components().count());
    points.dedup();
    points
}

/// The super options of the filesystem mounted at `point` in this
/// namespace (for a cgroup v1 hierarchy: its controllers, such as
/// `rw,memory`).
pub(crate) fn super_options(point: &Path, mountinfo: &Path) -> Option<String> {
    let table = fs::read_to_string(mountinfo).ok()?;
    table.lines().rev().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mounted = before.split(' ').nth(4)?;
        if Path::new(&unescape(mounted)) != point {
            return None;
        }
        after.split(' ').nth(2).map(str::to_owned)
    })
}

/// A field of `/proc/self/mountinfo` as the path it names: the kernel
/// writes space, tab, newline and backslash there as octal escapes.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(code) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
            {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_come_parents_first() {
        let table = "22 1 0:21 / /newroot/usr rw - ext4 /dev/vda rw\n\
                     30 22 0:30 / /newroot/usr/lib/x rw - tmpfs tmpfs rw\n\
                     23 1 0:22 / /newroot/usr/lib rw - ext4 /dev/vdb rw\n\
                     24 1 0:23 / /oldroot/usr rw - ext4 /dev/vda rw\n";
        let points = mount_points_in(table, |p| p.starts_with("/newroot/usr"));
        assert_eq!(
            points,
            ["/newroot/usr", "/newroot/usr/lib", "/newroot/usr/lib/x"].map(PathBuf::from)
        );
    }

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape(r"/srv/a\040b"), "/srv/a b");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
