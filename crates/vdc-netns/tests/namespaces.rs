//! Real network namespaces (as root): what is inside a new one, what can and
//! cannot be reached from it, and that creating and removing leaks nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{mounts_under, open_fds_under, Fixture};
use vdc_netns::{Netns, NetnsError};

const TIMEOUT: Duration = Duration::from_secs(2);

/// `ip -o link` run inside the namespace by a real process.
fn links_seen_inside(ns: &Netns) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["ip", "-o", "link"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A port nothing listens on in the host namespace right now.
fn free_host_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_new_namespace_has_only_lo_and_it_is_up() {
    let Some(fx) = Fixture::new() else { return };
    let ns = fx.dir.create("only-lo").unwrap();
    assert_eq!(ns.path(), fx.path().join("only-lo"));

    let links = links_seen_inside(&ns);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(
        links.starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{links}"
    );

    // The same from a thread inside: /proc/thread-self/net is per thread.
    let dev = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"]);

    // The host has more than lo: the namespace is not the host's.
    let host = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    assert_ne!(ns.inode().unwrap(), 0);
    assert!(host.lines().count() >= dev.lines().count());

    ns.remove().unwrap();
    assert!(!ns.path().exists());
    assert!(fx.dir.names().unwrap().is_empty());
    assert!(
        mounts_under(fx.path()).len() <= 1,
        "only the directory's own mount is left"
    );
    // Removing again is not an error.
    ns.remove().unwrap();
}

#[test]
fn namespaces_are_reopened_by_name_and_names_are_checked() {
    let Some(fx) = Fixture::new() else { return };
    let ns = fx.dir.create("shop.web.0").unwrap();
    let inode = ns.inode().unwrap();
    drop(ns);

    assert_eq!(fx.dir.names().unwrap(), ["shop.web.0"]);
    let again = fx.dir.open_ns("shop.web.0").unwrap();
    assert_eq!(
        again.inode().unwrap(),
        inode,
        "the pin kept the same namespace"
    );

    let taken = fx.dir.create("shop.web.0").unwrap_err();
    assert!(matches!(taken, NetnsError::Exists { .. }), "{taken}");

    let plain = fx.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    let err = Netns::open(&plain).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a network namespace: nothing is mounted on it",
            plain.display()
        )
    );
    let err = Netns::open(std::path::Path::new("/proc/self/ns/mnt")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("it is a namespace of another kind"),
        "{err}"
    );
    // A leftover file is listed, and removed like a namespace.
    assert_eq!(fx.dir.names().unwrap(), ["plain", "shop.web.0"]);
    fx.dir.remove("plain").unwrap();

    assert!(matches!(
        fx.dir.create("../escape").unwrap_err(),
        NetnsError::InvalidName { .. }
    ));
    again.remove().unwrap();
}

#[tokio::test]
async fn a_listener_inside_is_reachable_only_from_inside() {
    let Some(fx) = Fixture::new() else { return };
    let ns = fx.dir.create("a").unwrap();
    let port = free_host_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let listener = ns.bind_tcp(addr).unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr);

    // Nothing listens there in the host's namespace.
    let refused = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    // From inside, the connect reaches it and bytes flow both ways.
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
    });
    let mut stream = ns.connect_tcp(addr, TIMEOUT).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.join().unwrap();

    // A refused connect inside comes back as one, quickly.
    let closed: SocketAddr = ([127, 0, 0, 1], port.wrapping_add(1).max(1)).into();
    let err = ns.connect_tcp(closed, TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    ns.remove().unwrap();
}

#[test]
fn a_process_inside_reaches_neither_the_host_nor_the_outside() {
    let Some(fx) = Fixture::new() else { return };
    let ns = fx.dir.create("jail").unwrap();
    // A service only the host can reach.
    let host_only = TcpListener::bind("127.0.0.1:0").unwrap();
    let q = host_only.local_addr().unwrap().port();
    TcpStream::connect_timeout(&host_only.local_addr().unwrap(), TIMEOUT)
        .expect("the host reaches its own service");
    let host_ip = host_address().unwrap_or_else(|| "192.0.2.1".to_owned());

    let script = format!(
        r#"
import errno, socket
for host, port in [("127.0.0.1", {q}), ("::1", {q}), ("{host_ip}", {q}), ("1.1.1.1", 443), ("2606:4700:4700::1111", 443)]:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(2)
    try:
        s.connect((host, port))
        print(host, "connected")
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, type(e).__name__))
"#
    );
    let started = std::time::Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out,
        format!(
            "127.0.0.1 ECONNREFUSED\n::1 ECONNREFUSED\n{host_ip} ENETUNREACH\n\
             1.1.1.1 ENETUNREACH\n2606:4700:4700::1111 ENETUNREACH\n"
        )
    );
    // Failing at once, not by timing out (python's start-up included).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The same from a thread inside, without a process.
    let host_only_addr = host_only.local_addr().unwrap();
    let err = ns
        .run(|| TcpStream::connect_timeout(&host_only_addr, TIMEOUT).unwrap_err())
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    ns.remove().unwrap();
}

#[test]
fn creating_and_removing_many_leaks_nothing() {
    let Some(fx) = Fixture::new() else { return };
    let mounts = mounts_under(fx.path()).len();

    for i in 0..50 {
        let ns = fx.dir.create(&format!("n{i}")).unwrap();
        let listener = ns.bind_tcp(([127, 0, 0, 1], 0).into()).unwrap();
        drop(listener);
        ns.remove().unwrap();
    }
    // Removal by name, without a handle, leaves nothing either.
    for i in 0..10 {
        drop(fx.dir.create(&format!("m{i}")).unwrap());
    }
    assert_eq!(open_fds_under(fx.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!(mounts_under(fx.path()).len(), mounts + 10);
    for i in 0..10 {
        fx.dir.remove(&format!("m{i}")).unwrap();
    }

    assert_eq!(
        mounts_under(fx.path()).len(),
        mounts,
        "{:#?}",
        mounts_under(fx.path())
    );
    assert!(fx.dir.names().unwrap().is_empty());
    assert_eq!(open_fds_under(fx.path()), Vec::<std::path::PathBuf>::new());
}

/// The host's first global IPv4 address, if it has one.
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let cidr = text.lines().next()?.split_whitespace().nth(3)?;
    Some(cidr.split('/').next()?.to_owned())
}
