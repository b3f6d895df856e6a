//! The errors a driver reports to the agent.

use std::io;
use std::path::PathBuf;

/// Why a driver could not start, stop or clean up an instance.
///
/// Every variant names the instance it is about (or, for a leftover of a
/// previous agent run, its pid and cgroup) so that the message stands on its
/// own in a log line or an API response.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The program could not be started: it was not found, is not
    /// executable, the working directory is missing, or `exec` failed.
    #[error("cannot start `{program}` for {instance}: {source}")]
    Spawn {
        instance: String,
        program: String,
        source: io::Error,
    },
    /// The instance's cgroup could not be created, configured or removed.
    #[error("cannot set up cgroup {} for {instance}: {source}", path.display())]
    Cgroup {
        instance: String,
        path: PathBuf,
        source: io::Error,
    },
    /// The log file (or its parent directory) could not be created or opened.
    #[error("cannot open log file {} for {instance}: {source}", path.display())]
    LogFile {
        instance: String,
        path: PathBuf,
        source: io::Error,
    },
    /// Any other system call failed; `action` says what was being done
    /// ("signal process group 1234", ...).
    #[error("cannot {action} for {instance}: {source}")]
    Io {
        instance: String,
        action: String,
        source: io::Error,
    },
}

impl DriverError {
    /// The instance (or leftover description) the error is about.
    pub fn instance(&self) -> &str {
        match self {
            DriverError::Spawn { instance, .. }
            | DriverError::Cgroup { instance, .. }
            | DriverError::LogFile { instance, .. }
            | DriverError::Io { instance, .. } => instance,
        }
    }

    /// True when the program or its working directory does not exist: the
    /// operator has to fix the spec, retrying will not help.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
