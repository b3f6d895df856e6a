//! Test backends (TCP echo, tiny HTTP servers that answer their name) and
//! an HTTP/1 client, all on real sockets on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use vdc_dataplane::{Backends, DataPlane, Endpoint, Protocol, ProxySpec};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type ClientBody = BoxBody<Bytes, Error>;

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A running backend. Dropping or killing it closes its listener and every
/// connection it has, at once, as `kill -9` would.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    /// Connections open to it right now.
    open: Arc<AtomicUsize>,
    /// HTTP requests it has received (HTTP backends only).
    requests: Arc<AtomicUsize>,
}

impl Backend {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            instance: self.name.clone(),
            addr: self.addr,
        }
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn endpoints(backends: &[Backend]) -> Vec<Endpoint> {
    backends.iter().map(Backend::endpoint).collect()
}

/// An address where nothing listens (it was bound a moment ago).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind(any_port()).await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// Serves each accepted connection with `serve` until the backend is
/// dropped; the connection tasks are owned so they die with it.
async fn backend<F, Fut>(name: &str, serve: F) -> Backend
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(any_port()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let open = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&open);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let served = serve(stream);
            let counted = Arc::clone(&counted);
            connections.spawn(async move {
                served.await;
                counted.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Backend {
        name: name.to_owned(),
        addr,
        task,
        open,
        requests: Arc::new(AtomicUsize::new(0)),
    }
}

/// Echoes every byte back, and closes its side when the client closes its.
pub async fn tcp_echo(name: &str) -> Backend {
    backend(name, |stream| async move {
        let (mut read, mut write) = stream.into_split();
        let _ = tokio::io::copy(&mut read, &mut write).await;
        let _ = write.shutdown().await;
    })
    .await
}

/// Answers the first request on each connection and keeps the connection
/// open, then reads the second and closes without answering: an endpoint
/// that dies with a request in flight on a reused connection.
pub async fn dies_on_second_request(name: &str) -> Backend {
    backend(name, |mut stream| async move {
        let Some(_) = read_head(&mut stream).await else {
            return;
        };
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
        let _ = read_head(&mut stream).await;
    })
    .await
}

/// An HTTP/1 endpoint written by hand, to send what a well-behaved server
/// library would not: for each request head it reads, `answer` gives the
/// bytes to send back and whether to close the connection afterwards
/// (after reading whatever the client still sends).
pub async fn scripted(name: &str, answer: fn(&str) -> (Vec<u8>, bool)) -> Backend {
    backend(name, move |mut stream| async move {
        use tokio::io::AsyncReadExt;
        while let Some(head) = read_head(&mut stream).await {
            let (bytes, close) = answer(&String::from_utf8_lossy(&head));
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                return;
            }
        }
    })
    .await
}

/// Reads one request head (the tests send no bodies to this backend).
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Answers `GET /` with its name, echoes the body of `/echo` as it streams
/// in, and lists the request headers on `/headers`; every answer after
/// `delay`.
pub async fn http_backend(name: &str, delay: Duration) -> Backend {
    let me: Arc<str> = Arc::from(name);
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let mut backend = backend(name, move |stream| {
        let me = Arc::clone(&me);
        let counted = Arc::clone(&counted);
        async move {
            let service = service_fn(move |request| {
                counted.fetch_add(1, Ordering::SeqCst);
                answer(Arc::clone(&me), delay, request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    backend.requests = requests;
    backend
}

/// The controls of a [`held_http_backend`].
pub struct Hold {
    /// One message per `/hold` request received.
    pub arrived: mpsc::UnboundedReceiver<()>,
    /// Sending `true` lets every held request (and any later one) be
    /// answered.
    pub release: watch::Sender<bool>,
}

/// The body a held request is answered with: 256 KiB, enough to take
/// several reads, in numbered lines so any loss or reordering shows.
pub fn held_body() -> String {
    (0..32 * 1024).map(|i| format!("{i:07}\n")).collect()
}

/// Like [`http_backend`] without delay, except that a request for `/hold`
/// is reported on [`Hold::arrived`] and answered with [`held_body`] only
/// once [`Hold::release`] says so: a request held mid-flight for as long
/// as a test needs.
pub async fn held_http_backend(name: &str) -> (Backend, Hold) {
    let me: Arc<str> = Arc::from(name);
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let mut backend = backend(name, move |stream| {
        let me = Arc::clone(&me);
        let counted = Arc::clone(&counted);
        let arrived_tx = arrived_tx.clone();
        let released = released.clone();
        async move {
            let service = service_fn(move |request: Request<Incoming>| {
                counted.fetch_add(1, Ordering::SeqCst);
                let me = Arc::clone(&me);
                let arrived_tx = arrived_tx.clone();
                let mut released = released.clone();
                async move {
                    if request.uri().path() != "/hold" {
                        return answer(me, Duration::ZERO, request).await;
                    }
                    let _ = arrived_tx.send(());
                    let _ = released.wait_for(|go| *go).await;
                    let response = Response::builder()
                        .header("x-backend", &*me)
                        .body(Either::Right(Full::new(Bytes::from(held_body()))))
                        .expect("a valid response");
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    backend.requests = requests;
    (backend, Hold { arrived, release })
}

async fn answer(
    me: Arc<str>,
    delay: Duration,
    request: Request<Incoming>,
) -> Result<Response<Either<Incoming, Full<Bytes>>>, Infallible> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = Response::builder().header("x-backend", &*me);
    let response = match request.uri().path() {
        "/echo" => response.body(Either::Left(request.into_body())),
        "/headers" => {
            let listed: String = request
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
                .collect();
            response.body(Either::Right(Full::new(Bytes::from(listed))))
        }
        _ => response.body(Either::Right(Full::new(Bytes::from(me.to_string())))),
    };
    Ok(response.expect("a valid response"))
}

pub fn spec(name: &str, protocol: Protocol, backends: &Backends) -> ProxySpec {
    ProxySpec {
        name: name.to_owned(),
        protocol,
        backends: backends.clone(),
        max_connections: None,
    }
}

/// A data plane listening on a fresh port for `backends`.
pub async fn listening(
    protocol: Protocol,
    backends: &[Backend],
) -> (DataPlane, Backends, SocketAddr) {
    let set = Backends::new("shop/web.in");
    set.set(endpoints(backends));
    let data_plane = DataPlane::new().expect("the data plane starts");
    let addr = data_plane
        .bind(
            "shop/lb.out",
            any_port(),
            spec("shop/lb.out", protocol, &set),
        )
        .await
        .expect("bind");
    (data_plane, set, addr)
}

/// One HTTP/1 keep-alive connection.
pub struct Client {
    sender: SendRequest<ClientBody>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Client { sender }
    }

    pub async fn send(
        &mut self,
        request: Request<ClientBody>,
    ) -> Result<Response<Incoming>, Error> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// GETs `path`, returning the status and the whole body as text.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), Error> {
        let response = self.send(get(path)).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

pub fn get(path: &str) -> Request<ClientBody> {
    Request::get(path)
        .header("host", "shop.example")
        .body(empty())
        .expect("a valid request")
}

pub fn empty() -> ClientBody {
    full("")
}

pub fn full(text: &'static str) -> ClientBody {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

/// A request body fed chunk by chunk through the returned sender.
pub fn streamed() -> (mpsc::Sender<Bytes>, ClientBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Error>(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}

/// Retries `check` for up to two seconds; for counters updated just after
/// the client has its answer.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}
