//! `stage`: the copy taken while the instance is frozen. Speed is all that
//! matters here, so regular files are cloned with a reflink where the
//! filesystem can (one metadata operation per file) and copied in the
//! kernel (`copy_file_range`) otherwise, on several threads; hashing and
//! compression happen later, in `capture`, once the instance runs again.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{IoContext, SnapshotError};
use crate::model::StageReport;
use crate::util::{default_threads, parallel_map, TreeGuard};

// === Types ===

/// One regular file to copy.
struct FileJob {
    src: PathBuf,
    dst: PathBuf,
    mode: u32,
}

// === Stage ===

/// Copies `src` (a volume directory) into `dst`, which must not exist and
/// whose parent must (ideally on the same filesystem, so reflinks work).
///
/// Keeps relative paths, permission bits (`mode & 0o7777`, the root's
/// included), symlinks (verbatim, never followed) and empty directories.
/// Each regular file is cloned with a reflink (`FICLONE`) when the
/// filesystem supports it and copied with `copy_file_range` otherwise.
/// Sockets, FIFOs and device nodes are left out and counted in
/// [`StageReport::skipped`]. Ownership and timestamps are not kept: the copy
/// belongs to whoever runs `stage`. If it fails, `dst` is removed.
pub fn stage(src: &Path, dst: &Path) -> Result<StageReport, SnapshotError> {
    stage_with_threads(src, dst, default_threads())
}

/// [`stage`] with an explicit number of copying threads.
pub fn stage_with_threads(
    src: &Path,
    dst: &Path,
    threads: usize,
) -> Result<StageReport, SnapshotError> {
    let root_meta = fs::metadata(src).ctx("read metadata of", src)?;
    if !root_meta.is_dir() {
        return Err(SnapshotError::Unsupported {
            path: src.to_path_buf(),
            reason: "expected a directory".into(),
        });
    }
    if fs::symlink_metadata(dst).is_ok() {
        return Err(SnapshotError::DestinationExists(dst.to_path_buf()));
    }
    match fs::create_dir(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(SnapshotError::DestinationExists(dst.to_path_buf()))
        }
        Err(e) => return Err(SnapshotError::io("create directory", dst, e)),
    }
    let mut guard = TreeGuard::new(dst.to_path_buf());

    // Directories and symlinks are made here, in walk order, so every
    // directory exists before a file is copied into it; the files are
    // copied afterwards on the worker threads.
    let mut report = StageReport::default();
    let mut dirs: Vec<(PathBuf, u32)> = vec![(dst.to_path_buf(), root_meta.permissions().mode())];
    let mut files = Vec::new();
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from_dir, to_dir)) = pending.pop() {
        for entry in fs::read_dir(&from_dir).ctx("read directory", &from_dir)? {
            let entry = entry.ctx("read directory", &from_dir)?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let meta = entry.metadata().ctx("read metadata of", &from)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&to).ctx("create directory", &to)?;
                dirs.push((to.clone(), meta.permissions().mode()));
                pending.push((from, to));
            } else if kind.is_file() {
                report.files += 1;
                report.bytes += meta.len();
                files.push(FileJob {
                    src: from,
                    dst: to,
                    mode: meta.permissions().mode(),
                });
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).ctx("read symlink", &from)?;
                std::os::unix::fs::symlink(&target, &to).ctx("create symlink", &to)?;
            } else {
                report.skipped += 1;
            }
        }
    }

    let reflink_works = AtomicBool::new(true);
    let reflinked = parallel_map(
        threads,
        &files,
        || Ok(()),
        |(), job| copy_file(job, &reflink_works),
    )?;
    report.reflinked = !reflinked.is_empty() && reflinked.iter().all(|r| *r);

    // Children were pushed after their parents: set modes deepest first, so
    // a read-only directory is locked only once everything is inside it.
    for (dir, mode) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777))
            .ctx("set permissions of", dir)?;
    }
    guard.disarm();
    Ok(report)
}

/// Clones or copies one file; returns whether it was cloned.
fn copy_file(job: &FileJob, reflink_works: &AtomicBool) -> Result<bool, SnapshotError> {
    let mut src = File::open(&job.src).ctx("open", &job.src)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&job.dst)
        .ctx("create", &job.dst)?;
    let mut cloned = false;
    if reflink_works.load(Ordering::Relaxed) {
        match reflink_copy::reflink_file(&src, &dst) {
            Ok(()) => cloned = true,
            // The filesystem cannot clone (or not across these two):
            // stop trying for the remaining files.
            Err(e) if reflink_unsupported(&e) => reflink_works.store(false, Ordering::Relaxed),
            // Anything else: this file is copied; the copy reports a real
            // I/O problem if there is one.
            Err(_) => {}
        }
    }
    if !cloned {
        // A failed FICLONE leaves the destination empty; `io::copy`
        // between two files uses copy_file_range.
        io::copy(&mut src, &mut dst).ctx("copy into", &job.dst)?;
    }
    dst.set_permissions(fs::Permissions::from_mode(job.mode & 0o7777))
        .ctx("set permissions of", &job.dst)?;
    Ok(cloned)
}

fn reflink_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EOPNOTSUPP | libc_errno::EXDEV | libc_errno::EINVAL | libc_errno::ENOTTY)
    ) || e.kind() == io::ErrorKind::Unsupported
}

/// The errno values FICLONE returns when cloning is not possible, from
/// nix so no libc binding is needed.
mod libc_errno {
    use nix::errno::Errno;

    pub(super) const EOPNOTSUPP: i32 = Errno::EOPNOTSUPP as i32;
    pub(super) const EXDEV: i32 = Errno::EXDEV as i32;
    pub(super) const EINVAL: i32 = Errno::EINVAL as i32;
    pub(super) const ENOTTY: i32 = Errno::ENOTTY as i32;
}
