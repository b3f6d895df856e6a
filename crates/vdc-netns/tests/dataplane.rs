//! The data plane's sockets in namespaces: the connector reaches instances
//! inside theirs, and a link listener inside a caller's namespace forwards
//! to an instance inside another: a virtual wire between two namespaces.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vdc_dataplane::{
    Backends, Connector, DataPlane, DataPlaneConfig, Endpoint, Protocol, ProxySpec,
};
use vdc_netns::{NetnsBinder, NetnsConnector};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Echoes every connection on `listener` until the task is dropped.
fn echo(listener: std::net::TcpListener) -> SocketAddr {
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = conn.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn round_trip(connector: &NetnsConnector, endpoint: &Endpoint) -> std::io::Result<Vec<u8>> {
    let mut stream = connector.connect(endpoint).await?;
    stream.write_all(b"hello").await?;
    let mut buf = vec![0u8; 5];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

#[tokio::test]
async fn the_connector_reaches_known_instances_inside_and_others_on_the_host() {
    let Some(fx) = Fixture::new() else { return };
    let b = Arc::new(fx.dir.create("app.b.0").unwrap());
    let inside = echo(b.bind_tcp(([127, 0, 0, 1], 0).into()).unwrap());
    let on_host = echo(std::net::TcpListener::bind("127.0.0.1:0").unwrap());

    let connector = NetnsConnector::new(TIMEOUT);
    connector.insert("app/b/0", Arc::clone(&b));
    let in_b = Endpoint {
        instance: "app/b/0".into(),
        addr: inside,
    };
    assert_eq!(round_trip(&connector, &in_b).await.unwrap(), b"hello");

    // An instance the connector does not know is reached from the host.
    let elsewhere = Endpoint {
        instance: "app/c/0".into(),
        addr: on_host,
    };
    assert_eq!(round_trip(&connector, &elsewhere).await.unwrap(), b"hello");
    assert!(format!("{connector:?}").contains("app/b/0"));

    // Once forgotten, the instance's address means the host's, where
    // nothing listens (the listener is in b only).
    assert!(connector.remove("app/b/0").is_some());
    assert!(connector.get("app/b/0").is_none());
    let err = round_trip(&connector, &in_b).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    b.remove().unwrap();
}

#[tokio::test]
async fn a_link_inside_one_namespace_leads_to_an_instance_inside_another() {
    let Some(fx) = Fixture::new() else { return };
    let caller = Arc::new(fx.dir.create("app.a.0").unwrap());
    let target = Arc::new(fx.dir.create("app.b.0").unwrap());
    // The target listens on its input inside its namespace: the same port
    // could be used by every instance.
    let input = echo(target.bind_tcp(([127, 0, 0, 1], 8080).into()).unwrap());

    let connector = Arc::new(NetnsConnector::new(TIMEOUT));
    connector.insert("app/b/0", Arc::clone(&target));
    let plane = DataPlane::with_config(DataPlaneConfig {
        connector: connector.clone(),
        ..DataPlaneConfig::default()
    })
    .expect("the data plane starts");
    let backends = Backends::new("app/b.in");
    backends.set(vec![Endpoint {
        instance: "app/b/0".into(),
        addr: input,
    }]);
    let link: SocketAddr = ([127, 0, 0, 1], 41234).into();
    let bound = plane
        .bind_with(
            &NetnsBinder::new(Arc::clone(&caller)),
            "app/a/0 -> app/b.in",
            link,
            ProxySpec {
                name: "app/a.out".into(),
                protocol: Protocol::Tcp,
                backends,
                max_connections: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(bound, link);

    // A blocking client inside the caller's namespace uses the link.
    let through_link = move || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&link, TIMEOUT)?;
        stream.write_all(b"over the wire")?;
        stream.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        Ok(reply)
    };
    let reply = tokio::task::spawn_blocking({
        let caller = Arc::clone(&caller);
        move || caller.run(through_link)
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(reply, b"over the wire");

    // The link exists nowhere else: not on the host, not in the target.
    let refused = |result: std::io::Result<TcpStream>| {
        assert_eq!(
            result.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        )
    };
    refused(TcpStream::connect_timeout(&link, TIMEOUT));
    refused(
        target
            .run(move || TcpStream::connect_timeout(&link, TIMEOUT))
            .unwrap(),
    );
    // Nor can the caller reach the target's input directly.
    refused(
        caller
            .run(move || TcpStream::connect_timeout(&input, TIMEOUT))
            .unwrap(),
    );

    plane.shutdown(Duration::ZERO).await;
    caller.remove().unwrap();
    target.remove().unwrap();
}
