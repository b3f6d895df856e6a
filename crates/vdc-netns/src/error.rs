//! The errors of creating, opening and removing network namespaces.

use std::io;
use std::path::PathBuf;

/// Why a namespace could not be created, opened or removed. Every variant
/// names the file it is about, so the message stands on its own in a log
/// line. A failed [`create`](crate::NetnsDir::create) leaves nothing behind.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name would not make a single, plain file name.
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A namespace (or a file left over by a crash) already has the name.
    #[error("network namespace {} already exists (open it, or remove it first)", path.display())]
    Exists { path: PathBuf },
    /// The file exists but no network namespace is mounted on it.
    #[error("{} is not a network namespace: {found}", path.display())]
    NotNetns { path: PathBuf, found: String },
    /// A system call failed; `action` says what was being done
    /// ("create the network namespace", "unmount", ...).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

// === impl NetnsError ===

impl NetnsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        NetnsError::Io {
            action,
            path: path.into(),
            source: source.into(),
        }
    }

    /// True when the failure is a missing privilege (not root, or inside a
    /// container without `CAP_SYS_ADMIN`): the caller should fall back to
    /// the host namespace and say so, since retrying will not help.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, NetnsError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}
