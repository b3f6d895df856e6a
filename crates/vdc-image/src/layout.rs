//! Images from files: an OCI image layout directory (`oci:DIR[:TAG]`) or a
//! tar of one (`oci-archive:FILE[:TAG]`), as `skopeo copy`, `umoci` and
//! `buildah push` write them; and back (`export`). Every blob is verified
//! against its digest on the way in.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use crate::store::{hex_of, is_index, is_manifest};
use crate::{ImageError, ImageRecord, ImageRef, Store};

/// The annotation an image layout names its images by.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Imports the image `image` (a layout or an archive) into `store` as
/// `name`.
pub fn import(store: &Store, image: &ImageRef, name: &str) -> Result<ImageRecord, ImageError> {
    match image {
        ImageRef::Layout { path, tag } => import_layout(store, path, tag.as_deref(), name),
        ImageRef::Archive { path, tag } => {
            let staging = tempfile::Builder::new()
                .prefix("archive-")
                .tempdir_in(store.dir().join("tmp"))
                .map_err(|e| ImageError::io("make a directory to read an archive in", e))?;
            let file = fs::File::open(path)
                .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
            extract(file, staging.path())
                .map_err(|e| ImageError::invalid(path.display().to_string(), e))?;
            import_layout(store, staging.path(), tag.as_deref(), name)
        }
        ImageRef::Registry(r) => Err(ImageError::invalid(
            r.to_string(),
            "a registry image is pulled, not imported",
        )),
    }
}

/// Whether the file `image` names holds the image it asks for (its tag,
/// or its only one), without copying anything: what a submission checks.
pub fn check(image: &ImageRef) -> Result<(), ImageError> {
    let (index, tag, what) = match image {
        ImageRef::Layout { path, tag } => {
            let what = path.display().to_string();
            if !path.join("oci-layout").is_file() {
                return Err(ImageError::invalid(
                    &what,
                    "not an OCI image layout (no oci-layout file)",
                ));
            }
            let index = ImageIndex::from_file(path.join("index.json"))
                .map_err(|e| ImageError::invalid(format!("{what}/index.json"), e.to_string()))?;
            (index, tag, what)
        }
        ImageRef::Archive { path, tag } => {
            let what = path.display().to_string();
            let file =
                fs::File::open(path).map_err(|e| ImageError::io(format!("open {what}"), e))?;
            let mut archive = tar::Archive::new(file);
            let mut found = None;
            let entries = archive
                .entries()
                .map_err(|e| ImageError::invalid(&what, format!("not a tar archive: {e}")))?;
            for entry in entries {
                let mut entry = entry
                    .map_err(|e| ImageError::invalid(&what, format!("a damaged archive: {e}")))?;
                let name = entry.path().map(|p| p.into_owned()).unwrap_or_default();
                if name.components().eq(Path::new("index.json").components()) {
                    let mut text = String::new();
                    entry
                        .read_to_string(&mut text)
                        .map_err(|e| ImageError::invalid(&what, e.to_string()))?;
                    found = Some(ImageIndex::from_reader(text.as_bytes()).map_err(|e| {
                        ImageError::invalid(format!("{what}: index.json"), e.to_string())
                    })?);
                    break;
                }
            }
            let index = found
                .ok_or_else(|| ImageError::invalid(&what, "not an OCI archive (no index.json)"))?;
            (index, tag, what)
        }
        ImageRef::Registry(r) => {
            return Err(ImageError::invalid(r.to_string(), "not a local image"));
        }
    };
    choose(index.manifests(), tag.as_deref(), &what).map(drop)
}

fn import_layout(
    store: &Store,
    dir: &Path,
    tag: Option<&str>,
    name: &str,
) -> Result<ImageRecord, ImageError> {
    let what = dir.display().to_string();
    let layout = fs::read_to_string(dir.join("oci-layout")).map_err(|e| {
        ImageError::invalid(
            &what,
            format!("not an OCI image layout (no oci-layout file: {e})"),
        )
    })?;
    if !layout.contains("\"imageLayoutVersion\"") {
        return Err(ImageError::invalid(
            &what,
            "its oci-layout file has no imageLayoutVersion",
        ));
    }
    let index = ImageIndex::from_file(dir.join("index.json"))
        .map_err(|e| ImageError::invalid(format!("{what}/index.json"), e.to_string()))?;
    let chosen = choose(index.manifests(), tag, &what)?;
    let mut descriptor = chosen.clone();
    copy_blob(store, dir, &descriptor)?;
    if is_index(descriptor.media_type()) {
        let nested = store.index(descriptor.digest().as_ref())?;
        descriptor = for_this_platform(nested.manifests())
            .ok_or_else(|| {
                ImageError::invalid(&what, format!("it has no image for {}", platform()))
            })?
            .clone();
        copy_blob(store, dir, &descriptor)?;
    }
    if !is_manifest(descriptor.media_type()) {
        return Err(ImageError::invalid(
            &what,
            format!(
                "{} is a {}, not an image manifest",
                descriptor.digest(),
                descriptor.media_type()
            ),
        ));
    }
    let manifest_digest = descriptor.digest().to_string();
    let manifest = store.manifest(&manifest_digest)?;
    copy_blob(store, dir, manifest.config())?;
    for layer in manifest.layers() {
        copy_blob(store, dir, layer)?;
    }
    store.register(name, &manifest_digest)
}

/// The manifest of the index named `tag`, or its only one.
fn choose<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    what: &str,
) -> Result<&'a Descriptor, ImageError> {
    let named = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    match tag {
        Some(tag) => manifests
            .iter()
            .find(|d| named(d).as_deref() == Some(tag))
            .ok_or_else(|| {
                let tags: Vec<String> = manifests.iter().filter_map(named).collect();
                ImageError::invalid(
                    what,
                    format!("it has no image tagged `{tag}` (tags: {})", list(&tags)),
                )
            }),
        None => match manifests {
            [only] => Ok(only),
            [] => Err(ImageError::invalid(what, "its index lists no image")),
            _ => {
                let tags: Vec<String> = manifests.iter().filter_map(named).collect();
                Err(ImageError::invalid(
                    what,
                    format!(
                        "it holds {} images; name one with `:TAG` (tags: {})",
                        manifests.len(),
                        list(&tags)
                    ),
                ))
            }
        },
    }
}

fn list(tags: &[String]) -> String {
    if tags.is_empty() {
        "none".to_owned()
    } else {
        tags.join(", ")
    }
}

/// `linux/amd64` and the like, for this machine.
pub(crate) fn platform() -> String {
    format!("linux/{}", go_arch())
}

/// The architecture as OCI names it (Go's names).
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The entry of an index for this machine's platform.
pub(crate) fn for_this_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    manifests.iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux" && p.architecture().to_string() == go_arch()
        })
    })
}

/// Copies the blob `descriptor` names from the layout into the store,
/// verifying its digest (and size).
fn copy_blob(store: &Store, dir: &Path, descriptor: &Descriptor) -> Result<(), ImageError> {
    let digest = descriptor.digest().to_string();
    if store.blob(&digest).is_some() {
        return Ok(());
    }
    let path = dir.join("blobs/sha256").join(hex_of(&digest)?);
    let file = fs::File::open(&path).map_err(|e| {
        ImageError::invalid(
            dir.display().to_string(),
            format!("blob {digest} is missing: {e}"),
        )
    })?;
    let len = file.metadata().map_or(0, |m| m.len());
    if len != descriptor.size() {
        return Err(ImageError::invalid(
            dir.display().to_string(),
            format!(
                "blob {digest} has {len} bytes, its descriptor says {}",
                descriptor.size()
            ),
        ));
    }
    store.put_blob(&digest, file)?;
    Ok(())
}

/// Extracts the regular files and directories of an archive under `dest`
/// (the archive's own structure only: nothing outside, no links).
fn extract(archive: impl Read, dest: &Path) -> Result<(), String> {
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a damaged archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("a damaged archive: {e}"))?
            .into_owned();
        let mut relative = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(c) => relative.push(c),
                Component::CurDir => {}
                _ => return Err(format!("the archive's entry {} leaves it", path.display())),
            }
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                let mut out =
                    fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
                io::copy(&mut entry, &mut out).map_err(|e| format!("{}: {e}", target.display()))?;
            }
            // Pax headers and the like carry nothing of the layout.
            _ => {}
        }
    }
    Ok(())
}

/// Writes `image` as an OCI archive at `file` (one image, tagged `tag`),
/// which `import` (and skopeo, podman) read back.
pub fn export(
    store: &Store,
    image: &ImageRecord,
    tag: &str,
    file: &Path,
) -> Result<(), ImageError> {
    let out = fs::File::create(file)
        .map_err(|e| ImageError::io(format!("create {}", file.display()), e))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(out));
    let add = |tar: &mut tar::Builder<_>, name: &str, data: &[u8]| -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
    };
    let io_err = |e: io::Error| ImageError::io(format!("write {}", file.display()), e);
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
    let manifest_len = store
        .blob(&image.manifest)
        .and_then(|p| fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest,
            "size": manifest_len,
            "annotations": { REF_NAME: tag },
        }],
    });
    add(&mut tar, "index.json", index.to_string().as_bytes()).map_err(io_err)?;
    let mut digests = vec![image.manifest.clone(), image.config.clone()];
    digests.extend(image.layers.iter().cloned());
    for digest in digests {
        let path = store
            .blob(&digest)
            .ok_or_else(|| ImageError::invalid(&image.name, format!("blob {digest} is missing")))?;
        tar.append_path_with_name(&path, format!("blobs/sha256/{}", hex_of(&digest)?))
            .map_err(io_err)?;
    }
    tar.into_inner()
        .and_then(|mut w| io::Write::flush(&mut w))
        .map_err(io_err)?;
    Ok(())
}
