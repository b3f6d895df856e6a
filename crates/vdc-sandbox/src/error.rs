//! Why confining an instance failed: one step and the system's answer, so
//! the line in the instance's log says what could not be done.

use std::fmt;
use std::io;

/// A step of the confinement that failed. Its message reads "cannot
/// STEP: REASON", such as "cannot bind /srv/shop at /srv/shop: No such
/// file or directory".
#[derive(Debug)]
pub struct SandboxError {
    step: String,
    source: io::Error,
}

impl SandboxError {
    pub(crate) fn new(step: impl Into<String>, source: impl Into<io::Error>) -> Self {
        SandboxError {
            step: step.into(),
            source: source.into(),
        }
    }

    /// The system's error number, when the failure was a system call's.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.step, self.source)
    }
}

impl std::error::Error for SandboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Adds the step to a failed system call or I/O operation.
pub(crate) trait Context<T> {
    fn context(self, step: impl FnOnce() -> String) -> Result<T, SandboxError>;
}

impl<T, E: Into<io::Error>> Context<T> for Result<T, E> {
    fn context(self, step: impl FnOnce() -> String) -> Result<T, SandboxError> {
        self.map_err(|e| SandboxError::new(step(), e))
    }
}
