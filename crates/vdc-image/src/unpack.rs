//! Unpacking one layer into a directory of its own, in the form overlayfs
//! stacks: a deleted path (`.wh.NAME`) becomes a whiteout (a character
//! device 0:0), an opaque directory (`.wh..wh..opq`) gets
//! `trusted.overlay.opaque=y`. Layers are unpacked once per node and shared
//! read-only by every container whose image has them.
//!
//! Nothing of a layer may land outside its directory: `..` is refused,
//! absolute paths are taken relative to the layer, and no entry (nor a hard
//! link's target) may be reached through a symlink the layer made.
//! Owners, modes (set-id bits too), times, device nodes, FIFOs, hard links
//! and extended attributes (PAX `SCHILY.xattr.*`) are kept, as root.
//!
//! By hand rather than `tar::Entry::unpack_in`: that one applies a layer
//! over a tree (no whiteouts) and would follow a symlink the layer made to
//! a directory outside it when a later entry goes through it.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::ImageError;

/// How a layer's tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of the blob (media types lie more often than
    /// magic numbers).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What an unpack did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries of the tar, whiteouts included.
    pub entries: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    pub whiteouts: u64,
    /// Extended attributes the file system refused (not supported, or not
    /// permitted without root).
    pub xattrs_skipped: u64,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the layer tar in `blob` (compressed or not) into `dest`, an
/// existing empty directory. `lowers` are the layers below it, top first:
/// a directory the tar does not list but needs (to hold a whiteout, say)
/// takes its owner, mode and time from there, since in the overlay the
/// upper copy is what shows.
pub fn unpack(blob: impl Read, dest: &Path, lowers: &[PathBuf]) -> Result<Unpacked, ImageError> {
    let mut reader = BufReader::with_capacity(1 << 16, blob);
    let head = reader
        .fill_buf()
        .map_err(|e| io_error(dest, "read the layer", e))?;
    let stream: Box<dyn Read> = match Compression::sniff(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(reader).map_err(|e| io_error(dest, "read the layer", e))?,
        ),
    };
    let mut archive = tar::Archive::new(stream);
    let mut done = Unpacked::default();
    // Directory times are set last: what is created in them changes them.
    let mut directories: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| io_error(dest, "read the layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_error(dest, "read the layer", e))?;
        done.entries += 1;
        let raw = entry
            .path()
            .map_err(|e| io_error(dest, "read an entry's path", e))?
            .into_owned();
        let Some(relative) = normalize(&raw)? else {
            // The layer's root itself (`./`): its owner and mode are the
            // root directory's.
            if entry.header().entry_type().is_dir() {
                apply_metadata(&mut entry, dest, &mut done)?;
                directories.push((dest.to_owned(), mtime(&entry)));
            }
            continue;
        };
        let name = relative
            .file_name()
            .map(OsStr::to_owned)
            .unwrap_or_default();
        let parent = ensure_parents(dest, &relative, lowers, &mut directories)?;
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE.as_bytes() {
            set_xattr(&parent, "trusted.overlay.opaque", b"y")
                .map_err(|e| io_error(&parent, "mark the directory opaque", e))?;
            done.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT.as_bytes()) {
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&target)?;
            nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| io_error(&target, "make a whiteout", e.into()))?;
            done.whiteouts += 1;
            continue;
        }
        let path = parent.join(&name);
        let kind = entry.header().entry_type();
        // A later entry replaces an earlier one of the same layer; a
        // directory over a directory only updates it.
        let keep_directory = kind.is_dir() && is_real_dir(&path);
        if !keep_directory {
            remove_existing(&path)?;
        }
        match kind {
            tar::EntryType::Directory => {
                if !keep_directory {
                    fs::create_dir(&path).map_err(|e| io_error(&path, "create", e))?;
                }
                directories.push((path.clone(), mtime(&entry)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, "create", e))?;
                done.bytes +=
                    io::copy(&mut entry, &mut file).map_err(|e| io_error(&path, "write", e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| io_error(&path, "read the link", e))?
                    .ok_or_else(|| bad(&raw, "a symlink without a target"))?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| io_error(&path, "create the symlink", e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| io_error(&path, "read the link", e))?
                    .ok_or_else(|| bad(&raw, "a hard link without a target"))?;
                let target_rel = normalize(&target)?
                    .ok_or_else(|| bad(&raw, "a hard link to the layer's root"))?;
                let missing = || {
                    bad(
                        &raw,
                        &format!(
                            "a hard link to {}, which this layer does not have",
                            target.display()
                        ),
                    )
                };
                let target_parent = match existing_parent(dest, &target_rel) {
                    Ok(dir) => dir,
                    Err(Some(link)) => {
                        return Err(bad(
                            &raw,
                            &format!("a hard link through the symlink {}", link.display()),
                        ))
                    }
                    Err(None) => return Err(missing()),
                };
                let target_path = target_parent.join(target_rel.file_name().unwrap_or_default());
                if !fs::symlink_metadata(&target_path).is_ok_and(|m| !m.is_dir()) {
                    return Err(missing());
                }
                fs::hard_link(&target_path, &path)
                    .map_err(|e| io_error(&path, "create the hard link", e))?;
                // The target's metadata is the link's.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let kind = if kind == tar::EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                nix::sys::stat::mknod(&path, kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| io_error(&path, "make the device node", e.into()))?;
            }
            tar::EntryType::Fifo => {
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                    .map_err(|e| io_error(&path, "make the FIFO", e.into()))?;
            }
            // Headers that only carry data for the next entry.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(bad(&raw, &format!("an entry of unknown type {other:?}")));
            }
        }
        apply_metadata(&mut entry, &path, &mut done)?;
    }
    for (dir, time) in directories.iter().rev() {
        set_mtime(dir, *time)?;
    }
    Ok(done)
}

/// The entry's path inside the layer: `./a/b` and `/a/b` are `a/b`; `None`
/// for the root; `..` anywhere is refused.
fn normalize(path: &Path) -> Result<Option<PathBuf>, ImageError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(bad(path, "a path that leaves the layer (`..`)"));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Makes the directories leading to `relative` inside `dest` that are not
/// there yet, each as the lower layers have it (else 0755, root's, as tar
/// makes parents it was not given), and returns the parent. A parent that
/// is a symlink is refused: following it could leave the layer.
fn ensure_parents(
    dest: &Path,
    relative: &Path,
    lowers: &[PathBuf],
    directories: &mut Vec<(PathBuf, u64)>,
) -> Result<PathBuf, ImageError> {
    let mut dir = dest.to_owned();
    let mut inside = PathBuf::new();
    let parents: Vec<_> = relative.components().collect();
    for component in &parents[..parents.len().saturating_sub(1)] {
        dir.push(component);
        inside.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(bad(
                    relative,
                    &format!("a path through the symlink {}", inside.display()),
                ));
            }
            Ok(_) => {
                // A whiteout or a file where a directory is wanted: the
                // later entry wins, as it does in a tree.
                remove_existing(&dir)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&dir, "inspect", e)),
        }
        make_dir(&dir)?;
        if let Some(time) = inherit(&dir, &inside, lowers)? {
            directories.push((dir.clone(), time));
        }
    }
    Ok(dir)
}

/// Gives the new directory `dir` the owner, mode and extended attributes
/// of `inside` in the topmost lower layer that has it as a directory;
/// returns its time to set once the layer is complete.
fn inherit(dir: &Path, inside: &Path, lowers: &[PathBuf]) -> Result<Option<u64>, ImageError> {
    for lower in lowers {
        let below = lower.join(inside);
        let Ok(meta) = fs::symlink_metadata(&below) else {
            continue;
        };
        if !meta.is_dir() {
            // A file or a whiteout there hides whatever is further down.
            return Ok(None);
        }
        use std::os::unix::fs::MetadataExt;
        nix::unistd::chown(
            dir,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
        )
        .or_else(|e| {
            if e == nix::errno::Errno::EPERM {
                Ok(())
            } else {
                Err(io_error(dir, "set the owner of", e.into()))
            }
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io_error(dir, "set the mode of", e))?;
        if let Ok(names) = xattr::list(&below) {
            for name in names {
                // Opacity is the lower layer's own affair.
                if name.as_bytes().starts_with(b"trusted.overlay.") {
                    continue;
                }
                if let Ok(Some(value)) = xattr::get(&below, &name) {
                    let _ = xattr::set(dir, &name, &value);
                }
            }
        }
        return Ok(Some(u64::try_from(meta.mtime()).unwrap_or(0)));
    }
    Ok(None)
}

/// The parent of `relative` inside `dest` when every directory leading to
/// it exists; else the symlink met on the way (relative to `dest`), if one.
fn existing_parent(dest: &Path, relative: &Path) -> Result<PathBuf, Option<PathBuf>> {
    let mut dir = dest.to_owned();
    let parents: Vec<_> = relative.components().collect();
    for component in &parents[..parents.len().saturating_sub(1)] {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Some(dir.strip_prefix(dest).unwrap_or(&dir).to_owned()))
            }
            _ => return Err(None),
        }
    }
    Ok(dir)
}

fn make_dir(dir: &Path) -> Result<(), ImageError> {
    fs::create_dir(dir).map_err(|e| io_error(dir, "create", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error(dir, "set the mode of", e))
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn remove_existing(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| io_error(path, "replace", e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| io_error(path, "replace", e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, "inspect", e)),
    }
}

/// Owner, mode, extended attributes and (for all but directories) time.
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    done: &mut Unpacked,
) -> Result<(), ImageError> {
    let header = entry.header();
    let kind = header.entry_type();
    let mut uid = header.uid().unwrap_or(0);
    let mut gid = header.gid().unwrap_or(0);
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let time = mtime(entry);
    let mut xattrs = Vec::new();
    if let Ok(Some(extensions)) = entry.pax_extensions() {
        for ext in extensions.flatten() {
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            } else if key == "uid" {
                uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
            } else if key == "gid" {
                gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
            }
        }
    }
    let owner = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
    if let (Some(uid), Some(gid)) = owner {
        nix::unistd::fchownat(
            None,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .or_else(|e| {
            // Without root, files stay the unpacker's.
            if e == nix::errno::Errno::EPERM {
                Ok(())
            } else {
                Err(io_error(path, "set the owner of", e.into()))
            }
        })?;
    }
    if kind != tar::EntryType::Symlink {
        // After the owner: chown clears the set-id bits.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(path, "set the mode of", e))?;
    }
    for (name, value) in xattrs {
        if set_xattr(path, &name, &value).is_err() {
            done.xattrs_skipped += 1;
        }
    }
    if !kind.is_dir() {
        set_mtime(path, time)?;
    }
    Ok(())
}

fn mtime<R: Read>(entry: &tar::Entry<'_, R>) -> u64 {
    entry.header().mtime().unwrap_or(0)
}

fn set_mtime(path: &Path, seconds: u64) -> Result<(), ImageError> {
    let time = nix::sys::time::TimeSpec::new(i64::try_from(seconds).unwrap_or(0), 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_error(path, "set the time of", e.into()))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    xattr::set(path, name, value)
}

fn io_error(path: &Path, action: &str, source: io::Error) -> ImageError {
    ImageError::Io {
        action: format!("{action} {}", path.display()),
        source,
    }
}

fn bad(path: &Path, what: &str) -> ImageError {
    ImageError::BadLayer {
        entry: path.display().to_string(),
        reason: what.to_owned(),
    }
}
