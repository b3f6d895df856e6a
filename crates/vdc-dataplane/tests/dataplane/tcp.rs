//! The TCP proxy: spreading, exact echo, half-close, connect retries,
//! draining.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vdc_dataplane::Protocol;

use crate::support::{dead_addr, eventually, listening, tcp_echo};

/// Sends `payload`, closes the write side, and reads until the proxy closes
/// the other: only works if the half-close travels all the way and back.
async fn round_trip(addr: std::net::SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&payload).await.expect("write");
        write.shutdown().await.expect("half-close");
    });
    let mut echoed = Vec::new();
    read.read_to_end(&mut echoed).await.expect("read echo");
    writer.await.expect("writer");
    echoed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_all_endpoints_and_echo_exactly() {
    let echoes = [
        tcp_echo("shop/db/0").await,
        tcp_echo("shop/db/1").await,
        tcp_echo("shop/db/2").await,
    ];
    let (data_plane, backends, addr) = listening(Protocol::Tcp, &echoes).await;

    let mut clients = Vec::new();
    for i in 0..60 {
        clients.push(tokio::spawn(async move {
            let payload = format!("hello from client {i}").into_bytes();
            assert_eq!(round_trip(addr, payload.clone()).await, payload);
        }));
    }
    for client in clients {
        client.await.expect("client");
    }

    let stats = backends.endpoint_stats();
    assert_eq!(stats.iter().map(|(_, s)| s.served).sum::<u64>(), 60);
    for (endpoint, s) in &stats {
        assert!(
            s.served >= 5,
            "{} served only {}: {stats:?}",
            endpoint.instance,
            s.served
        );
        assert_eq!(s.failures, 0);
    }
    let listener = &data_plane.listeners()[0];
    assert_eq!(listener.protocol, Protocol::Tcp);
    assert_eq!(listener.stats.connections_total, 60);
    assert!(eventually(|| data_plane.listeners()[0].stats.connections_active == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_goes_through_intact_and_is_counted() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (data_plane, _backends, addr) = listening(Protocol::Tcp, &echoes).await;

    let payload: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
    let echoed = round_trip(addr, payload.clone()).await;
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "echoed bytes differ");

    assert!(
        eventually(|| {
            let stats = data_plane.listeners()[0].stats;
            stats.bytes_in == 1024 * 1024 && stats.bytes_out == 1024 * 1024
        })
        .await,
        "{:?}",
        data_plane.listeners()[0].stats
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_keeps_the_other_direction_open() {
    let echoes = [tcp_echo("shop/db/0").await];
    let (_data_plane, _backends, addr) = listening(Protocol::Tcp, &echoes).await;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"first").await.expect("write");
    stream.shutdown().await.expect("half-close");
    // Our side is closed for writing, yet the echo still comes back, then EOF.
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await.expect("read");
    assert_eq!(echoed, b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_retried_on_another_endpoint() {
    let echoes = [tcp_echo("shop/db/0").await, tcp_echo("shop/db/1").await];
    let (data_plane, backends, addr) = listening(Protocol::Tcp, &echoes).await;
    let mut set = backends.endpoints();
    set.push(vdc_dataplane::Endpoint {
        instance: "shop/db/2".into(),
        addr: dead_addr().await,
    });
    backends.set(set);

    for i in 0..30 {
        let payload = format!("try {i}").into_bytes();
        assert_eq!(round_trip(addr, payload.clone()).await, payload);
    }
    let dead = backends
        .endpoint_stats()
        .into_iter()
        .find(|(e, _)| e.instance == "shop/db/2")
        .map(|(_, s)| s)
        .expect("the dead endpoint is in the set");
    assert_eq!(dead.served, 0);
    assert!(dead.failures >= 1 && dead.ejected, "{dead:?}");
    let stats = data_plane.listeners()[0].stats;
    assert!(stats.retries >= 1 && stats.errors_refused == 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_closes_the_connection() {
    let (data_plane, _backends, addr) = listening(Protocol::Tcp, &[]).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    // Closed without a byte, whether as EOF or reset.
    let read = stream.read_to_end(&mut buf).await;
    assert!(buf.is_empty(), "{read:?}");
    assert!(eventually(|| data_plane.listeners()[0].stats.errors_no_backend == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_removed_endpoint_counts_in_flight_until_closed() {
    let echoes = [tcp_echo("shop/db/0").await, tcp_echo("shop/db/1").await];
    let (_data_plane, backends, addr) =
        listening(Protocol::Tcp, std::slice::from_ref(&echoes[0])).await;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(backends.in_flight("shop/db/0"), 1);

    backends.set(vec![echoes[1].endpoint()]);
    assert_eq!(backends.in_flight("shop/db/0"), 1);
    // The open connection still works; new ones go to the other endpoint.
    stream
        .write_all(b"pong")
        .await
        .expect("write after removal");
    stream
        .read_exact(&mut echoed)
        .await
        .expect("echo after removal");
    assert_eq!(&echoed, b"pong");
    let other = TcpStream::connect(addr).await.expect("connect");
    assert!(eventually(|| backends.in_flight("shop/db/1") == 1).await);
    drop(other);

    drop(stream);
    assert!(eventually(|| backends.in_flight("shop/db/0") == 0).await);
}
