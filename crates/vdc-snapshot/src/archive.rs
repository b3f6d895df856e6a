//! `export` and `import`: a snapshot as one self-contained stream.
//!
//! Format (integers little-endian):
//! - header: magic `VDCSNAP1`, format version (`u32`, 1);
//! - manifest: its JSON length (`u64`), then the JSON;
//! - blobs: for each distinct blob in order of first use in the manifest,
//!   its hash (32 raw bytes), compressed length (`u64`), compressed bytes;
//! - trailer: magic `VDCSNEND`, then the sha256 of everything before the
//!   trailer (32 bytes). Nothing may follow.
//!
//! Import reads the whole stream into a staging directory under `tmp/`,
//! checking the manifest's id, every blob's content and the trailer, and
//! only then moves blobs and manifest into the store.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{IoContext, SnapshotError};
use crate::model::Manifest;
use crate::store::{BlobReader, LoadError, SnapshotStore};
use crate::util::{fsync_dir, hex, unhex32, TreeGuard};

// === Types ===

const MAGIC: &[u8; 8] = b"VDCSNAP1";
const END_MAGIC: &[u8; 8] = b"VDCSNEND";
const VERSION: u32 = 1;

/// The largest manifest an import accepts (a guard against a hostile
/// length field, far above any real volume's manifest).
const MAX_MANIFEST_BYTES: u64 = 512 << 20;

/// A writer that hashes and counts what passes through it.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    count: u64,
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
    count: u64,
}

// === Export and import ===

impl SnapshotStore {
    /// Writes snapshot `key` (id, prefix or name) to `out` as one
    /// self-contained stream, checking every blob on the way; returns the
    /// number of bytes written.
    pub fn export(&self, key: &str, out: &mut dyn Write) -> Result<u64, SnapshotError> {
        let _lock = self.lock(false)?;
        let manifest = self.find(key)?;
        let json = serde_json::to_vec(&manifest).map_err(|e| SnapshotError::InvalidManifest {
            what: manifest.id.clone(),
            reason: format!("cannot serialize: {e}"),
        })?;
        let mut w = HashingWriter {
            inner: out,
            hasher: Sha256::new(),
            count: 0,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&(json.len() as u64).to_le_bytes())?;
        w.put(&json)?;

        let mut reader = BlobReader::new()?;
        for chunk in manifest.blobs() {
            reader
                .load(self, &chunk.hash, chunk.len)
                .map_err(|e| match e {
                    LoadError::Io(e) => e,
                    LoadError::Problem(problem) => SnapshotError::Blob {
                        hash: chunk.hash.clone(),
                        problem,
                    },
                })?;
            let compressed = reader.compressed();
            let raw = unhex32(&chunk.hash)
                .ok_or_else(|| SnapshotError::InvalidHash(chunk.hash.clone()))?;
            w.put(&raw)?;
            w.put(&(compressed.len() as u64).to_le_bytes())?;
            w.put(compressed)?;
        }

        let digest = w.hasher.finalize();
        let count = w.count;
        w.inner.write_all(END_MAGIC).ctx("write", &export_path())?;
        w.inner.write_all(&digest).ctx("write", &export_path())?;
        w.inner.flush().ctx("flush", &export_path())?;
        Ok(count + 8 + 32)
    }

    /// Reads a stream written by [`SnapshotStore::export`] and adds the
    /// snapshot to this store. The whole stream is checked first (format,
    /// manifest id, every blob's length and sha256, the trailer checksum,
    /// nothing after it); a truncated or altered stream is refused and
    /// leaves the store as it was.
    pub fn import(&self, input: &mut dyn Read) -> Result<Manifest, SnapshotError> {
        let mut r = HashingReader {
            inner: input,
            hasher: Sha256::new(),
            count: 0,
        };

        let magic: [u8; 8] = r.take_array("the header")?;
        if &magic != MAGIC {
            return Err(archive(
                0,
                "not a vdc snapshot archive (expected magic VDCSNAP1)",
            ));
        }
        let version = u32::from_le_bytes(r.take_array("the format version")?);
        if version != VERSION {
            return Err(archive(
                8,
                format!("format version {version}, expected {VERSION}"),
            ));
        }
        let len = u64::from_le_bytes(r.take_array("the manifest length")?);
        if len > MAX_MANIFEST_BYTES {
            return Err(archive(
                12,
                format!("manifest length {len} exceeds {MAX_MANIFEST_BYTES}"),
            ));
        }
        let json = r.take_vec(len, "the manifest")?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| archive(20, format!("manifest is not valid JSON: {e}")))?;
        manifest
            .problem()
            .map_err(|reason| SnapshotError::InvalidManifest {
                what: format!("in archive ({})", manifest.id),
                reason,
            })?;

        // Blobs go to a staging directory first, outside blobs/: the store
        // gains nothing until the trailer has been checked.
        let tmp = self.tmp_dir();
        let staging = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(&tmp)
            .ctx("create a staging directory in", &tmp)?
            .keep();
        let guard = TreeGuard::new(staging);
        let mut staged = Vec::new();
        let mut checker = BlobReader::new()?;
        for chunk in manifest.blobs() {
            let at = r.count;
            let raw: [u8; 32] = r.take_array("a blob hash")?;
            if hex(&raw) != chunk.hash {
                return Err(archive(
                    at,
                    format!("expected blob {}, found {}", chunk.hash, hex(&raw)),
                ));
            }
            let blob_len = u64::from_le_bytes(r.take_array("a blob length")?);
            let bound = usize::try_from(chunk.len).map_or(u64::MAX, |n| {
                zstd::zstd_safe::compress_bound(n) as u64 + 1024
            });
            if blob_len > bound {
                return Err(archive(
                    at + 32,
                    format!(
                        "blob {} claims {blob_len} compressed bytes for a {}-byte chunk",
                        chunk.hash, chunk.len
                    ),
                ));
            }
            let compressed = r.take_vec(blob_len, "a blob")?;
            checker
                .check(&compressed, &chunk.hash, Some(chunk.len))
                .map_err(|problem| SnapshotError::Blob {
                    hash: chunk.hash.clone(),
                    problem,
                })?;
            if !self.has_blob(&chunk.hash) {
                let path = guard.path().join(&chunk.hash);
                fs::File::create(&path)
                    .and_then(|mut f| f.write_all(&compressed).and_then(|()| f.sync_data()))
                    .ctx("write staged blob", &path)?;
                staged.push((chunk.hash.clone(), path));
            }
        }

        let at = r.count;
        let digest = r.hasher.finalize_reset();
        let mut trailer = [0u8; 40];
        read_exact_or(r.inner, &mut trailer, at, "the trailer")?;
        if &trailer[..8] != END_MAGIC {
            return Err(archive(at, "expected the trailer (magic VDCSNEND)"));
        }
        if trailer[8..] != digest[..] {
            return Err(archive(
                at + 8,
                "checksum mismatch: the archive was altered or is not the one exported",
            ));
        }
        let mut extra = [0u8; 1];
        loop {
            match r.inner.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(archive(at + 40, "unexpected data after the trailer")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SnapshotError::io("read", &import_path(), e)),
            }
        }

        // Everything checked: move the blobs in, then the manifest.
        let _lock = self.lock(false)?;
        let mut shards = std::collections::BTreeSet::new();
        for (hash, path) in &staged {
            let dest = self.blob_path(hash);
            if let Some(shard) = dest.parent() {
                fs::create_dir_all(shard).ctx("create directory", shard)?;
                shards.insert(shard.to_path_buf());
            }
            fs::rename(path, &dest).ctx("move staged blob to", &dest)?;
        }
        for shard in &shards {
            fsync_dir(shard)?;
        }
        self.write_manifest_file(&manifest)?;
        drop(guard);
        Ok(manifest)
    }
}

// === impl HashingWriter ===

impl HashingWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.inner.write_all(bytes).ctx("write", &export_path())?;
        self.hasher.update(bytes);
        self.count += bytes.len() as u64;
        Ok(())
    }
}

// === impl HashingReader ===

impl HashingReader<'_> {
    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SnapshotError> {
        let mut buf = [0u8; N];
        read_exact_or(self.inner, &mut buf, self.count, what)?;
        self.hasher.update(buf);
        self.count += N as u64;
        Ok(buf)
    }

    fn take_vec(&mut self, len: u64, what: &str) -> Result<Vec<u8>, SnapshotError> {
        // Read through `take` rather than allocating `len` up front: a
        // truncated stream then costs only what it holds.
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .ctx("read", &import_path())?;
        if buf.len() as u64 != len {
            return Err(archive(
                self.count + buf.len() as u64,
                format!(
                    "truncated: expected {len} bytes of {what}, found {}",
                    buf.len()
                ),
            ));
        }
        self.hasher.update(&buf);
        self.count += len;
        Ok(buf)
    }
}

fn read_exact_or(
    r: &mut dyn Read,
    buf: &mut [u8],
    at: u64,
    what: &str,
) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            archive(at, format!("truncated: expected {what}"))
        } else {
            SnapshotError::io("read", &import_path(), e)
        }
    })
}

fn archive(offset: u64, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Archive {
        offset,
        reason: reason.into(),
    }
}

/// Stand-in path for errors on the export stream.
fn export_path() -> PathBuf {
    Path::new("<export stream>").to_path_buf()
}

/// Stand-in path for errors on the import stream.
fn import_path() -> PathBuf {
    Path::new("<import stream>").to_path_buf()
}
