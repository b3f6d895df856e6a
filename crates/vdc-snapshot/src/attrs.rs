//! What a snapshot keeps of each entry besides its bytes: owner and group,
//! modification and access times, and extended attributes (POSIX ACLs are
//! stored as `system.posix_acl_*` attributes, SELinux labels as
//! `security.*`). Read without following symlinks; applied in the order
//! that keeps each of them: owner first (changing it clears set-id bits),
//! then the mode, then the attributes (an ACL sets the group bits), times
//! last.
//!
//! Only root may give a file to another user or write `trusted.*` and most
//! `security.*` attributes: elsewhere those steps are skipped and counted,
//! and the entry belongs to whoever restores it.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::error::{IoContext, SnapshotError};
use crate::model::{Attrs, Time, Xattr};
use crate::util::{hex, unhex};

/// What applying attributes could not do for lack of privilege.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Entries left to the restoring user instead of their recorded owner.
    pub owners: u64,
    /// Extended attributes not written.
    pub xattrs: u64,
}

/// Reads the attributes of the entry at `path`, whose `lstat` is `meta`.
pub(crate) fn read(path: &Path, meta: &Metadata) -> Result<Attrs, SnapshotError> {
    let mut xattrs = Vec::new();
    match xattr::list(path) {
        Ok(names) => {
            for name in names {
                let Some(text) = name.to_str() else {
                    return Err(SnapshotError::Unsupported {
                        path: path.to_path_buf(),
                        reason: "an extended attribute's name is not UTF-8".into(),
                    });
                };
                if let Some(value) =
                    xattr::get(path, &name).ctx("read extended attributes of", path)?
                {
                    xattrs.push(Xattr {
                        name: text.to_owned(),
                        value: hex(&value),
                    });
                }
            }
        }
        // A filesystem without extended attributes has none to keep.
        Err(e) if is_unsupported(&e) => {}
        Err(e) => return Err(SnapshotError::io("list extended attributes of", path, e)),
    }
    xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Attrs {
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: Time {
            s: meta.mtime(),
            ns: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
        },
        atime: Time {
            s: meta.atime(),
            ns: u32::try_from(meta.atime_nsec()).unwrap_or(0),
        },
        xattrs,
    })
}

/// Gives the entry at `path` its recorded owner, `mode` (not for a
/// symlink, whose mode means nothing), attributes and times.
pub(crate) fn apply(
    path: &Path,
    attrs: &Attrs,
    mode: Option<u32>,
    skipped: &mut Skipped,
) -> Result<(), SnapshotError> {
    match fchownat(
        None,
        path,
        Some(Uid::from_raw(attrs.uid)),
        Some(Gid::from_raw(attrs.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => {}
        Err(Errno::EPERM) => skipped.owners += 1,
        Err(e) => return Err(SnapshotError::io("set the owner of", path, e.into())),
    }
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            .ctx("set permissions of", path)?;
    }
    for attr in &attrs.xattrs {
        let value = unhex(&attr.value).ok_or_else(|| SnapshotError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("extended attribute {} is not hex", attr.name),
        })?;
        match xattr::set(path, &attr.name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_eperm()) || is_unsupported(&e) => {
                skipped.xattrs += 1;
            }
            Err(e) => return Err(SnapshotError::io("set extended attributes of", path, e)),
        }
    }
    utimensat(
        None,
        path,
        &TimeSpec::new(attrs.atime.s, i64::from(attrs.atime.ns)),
        &TimeSpec::new(attrs.mtime.s, i64::from(attrs.mtime.ns)),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| SnapshotError::io("set the times of", path, e.into()))
}

fn libc_eperm() -> i32 {
    Errno::EPERM as i32
}

/// Errors that mean "this filesystem keeps no extended attributes".
fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::ENOTSUP as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_hex() {
        let value = [0u8, 1, 0xfe, 0xff, b'a'];
        assert_eq!(unhex(&hex(&value)).as_deref(), Some(&value[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
