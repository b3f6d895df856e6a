//! The app spec: parsing a TOML app file, validating it, and the validated
//! model every other crate consumes.
//!
//! **Invariant:** this crate does no I/O. It takes the file's text and name
//! and returns either a [`AppSpec`] or diagnostics that point at file, line
//! and column. Nothing in it panics on any input.

#![forbid(unsafe_code)]

mod diagnostic;
pub mod model;
mod raw;
pub mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::*;
pub use units::{
    cpu_from_cores, format_duration, memory_from_int, parse_cpu, parse_duration, parse_memory,
    Bytes, MilliCpu, Quantity, UnitError,
};

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

// === parsing ===

/// A spec that passed validation, and the warnings found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub spec: AppSpec,
    pub warnings: Vec<Diagnostic>,
}

/// The largest app file read, in bytes: far beyond any real app (the shop
/// example is 1 KiB; 20,000 linked components take about 2 MiB), and small
/// enough that validation takes well under a second.
pub const MAX_SPEC_BYTES: usize = 4 << 20;

/// [`parse`] for a file's raw bytes: a file over [`MAX_SPEC_BYTES`] or not
/// UTF-8 is refused with one diagnostic, at the first byte that is not
/// UTF-8.
pub fn parse_bytes(bytes: &[u8], file: &str, base_dir: &Path) -> Result<Validated, Diagnostics> {
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(too_large(bytes.len(), file));
    }
    match std::str::from_utf8(bytes) {
        Ok(source) => parse(source, file, base_dir),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by definition.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            Err(Diagnostics(vec![Diagnostic {
                severity: Severity::Error,
                file: file.to_owned(),
                line,
                column,
                message: format!(
                    "the file is not UTF-8 text: byte 0x{byte:02x} at line {line}, column {column} is not valid UTF-8"
                ),
                help: Some("save the file as UTF-8 (TOML files are UTF-8)".to_owned()),
            }]))
        }
    }
}

fn too_large(len: usize, file: &str) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        line: 1,
        column: 1,
        message: format!(
            "the file is {len} bytes; an app file may hold at most {MAX_SPEC_BYTES} bytes (4 MiB)"
        ),
        help: None,
    }])
}

/// Parse and validate one app file. `file` is the name to print in
/// diagnostics (as the user gave it), `base_dir` the directory holding the
/// file (absolute); relative `workdir`s resolve against it.
///
/// Every error in the file is reported, not only the first, except after a
/// TOML syntax error, past which the file has no reliable shape.
pub fn parse(source: &str, file: &str, base_dir: &Path) -> Result<Validated, Diagnostics> {
    if source.len() > MAX_SPEC_BYTES {
        return Err(too_large(source.len(), file));
    }
    let mut sink = diagnostic::Sink::default();
    let spec = match raw::parse(source) {
        Ok(root) => validate::validate(&mut sink, source, &root, base_dir),
        Err(e) => {
            sink.error(e.span, e.message);
            None
        }
    };
    let diagnostics = sink.finish(source, file);
    match spec {
        Some(spec) if !diagnostics.iter().any(Diagnostic::is_error) => Ok(Validated {
            spec,
            warnings: diagnostics,
        }),
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// A POSIX-style user name (letters, digits, `_`, `-`, `.`, not starting
/// with a digit or `-`, at most 32 bytes), or `UID` / `UID:GID`.
pub fn is_user(text: &str) -> bool {
    let number = |s: &str| {
        !s.is_empty()
            && s.len() <= 10
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok()
    };
    match text.split_once(':') {
        Some((uid, gid)) => number(uid) && number(gid),
        None if text.bytes().all(|b| b.is_ascii_digit()) => number(text),
        None => {
            let mut bytes = text.bytes();
            text.len() <= 32
                && bytes
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && bytes.all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                })
        }
    }
}
