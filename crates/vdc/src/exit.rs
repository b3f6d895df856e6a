//! Exit codes (documented in the README) and how errors map to them.

use std::process::ExitCode;

/// What `vdc` exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    /// The operation failed (a server error, an app that did not become ready).
    Failure = 1,
    // 2 is clap's usage error.
    /// The app spec is invalid; diagnostics were printed.
    InvalidSpec = 3,
    /// No server answers at the address.
    Unreachable = 4,
    /// The server refused the token (missing, malformed, revoked).
    Unauthorized = 5,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> Self {
        ExitCode::from(c as u8)
    }
}

/// An error that carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    pub code: Code,
    pub message: String,
    /// True when the details were printed already (spec diagnostics).
    pub printed: bool,
}

pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
        printed: false,
    })
}

pub fn code_of(e: &anyhow::Error) -> Code {
    e.downcast_ref::<Coded>().map_or(Code::Failure, |c| c.code)
}

pub fn already_printed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Coded>().is_some_and(|c| c.printed)
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let s = cause.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
    }
    out
}
