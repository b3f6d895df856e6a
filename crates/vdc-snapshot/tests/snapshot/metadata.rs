//! A snapshot keeps what a backup must: owners, modes (set-id bits
//! included), times, symlinks, hard links, sparse files, extended
//! attributes and ACLs; staged, captured, exported and imported, restored.
//! Needs root (only root gives files to other users); CI runs as root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::support::{meta, store};

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "owners can only be restored by root: run these tests as root (CI does)"
    );
}

fn own(path: &Path, uid: u32, gid: u32) {
    fchownat(
        None,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn times(path: &Path, s: i64, ns: i64) {
    utimensat(
        None,
        path,
        &TimeSpec::new(s - 100, ns),
        &TimeSpec::new(s, ns),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Everything the test compares of a tree: per path, kind, owner, mode,
/// modification time, size, link count, extended attributes and the ACL as
/// `getfacl` prints it. (Not the access time: reading a tree to describe
/// it moves that.)
fn describe(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let mut xattrs: Vec<String> = xattr_list(&path);
            xattrs.sort();
            let acl = if m.file_type().is_symlink() {
                String::new()
            } else {
                let out = Command::new("getfacl")
                    .args(["--omit-header", "--absolute-names", "--numeric"])
                    .arg(&path)
                    .output()
                    .expect("getfacl (apt-get install acl)");
                String::from_utf8_lossy(&out.stdout).replace('\n', " ")
            };
            let data = if m.is_file() {
                format!("{:?}", fs::read(&path).unwrap().len())
            } else {
                String::new()
            };
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} mtime {}.{} size {} data {data} links {} xattrs {xattrs:?} acl {acl}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.len(),
                    m.nlink(),
                ),
            );
            if m.is_dir() {
                pending.push(path);
            }
        }
    }
    out
}

fn xattr_list(path: &Path) -> Vec<String> {
    let out = Command::new("getfattr")
        .args(["--absolute-names", "-h", "-d", "-m", "-"])
        .arg(path)
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A volume with every kind of metadata a backup must keep.
fn build(volume: &Path) {
    let data = volume.join("data");
    fs::create_dir_all(data.join("pg")).unwrap();
    fs::write(data.join("pg/PG_VERSION"), "15\n").unwrap();
    fs::set_permissions(data.join("pg"), fs::Permissions::from_mode(0o700)).unwrap();
    own(&data.join("pg"), 1234, 5678);
    own(&data.join("pg/PG_VERSION"), 1234, 5678);
    fs::set_permissions(
        data.join("pg/PG_VERSION"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Set-id bits survive the owner being set back.
    fs::write(data.join("tool"), "#!/bin/sh\n").unwrap();
    own(&data.join("tool"), 1000, 1000);
    fs::set_permissions(data.join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    // A symlink with an owner of its own.
    symlink("pg/PG_VERSION", data.join("version")).unwrap();
    own(&data.join("version"), 4321, 4321);
    // Two names of one file.
    fs::write(data.join("one"), "shared\n").unwrap();
    fs::hard_link(data.join("one"), data.join("pg/two")).unwrap();
    // A sparse file: a hole of 8 MiB, then a little data.
    let sparse = fs::File::create(data.join("sparse")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"tail", (8 << 20) - 4).unwrap();
    drop(sparse);
    // Extended attributes and an ACL.
    xattr::set(data.join("one"), "user.origin", b"vdc\0binary").unwrap();
    let acl = Command::new("setfacl")
        .args(["-m", "u:1001:rwx,g:2002:r-x"])
        .arg(data.join("tool"))
        .status()
        .expect("setfacl (apt-get install acl)");
    assert!(acl.success());
    let acl = Command::new("setfacl")
        .args(["-d", "-m", "u:1001:rwx"])
        .arg(data.join("pg"))
        .status()
        .unwrap();
    assert!(acl.success());
    // Times last, deepest first: writing into a directory moves its own.
    for (i, path) in [
        data.join("pg/PG_VERSION"),
        data.join("pg/two"),
        data.join("version"),
        data.join("tool"),
        data.join("sparse"),
        data.join("pg"),
        data.clone(),
    ]
    .iter()
    .enumerate()
    {
        times(path, 978_307_200 + i as i64 * 1000, 123_456_789);
    }
}

#[test]
fn a_restore_gives_back_owners_modes_times_links_holes_and_acls() {
    root();
    let tmp = tempfile::tempdir().unwrap();
    let volume = tmp.path().join("volume");
    build(&volume);
    let before = describe(&volume);

    // The staged copy (what a snapshot of a running instance reads) is as
    // the volume was.
    let staged = tmp.path().join("staged");
    vdc_snapshot::stage(&volume, &staged).unwrap();
    assert_eq!(describe(&staged), before);

    let store = store(&tmp.path().join("store"));
    let manifest = store.capture(&staged, meta(Some("meta"), 1)).unwrap();
    let target = tmp.path().join("target");
    let report = store.restore(&manifest.id, &target).unwrap();
    // Access times too, as they were when the snapshot was taken (the
    // symlink's, as `build` set it: reading a link moves its access time,
    // so the volume's own is later now).
    let link = fs::symlink_metadata(target.join("data/version")).unwrap();
    assert_eq!(
        (link.atime(), link.atime_nsec()),
        (978_307_200 + 2 * 1000 - 100, 123_456_789)
    );
    assert_eq!(report.owners_not_kept, 0, "{report:?}");
    assert_eq!(report.xattrs_not_kept, 0, "{report:?}");
    assert_eq!(report.links, 1, "{report:?}");
    assert_eq!(describe(&target), before);
    // Holes stay holes: far less allocated than the file's length.
    let sparse = fs::metadata(target.join("data/sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    // The two names are one file again.
    assert_eq!(
        fs::metadata(target.join("data/one")).unwrap().ino(),
        fs::metadata(target.join("data/pg/two")).unwrap().ino()
    );

    // Exported and imported into another store (another node), the same.
    let mut file = Vec::new();
    store.export(&manifest.id, &mut file).unwrap();
    let other = crate::support::store(&tmp.path().join("other-store"));
    let imported = other.import(&mut file.as_slice()).unwrap();
    let again = tmp.path().join("again");
    other.restore(&imported.id, &again).unwrap();
    assert_eq!(describe(&again), before);
}

#[test]
fn snapshots_taken_before_attributes_were_kept_still_restore() {
    // A manifest without attributes (written by an earlier vdc) parses,
    // checks out against its id, and restores with modes only.
    let text = r#"{"id":"","meta":{"tenant":"acme","app":"shop","component":"db","index":0,"volume":"data","name":null,"created_ms":1,"frozen_ms":0,"node":"n","kind":"manual"},"entries":[{"type":"dir","path":"data","mode":493}],"stored_bytes":0,"logical_bytes":0}"#;
    let mut manifest: vdc_snapshot::Manifest = serde_json::from_str(text).unwrap();
    manifest.id = manifest.compute_id();
    manifest.check().unwrap();
    assert!(manifest.entries[0].attrs().is_none());
    // Serialized again, it is the same text: its id does not change.
    let back = serde_json::to_string(&manifest).unwrap();
    assert!(!back.contains("attrs"), "{back}");
}
