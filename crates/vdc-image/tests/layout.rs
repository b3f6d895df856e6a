//! Images imported from OCI image layouts and archives that umoci (from
//! Debian) builds from real files: the root filesystem overlayfs makes of
//! the unpacked layers is the one `umoci raw unpack` makes; blobs are
//! verified; an export reads back as the same image; two images sharing a
//! base store it once; garbage collection keeps what is used. Run as root
//! (CI does; it installs umoci).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use vdc_image::{layout, ImageError, ImageRef, Store};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umoci(dir: &Path, args: &[&str]) {
    run(Command::new("umoci").args(args).current_dir(dir));
}

fn require_tools() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (CI does)");
    assert!(
        Path::new("/usr/bin/umoci").exists(),
        "umoci is not installed: run .ci/run (or apt-get install umoci)"
    );
}

/// An image layout at `DIR/img` with `base` (a tree of every kind of
/// file) and `two` (base, then a layer that deletes, replaces and adds).
fn build(dir: &Path) -> PathBuf {
    umoci(dir, &["init", "--layout", "img"]);
    umoci(dir, &["new", "--image", "img:base"]);
    umoci(dir, &["unpack", "--image", "img:base", "b1"]);
    let root = dir.join("b1/rootfs");
    for d in ["etc", "srv/data", "srv/old/deep", "usr/bin", "var/empty"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    fs::write(root.join("srv/data/keep"), "keep").unwrap();
    fs::write(root.join("srv/data/gone"), "gone").unwrap();
    fs::write(root.join("srv/old/deep/file"), "old").unwrap();
    nix::unistd::chown(&root.join("srv/data"), Some(1000.into()), Some(1000.into())).unwrap();
    fs::set_permissions(root.join("srv/data"), fs::Permissions::from_mode(0o700)).unwrap();
    xattr::set(root.join("srv/data/keep"), "user.note", b"kept").unwrap();
    umoci(dir, &["repack", "--image", "img:base", "b1"]);

    umoci(dir, &["unpack", "--image", "img:base", "b2"]);
    let root = dir.join("b2/rootfs");
    fs::remove_file(root.join("srv/data/gone")).unwrap();
    fs::remove_dir_all(root.join("srv/old")).unwrap();
    fs::create_dir(root.join("srv/old")).unwrap();
    fs::write(root.join("srv/old/new"), "new").unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("srv/added"), "added").unwrap();
    umoci(dir, &["repack", "--image", "img:two", "b2"]);
    umoci(
        dir,
        &[
            "config",
            "--image",
            "img:two",
            "--config.env",
            "PATH=/usr/bin:/bin",
            "--config.entrypoint",
            "/usr/bin/tool",
            "--config.cmd",
            "serve",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "app",
        ],
    );
    dir.join("img")
}

/// Every path under `root` with what a container would see of it.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else {
                let data = fs::read(&path).unwrap();
                format!("file {:x} links {}", Sha256::digest(&data), meta.nlink())
            };
            let xattrs: Vec<String> = xattr::list(&path)
                .map(|names| {
                    names
                        .filter(|n| n.to_string_lossy().starts_with("user."))
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                path.strip_prefix(root).unwrap().display().to_string(),
                format!(
                    "{what} mode {:o} owner {}:{} xattrs {xattrs:?}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ),
            );
        }
    }
    out
}

/// `lowers` as a read-only overlay at `target`, unmounted on drop.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lowers: &[PathBuf], target: &Path) -> Overlay {
        fs::create_dir_all(target).unwrap();
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let options = format!("lowerdir={}", lowerdir.join(":"));
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(target));
        Overlay(target.to_owned())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_overlay_of_the_layers_is_what_umoci_unpacks() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = build(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let image = ImageRef::parse("oci:img:two", tmp.path()).unwrap();
    let record = layout::import(&store, &image, "two").unwrap();
    assert_eq!(record.layers.len(), 2);
    let merged = tmp.path().join("merged");
    let _mounted = Overlay::mount(&store.lower_dirs(&record).unwrap(), &merged);
    umoci(
        tmp.path(),
        &["raw", "unpack", "--image", "img:two", "reference"],
    );
    let ours = tree(&merged);
    let theirs = tree(&tmp.path().join("reference"));
    assert_eq!(ours, theirs);
    // What the second layer did, seen through the overlay.
    assert!(!merged.join("srv/data/gone").exists());
    assert!(
        !merged.join("srv/old/deep").exists(),
        "the opaque directory hides the old"
    );
    assert_eq!(
        fs::read_to_string(merged.join("srv/old/new")).unwrap(),
        "new"
    );
    assert!(layout_dir.join("index.json").exists());
    let config = store.run_config(&record).unwrap();
    assert_eq!(
        config,
        vdc_image::RunConfig {
            entrypoint: vec!["/usr/bin/tool".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            workdir: Some("/srv".into()),
            user: Some("app".into()),
        }
    );
}

#[test]
fn an_exported_archive_reads_back_as_the_same_image() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let image = ImageRef::parse("oci:img:two", tmp.path()).unwrap();
    let record = layout::import(&store, &image, "two").unwrap();
    let archive = tmp.path().join("two.tar");
    layout::export(&store, &record, "v2", &archive).unwrap();

    let other = Store::open(tmp.path().join("other")).unwrap();
    let back = ImageRef::parse("oci-archive:two.tar:v2", tmp.path()).unwrap();
    let read = layout::import(&other, &back, "again").unwrap();
    assert_eq!(read.manifest, record.manifest);
    assert_eq!(read.layers, record.layers);
    // Without a tag: the archive holds one image.
    let untagged = ImageRef::parse("oci-archive:two.tar", tmp.path()).unwrap();
    assert_eq!(
        layout::import(&other, &untagged, "x").unwrap().manifest,
        record.manifest
    );
    // A tag it does not have is named, with those it has.
    let wrong = ImageRef::parse("oci-archive:two.tar:v3", tmp.path()).unwrap();
    let err = layout::import(&other, &wrong, "y").unwrap_err().to_string();
    assert!(
        err.ends_with("it has no image tagged `v3` (tags: v2)"),
        "{err}"
    );
    // The layout holds two: one must be named.
    let ambiguous = ImageRef::parse("oci:img", tmp.path()).unwrap();
    let err = layout::import(&other, &ambiguous, "z")
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("it holds 2 images; name one with `:TAG` (tags: base, two)"),
        "{err}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    // Flip one byte of the largest blob (a layer), keeping its size.
    let blobs = dir.join("blobs/sha256");
    let largest = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&largest).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    fs::write(&largest, &data).unwrap();
    let digest = format!("sha256:{}", largest.file_name().unwrap().to_string_lossy());

    let image = ImageRef::parse("oci:img:two", tmp.path()).unwrap();
    match layout::import(&store, &image, "two") {
        Err(ImageError::DigestMismatch { expected, .. }) => assert_eq!(expected, digest),
        other => panic!("{other:?}"),
    }
    assert!(store.get("two").unwrap().is_none());
    assert!(store.blob(&digest).is_none(), "the bad blob is not kept");
    let left: Vec<_> = fs::read_dir(tmp.path().join("store/tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn images_sharing_a_base_store_it_once_and_pruning_keeps_what_is_used() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let mut store = Store::open(tmp.path().join("store")).unwrap();
    store.set_grace(std::time::Duration::ZERO);
    let base = layout::import(
        &store,
        &ImageRef::parse("oci:img:base", tmp.path()).unwrap(),
        "base",
    )
    .unwrap();
    let two = layout::import(
        &store,
        &ImageRef::parse("oci:img:two", tmp.path()).unwrap(),
        "two",
    )
    .unwrap();
    assert_eq!(two.layers[0], base.layers[0]);
    let layers = || {
        fs::read_dir(tmp.path().join("store/layers"))
            .unwrap()
            .count()
    };
    assert_eq!(layers(), 2, "the shared base is unpacked once");

    // In use: kept however old.
    let in_use: BTreeSet<String> = ["two".to_owned()].into();
    let (removed, _) = store.prune(&in_use, 0).unwrap();
    assert_eq!(removed, ["base"]);
    assert_eq!(layers(), 2, "two still needs both layers");
    // Used recently: kept.
    let (removed, _) = store.prune(&BTreeSet::new(), 3_600_000).unwrap();
    assert!(removed.is_empty());
    let (removed, freed) = store.prune(&BTreeSet::new(), 0).unwrap();
    assert_eq!(removed, ["two"]);
    assert!(freed > 0);
    assert_eq!(layers(), 0);
    assert_eq!(
        fs::read_dir(tmp.path().join("store/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}
