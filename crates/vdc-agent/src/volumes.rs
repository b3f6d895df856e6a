//! Volumes with a `size`: each is a filesystem of its own, an ext4 image
//! file loop-mounted at the volume's directory, so the kernel refuses
//! writes past the size whatever the filesystem under the data directory
//! supports (project quotas need kernel and mount options a node may not
//! have). Root only; without root, or without `mkfs.ext4` and loop devices,
//! a volume is a plain directory and its size is not enforced.
//!
//! The directory stays the volume's address for everything else: snapshots
//! read through the mount, and a restore writes a plain tree there while
//! the instance is stopped and the image unmounted. The next mount takes
//! such a tree into the image first, so the image holds the data from then
//! on.
//!
//! Written with the `mount`, `umount` and `mkfs.ext4` programs: loop setup
//! and filesystem creation have no well-kept crate, and these are what an
//! operator would run by hand.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A volume backed by its own image file.
#[derive(Clone, Debug)]
pub(crate) struct SizedVolume {
    pub image: PathBuf,
    pub dir: PathBuf,
    pub size: u64,
}

impl SizedVolume {
    /// Mounts the volume's image at its directory (creating the image on
    /// first use, and taking in a tree a restore left there). Blocking.
    pub(crate) fn mount(&self) -> Result<(), String> {
        if is_mountpoint(&self.dir) {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).map_err(|e| io_error("create", &self.dir, e))?;
        if let Some(parent) = self.image.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        }
        if !self.image.exists() {
            let file =
                fs::File::create(&self.image).map_err(|e| io_error("create", &self.image, e))?;
            file.set_len(self.size)
                .map_err(|e| io_error("size", &self.image, e))?;
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L", "vdc-volume"])
                .arg(&self.image))?;
        }
        // A tree a restore (or an earlier unsized volume) left in the
        // directory goes into the image before the image hides it.
        if has_entries(&self.dir) {
            let staging = self.dir.with_extension("vdc-mounting");
            fs::create_dir_all(&staging).map_err(|e| io_error("create", &staging, e))?;
            mount(&self.image, &staging)?;
            let copied = clear(&staging).and_then(|()| copy_tree(&self.dir, &staging));
            let unmounted = unmount(&staging);
            let _ = fs::remove_dir(&staging);
            copied.map_err(|e| format!("cannot move the volume's files into its image: {e}"))?;
            unmounted?;
            clear(&self.dir).map_err(|e| io_error("empty", &self.dir, e))?;
        }
        mount(&self.image, &self.dir)
    }
}

/// Unmounts every sized volume mounted under `dir` (an instance's or an
/// app's volumes), so a restore or a purge sees plain directories.
pub(crate) fn unmount_under(dir: &Path) -> Result<(), String> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(());
    };
    let mut mounted: Vec<PathBuf> = mountpoints()
        .into_iter()
        .filter(|m| m.starts_with(&dir))
        .collect();
    // Deepest first.
    mounted.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounted {
        unmount(&m)?;
    }
    Ok(())
}

/// Whether sized volumes can be backed by images on this node.
pub(crate) fn supported() -> bool {
    nix::unistd::Uid::effective().is_root()
        && Path::new("/dev/loop-control").exists()
        && [
            "/usr/sbin/mkfs.ext4",
            "/sbin/mkfs.ext4",
            "/usr/bin/mkfs.ext4",
        ]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn mount(image: &Path, dir: &Path) -> Result<(), String> {
    run(Command::new("mount")
        .args(["-o", "loop,nosuid,nodev"])
        .arg(image)
        .arg(dir))
}

fn unmount(dir: &Path) -> Result<(), String> {
    if !is_mountpoint(dir) {
        return Ok(());
    }
    run(Command::new("umount").arg(dir))
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The mount points of this mount namespace.
fn mountpoints() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(vdc_sandbox::unescape_mountinfo(p)))
        .collect()
}

fn is_mountpoint(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    mountpoints().contains(&dir)
}

fn has_entries(dir: &Path) -> bool {
    fs::read_dir(dir)
        .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.file_name() != "lost+found")))
}

/// Removes everything in `dir` but `lost+found`.
fn clear(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == "lost+found" {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Copies the tree under `from` into `to` (an existing directory): files
/// with their permission bits, directories, symlinks.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "lost+found" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir_all(&dst)?;
            fs::set_permissions(&dst, fs::metadata(&src)?.permissions())?;
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn io_error(action: &str, path: &Path, e: io::Error) -> String {
    format!("cannot {action} {}: {e}", path.display())
}
