//! `verify` and `restore`: reading snapshots back. Every chunk is checked
//! (present, a complete zstd frame, the recorded length, the recorded
//! sha256) before its bytes are trusted, and a restore builds the whole
//! tree beside the target before swapping it in, so a damaged snapshot
//! never touches the target.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, SnapshotError};
use crate::model::{Chunk, Entry, Manifest, RestoreReport};
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
    /// Entries get the permission bits recorded in the snapshot; their owner
    /// is whoever runs the restore (ownership is not part of a snapshot).
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

        // Structure first, in path order (parents before children); modes
        // are applied at the end so read-only files and directories can
        // still be filled.
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for (index, entry) in manifest.entries.iter().enumerate() {
            let path = root.join(entry.path());
            match entry {
                Entry::Dir { mode, .. } => {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .ctx("create directory", &path)?;
                    dirs.push((path, *mode));
                    report.dirs += 1;
                }
                Entry::File { mode, size, .. }
                    if reuse.is_some_and(|(_, dir)| {
                        alike.get(entry.path()) == Some(&entry)
                            && fs::symlink_metadata(dir.join(entry.path()))
                                .is_ok_and(|m| m.is_file() && m.len() == *size)
                    }) =>
                {
                    let dir = reuse.map(|(_, dir)| dir).unwrap_or(root);
                    let from = dir.join(entry.path());
                    fs::hard_link(&from, &path).ctx("link", &path)?;
                    linked.insert(index);
                    files.push((index, path, *mode));
                    report.files += 1;
                    report.bytes += size;
                }
                Entry::File { mode, size, .. } => {
                    let file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .ctx("create", &path)?;
                    file.set_len(*size).ctx("set length of", &path)?;
                    files.push((index, path, *mode));
                    report.files += 1;
                    report.bytes += size;
                }
                Entry::Symlink { target, .. } => {
                    std::os::unix::fs::symlink(target, &path).ctx("create symlink", &path)?;
                    report.symlinks += 1;
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
            file.write_all_at(data, job.offset).ctx("write", &path)
        })?;

        parallel_map(
            self.threads(),
            &files,
            || Ok(()),
            |(), (_, path, mode)| {
                let file = File::open(path).ctx("open", path)?;
                file.set_permissions(fs::Permissions::from_mode(*mode))
                    .ctx("set permissions of", path)?;
                file.sync_all().ctx("fsync", path)
            },
        )?;
        for (path, mode) in dirs.iter().rev() {
            fsync_dir(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                .ctx("set permissions of", path)?;
        }
        Ok(report)
    }
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
