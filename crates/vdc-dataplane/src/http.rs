//! The HTTP/1 proxy: each request on a client connection is balanced on its
//! own, sent over a pooled keep-alive connection to the chosen endpoint, and
//! its response streamed back.

mod body;
mod headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::balance::{Backends, Lease, Tried};
use crate::connect::{connect_one, Connector};
use crate::error::{Origin, ProxyError};
use crate::listener::{drain_requested, Control, ListenerShared};
use crate::pool::{RequestBody, Sender};
use crate::stats::{Outcome, OutcomeKind, Recorder, Timings};

use self::body::{Finish, ResponseBody};

// === types ===

/// A response head from an endpoint, and what is needed to finish it.
struct Forwarded {
    response: Response<Incoming>,
    lease: Lease,
    sender: Sender,
    upstream_ready: Duration,
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
    let service = service_fn(move |request| {
        let shared = Arc::clone(&for_service);
        async move { Ok::<_, Infallible>(proxy(shared, peer, request).await) }
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
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    shared.counters.request();
    let spec = shared.spec.load_full();
    let (mut parts, body) = request.into_parts();
    headers::prepare_request(&mut parts, peer);
    let body: RequestBody = if body.is_end_stream() {
        Either::Right(Empty::new())
    } else {
        Either::Left(body)
    };
    let request = Request::from_parts(parts, body);

    match forward(&shared, &spec.backends, request, started).await {
        Ok(forwarded) => {
            let (mut parts, body) = forwarded.response.into_parts();
            headers::prepare_response(&mut parts.headers);
            let finish = Finish {
                status: parts.status,
                shared,
                lease: forwarded.lease,
                sender: forwarded.sender,
                started,
                upstream_ready: forwarded.upstream_ready,
                head: started.elapsed(),
            };
            Response::from_parts(parts, ResponseBody::upstream(body, finish))
        }
        Err(error) => {
            let status = error.status();
            match error.origin() {
                Origin::Downstream => {
                    debug!(listener = %shared.key, link = %spec.name, %peer, %error, "client request broke off")
                }
                Origin::Internal | Origin::Upstream => {
                    debug!(listener = %shared.key, link = %spec.name, %peer, %status, %error, "request failed")
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
    }
}

/// Sends `request` to an endpoint of `backends` and waits for the response
/// head.
///
/// Retries are limited to what is safe: another endpoint when a connect
/// fails, a fresh connection closes before the request was written, or it
/// dies before answering a bodyless GET, HEAD or OPTIONS; a
/// fresh connection to the same endpoint when a pooled one turns out to be
/// closed (the request comes back unsent, or it is bodyless and safe, so
/// sending it again cannot repeat a side effect).
async fn forward(
    shared: &ListenerShared,
    backends: &Backends,
    mut request: Request<RequestBody>,
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

        let mut pooled = lease.pool().checkout();
        loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                None => match dial(&lease, config.connector.as_ref()).await {
                    Ok(sender) => sender,
                    Err(error) if error.retry_safe() => {
                        debug!(target_input = backends.target(), %error, "trying another endpoint");
                        last_error = Some(error);
                        break;
                    }
                    Err(error) => return Err(error),
                },
            };
            let upstream_ready = started.elapsed();
            let replay = replayable(&request);
            // The endpoint's latency sample runs from here to the response
            // head: how long it takes to answer, not how long connecting
            // took (a new connection would make every first request look
            // slow) nor the tries that went elsewhere before.
            let sent = Instant::now();
            let answer =
                tokio::time::timeout(config.response_timeout, sender.try_send_request(request))
                    .await;
            let mut error = match answer {
                Ok(Ok(response)) => {
                    lease.served();
                    lease.observe(sent.elapsed());
                    return Ok(Forwarded {
                        response,
                        lease,
                        sender,
                        upstream_ready,
                    });
                }
                Err(_elapsed) => {
                    // Dropping the exchange closes that connection; the
                    // endpoint may still be working on the request, so it
                    // is not retried.
                    lease.failed(sent.elapsed());
                    return Err(ProxyError::Timeout {
                        endpoint: lease.endpoint().clone(),
                        timeout: config.response_timeout,
                    });
                }
                Ok(Err(error)) => error,
            };
            let unsent = error.take_message();
            if reused {
                if let Some(again) = unsent.or(replay) {
                    request = again;
                    pooled = lease.pool().checkout();
                    continue;
                }
            } else if let Some(again) = unsent.or(replay) {
                // A new connection closed before the request could be
                // written, or before a safe, bodyless request was answered:
                // the endpoint is going away (killed, crashed), as if it had
                // refused. Another endpoint gets the request.
                lease.connect_failed();
                request = again;
                last_error = Some(ProxyError::Upstream {
                    endpoint: lease.endpoint().clone(),
                    source: error.into_error(),
                });
                break;
            }
            lease.failed(sent.elapsed());
            return Err(ProxyError::Upstream {
                endpoint: lease.endpoint().clone(),
                source: error.into_error(),
            });
        }
    }
    Err(last_error.unwrap_or_else(|| ProxyError::NoBackend {
        target: backends.target().to_owned(),
    }))
}

/// Opens a new HTTP/1 connection to the leased endpoint.
async fn dial(lease: &Lease, connector: &dyn Connector) -> Result<Sender, ProxyError> {
    let stream = connect_one(lease, connector).await?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ProxyError::Upstream {
            endpoint: lease.endpoint().clone(),
            source,
        })?;
    let addr = lease.endpoint().addr;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%addr, %error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// A copy of `request` to send again if the connection it goes out on turns
/// out to have been closed by the endpoint. Only for bodyless requests whose
/// method is safe: the copy costs a header map clone, and anything else
/// might repeat a side effect.
fn replayable(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe || !matches!(request.body(), Either::Right(_)) {
        return None;
    }
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}
