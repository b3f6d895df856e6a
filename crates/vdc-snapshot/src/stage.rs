//! `stage`: the copy taken while the instance is frozen. Speed is all that
//! matters here, so regular files are cloned with a reflink where the
//! filesystem can (one metadata operation per file) and copied in the
//! kernel (`copy_file_range`) otherwise, on several threads; hashing and
//! compression happen later, in `capture`, once the instance runs again.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::attrs::{self, Skipped};
use crate::error::{IoContext, SnapshotError};
use crate::model::{Attrs, StageReport};
use crate::util::{default_threads, parallel_map, TreeGuard};

// === Types ===

/// One regular file to copy.
struct FileJob {
    src: PathBuf,
    dst: PathBuf,
    mode: u32,
    attrs: Attrs,
}

// === Stage ===

/// Copies `src` (a volume directory) into `dst`, which must not exist and
/// whose parent must (ideally on the same filesystem, so reflinks work).
///
/// Keeps relative paths, permission bits (`mode & 0o7777`, the root's
/// included), owners, times and extended attributes (owners and privileged
/// attributes only as root), symlinks (verbatim, never followed), hard
/// links (a file with several names is copied once and linked) and empty
/// directories: what `capture` reads from the copy is what the volume held.
/// Each regular file is cloned with a reflink (`FICLONE`) when the
/// filesystem supports it and copied with `copy_file_range` otherwise.
/// Sockets, FIFOs and device nodes are left out and counted in
/// [`StageReport::skipped`]. If it fails, `dst` is removed.
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

    // Directories, symlinks and second names of files are made here, in
    // walk order, so every directory exists before a file is copied into
    // it; the files are copied afterwards on the worker threads.
    let mut report = StageReport::default();
    let root_attrs = attrs::read(src, &root_meta)?;
    let mut dirs: Vec<(PathBuf, u32, Attrs)> = vec![(
        dst.to_path_buf(),
        root_meta.permissions().mode(),
        root_attrs,
    )];
    let mut files = Vec::new();
    let mut symlinks = Vec::new();
    let mut first_copy: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut links = Vec::new();
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from_dir, to_dir)) = pending.pop() {
        for entry in fs::read_dir(&from_dir).ctx("read directory", &from_dir)? {
            let entry = entry.ctx("read directory", &from_dir)?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let meta = fs::symlink_metadata(&from).ctx("read metadata of", &from)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&to).ctx("create directory", &to)?;
                dirs.push((
                    to.clone(),
                    meta.permissions().mode(),
                    attrs::read(&from, &meta)?,
                ));
                pending.push((from, to));
            } else if kind.is_file() {
                if meta.nlink() > 1 {
                    let inode = (meta.dev(), meta.ino());
                    if let Some(first) = first_copy.get(&inode) {
                        // Linked once every file is copied.
                        links.push((first.clone(), to));
                        continue;
                    }
                    first_copy.insert(inode, to.clone());
                }
                report.files += 1;
                report.bytes += meta.len();
                files.push(FileJob {
                    attrs: attrs::read(&from, &meta)?,
                    src: from,
                    dst: to,
                    mode: meta.permissions().mode(),
                });
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).ctx("read symlink", &from)?;
                std::os::unix::fs::symlink(&target, &to).ctx("create symlink", &to)?;
                symlinks.push((to, attrs::read(&from, &meta)?));
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
    for (first, other) in &links {
        fs::hard_link(first, other).ctx("link", other)?;
    }

    // Owners, modes and times last: children were pushed after their
    // parents, so directories go deepest first, and a read-only directory
    // is locked (and its time set) only once everything is inside it.
    let mut skipped = Skipped::default();
    for job in &files {
        attrs::apply(&job.dst, &job.attrs, Some(job.mode), &mut skipped)?;
    }
    for (link, attrs) in &symlinks {
        attrs::apply(link, attrs, None, &mut skipped)?;
    }
    for (dir, mode, attrs) in dirs.iter().rev() {
        attrs::apply(dir, attrs, Some(*mode), &mut skipped)?;
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
