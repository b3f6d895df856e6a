//! What can go wrong with images, each saying which image or blob.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// A layer that would write outside its directory, or that makes no
    /// sense; nothing of it is used.
    #[error("the layer's entry `{entry}` is refused: {reason}")]
    BadLayer { entry: String, reason: String },
    #[error("blob {expected} arrived with digest {actual}: refused")]
    DigestMismatch { expected: String, actual: String },
    #[error("{what} is not valid: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no image `{0}` on this node")]
    NotFound(String),
    #[error("{image}: {reason}")]
    Registry { image: String, reason: String },
    #[error("image `{image}` is used by {users}; stop them first")]
    InUse { image: String, users: String },
}

impl ImageError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
