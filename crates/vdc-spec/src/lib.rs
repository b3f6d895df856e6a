//! The app spec: parsing a TOML app file, validating it, and the validated
//! model every other crate consumes.
//!
//! **Invariant:** this crate does no I/O. It takes the file's text and name
//! and returns either a [`AppSpec`] or diagnostics that point at file, line
//! and column.

#![forbid(unsafe_code)]

pub mod model;
pub mod units;

pub use model::*;
pub use units::{Bytes, MilliCpu};

/// A name (app, tenant, component, terminal, volume) that breaks the naming
/// rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name `{name}`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`")]
pub struct NameError {
    pub name: String,
}

/// Names are DNS-label-like so they can appear in addresses, cgroup paths,
/// environment variables (upper-cased, `-` as `_`) and URLs unescaped.
pub fn is_valid_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

pub fn check_name(s: &str) -> Result<(), NameError> {
    if is_valid_name(s) {
        Ok(())
    } else {
        Err(NameError { name: s.to_owned() })
    }
}
