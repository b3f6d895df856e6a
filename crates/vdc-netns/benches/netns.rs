//! What namespaces cost: creating and removing one, and a connect into one
//! against the same connect on the host. (What starting a confined process
//! costs is `cargo bench -p vdc-sandbox`.)
//!
//! Run with `cargo bench -p vdc-netns` as root. Prints the median and the
//! 90th percentile of each, and the machine it ran on.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vdc_testkit::bench::{machine, report};

use tokio::net::{TcpListener, TcpStream};
use vdc_netns::NetnsDir;

const CONNECTS: usize = 5_000;
const NAMESPACES: usize = 100;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(why) = vdc_netns::supported() {
        println!("skipped: {why}");
        return;
    }
    println!("machine: {}", machine());
    let base = tempfile::Builder::new()
        .prefix("netns-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let dir = NetnsDir::open(base.path().join("netns")).unwrap();
    println!(
        "{:<44} {:>10} {:>10} {:>6}",
        "operation", "median", "p90", "runs"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(connects(&dir));
    create_and_remove(&dir);

    dir.remove_all().unwrap();
    dir.unmount().unwrap();
}

fn create_and_remove(dir: &NetnsDir) {
    let mut create = Vec::new();
    let mut remove = Vec::new();
    for i in 0..NAMESPACES {
        let start = Instant::now();
        let ns = dir.create(&format!("bench{i}")).unwrap();
        create.push(start.elapsed());
        let start = Instant::now();
        ns.remove().unwrap();
        drop(ns);
        remove.push(start.elapsed());
    }
    report("create a namespace (lo up, pinned)", &create, None);
    report(
        "remove it (unpin; the kernel frees it later)",
        &remove,
        None,
    );
}

async fn connects(dir: &NetnsDir) {
    let ns = dir.create("connect").unwrap();
    let on_host = serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let inside = serve(ns.bind_tcp(([127, 0, 0, 1], 0).into()).unwrap());
    let timeout = Duration::from_secs(2);

    // Interleaved, so that both see the same machine load.
    let (mut host, mut netns) = (Vec::new(), Vec::new());
    for _ in 0..CONNECTS {
        let start = Instant::now();
        let stream = TcpStream::connect(on_host).await.unwrap();
        host.push(start.elapsed());
        drop(stream);
        let start = Instant::now();
        let stream = ns.connect_tcp(inside, timeout).await.unwrap();
        netns.push(start.elapsed());
        drop(stream);
    }
    report("connect on the host (tokio TcpStream)", &host, None);
    report(
        "connect into a namespace (Netns::connect_tcp)",
        &netns,
        None,
    );

    let (mut host, mut netns) = (Vec::new(), Vec::new());
    for _ in 0..NAMESPACES {
        let start = Instant::now();
        drop(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        host.push(start.elapsed());
        let start = Instant::now();
        drop(ns.bind_tcp(([127, 0, 0, 1], 0).into()).unwrap());
        netns.push(start.elapsed());
    }
    report("listen on the host (std TcpListener::bind)", &host, None);
    report("listen in a namespace (Netns::bind_tcp)", &netns, None);
    ns.remove().unwrap();
}

/// Accepts and drops connections until the runtime ends.
fn serve(listener: std::net::TcpListener) -> SocketAddr {
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    addr
}
