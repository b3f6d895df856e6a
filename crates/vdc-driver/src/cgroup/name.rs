//! A validated cgroup leaf name, so that no name from outside can point the
//! driver (which runs as root) at a directory outside the cgroup tree.

use std::fmt;
use std::path::{Path, PathBuf};

/// A leaf name such as "vdc-7f3a/shop.web.0": one or two components separated
/// by '/', none empty, "." or "..", none containing control characters, each
/// at most 255 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CgroupName(String);

/// Why a string is not a valid [`CgroupName`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cgroup name `{name}`: {reason}")]
pub struct InvalidCgroupName {
    pub name: String,
    pub reason: &'static str,
}

// === impl CgroupName ===

impl CgroupName {
    pub fn new(name: &str) -> Result<CgroupName, InvalidCgroupName> {
        let invalid = |reason| InvalidCgroupName {
            name: name.to_owned(),
            reason,
        };
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() > 2 {
            return Err(invalid("expected at most one '/'"));
        }
        for part in parts {
            if part.is_empty() {
                return Err(invalid("expected non-empty components"));
            }
            if part == "." || part == ".." {
                return Err(invalid("expected no '.' or '..' components"));
            }
            if part.len() > 255 {
                return Err(invalid("expected components of at most 255 bytes"));
            }
            if part.chars().any(char::is_control) {
                return Err(invalid("expected no control characters"));
            }
        }
        Ok(CgroupName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent component ("vdc-7f3a"), if the name has one.
    pub fn parent(&self) -> Option<&str> {
        self.0.split_once('/').map(|(parent, _)| parent)
    }

    /// The leaf's directory under a hierarchy's root.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for CgroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
