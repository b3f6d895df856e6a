//! The directory where a node pins its instances' network namespaces, like
//! `/run/netns` for `ip netns`: one file per namespace, listed after an
//! agent restart to re-attach to the living ones and remove the rest.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::netns::unpin;
use crate::{Netns, NetnsError};

/// The longest name accepted: a file name is at most 255 bytes, and a
/// shorter bound keeps paths readable in logs.
const MAX_NAME_LEN: usize = 200;

// === types ===

/// A directory of pinned network namespaces, one per instance.
///
/// [`open`](Self::open) makes the directory a mount point with shared
/// propagation (as `ip netns` does with `/run/netns`). Mount namespaces
/// copied from the host while a namespace is pinned (every instance's, and
/// any a service makes) then see the pin disappear when it is removed here,
/// instead of keeping a copy that would keep the namespace alive.
#[derive(Clone, Debug)]
pub struct NetnsDir {
    path: PathBuf,
}

// === impl NetnsDir ===

impl NetnsDir {
    /// Creates `path` (and its parents) if missing, and makes it a shared
    /// mount point. Idempotent: opening it again, in this or a later agent,
    /// changes nothing. Give it a directory of its own, such as
    /// `/run/vdc/netns`: a directory that is already a mount point (`/run`)
    /// would have its whole tree made shared.
    pub fn open(path: impl Into<PathBuf>) -> Result<NetnsDir, NetnsError> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|e| NetnsError::io("create the directory", &path, e))?;
        make_shared_mount_point(&path)?;
        Ok(NetnsDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the namespace `name` with only `lo`, up, and pins it in this
    /// directory. Fails with [`NetnsError::Exists`] when the name is taken
    /// (see [`open_ns`](Self::open_ns) and [`remove`](Self::remove)).
    ///
    /// `name` is a plain file name: letters, digits, '.', '_' and '-'. An
    /// instance `shop/web/0` can use its cgroup leaf name `shop.web.0`.
    pub fn create(&self, name: &str) -> Result<Netns, NetnsError> {
        Netns::create_at(&self.file(name)?)
    }

    /// Opens the namespace pinned as `name`, for example after an agent
    /// restart.
    pub fn open_ns(&self, name: &str) -> Result<Netns, NetnsError> {
        Netns::open(&self.file(name)?)
    }

    /// Unpins the namespace `name`, if there is one, and deletes its file.
    /// The same as [`Netns::remove`], for when only the name is known (a
    /// leftover found by [`names`](Self::names)).
    pub fn remove(&self, name: &str) -> Result<(), NetnsError> {
        unpin(&self.file(name)?)
    }

    /// Removes every namespace the directory holds (what a previous run
    /// left, or a test's); the first failure is returned after trying all.
    pub fn remove_all(&self) -> Result<(), NetnsError> {
        let mut first = None;
        for name in self.names()? {
            if let Err(e) = self.remove(&name) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The names of every file in the directory, sorted: the pinned
    /// namespaces, and any file a crash left between creating the mount
    /// point and pinning (which [`open_ns`](Self::open_ns) rejects and
    /// [`remove`](Self::remove) deletes).
    pub fn names(&self) -> Result<Vec<String>, NetnsError> {
        let entries =
            fs::read_dir(&self.path).map_err(|e| NetnsError::io("list", &self.path, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| NetnsError::io("list", &self.path, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if check_name(name).is_ok() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Undoes [`open`](Self::open)'s mount once the directory holds no
    /// namespace, so that it can be deleted (when uninstalling, and in
    /// tests). Fails, changing nothing, while any name is left. If the
    /// directory was a mount point before `open`, that mount goes instead.
    pub fn unmount(self) -> Result<(), NetnsError> {
        let left = self.names()?;
        if !left.is_empty() {
            return Err(NetnsError::io(
                "unmount",
                &self.path,
                std::io::Error::other(format!(
                    "it still holds {} network namespace(s): {}",
                    left.len(),
                    left.join(", ")
                )),
            ));
        }
        // One unmount: `open` binds at most once, however often it runs.
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(NetnsError::io("unmount", &self.path, e)),
        }
    }

    fn file(&self, name: &str) -> Result<PathBuf, NetnsError> {
        check_name(name).map_err(|reason| NetnsError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        Ok(self.path.join(name))
    }
}

// === helpers ===

/// A name is one plain file name, so that it cannot reach outside the
/// directory or hide (no leading '.').
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("expected a non-empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("expected at most 200 characters");
    }
    if name.starts_with('.') {
        return Err("expected a name that does not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("expected only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Makes `path` a mount point with shared propagation: mark it shared, and
/// when the kernel says it is not a mount point (`EINVAL`), bind it onto
/// itself first. This is what `ip netns add` does with `/run/netns`.
fn make_shared_mount_point(path: &Path) -> Result<(), NetnsError> {
    let mut bound = false;
    loop {
        match mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(path),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| NetnsError::io("make a mount point of", path, e))?;
                bound = true;
            }
            Err(e) => return Err(NetnsError::io("share mounts under", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        for good in ["shop.web.0", "a", "x-1_y", &"n".repeat(200)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "shop/web/0",
            "a b",
            "é",
            &"n".repeat(201),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_name_is_refused_before_touching_the_disk() {
        let dir = NetnsDir {
            path: PathBuf::from("/nonexistent"),
        };
        let err = dir.create("shop/web/0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid network namespace name \"shop/web/0\": expected only letters, digits, '.', '_' and '-'"
        );
    }
}
