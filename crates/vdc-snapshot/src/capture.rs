//! `capture`: reads a staged copy into the store. The tree is walked first
//! (entries and file sizes), then every chunk of every file is an
//! independent job on the worker pool: read at its offset, hashed, and, if
//! the store lacks that blob, compressed and written. Only the manifest
//! is written last, so a capture that fails leaves at most unreferenced
//! blobs, which the next garbage collection removes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::attrs;
use crate::error::{IoContext, SnapshotError};
use crate::model::{Chunk, Entry, Manifest, SnapshotMeta};
use crate::store::{SnapshotStore, ZSTD_LEVEL};
use crate::util::{fsync_dir, hex, parallel_map};

// === Types ===

/// A regular file found by the walk.
struct FileRef {
    /// Index of its entry in the sorted entry list.
    entry: usize,
    path: PathBuf,
    size: u64,
}

/// One chunk to store: a byte range of a file.
struct ChunkJob {
    file: usize,
    offset: u64,
    len: usize,
}

/// What storing a chunk produced.
struct Stored {
    chunk: Chunk,
    /// Compressed size of its blob.
    blob_bytes: u64,
    /// The blob, if this job wrote it: a file in `tmp/` still to be
    /// fsynced and renamed into place.
    written: Option<tempfile::TempPath>,
}

/// A worker's reusable buffers and zstd context.
struct Worker {
    cctx: zstd::bulk::Compressor<'static>,
    input: Vec<u8>,
    output: Vec<u8>,
}

// === Capture ===

impl SnapshotStore {
    /// Reads `dir` (a staged copy, which must not change meanwhile) into
    /// the store and returns its manifest.
    ///
    /// Files are cut into fixed-size chunks (4 MiB by default); each
    /// distinct chunk is stored once, as `blobs/ab/cdef…`, a zstd frame
    /// (level 3) written to a temp file and renamed into place. A blob
    /// already present, from this or any earlier snapshot, is not written
    /// again. The manifest is written last, atomically, as
    /// `manifests/<id>.json`. Sockets, FIFOs and device nodes are left out;
    /// a name or symlink target that is not UTF-8 is an error.
    pub fn capture(&self, dir: &Path, meta: SnapshotMeta) -> Result<Manifest, SnapshotError> {
        let _lock = self.lock(false)?;
        let (mut entries, files) = scan(dir)?;

        let chunk_size = self.chunk_size();
        let mut jobs = Vec::new();
        for (index, file) in files.iter().enumerate() {
            let mut offset = 0u64;
            while offset < file.size {
                let len =
                    usize::try_from(file.size - offset).map_or(chunk_size, |n| n.min(chunk_size));
                jobs.push(ChunkJob {
                    file: index,
                    offset,
                    len,
                });
                offset += len as u64;
            }
        }

        let stored = parallel_map(
            self.threads(),
            &jobs,
            || Worker::new(chunk_size),
            |worker, job| worker.store_chunk(self, &files[job.file], job),
        )?;

        // New blobs become visible only once durable: fsync them all here,
        // in parallel, instead of one blocking fsync per blob on the
        // workers; then rename them into place and fsync each touched shard
        // directory once. Until its rename a blob is only a temp file, so a
        // crash never leaves a damaged blob that a later capture would
        // trust as already stored. (Two jobs may have written the same new
        // chunk; both renames put identical bytes in place.)
        let mut stored_bytes = 0;
        let mut seen: HashSet<String> = HashSet::new();
        let mut pending = Vec::new();
        for (job, s) in jobs.iter().zip(stored) {
            if seen.insert(s.chunk.hash.clone()) {
                stored_bytes += s.blob_bytes;
            }
            if let Some(temp) = s.written {
                pending.push((s.chunk.hash.clone(), temp));
            }
            if let Some(Entry::File { chunks, .. }) = entries.get_mut(files[job.file].entry) {
                chunks.push(s.chunk);
            }
        }
        parallel_map(
            self.threads(),
            &pending,
            || Ok(()),
            |(), (_, temp)| {
                File::open(temp)
                    .and_then(|f| f.sync_data())
                    .ctx("fsync", temp)
            },
        )?;
        let mut shards = BTreeSet::new();
        for (hash, temp) in pending {
            shards.insert(hash[..2].to_string());
            self.commit_blob(&hash, temp)?;
        }
        for shard in shards {
            fsync_dir(&self.blobs_dir().join(shard))?;
        }
        let logical_bytes = files.iter().map(|f| f.size).sum();
        let manifest = Manifest::seal(meta, entries, stored_bytes, logical_bytes);
        self.write_manifest_file(&manifest)?;
        Ok(manifest)
    }
}

// === impl Worker ===

impl Worker {
    fn new(chunk_size: usize) -> Result<Self, SnapshotError> {
        let cctx = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|e| SnapshotError::io("create zstd context for", Path::new("<memory>"), e))?;
        Ok(Self {
            cctx,
            input: vec![0; chunk_size],
            output: Vec::with_capacity(zstd::zstd_safe::compress_bound(chunk_size)),
        })
    }

    fn store_chunk(
        &mut self,
        store: &SnapshotStore,
        file: &FileRef,
        job: &ChunkJob,
    ) -> Result<Stored, SnapshotError> {
        let data = &mut self.input[..job.len];
        File::open(&file.path)
            .and_then(|f| f.read_exact_at(data, job.offset))
            .ctx(
                "read (a file that shrinks during capture fails here)",
                &file.path,
            )?;
        let hash = hex(&Sha256::digest(&*data));
        let len = job.len as u64;

        let path = store.blob_path(&hash);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            let chunk = Chunk { hash, len };
            return Ok(Stored {
                chunk,
                blob_bytes: meta.len(),
                written: None,
            });
        }
        self.output.clear();
        self.cctx
            .compress_to_buffer(&*data, &mut self.output)
            .map_err(|e| SnapshotError::io("compress a chunk of", &file.path, e))?;
        let temp = store.write_temp(&self.output)?;
        let blob_bytes = self.output.len() as u64;
        Ok(Stored {
            chunk: Chunk { hash, len },
            blob_bytes,
            written: Some(temp),
        })
    }
}

// === Walk ===

/// Walks `root`: returns its entries sorted by path (files with no chunks
/// yet) and its regular files in that order. Each entry carries its owner,
/// times and extended attributes; a regular file with several names is
/// kept once, at its first path in order, and its other names become
/// links to it.
fn scan(root: &Path) -> Result<(Vec<Entry>, Vec<FileRef>), SnapshotError> {
    let meta = fs::metadata(root).ctx("read metadata of", root)?;
    if !meta.is_dir() {
        return Err(SnapshotError::Unsupported {
            path: root.to_path_buf(),
            reason: "expected a directory".into(),
        });
    }
    // Entries, each with the inode of a file that has other names.
    let mut entries: Vec<(Entry, Option<(u64, u64)>)> = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = pending.pop() {
        for item in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let item = item.ctx("read directory", &dir)?;
            let abs = item.path();
            let name = item
                .file_name()
                .into_string()
                .map_err(|_| SnapshotError::Unsupported {
                    path: abs.clone(),
                    reason: "file name is not UTF-8".into(),
                })?;
            let path = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let meta = fs::symlink_metadata(&abs).ctx("read metadata of", &abs)?;
            let kind = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            if kind.is_dir() {
                let attrs = Some(attrs::read(&abs, &meta)?);
                entries.push((
                    Entry::Dir {
                        path: path.clone(),
                        mode,
                        attrs,
                    },
                    None,
                ));
                pending.push((abs, path));
            } else if kind.is_file() {
                let attrs = Some(attrs::read(&abs, &meta)?);
                let inode = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
                entries.push((
                    Entry::File {
                        path,
                        mode,
                        size: meta.len(),
                        chunks: Vec::new(),
                        attrs,
                    },
                    inode,
                ));
            } else if kind.is_symlink() {
                let target = fs::read_link(&abs).ctx("read symlink", &abs)?;
                let target = target.into_os_string().into_string().map_err(|_| {
                    SnapshotError::Unsupported {
                        path: abs.clone(),
                        reason: "symlink target is not UTF-8".into(),
                    }
                })?;
                let attrs = Some(attrs::read(&abs, &meta)?);
                entries.push((
                    Entry::Symlink {
                        path,
                        target,
                        attrs,
                    },
                    None,
                ));
            }
            // Sockets, FIFOs and devices carry no data worth keeping.
        }
    }
    entries.sort_by(|a, b| a.0.path().cmp(b.0.path()));

    // Other names of a file already listed become links to its first name.
    let mut first_name: HashMap<(u64, u64), String> = HashMap::new();
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|(entry, inode)| match inode {
            Some(inode) => match first_name.get(&inode) {
                Some(target) => Entry::Link {
                    path: entry.path().to_owned(),
                    target: target.clone(),
                },
                None => {
                    first_name.insert(inode, entry.path().to_owned());
                    entry
                }
            },
            None => entry,
        })
        .collect();

    let files = entries
        .iter()
        .enumerate()
        .filter_map(|(entry, e)| match e {
            Entry::File { path, size, .. } => Some(FileRef {
                entry,
                path: root.join(path),
                size: *size,
            }),
            _ => None,
        })
        .collect();
    Ok((entries, files))
}
