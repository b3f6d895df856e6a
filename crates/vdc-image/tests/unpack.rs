//! Layers unpacked as overlayfs stacks them: whiteouts, opaque
//! directories, owners, modes, times, links, devices and extended
//! attributes kept; nothing written outside the layer's directory, however
//! the tar tries. Run as root (CI does): owners and device nodes need it.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use vdc_image::unpack::unpack;
use vdc_image::ImageError;

/// A tar built entry by entry; paths are written as given, `..` included.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(path, tar::EntryType::Directory, mode, 0);
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    fn file(mut self, path: &str, mode: u32, owner: (u64, u64), data: &str) -> Self {
        let mut h = Self::header(path, tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_cksum();
        self.builder.append(&h, data.as_bytes()).unwrap();
        self
    }

    fn link(mut self, path: &str, kind: tar::EntryType, target: &str) -> Self {
        let mut h = Self::header(path, kind, 0o777, 0);
        let link = &mut h.as_old_mut().linkname;
        link[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = Self::header(path, kind, 0o620, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    fn xattr(mut self, name: &str, value: &str) -> Self {
        self.builder
            .append_pax_extensions([(format!("SCHILY.xattr.{name}").as_str(), value.as_bytes())])
            .unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root (CI does): layers keep owners and device nodes"
    );
}

fn sample() -> Vec<u8> {
    Layer::new()
        .dir("./", 0o755)
        .dir("etc/", 0o755)
        .file("etc/passwd", 0o644, (0, 0), "root:x:0:0::/root:/bin/sh\n")
        .dir("srv/", 0o750)
        .file("srv/app", 0o4755, (1000, 2000), "#!/bin/sh\n")
        .link("srv/same", tar::EntryType::Link, "srv/app")
        .link("bin", tar::EntryType::Symlink, "usr/bin")
        .link("etc/abs", tar::EntryType::Symlink, "/etc/passwd")
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("run/pipe", tar::EntryType::Fifo, 0, 0)
        .xattr("user.origin", "vdc")
        .file("srv/tagged", 0o600, (0, 0), "x")
        .file("var/.wh.cache", 0o600, (0, 0), "")
        .file("opt/.wh..wh..opq", 0o600, (0, 0), "")
        .bytes()
}

fn check_sample(dir: &Path) {
    let meta = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    let app = meta("srv/app");
    assert_eq!(app.mode() & 0o7777, 0o4755, "set-uid kept after the chown");
    assert_eq!((app.uid(), app.gid()), (1000, 2000));
    assert_eq!(app.mtime(), 1_600_000_000);
    assert_eq!(meta("srv/same").ino(), app.ino(), "a hard link, not a copy");
    assert_eq!(app.nlink(), 2);
    assert_eq!(meta("srv").mode() & 0o777, 0o750);
    assert_eq!(
        meta("srv").mtime(),
        1_600_000_000,
        "directory times set last"
    );
    assert_eq!(
        fs::read_link(dir.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(dir.join("etc/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(meta("run/pipe").file_type().is_fifo());
    assert_eq!(
        xattr::get(dir.join("srv/tagged"), "user.origin")
            .unwrap()
            .as_deref(),
        Some(&b"vdc"[..])
    );
    // Deleted in this layer: an overlay whiteout, a 0:0 character device.
    let gone = meta("var/cache");
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(!dir.join("var/.wh.cache").exists());
    // An opaque directory hides what lower layers have in it.
    assert_eq!(
        xattr::get(dir.join("opt"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dir.join("opt/.wh..wh..opq").exists());
}

#[test]
fn a_layer_is_unpacked_as_overlayfs_stacks_it() {
    root();
    let tmp = tempfile::tempdir().unwrap();
    let done = unpack(&sample()[..], tmp.path(), &[]).unwrap();
    assert_eq!(done.whiteouts, 2);
    assert_eq!(done.xattrs_skipped, 0);
    check_sample(tmp.path());
}

#[test]
fn compressed_layers_unpack_alike() {
    root();
    let plain = sample();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&plain).unwrap();
    let gzip = gzip.finish().unwrap();
    let zstd = zstd::encode_all(&plain[..], 3).unwrap();
    for blob in [gzip, zstd] {
        let tmp = tempfile::tempdir().unwrap();
        unpack(&blob[..], tmp.path(), &[]).unwrap();
        check_sample(tmp.path());
    }
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    root();
    let tmp = tempfile::tempdir().unwrap();
    let layer = Layer::new()
        .file("a", 0o644, (0, 0), "first")
        .file("a", 0o600, (0, 0), "second")
        .dir("d/", 0o700)
        .file("d/x", 0o644, (0, 0), "x")
        .dir("d/", 0o755)
        .file("f", 0o644, (0, 0), "file")
        .dir("f/", 0o755)
        .bytes();
    unpack(&layer[..], tmp.path(), &[]).unwrap();
    assert_eq!(fs::read_to_string(tmp.path().join("a")).unwrap(), "second");
    assert_eq!(
        fs::metadata(tmp.path().join("d")).unwrap().mode() & 0o777,
        0o755
    );
    assert!(
        tmp.path().join("d/x").exists(),
        "a directory over a directory keeps it"
    );
    assert!(tmp.path().join("f").is_dir());
}

#[test]
fn nothing_leaves_the_layer() {
    root();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            Layer::new().file("../escaped", 0o644, (0, 0), "x").bytes(),
            "a path that leaves the layer",
        ),
        (
            "dot-dot inside",
            Layer::new()
                .file("a/../../escaped", 0o644, (0, 0), "x")
                .bytes(),
            "a path that leaves the layer",
        ),
        (
            "through a symlink",
            Layer::new()
                .link("out", tar::EntryType::Symlink, &target)
                .file("out/escaped", 0o644, (0, 0), "x")
                .bytes(),
            "a path through the symlink out",
        ),
        (
            "a whiteout through a symlink",
            Layer::new()
                .link("out", tar::EntryType::Symlink, &target)
                .file("out/.wh.keep", 0o644, (0, 0), "")
                .bytes(),
            "a path through the symlink out",
        ),
        (
            "a hard link out",
            Layer::new()
                .link("passwd", tar::EntryType::Link, "../../../../etc/passwd")
                .bytes(),
            "a path that leaves the layer",
        ),
        (
            "a hard link through a symlink",
            Layer::new()
                .link("out", tar::EntryType::Symlink, &target)
                .link("keep", tar::EntryType::Link, "out/keep")
                .bytes(),
            "a hard link through the symlink out",
        ),
        (
            "a hard link to an absolute path",
            Layer::new()
                .link("shadow", tar::EntryType::Link, "/etc/shadow")
                .bytes(),
            "a hard link to /etc/shadow, which this layer does not have",
        ),
    ];
    fs::write(outside.path().join("keep"), "kept").unwrap();
    for (what, layer, reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let err = unpack(&layer[..], &dest, &[]).unwrap_err();
        match &err {
            ImageError::BadLayer { reason: r, .. } => {
                assert!(r.starts_with(reason), "{what}: {err}")
            }
            other => panic!("{what}: {other}"),
        }
        assert!(!tmp.path().join("escaped").exists(), "{what}");
    }
    let left: Vec<_> = fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep"]);
    assert_eq!(
        fs::read_to_string(outside.path().join("keep")).unwrap(),
        "kept"
    );
}
