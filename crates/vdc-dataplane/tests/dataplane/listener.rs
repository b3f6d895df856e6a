//! Listeners: bind errors, unbind and its grace, independence, shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use vdc_dataplane::{Backends, DataPlane, DataPlaneError, Protocol};

use crate::support::{any_port, endpoints, http_backend, listening, spec, tcp_echo, Client};

async fn echo_once(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.expect("write");
    let mut buf = vec![0; message.len()];
    stream.read_exact(&mut buf).await.expect("read echo");
    assert_eq!(buf, message);
}

async fn refuses(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn binding_an_address_in_use_names_it() {
    let taken = std::net::TcpListener::bind(any_port()).expect("bind");
    let addr = taken.local_addr().expect("addr");
    let data_plane = DataPlane::new().expect("the data plane starts");
    let set = Backends::new("shop/web.in");
    let error = data_plane
        .bind(
            "shop/lb.out",
            addr,
            spec("shop/lb.out", Protocol::Tcp, &set),
        )
        .await
        .expect_err("the address is taken");
    assert!(matches!(&error, DataPlaneError::Bind { addr: a, .. } if *a == addr));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot listen on {addr} for shop/lb.out: ")),
        "{message}"
    );
    assert!(data_plane.listeners().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_stops_accepting_and_lets_open_connections_finish() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (data_plane, _set, addr) = listening(Protocol::Tcp, &echoes).await;
    let mut open = TcpStream::connect(addr).await.expect("connect");
    echo_once(&mut open, b"before").await;

    let unbinding = {
        let data_plane = data_plane.clone();
        tokio::spawn(async move {
            data_plane
                .unbind("shop/lb.out", Duration::from_secs(10))
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !refuses(addr).await {
        assert!(Instant::now() < deadline, "still accepting after unbind");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(data_plane.listeners().is_empty());
    // The connection in flight still works during the grace period...
    echo_once(&mut open, b"during").await;
    // ...and once it closes, unbind is done without waiting out the grace.
    drop(open);
    let unbound = tokio::time::timeout(Duration::from_secs(2), unbinding)
        .await
        .expect("unbind returns once connections are done")
        .expect("unbind task");
    assert!(unbound);
    assert!(!data_plane.unbind("shop/lb.out", Duration::ZERO).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_still_open_after_the_grace_are_closed() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (data_plane, _set, addr) = listening(Protocol::Tcp, &echoes).await;
    let mut open = TcpStream::connect(addr).await.expect("connect");
    echo_once(&mut open, b"hello").await;

    let started = Instant::now();
    assert!(
        data_plane
            .unbind("shop/lb.out", Duration::from_millis(200))
            .await
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let mut buf = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf))
        .await
        .expect("the proxy closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_do_not_hold_up_unbind() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let (data_plane, _set, addr) = listening(Protocol::Http, &webs).await;
    let mut client = Client::connect(addr).await;
    client.get("/").await.expect("an answer");

    let started = Instant::now();
    assert!(
        data_plane
            .unbind("shop/lb.out", Duration::from_secs(10))
            .await
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(client.get("/").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_of_different_keys_are_independent() {
    let echoes = [tcp_echo("shop/db/0").await];
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let db = Backends::new("shop/db.in");
    db.set(endpoints(&echoes));
    let web = Backends::new("shop/web.in");
    web.set(endpoints(&webs));
    let data_plane = DataPlane::new().expect("the data plane starts");
    let db_addr = data_plane
        .bind(
            "shop/web.db",
            any_port(),
            spec("shop/web.db", Protocol::Tcp, &db),
        )
        .await
        .expect("bind db");
    let web_addr = data_plane
        .bind(
            "shop/lb.web",
            any_port(),
            spec("shop/lb.web", Protocol::Http, &web),
        )
        .await
        .expect("bind web");

    let listeners = data_plane.listeners();
    let summary: Vec<(&str, Protocol)> = listeners
        .iter()
        .map(|l| (l.key.as_str(), l.protocol))
        .collect();
    assert_eq!(
        summary,
        [
            ("shop/lb.web", Protocol::Http),
            ("shop/web.db", Protocol::Tcp)
        ]
    );

    assert!(data_plane.unbind("shop/web.db", Duration::ZERO).await);
    assert!(refuses(db_addr).await);
    let mut client = Client::connect(web_addr).await;
    assert_eq!(client.get("/").await.expect("answer").1, "shop/web/0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_key_elsewhere_moves_it() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (data_plane, set, old) = listening(Protocol::Tcp, &echoes).await;
    let new = data_plane
        .bind(
            "shop/lb.out",
            "127.0.0.2:0".parse().expect("addr"),
            spec("shop/lb.out", Protocol::Tcp, &set),
        )
        .await
        .expect("rebind elsewhere");
    assert_ne!(new, old);
    let mut stream = TcpStream::connect(new)
        .await
        .expect("connect to the new address");
    echo_once(&mut stream, b"moved").await;
    let listeners = data_plane.listeners();
    assert_eq!((listeners.len(), listeners[0].addr), (1, new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_listener_and_refuses_new_binds() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (data_plane, set, addr) = listening(Protocol::Tcp, &echoes).await;
    data_plane.shutdown(Duration::from_millis(100)).await;
    assert!(refuses(addr).await);
    assert!(data_plane.listeners().is_empty());
    let error = data_plane
        .bind(
            "shop/other",
            any_port(),
            spec("shop/other", Protocol::Tcp, &set),
        )
        .await
        .expect_err("shut down");
    assert!(matches!(error, DataPlaneError::ShutDown { .. }), "{error}");
}
