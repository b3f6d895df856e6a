//! `verify` and `restore`: reading snapshots back. Every chunk is checked
//! (present, a complete zstd frame, the recorded length, the recorded
//! sha256) before its bytes are trusted, and a restore builds the whole
//! tree beside the target before swapping it in, so a damaged snapshot
//! never touches the target.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::attrs::{self, Skipped};
use crate::error::{IoContext, SnapshotError};
use crate::model::{Attrs, Chunk, Entry, Manifest, RestoreReport};
use crate::store::{BlobReader, LoadError, SnapshotStore};
use crate::util::{fsync_dir, parallel_map, remove_tree, TreeGuard};

// === Types ===

/// One chunk to check or write: which file, which chunk, where it goes.
struct ChunkJob<'a> {
    /// Index of the file's entry in the manifest.
    entry: usize,
    path: &'a str,
    index: usize,
    offset: u64,
    chunk: &'a Chunk,
}

/// A restore worker: a blob reader and the file it last wrote to.
struct Writer {
    reader: BlobReader,
    open: Option<(usize, File)>,
}

// === Verify and restore ===

impl SnapshotStore {
    /// Checks every distinct chunk of snapshot `key` (id, prefix or name):
    /// the blob is present, is a complete zstd frame, decompresses to the
    /// recorded length and hashes to the recorded sha256. The error names
    /// the first damaged file and chunk, and why.
    pub fn verify(&self, key: &str) -> Result<(), SnapshotError> {
        let manifest = self.find(key)?;
        let jobs = distinct_chunks(&manifest);
        parallel_map(self.threads(), &jobs, BlobReader::new, |reader, job| {
            reader
                .load(self, &job.chunk.hash, job.chunk.len)
                .map(|_| ())
                .map_err(|e| chunk_error(&manifest, job, e))
        })?;
        Ok(())
    }

    /// Replaces the contents of directory `target` with snapshot `key`.
    ///
    /// Writes the whole tree into a new sibling directory
    /// (`<parent>/.restore-XXXXXX`), checking every chunk as it goes,
    /// fsyncs it, then swaps it in: `target` is renamed aside, the new
    /// tree renamed into place, and the old one removed. If anything fails
    /// before the swap (a missing or damaged blob, a full disk), `target` is
    /// untouched and the new directory removed. `target` may be absent; it
    /// keeps its own permission bits if present (0755 otherwise).
    ///
    /// Entries get the permission bits, owners, times and extended
    /// attributes recorded in the snapshot (owners and privileged attributes
    /// only when run as root), hard links are linked again, and runs of
    /// zeros become holes.
    pub fn restore(&self, key: &str, target: &Path) -> Result<RestoreReport, SnapshotError> {
        self.restore_inner(key, target, None)
    }

    /// Like [`restore`](Self::restore), for a `target` that holds exactly
    /// snapshot `base` as a restore of it left it (the second pass of a
    /// move): files the two snapshots have alike (same path, mode and
    /// chunks) are hard-linked from `target` instead of written again, so
    /// the time taken follows what changed, not the size of the volume.
    pub fn restore_over(
        &self,
        key: &str,
        target: &Path,
        base: &str,
    ) -> Result<RestoreReport, SnapshotError> {
        let base = self.find(base)?;
        self.restore_inner(key, target, Some(&base))
    }

    fn restore_inner(
        &self,
        key: &str,
        target: &Path,
        base: Option<&Manifest>,
    ) -> Result<RestoreReport, SnapshotError> {
        let _lock = self.lock(false)?;
        let manifest = self.find(key)?;

        // A missing blob is by far the likeliest damage and costs one stat
        // per blob to find: fail before writing anything.
        for job in distinct_chunks(&manifest) {
            if !self.has_blob(&job.chunk.hash) {
                let problem = crate::error::BlobProblem::Missing;
                return Err(chunk_error(&manifest, &job, LoadError::Problem(problem)));
            }
        }

        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let root_mode = match fs::metadata(target) {
            Ok(meta) if meta.is_dir() => meta.permissions().mode() & 0o7777,
            Ok(_) => {
                return Err(SnapshotError::Unsupported {
                    path: target.to_path_buf(),
                    reason: "restore target exists and is not a directory".into(),
                })
            }
            Err(_) => 0o755,
        };
        let fresh = tempfile::Builder::new()
            .prefix(".restore-")
            .tempdir_in(&parent)
            .ctx("create a restore directory in", &parent)?
            .keep();
        let mut guard = TreeGuard::new(fresh);
        let reuse = base.map(|base| (base, target));
        let report = self.write_tree(&manifest, guard.path(), reuse)?;
        fs::set_permissions(guard.path(), fs::Permissions::from_mode(root_mode))
            .ctx("set permissions of", guard.path())?;
        fsync_dir(guard.path())?;

        // The swap. Until the second rename `target` is intact (or back in
        // place); after it, only the old copy is left to remove.
        let fresh = guard.path().to_path_buf();
        if fs::symlink_metadata(target).is_ok() {
            let mut aside = fresh.clone().into_os_string();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            fs::rename(target, &aside).ctx("move aside", target)?;
            if let Err(e) = fs::rename(&fresh, target) {
                let _ = fs::rename(&aside, target);
                return Err(SnapshotError::io("move restored tree into", target, e));
            }
            guard.disarm();
            // The restore is complete: failing to remove the old copy only
            // leaves `<target's parent>/.restore-*.old` behind.
            let _ = remove_tree(&aside);
        } else {
            fs::rename(&fresh, target).ctx("move restored tree into", target)?;
            guard.disarm();
        }
        fsync_dir(&parent)?;
        Ok(report)
    }

    /// Writes every entry of `manifest` under `root` (an empty directory)
    /// and fsyncs it all. With `reuse = (base, dir)`, files alike in `base`
    /// are hard-linked from `dir` instead.
    fn write_tree(
        &self,
        manifest: &Manifest,
        root: &Path,
        reuse: Option<(&Manifest, &Path)>,
    ) -> Result<RestoreReport, SnapshotError> {
        let alike: std::collections::HashMap<&str, &Entry> = reuse
            .map(|(base, _)| {
                base.entries
                    .iter()
                    .filter(|e| matches!(e, Entry::File { .. }))
                    .map(|e| (e.path(), e))
                    .collect()
            })
            .unwrap_or_default();
        let mut linked = std::collections::HashSet::new();
        let mut report = RestoreReport {
            id: manifest.id.clone(),
            ..RestoreReport::default()
        };

        // Structure first, in path order (parents before children); owners,
        // modes and times are applied at the end so read-only files and
        // directories can still be filled, and directories' times are not
        // moved by what is created in them.
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        let mut symlinks = Vec::new();
        for (index, entry) in manifest.entries.iter().enumerate() {
            let path = root.join(entry.path());
            match entry {
                Entry::Dir { mode, attrs, .. } => {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .ctx("create directory", &path)?;
                    dirs.push((path, *mode, attrs.as_ref()));
                    report.dirs += 1;
                }
                Entry::File {
                    mode, size, attrs, ..
                } if reuse.is_some_and(|(_, dir)| {
                    alike
                        .get(entry.path())
                        .is_some_and(|base| same_data(base, entry))
                        && fs::symlink_metadata(dir.join(entry.path()))
                            .is_ok_and(|m| m.is_file() && m.len() == *size)
                }) =>
                {
                    let dir = reuse.map(|(_, dir)| dir).unwrap_or(root);
                    let from = dir.join(entry.path());
                    fs::hard_link(&from, &path).ctx("link", &path)?;
                    linked.insert(index);
                    files.push((index, path, *mode, attrs.as_ref()));
                    report.files += 1;
                    report.bytes += size;
                }
                Entry::File {
                    mode, size, attrs, ..
                } => {
                    let file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .ctx("create", &path)?;
                    // A file of this length with nothing written yet is all
                    // hole: the zeros of the snapshot stay holes.
                    file.set_len(*size).ctx("set length of", &path)?;
                    files.push((index, path, *mode, attrs.as_ref()));
                    report.files += 1;
                    report.bytes += size;
                }
                Entry::Symlink { target, attrs, .. } => {
                    std::os::unix::fs::symlink(target, &path).ctx("create symlink", &path)?;
                    symlinks.push((path, attrs.as_ref()));
                    report.symlinks += 1;
                }
                Entry::Link { target, .. } => {
                    // The check made sure `target` is a file written above.
                    fs::hard_link(root.join(target), &path).ctx("link", &path)?;
                    report.links += 1;
                }
            }
        }

        let mut jobs = all_chunks(manifest);
        jobs.retain(|job| !linked.contains(&job.entry));
        let writer = || {
            Ok(Writer {
                reader: BlobReader::new()?,
                open: None,
            })
        };
        parallel_map(self.threads(), &jobs, writer, |w, job| {
            let data = w
                .reader
                .load(self, &job.chunk.hash, job.chunk.len)
                .map_err(|e| chunk_error(manifest, job, e))?;
            let path = root.join(job.path);
            let file = match &w.open {
                Some((entry, file)) if *entry == job.entry => file,
                _ => {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .ctx("open", &path)?;
                    &w.open.insert((job.entry, file)).1
                }
            };
            write_sparse(file, data, job.offset).ctx("write", &path)
        })?;

        let skipped = std::sync::Mutex::new(Skipped::default());
        parallel_map(
            self.threads(),
            &files,
            || Ok(()),
            |(), (_, path, mode, attrs)| {
                let file = File::open(path).ctx("open", path)?;
                file.sync_all().ctx("fsync", path)?;
                drop(file);
                finish(path, *attrs, Some(*mode), &skipped)
            },
        )?;
        for (path, attrs) in &symlinks {
            if let Some(attrs) = attrs {
                finish(path, Some(attrs), None, &skipped)?;
            }
        }
        for (path, mode, attrs) in dirs.iter().rev() {
            fsync_dir(path)?;
            finish(path, *attrs, Some(*mode), &skipped)?;
        }
        let skipped = skipped
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        report.owners_not_kept = skipped.owners;
        report.xattrs_not_kept = skipped.xattrs;
        Ok(report)
    }
}

/// Whether two file entries hold the same bytes: what lets a restore link
/// one instead of writing it. Owner, mode and times may differ (an access
/// between two snapshots moves the access time); the linked file gets the
/// new entry's afterwards.
fn same_data(a: &Entry, b: &Entry) -> bool {
    match (a, b) {
        (
            Entry::File {
                size: sa,
                chunks: ca,
                ..
            },
            Entry::File {
                size: sb,
                chunks: cb,
                ..
            },
        ) => sa == sb && ca == cb,
        _ => false,
    }
}

/// Gives a restored entry its recorded attributes and mode, or only its
/// mode when the snapshot has no attributes (taken before they were kept).
fn finish(
    path: &Path,
    attrs: Option<&Attrs>,
    mode: Option<u32>,
    skipped: &std::sync::Mutex<Skipped>,
) -> Result<(), SnapshotError> {
    match attrs {
        Some(attrs) => {
            let mut mine = Skipped::default();
            attrs::apply(path, attrs, mode, &mut mine)?;
            let mut all = skipped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.owners += mine.owners;
            all.xattrs += mine.xattrs;
            Ok(())
        }
        None => match mode {
            Some(mode) => fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .ctx("set permissions of", path),
            None => Ok(()),
        },
    }
}

/// The block size holes are made at: a block of zeros in the data is not
/// written, leaving a hole in a file that was sized beforehand.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset`, skipping every aligned block of zeros.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut start = 0;
    while start < data.len() {
        // Block boundaries in the file, so holes line up with its blocks.
        let aligned = HOLE_BLOCK - (offset as usize + start) % HOLE_BLOCK;
        let end = (start + aligned).min(data.len());
        let block = &data[start..end];
        if block.iter().any(|b| *b != 0) {
            // Extend the run over the following non-zero blocks.
            let mut run_end = end;
            while run_end < data.len() {
                let next = (run_end + HOLE_BLOCK).min(data.len());
                if data[run_end..next].iter().all(|b| *b == 0) {
                    break;
                }
                run_end = next;
            }
            file.write_all_at(&data[start..run_end], offset + start as u64)?;
            start = run_end;
        } else {
            start = end;
        }
    }
    Ok(())
}

// === Jobs ===

/// Every chunk of every file, with its offset.
fn all_chunks(manifest: &Manifest) -> Vec<ChunkJob<'_>> {
    let mut jobs = Vec::new();
    for (entry, e) in manifest.entries.iter().enumerate() {
        if let Entry::File { path, chunks, .. } = e {
            let mut offset = 0;
            for (index, chunk) in chunks.iter().enumerate() {
                jobs.push(ChunkJob {
                    entry,
                    path,
                    index,
                    offset,
                    chunk,
                });
                offset += chunk.len;
            }
        }
    }
    jobs
}

/// The first use of every distinct chunk.
fn distinct_chunks(manifest: &Manifest) -> Vec<ChunkJob<'_>> {
    let mut seen = std::collections::HashSet::new();
    all_chunks(manifest)
        .into_iter()
        .filter(|job| seen.insert(&job.chunk.hash))
        .collect()
}

fn chunk_error(manifest: &Manifest, job: &ChunkJob<'_>, error: LoadError) -> SnapshotError {
    match error {
        LoadError::Io(e) => e,
        LoadError::Problem(problem) => SnapshotError::Chunk {
            snapshot: manifest.id.clone(),
            file: job.path.to_string(),
            chunk: job.index,
            hash: job.chunk.hash.clone(),
            problem,
        },
    }
}
