//! Health probes: a TCP connect, or an HTTP GET that must answer 2xx/3xx.
//!
//! A probe ends its connection the way a polite client does: it reads the
//! whole answer (up to [`MAX_ANSWER`]) and closes after the server did, so
//! the instance never sees a reset (and never logs one) for a probe.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use vdc_spec::Probe;

/// The most of an answer a probe reads before it closes anyway.
const MAX_ANSWER: usize = 64 << 10;

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
    // The rest of the answer, until the server closes (it was asked to):
    // closing with unread bytes would reset the connection under it.
    let mut rest = [0u8; 4096];
    let mut read = len;
    while read < MAX_ANSWER {
        match stream.read(&mut rest).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let _ = stream.shutdown().await;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one request with a body, closes its side, and
    /// says whether the client then closed cleanly or reset.
    async fn answer_and_watch(listener: TcpListener, body: usize) -> std::io::Result<usize> {
        let (mut conn, _) = listener.accept().await?;
        let mut request = [0u8; 1024];
        let _ = conn.read(&mut request).await?;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {body}\r\nconnection: close\r\n\r\n{}",
            "x".repeat(body)
        );
        conn.write_all(response.as_bytes()).await?;
        conn.shutdown().await?;
        // Ok(0): the probe closed cleanly; Err(reset): it did not.
        conn.read(&mut request).await
    }

    #[tokio::test]
    async fn an_http_probe_reads_the_whole_answer_and_closes_cleanly() {
        for body in [0, 100, 20_000] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(answer_and_watch(listener, body));
            let probe = Probe::Http {
                path: "/healthz".into(),
            };
            check(addr, &probe, Duration::from_secs(2), None)
                .await
                .unwrap();
            let after = server.await.unwrap();
            assert!(matches!(after, Ok(0)), "body {body}: {after:?}");
        }
    }
}
