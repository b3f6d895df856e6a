//! The HTTP/1 proxy: each request on a client connection is balanced on its
//! own, sent over a pooled keep-alive connection to the chosen endpoint, and
//! its response streamed back.

mod body;
mod headers;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::balance::{Backends, Lease, Tried};
use crate::connect::connect_one;
use crate::error::{Origin, ProxyError};
use crate::listener::{deadline_after, drain_requested, Control, ListenerShared};
use crate::stats::{Outcome, OutcomeKind, Recorder, Timings};

use self::body::{Finish, ResponseBody};
use self::headers::RequestFraming;
use self::upstream::{Failure, Head, Upload, UpstreamBody};

pub(crate) use self::upstream::{Conn, UpstreamError};

// === types ===

/// A request encoded for the upstream hop, with its body still to send.
struct Outgoing {
    /// The request head, kept until the response head arrives so that a
    /// request lost with a closing connection can be written again.
    head: Vec<u8>,
    /// The client's body, taken once it starts to go out.
    body: Option<Incoming>,
    chunked: bool,
    head_only: bool,
    /// Bodyless and safe: sending it twice cannot repeat a side effect.
    replayable: bool,
}

/// A response head from an endpoint, and what is needed to finish it.
struct Forwarded {
    head: Head,
    conn: Conn,
    /// The rest of the request body, when the answer came first.
    upload: Option<Upload>,
    lease: Lease,
    upstream_ready: Duration,
    /// When the response head arrived, since the request did.
    head_at: Duration,
}

// === serving a client connection ===

/// Serves HTTP/1 requests on `client` until it closes, or until the listener
/// drains: then the request in flight (if any) finishes and the connection
/// closes.
pub(crate) async fn serve<C>(
    shared: Arc<ListenerShared>,
    client: C,
    peer: SocketAddr,
    mut control: watch::Receiver<Control>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_service = Arc::clone(&shared);
    // The client's address as `x-forwarded-for` gets it: formatted once per
    // connection, not per request.
    let forwarded_for: Arc<str> = peer.ip().to_canonical().to_string().into();
    let service = service_fn(move |request| {
        let shared = Arc::clone(&for_service);
        let forwarded_for = Arc::clone(&forwarded_for);
        async move { Ok::<_, Infallible>(proxy(shared, peer, &forwarded_for, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(client), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = drain_requested(&mut control) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        debug!(listener = %shared.key, %peer, %error, "client connection ended with an error");
    }
}

/// Answers one request: from an endpoint, or with a 502, 503 or 504 that
/// says why not.
async fn proxy(
    shared: Arc<ListenerShared>,
    peer: SocketAddr,
    forwarded_for: &str,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    shared.counters.request();
    let spec = shared.spec.load_full();
    let (parts, body) = request.into_parts();
    if parts.method == Method::CONNECT {
        // A gateway is not a forward proxy: a tunnel through it would
        // bypass everything it does, and a pooled connection left in
        // tunnel mode would carry the next client's request elsewhere.
        return refuse(&shared, &spec.name, peer, started, ProxyError::Method);
    }
    if let Err(why) = headers::check_host(&parts) {
        return refuse(
            &shared,
            &spec.name,
            peer,
            started,
            ProxyError::BadRequest(why),
        );
    }
    let has_body = !body.is_end_stream();
    // A body of unknown length (the client sent it chunked) goes out
    // chunked; one with a length goes out with that length, which hyper
    // holds the client's body to.
    let framing = match body.size_hint().exact() {
        Some(n) if has_body => RequestFraming::Length(n),
        None if has_body => RequestFraming::Chunked,
        _ if parts.headers.contains_key(CONTENT_LENGTH) => RequestFraming::Length(0),
        _ => RequestFraming::Empty,
    };
    let chunked = framing == RequestFraming::Chunked;
    let mut head = Vec::with_capacity(512);
    headers::encode_request(&parts, forwarded_for, framing, &mut head);
    let mut outgoing = Outgoing {
        head,
        body: has_body.then_some(body),
        chunked,
        head_only: parts.method == Method::HEAD,
        replayable: !has_body
            && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS),
    };

    match forward(&shared, &spec.backends, &mut outgoing, started).await {
        Ok(forwarded) => {
            let Forwarded {
                head,
                conn,
                upload,
                lease,
                upstream_ready,
                head_at,
            } = forwarded;
            let finish = Finish {
                status: head.status,
                shared,
                lease,
                started,
                upstream_ready,
                head: head_at,
            };
            let body = UpstreamBody::new(conn, &head, upload);
            let mut response = Response::new(ResponseBody::upstream(body, finish));
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            if let Some(reason) = head.reason {
                response.extensions_mut().insert(reason);
            }
            response
        }
        Err(error) => refuse(&shared, &spec.name, peer, started, error),
    }
}

/// Answers a request the proxy could not or would not serve, saying why.
fn refuse(
    shared: &ListenerShared,
    link: &str,
    peer: SocketAddr,
    started: Instant,
    error: ProxyError,
) -> Response<ResponseBody> {
    let status = error.status();
    match error.origin() {
        Origin::Downstream => {
            debug!(listener = %shared.key, link, %peer, %status, %error, "client request refused or broke off")
        }
        Origin::Internal | Origin::Upstream => {
            debug!(listener = %shared.key, link, %peer, %status, %error, "request failed")
        }
    }
    shared.counters.record(&Outcome {
        kind: OutcomeKind::Request,
        endpoint: error.endpoint(),
        per_endpoint: None,
        status: Some(status.as_u16()),
        error: Some(error.class()),
        timings: Timings {
            total: started.elapsed(),
            ..Timings::default()
        },
    });
    ResponseBody::local(status, &error)
}

/// Sends `request` to an endpoint of `backends` and waits for the response
/// head.
///
/// Retries are limited to what is safe: another endpoint when a connect
/// fails, or when a fresh connection closes before the request was written
/// or (for a bodyless GET, HEAD or OPTIONS) before it was answered; a fresh
/// connection to the same endpoint when a pooled one turns out to be closed
/// on the same terms.
async fn forward(
    shared: &ListenerShared,
    backends: &Backends,
    request: &mut Outgoing,
    started: Instant,
) -> Result<Forwarded, ProxyError> {
    let config = &shared.config;
    if !backends.wait_until_ready().await {
        return Err(ProxyError::NoBackend {
            target: backends.target().to_owned(),
        });
    }
    let mut tried = Tried::default();
    let mut last_error = None;
    while tried.len() < config.connect_attempts {
        let Some(lease) = backends.pick(&tried) else {
            break;
        };
        if tried.len() > 0 {
            shared.counters.retry();
        }
        tried.push(&lease);

        let mut pooled = lease.pool().checkout(started);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match connect_one(&lease, config.connector.as_ref()).await {
                    Ok(stream) => Conn::new(stream),
                    Err(error) if error.retry_safe() => {
                        debug!(target_input = backends.target(), %error, "trying another endpoint");
                        last_error = Some(error);
                        break;
                    }
                    Err(error) => return Err(error),
                },
            };
            // The endpoint's latency sample runs from here to the response
            // head: how long it takes to answer, not how long connecting
            // took (a new connection would make every first request look
            // slow) nor the tries that went elsewhere before.
            let sent = Instant::now();
            let upstream_ready = sent.saturating_duration_since(started);
            let exchange = conn.exchange(
                &request.head,
                &mut request.body,
                request.chunked,
                request.head_only,
            );
            let deadline = deadline_after(sent, config.response_timeout);
            let answer = tokio::time::timeout_at(deadline, exchange).await;
            let lost = match answer {
                Ok(Ok((head, upload))) => {
                    let answered = Instant::now();
                    lease.served();
                    lease.observe(answered.saturating_duration_since(sent));
                    return Ok(Forwarded {
                        head,
                        conn,
                        upload,
                        lease,
                        upstream_ready,
                        head_at: answered.saturating_duration_since(started),
                    });
                }
                Err(_elapsed) => {
                    // Dropping the connection closes it; the endpoint may
                    // still be working on the request, so it is not retried.
                    lease.failed(sent.elapsed());
                    return Err(ProxyError::Timeout {
                        endpoint: lease.endpoint().clone(),
                        timeout: config.response_timeout,
                    });
                }
                Ok(Err(Failure::Unsent(error))) => error,
                Ok(Err(Failure::NoAnswer(error))) if request.replayable => error,
                Ok(Err(failure)) => {
                    lease.failed(sent.elapsed());
                    return Err(ProxyError::Upstream {
                        endpoint: lease.endpoint().clone(),
                        source: failure.into_error(),
                    });
                }
            };
            if reused {
                // An idle connection the endpoint had closed: the request
                // goes again on another one (or a new one) to the same
                // endpoint.
                pooled = lease.pool().checkout(sent);
                continue;
            }
            // A new connection closed before the request could be written,
            // or before a safe, bodyless request was answered: the endpoint
            // is going away (killed, crashed), as if it had refused.
            // Another endpoint gets the request.
            lease.connect_failed();
            last_error = Some(ProxyError::Upstream {
                endpoint: lease.endpoint().clone(),
                source: lost.into(),
            });
            break;
        }
    }
    Err(last_error.unwrap_or_else(|| ProxyError::NoBackend {
        target: backends.target().to_owned(),
    }))
}
