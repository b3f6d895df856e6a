//! How an instance's main process ended.

use std::fmt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// The end of an instance's main process: an exit code, or the signal that
/// killed it, and whether that signal came from the kernel's out-of-memory
/// killer enforcing the instance's memory limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

// === impl ExitInfo ===

impl ExitInfo {
    /// A normal exit with `code`.
    pub fn code(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
            oom_killed: false,
        }
    }

    /// Death by `signal` (a raw signal number such as `libc::SIGKILL`).
    pub fn signal(signal: i32) -> ExitInfo {
        ExitInfo {
            code: None,
            signal: Some(signal),
            oom_killed: false,
        }
    }

    /// Death by SIGKILL from the kernel's out-of-memory killer.
    pub fn oom() -> ExitInfo {
        ExitInfo {
            code: None,
            signal: Some(libc::SIGKILL),
            oom_killed: true,
        }
    }

    /// Translates what `wait` returned; `oom_killed` is decided by the caller,
    /// which knows the cgroup's counters.
    pub fn from_status(status: ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
            oom_killed: false,
        }
    }

    /// True for `exit(0)`.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oom_killed {
            return f.write_str("killed by the kernel: out of memory");
        }
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(name) => write!(f, "killed by signal {signal} ({})", name.as_str()),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            (None, None) => f.write_str("ended in an unknown way"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_a_sentence() {
        assert_eq!(ExitInfo::code(0).to_string(), "exited with code 0");
        assert_eq!(ExitInfo::code(3).to_string(), "exited with code 3");
        assert_eq!(
            ExitInfo::signal(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            ExitInfo::signal(15).to_string(),
            "killed by signal 15 (SIGTERM)"
        );
        assert_eq!(ExitInfo::signal(200).to_string(), "killed by signal 200");
        assert_eq!(
            ExitInfo::oom().to_string(),
            "killed by the kernel: out of memory"
        );
    }

    #[test]
    fn from_status_splits_code_and_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            ExitInfo::from_status(ExitStatus::from_raw(3 << 8)),
            ExitInfo::code(3)
        );
        assert_eq!(
            ExitInfo::from_status(ExitStatus::from_raw(libc::SIGTERM)),
            ExitInfo::signal(libc::SIGTERM)
        );
    }
}
