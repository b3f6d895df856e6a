//! Health probes: a TCP connect, or an HTTP GET that must answer 2xx/3xx.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use vdc_spec::Probe;

/// Runs one probe; the error says what went wrong in a few words.
pub(crate) async fn check(
    addr: SocketAddr,
    probe: &Probe,
    limit: Duration,
    netns: Option<&vdc_netns::Netns>,
) -> Result<(), String> {
    match timeout(limit, run(addr, probe, netns, limit)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {addr} within {limit:?}")),
    }
}

async fn run(
    addr: SocketAddr,
    probe: &Probe,
    netns: Option<&vdc_netns::Netns>,
    limit: Duration,
) -> Result<(), String> {
    // A confined instance listens inside its own network namespace.
    let connected = match netns {
        Some(ns) => ns.connect_tcp(addr, limit).await,
        None => TcpStream::connect(addr).await,
    };
    let mut stream = connected.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let Probe::Http { path } = probe else {
        return Ok(());
    };
    // A one-shot GET with `Connection: close` needs no client library: write
    // the request, read the status line.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: vdc-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send GET {path}: {e}"))?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP response"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}
