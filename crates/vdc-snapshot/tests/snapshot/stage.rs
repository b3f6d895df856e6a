//! `stage`: the copy taken while the instance is frozen.

use std::fs;

use vdc_snapshot::{stage, stage_with_threads, SnapshotError};

use crate::support::{make_dir, read_tree, sample_tree, Node};

#[test]
fn stage_copies_modes_symlinks_and_empty_dirs() {
    let base = tempfile::tempdir().unwrap();
    let tree = sample_tree();
    let src = make_dir(base.path(), "src", &tree);
    fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let dst = base.path().join("staged");

    let report = stage(&src, &dst).unwrap();
    assert_eq!(read_tree(&dst), tree);
    let files: Vec<&Node> = tree
        .values()
        .filter(|n| matches!(n, Node::File(..)))
        .collect();
    assert_eq!(report.files, files.len() as u64);
    let bytes: usize = files
        .iter()
        .map(|n| if let Node::File(_, d) = n { d.len() } else { 0 })
        .sum();
    assert_eq!(report.bytes, bytes as u64);
    assert_eq!(report.skipped, 0);
    // The test filesystem may or may not clone; either way the copy is exact.
    let _ = report.reflinked;
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&dst).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o711);

    // One thread gives the same result.
    let single = base.path().join("single");
    stage_with_threads(&src, &single, 1).unwrap();
    assert_eq!(read_tree(&single), tree);
}

#[test]
fn stage_refuses_an_existing_destination() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let dst = base.path().join("staged");
    fs::create_dir(&dst).unwrap();
    let err = stage(&src, &dst).unwrap_err();
    assert!(matches!(err, SnapshotError::DestinationExists(_)), "{err}");
    assert!(
        fs::read_dir(&dst).unwrap().next().is_none(),
        "nothing written into it"
    );
}

#[test]
fn stage_skips_fifos_and_capture_ignores_them() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    nix::unistd::mkfifo(
        &src.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let dst = base.path().join("staged");
    let report = stage(&src, &dst).unwrap();
    assert_eq!(report.skipped, 1);
    assert_eq!(read_tree(&dst), sample_tree());

    let store = crate::support::store(&base.path().join("store"));
    let manifest = store.capture(&src, crate::support::meta(None, 1)).unwrap();
    assert!(manifest.entries.iter().all(|e| e.path() != "pipe"));
}

#[test]
fn stage_of_a_missing_source_leaves_nothing() {
    let base = tempfile::tempdir().unwrap();
    let dst = base.path().join("staged");
    let err = stage(&base.path().join("absent"), &dst).unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
    assert!(!dst.exists());
}

#[test]
fn capture_refuses_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    let store = crate::support::store(&base.path().join("store"));
    let err = store
        .capture(&src, crate::support::meta(None, 1))
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Unsupported { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}
