//! What the sandbox tests share: a network namespace directory of their own
//! that is emptied and unmounted afterwards, a working directory the
//! confined programs may read, and ways to look at the system.

// Each test binary uses some of the helpers; unwrapping is how they fail.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vdc_netns::NetnsDir;

/// A fresh namespace directory and working directory under the target
/// directory, cleaned up on drop. `None`, after saying why, where
/// namespaces cannot be made (not root).
pub struct Fixture {
    pub dir: NetnsDir,
    /// Readable by anyone: the confined programs run as other users.
    pub work: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Option<Fixture> {
        if let Err(why) = vdc_netns::supported().and_then(|()| vdc_sandbox::supported()) {
            // CI runs as root: there, not being able to test is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "namespaces are needed in CI: {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("sandbox-test-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = NetnsDir::open(tmp.path().join("netns")).unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Fixture {
            dir,
            work,
            _tmp: tmp,
        })
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

/// Pids of the processes whose command line is exactly `argv`.
pub fn pids_exactly(argv: &[&str]) -> Vec<PathBuf> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| std::fs::read(p.join("cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}
