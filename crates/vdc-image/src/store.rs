//! The images of one node, under `DATA_DIR/images`:
//!
//! ```text
//! blobs/sha256/HEX     every blob (manifests, configs, layers), verified on the way in
//! layers/HEX/          each layer unpacked once, shared by every image that has it
//! tmp/                 downloads and unpacks in progress (emptied at open)
//! images.json          name -> manifest, config and layers, size, times
//! ```
//!
//! A blob is written to `tmp/` while its sha256 is computed and renamed
//! into place only when it matches; a layer is unpacked in `tmp/` and
//! renamed into `layers/` when complete. So a crash leaves nothing half
//! there, only `tmp/` to empty. Blocking file I/O: call it off the async
//! threads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// An image this node has: its name (the reference it was pulled or
/// imported by) and its parts, by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// `sha256:…` of the manifest: the image's identity.
    pub manifest: String,
    pub config: String,
    /// The layers' blobs, bottom first.
    pub layers: Vec<String>,
    /// Bytes of its blobs as stored (compressed layers).
    pub size: u64,
    pub created_ms: u64,
    /// The last time an instance started from it.
    pub last_used_ms: u64,
}

/// What a container needs of its image's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`, in the image's order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Serializes changes of `images.json`.
    index: Mutex<()>,
    /// How long a blob or layer no image has yet is kept from garbage
    /// collection: a pull or import stores its blobs before it registers
    /// the image.
    grace: std::time::Duration,
}

const INDEX: &str = "images.json";

impl Store {
    /// Opens (creating) the store in `dir` and empties what an earlier run
    /// left unfinished.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let dir = dir.into();
        for sub in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| ImageError::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let tmp = dir.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        Ok(Store {
            dir,
            index: Mutex::new(()),
            grace: std::time::Duration::from_secs(600),
        })
    }

    /// Sets how long fresh blobs and layers that no image has are kept
    /// (default 10 minutes).
    pub fn set_grace(&mut self, grace: std::time::Duration) {
        self.grace = grace;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // === blobs ===

    /// Where the blob `digest` is, when the store has it.
    pub fn blob(&self, digest: &str) -> Option<PathBuf> {
        let path = self.blob_path(digest).ok()?;
        path.is_file().then_some(path)
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = hex_of(digest)?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Stores what `reader` gives as the blob `digest`, verifying it; a
    /// blob that does not match is refused and nothing is kept.
    pub fn put_blob(&self, digest: &str, mut reader: impl Read) -> Result<PathBuf, ImageError> {
        let path = self.blob_path(digest)?;
        if path.is_file() {
            // Read it anyway: the caller's stream is consumed either way.
            io::copy(&mut reader, &mut io::sink())
                .map_err(|e| ImageError::io(format!("read blob {digest}"), e))?;
            return Ok(path);
        }
        let mut staged = self.staged_file()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ImageError::io(format!("read blob {digest}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            staged
                .write_all(&buf[..n])
                .map_err(|e| ImageError::io(format!("write blob {digest}"), e))?;
        }
        self.commit_blob(digest, staged, hasher)
    }

    /// A file in `tmp/` for a blob being received, removed unless committed.
    pub fn staged_file(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        tempfile::NamedTempFile::new_in(self.dir.join("tmp"))
            .map_err(|e| ImageError::io("make a temporary file for a blob", e))
    }

    /// Moves a received blob into place if its content is `digest`.
    pub fn commit_blob(
        &self,
        digest: &str,
        staged: tempfile::NamedTempFile,
        hasher: Sha256,
    ) -> Result<PathBuf, ImageError> {
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        let path = self.blob_path(digest)?;
        staged
            .as_file()
            .sync_all()
            .map_err(|e| ImageError::io(format!("write blob {digest}"), e))?;
        staged
            .persist(&path)
            .map_err(|e| ImageError::io(format!("store blob {digest}"), e.error))?;
        Ok(path)
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(|e| ImageError::io(format!("read blob {digest}"), e))
    }

    // === images ===

    /// Registers `name` as the image whose manifest is the stored blob
    /// `manifest` (every blob it names must be stored), unpacking the
    /// layers this node does not have yet.
    pub fn register(&self, name: &str, manifest: &str) -> Result<ImageRecord, ImageError> {
        let parsed = self.manifest(manifest)?;
        let config = parsed.config().digest().to_string();
        if self.blob(&config).is_none() {
            return Err(ImageError::invalid(
                format!("image {name}"),
                format!("its config {config} is not stored"),
            ));
        }
        let mut size = parsed.config().size();
        let mut layers = Vec::new();
        for layer in parsed.layers() {
            let digest = layer.digest().to_string();
            if self.blob(&digest).is_none() {
                return Err(ImageError::invalid(
                    format!("image {name}"),
                    format!("its layer {digest} is not stored"),
                ));
            }
            size += layer.size();
            self.unpack_layer(&digest, &layers)?;
            layers.push(digest);
        }
        let now = now_ms();
        let record = ImageRecord {
            name: name.to_owned(),
            manifest: manifest.to_owned(),
            config,
            layers,
            size: size + self.blob_len(manifest),
            created_ms: now,
            last_used_ms: now,
        };
        self.update(|images| {
            images.insert(name.to_owned(), record.clone());
        })?;
        Ok(record)
    }

    /// The manifest blob `digest`, parsed.
    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        let bytes = self.read_blob(digest)?;
        ImageManifest::from_reader(&bytes[..])
            .map_err(|e| ImageError::invalid(format!("manifest {digest}"), e.to_string()))
    }

    /// The index blob `digest`, parsed.
    pub fn index(&self, digest: &str) -> Result<ImageIndex, ImageError> {
        let bytes = self.read_blob(digest)?;
        ImageIndex::from_reader(&bytes[..])
            .map_err(|e| ImageError::invalid(format!("index {digest}"), e.to_string()))
    }

    fn blob_len(&self, digest: &str) -> u64 {
        self.blob(digest)
            .and_then(|p| fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// The image named `name`, if this node has it.
    pub fn get(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        Ok(self.load()?.remove(name))
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.load()?.into_values().collect())
    }

    /// What a container of `image` runs by default.
    pub fn run_config(&self, image: &ImageRecord) -> Result<RunConfig, ImageError> {
        let bytes = self.read_blob(&image.config)?;
        let config = ImageConfiguration::from_reader(&bytes[..]).map_err(|e| {
            ImageError::invalid(format!("the config of {}", image.name), e.to_string())
        })?;
        let Some(c) = config.config() else {
            return Ok(RunConfig::default());
        };
        Ok(RunConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            workdir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        })
    }

    /// The unpacked layers of `image`, top first, as overlayfs' `lowerdir`
    /// lists them.
    pub fn lower_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .rev()
            .map(|d| Ok(self.dir.join("layers").join(hex_of(d)?)))
            .collect()
    }

    /// Notes that an instance starts from `name` now (pruning keeps
    /// recently used images).
    pub fn touch(&self, name: &str) -> Result<(), ImageError> {
        self.update(|images| {
            if let Some(record) = images.get_mut(name) {
                record.last_used_ms = now_ms();
            }
        })
    }

    /// Forgets the image `name` (its blobs and layers go at the next
    /// [`prune`](Store::prune) if no other image has them).
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let mut removed = None;
        self.update(|images| removed = images.remove(name))?;
        removed.ok_or_else(|| ImageError::NotFound(name.to_owned()))
    }

    /// Removes images not in `in_use` and unused for `unused_for_ms`, then
    /// every blob and unpacked layer no remaining image has. Returns the
    /// removed images' names and the bytes freed.
    pub fn prune(
        &self,
        in_use: &BTreeSet<String>,
        unused_for_ms: u64,
    ) -> Result<(Vec<String>, u64), ImageError> {
        let now = now_ms();
        let mut removed = Vec::new();
        self.update(|images| {
            images.retain(|name, record| {
                let keep = in_use.contains(name)
                    || now.saturating_sub(record.last_used_ms) < unused_for_ms;
                if !keep {
                    removed.push(name.clone());
                }
                keep
            });
        })?;
        Ok((removed, self.collect_garbage()?))
    }

    /// Deletes blobs and layers that no image has (but those stored within
    /// the grace period, which a pull or import may be about to register);
    /// returns the bytes freed.
    pub fn collect_garbage(&self) -> Result<u64, ImageError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let images = self.load()?;
        let mut wanted = BTreeSet::new();
        for record in images.values() {
            wanted.insert(hex_of(&record.manifest)?.to_owned());
            wanted.insert(hex_of(&record.config)?.to_owned());
            for layer in &record.layers {
                wanted.insert(hex_of(layer)?.to_owned());
            }
        }
        let mut freed = 0;
        for sub in ["blobs/sha256", "layers"] {
            let dir = self.dir.join(sub);
            let entries = fs::read_dir(&dir)
                .map_err(|e| ImageError::io(format!("list {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Fresh ones may belong to a pull or import not registered yet.
                let fresh = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .map(|t| t.elapsed().unwrap_or_default())
                    .is_none_or(|age| age < self.grace);
                if wanted.contains(&name) || fresh {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    freed += dir_size(&path);
                    fs::remove_dir_all(&path)
                } else {
                    freed += entry.metadata().map_or(0, |m| m.len());
                    fs::remove_file(&path)
                }
                .map_err(|e| ImageError::io(format!("remove {}", path.display()), e))?;
            }
        }
        Ok(freed)
    }

    // === layers ===

    /// Unpacks the layer blob `digest`, which lies over `below` (bottom
    /// first), into `layers/HEX` unless done.
    fn unpack_layer(&self, digest: &str, below: &[String]) -> Result<(), ImageError> {
        let hex = hex_of(digest)?;
        let dest = self.dir.join("layers").join(hex);
        if dest.is_dir() {
            return Ok(());
        }
        let staging = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(self.dir.join("tmp"))
            .map_err(|e| ImageError::io("make a directory to unpack a layer in", e))?;
        let blob = self.blob_path(digest)?;
        let file =
            fs::File::open(&blob).map_err(|e| ImageError::io(format!("open layer {digest}"), e))?;
        let unpacked = staging.path().join("layer");
        fs::create_dir(&unpacked)
            .map_err(|e| ImageError::io(format!("create {}", unpacked.display()), e))?;
        let lowers = below
            .iter()
            .rev()
            .map(|d| Ok(self.dir.join("layers").join(hex_of(d)?)))
            .collect::<Result<Vec<_>, ImageError>>()?;
        crate::unpack::unpack(file, &unpacked, &lowers)?;
        match fs::rename(&unpacked, &dest) {
            Ok(()) => Ok(()),
            // Another registration (an image sharing this layer, pulled at
            // the same time) unpacked it first: the same digest, the same
            // files.
            Err(_) if dest.is_dir() => Ok(()),
            Err(e) => Err(ImageError::io(format!("move layer {digest} into place"), e)),
        }
    }

    // === the index of images ===

    fn load(&self) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
        let path = self.dir.join(INDEX);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io(format!("read {}", path.display()), e)),
        }
    }

    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, ImageRecord>),
    ) -> Result<(), ImageError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut images = self.load()?;
        change(&mut images);
        let path = self.dir.join(INDEX);
        let bytes = serde_json::to_vec_pretty(&images)
            .map_err(|e| ImageError::invalid("the index of images", e.to_string()))?;
        let mut staged = self.staged_file()?;
        staged
            .write_all(&bytes)
            .and_then(|()| staged.as_file().sync_all())
            .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
        staged
            .persist(&path)
            .map_err(|e| ImageError::io(format!("write {}", path.display()), e.error))?;
        Ok(())
    }
}

/// The hex part of a `sha256:` digest, checked (it names a file).
pub(crate) fn hex_of(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(ImageError::invalid(
            format!("digest `{digest}`"),
            "expected `sha256:` and 64 hexadecimal digits",
        )),
    }
}

/// True for manifest media types (OCI and Docker v2).
pub(crate) fn is_manifest(media: &MediaType) -> bool {
    matches!(media, MediaType::ImageManifest)
        || media.to_string() == "application/vnd.docker.distribution.manifest.v2+json"
}

/// True for index media types (OCI and Docker manifest lists).
pub(crate) fn is_index(media: &MediaType) -> bool {
    matches!(media, MediaType::ImageIndex)
        || media.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
