//! What the namespace tests share: a namespace directory of their own that
//! is emptied and unmounted afterwards, and ways to look at the system.

// Each test binary uses some of the helpers; unwrapping is how they fail.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use vdc_netns::NetnsDir;

/// A fresh namespace directory under the target directory (not under /tmp,
/// which isolated children replace), cleaned up on drop. `None`, after
/// saying why, where namespaces cannot be made (not root).
pub struct Fixture {
    pub dir: NetnsDir,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Option<Fixture> {
        if let Err(why) = vdc_netns::supported() {
            // CI runs as root: there, not being able to test is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "namespaces are needed in CI: {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("netns-test-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = NetnsDir::open(tmp.path().join("netns")).unwrap();
        Some(Fixture { dir, _tmp: tmp })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.dir.remove_all();
        if let Err(e) = self.dir.clone().unmount() {
            eprintln!("cannot unmount the test directory: {e}");
        }
    }
}

/// Lines of /proc/self/mountinfo whose mount point is under `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let prefix = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|m| m.starts_with(&prefix))
        })
        .map(str::to_owned)
        .collect()
}

/// The descriptors this process has open on files under `path` (such as
/// pinned namespaces). Only those: tests running in parallel open others.
pub fn open_fds_under(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(path))
        .collect()
}
