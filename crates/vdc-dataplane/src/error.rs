//! Errors: those the caller sees when configuring listeners, and those on the
//! traffic path, which record where they came from and whether a retry is
//! safe.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::balance::Endpoint;
use crate::http::UpstreamError;

// === types ===

/// Why a listener could not be set up. Nothing changes when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot listen on {addr} for {key}: {source}")]
    Bind {
        key: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr} for {key}: the data plane is shut down")]
    ShutDown { key: String, addr: SocketAddr },
    #[error("cannot start the data plane's worker threads: {source}")]
    Workers {
        #[source]
        source: io::Error,
    },
}

/// The kind of failure a request or connection met, as counted in
/// [`ListenerStats`](crate::ListenerStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The target had no endpoint to try.
    NoBackend,
    /// The endpoint refused the connection.
    Refused,
    /// The connection was reset or closed before the exchange completed.
    Reset,
    /// Connecting or waiting for the response took too long.
    Timeout,
    /// Anything else (a malformed response, an I/O error of another kind).
    Other,
}

/// Which side of the proxy an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Before any upstream was involved (no endpoint to try).
    Internal,
    Upstream,
    /// The client (for example its request body broke off).
    Downstream,
}

/// A request or connection that could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no ready instance for {target}")]
    NoBackend { target: String },
    #[error("cannot connect to {} at {}: {source}", .endpoint.instance, .endpoint.addr)]
    Connect {
        endpoint: Endpoint,
        #[source]
        source: io::Error,
    },
    #[error("{} at {} failed: {source}", .endpoint.instance, .endpoint.addr)]
    Upstream {
        endpoint: Endpoint,
        #[source]
        source: UpstreamError,
    },
    #[error("{} at {} did not answer within {timeout:?}", .endpoint.instance, .endpoint.addr)]
    Timeout {
        endpoint: Endpoint,
        timeout: Duration,
    },
    #[error("CONNECT is not served here: this is a gateway, not a forward proxy")]
    Method,
    /// The request itself is malformed (RFC 9112 §3.2: an HTTP/1.1 request
    /// without a `Host`, or with more than one, or an invalid one).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

// === impl ErrorClass ===

impl ErrorClass {
    pub(crate) const ALL: [ErrorClass; 5] = [
        ErrorClass::NoBackend,
        ErrorClass::Refused,
        ErrorClass::Reset,
        ErrorClass::Timeout,
        ErrorClass::Other,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn of_io(error: &io::Error) -> ErrorClass {
        use io::ErrorKind::*;
        match error.kind() {
            ConnectionRefused => ErrorClass::Refused,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
                ErrorClass::Reset
            }
            TimedOut | WouldBlock => ErrorClass::Timeout,
            _ => ErrorClass::Other,
        }
    }

    pub(crate) fn of_hyper(error: &hyper::Error) -> ErrorClass {
        if error.is_timeout() {
            return ErrorClass::Timeout;
        }
        if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
            return ErrorClass::Reset;
        }
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return ErrorClass::of_io(io);
            }
            source = cause.source();
        }
        ErrorClass::Other
    }
}

// === impl UpstreamError ===

impl UpstreamError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Io(error) => ErrorClass::of_io(error),
            UpstreamError::Invalid(_) => ErrorClass::Other,
            UpstreamError::ClientBody(error) => ErrorClass::of_hyper(error),
        }
    }
}

// === impl ProxyError ===

impl ProxyError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            ProxyError::NoBackend { .. } => ErrorClass::NoBackend,
            ProxyError::Connect { source, .. } => ErrorClass::of_io(source),
            ProxyError::Upstream { source, .. } => source.class(),
            ProxyError::Timeout { .. } => ErrorClass::Timeout,
            ProxyError::Method | ProxyError::BadRequest(_) => ErrorClass::Other,
        }
    }

    pub(crate) fn origin(&self) -> Origin {
        match self {
            ProxyError::NoBackend { .. } => Origin::Internal,
            ProxyError::Upstream {
                source: UpstreamError::ClientBody(_),
                ..
            }
            | ProxyError::Method
            | ProxyError::BadRequest(_) => Origin::Downstream,
            _ => Origin::Upstream,
        }
    }

    /// Whether the request can go to another endpoint: only when nothing of
    /// it reached any upstream.
    pub(crate) fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect { .. })
    }

    pub(crate) fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            ProxyError::NoBackend { .. } | ProxyError::Method | ProxyError::BadRequest(_) => None,
            ProxyError::Connect { endpoint, .. }
            | ProxyError::Upstream { endpoint, .. }
            | ProxyError::Timeout { endpoint, .. } => Some(endpoint),
        }
    }

    /// The status an HTTP client gets for this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Method => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // The client's own body was malformed (an invalid chunk size)
            // or broke off: its fault, not the endpoint's.
            ProxyError::Upstream {
                source: UpstreamError::ClientBody(_),
                ..
            } => StatusCode::BAD_REQUEST,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}
