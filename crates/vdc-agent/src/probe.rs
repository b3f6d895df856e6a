//! Health probes: a TCP connect, an HTTP GET that must answer 2xx/3xx, an
//! exchange (bytes sent, an answer expected), or a command run inside the
//! instance that must exit 0.
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

/// How long an exchange probe waits for more of an answer that does not
/// hold what it expects yet before it calls it wrong: servers that answer
/// a command in one go (redis' `-LOADING`) fail fast, not at the timeout.
const ANSWER_PAUSE: Duration = Duration::from_millis(100);

/// What a probe of one instance may need besides its address.
pub(crate) struct Context<'a> {
    /// The instance's network namespace, where its inputs listen.
    pub netns: Option<&'a vdc_netns::Netns>,
    /// For `exec` probes: the driver and how the instance was started.
    pub driver: &'a dyn vdc_driver::Driver,
    pub spec: &'a vdc_driver::LaunchSpec,
    pub pid: u32,
}

/// Runs one probe; the error says what went wrong in a few words.
pub(crate) async fn check(
    addr: SocketAddr,
    probe: &Probe,
    limit: Duration,
    context: &Context<'_>,
) -> Result<(), String> {
    if let Probe::Exec { command } = probe {
        return exec(command, limit, context).await;
    }
    // The exchange reports what it read by the deadline itself; the margin
    // lets it, before this bound ends everything else.
    match timeout(limit + ANSWER_PAUSE, run(addr, probe, context.netns, limit)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {addr} within {limit:?}")),
    }
}

/// Runs the probe's command inside the instance; healthy on exit 0.
async fn exec(command: &[String], limit: Duration, context: &Context<'_>) -> Result<(), String> {
    let spec = context.spec;
    let request = vdc_driver::ExecRequest {
        instance: spec.instance.clone(),
        cgroup_name: spec.cgroup_name.clone(),
        pid: context.pid,
        command: command
            .iter()
            .map(|a| crate::env::expand(a, &spec.env))
            .collect(),
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        confine: spec.confine.clone(),
        timeout: limit,
    };
    let shown = command.join(" ");
    let outcome = context
        .driver
        .exec(&request)
        .await
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if outcome.succeeded() {
        return Ok(());
    }
    let how = match &outcome.exit {
        Some(exit) => exit.to_string(),
        None => format!("did not finish within {limit:?}"),
    };
    let first_line = outcome.output.lines().next().unwrap_or_default();
    if first_line.is_empty() {
        Err(format!("`{shown}` {how}"))
    } else {
        Err(format!("`{shown}` {how}: {first_line}"))
    }
}

async fn run(
    addr: SocketAddr,
    probe: &Probe,
    netns: Option<&vdc_netns::Netns>,
    limit: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    // A confined instance listens inside its own network namespace.
    let connected = match netns {
        Some(ns) => ns.connect_tcp(addr, limit).await,
        None => TcpStream::connect(addr).await,
    };
    let mut stream = connected.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let path = match probe {
        Probe::Http { path } => path,
        Probe::Send { send, expect } => {
            return exchange(&mut stream, addr, send, expect, deadline).await
        }
        Probe::Tcp | Probe::Exec { .. } => return Ok(()),
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

/// Sends `send` and reads until the answer holds `expect`, the server
/// closes, [`MAX_ANSWER`] bytes came, the answer pauses for
/// [`ANSWER_PAUSE`] or the deadline passes; then closes.
async fn exchange(
    stream: &mut TcpStream,
    addr: SocketAddr,
    send: &str,
    expect: &str,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    stream
        .write_all(send.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let found = loop {
        if contains(&answer, expect.as_bytes()) {
            break true;
        }
        if answer.len() >= MAX_ANSWER {
            break false;
        }
        let until = if answer.is_empty() {
            deadline
        } else {
            deadline.min(tokio::time::Instant::now() + ANSWER_PAUSE)
        };
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break contains(&answer, expect.as_bytes()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    };
    let _ = stream.shutdown().await;
    if found {
        Ok(())
    } else if answer.is_empty() {
        Err(format!("no answer from {addr}, expected {expect:?}"))
    } else {
        let shown = String::from_utf8_lossy(&answer);
        let shown = shown.lines().next().unwrap_or_default();
        Err(format!("answered {shown:?}, expected {expect:?}"))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
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

    fn fake() -> &'static vdc_driver::fake::FakeDriver {
        static DRIVER: std::sync::OnceLock<vdc_driver::fake::FakeDriver> =
            std::sync::OnceLock::new();
        DRIVER.get_or_init(vdc_driver::fake::FakeDriver::new)
    }

    fn context() -> Context<'static> {
        static SPEC: std::sync::OnceLock<vdc_driver::LaunchSpec> = std::sync::OnceLock::new();
        Context {
            netns: None,
            driver: fake(),
            spec: SPEC.get_or_init(|| vdc_driver::LaunchSpec {
                instance: "shop/db/0".into(),
                cgroup_name: "vdc-test/shop.db.0".into(),
                program: "db".into(),
                args: vec![],
                env: vec![("PORT".into(), "4000".into())],
                workdir: "/srv".into(),
                nofile: None,
                log_file: "/srv/db.log".into(),
                limits: vdc_driver::Limits::default(),
                confine: None,
            }),
            pid: 1000,
        }
    }

    /// A server that answers `answer` to whatever comes first, in pieces
    /// `gap` apart, and keeps the connection open as redis does.
    async fn answering(answer: &'static [&'static str], gap: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let _ = conn.read(&mut buf).await;
                    for piece in answer {
                        let _ = conn.write_all(piece.as_bytes()).await;
                        tokio::time::sleep(gap).await;
                    }
                    let _ = conn.read(&mut buf).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_exchange_probe_wants_the_expected_answer() {
        let probe = Probe::Send {
            send: "PING\r\n".into(),
            expect: "+PONG".into(),
        };
        let limit = Duration::from_secs(2);
        let gap = Duration::from_millis(20);
        let ready = answering(&["+PONG\r\n"], gap).await;
        check(ready, &probe, limit, &context()).await.unwrap();
        // The expected text may come in pieces.
        let pieces = answering(&["+PO", "NG\r\n"], gap).await;
        check(pieces, &probe, limit, &context()).await.unwrap();
        // redis while it loads its data: up, but not ready; said at once,
        // not at the timeout, though the connection stays open.
        let loading = answering(
            &["-LOADING Redis is loading the dataset in memory\r\n"],
            gap,
        )
        .await;
        let start = std::time::Instant::now();
        let err = check(loading, &probe, limit, &context()).await.unwrap_err();
        assert_eq!(
            err,
            "answered \"-LOADING Redis is loading the dataset in memory\", expected \"+PONG\""
        );
        assert!(start.elapsed() < limit / 2, "{:?}", start.elapsed());
        // A server that says nothing fails at the timeout.
        let silent = answering(&[], gap).await;
        let err = check(silent, &probe, Duration::from_millis(200), &context())
            .await
            .unwrap_err();
        assert_eq!(err, format!("no answer from {silent}, expected \"+PONG\""));
    }

    #[tokio::test]
    async fn an_exec_probe_runs_in_the_instance_with_its_variables() {
        let ctx = context();
        let probe = Probe::Exec {
            command: vec!["pg_isready".into(), "-p".into(), "${PORT}".into()],
        };
        let addr = "127.0.0.1:1".parse().unwrap();
        check(addr, &probe, Duration::from_secs(1), &ctx)
            .await
            .unwrap();
        let fake = fake();
        assert_eq!(fake.execs().last().unwrap(), &["pg_isready", "-p", "4000"]);
        fake.set_exec_exit("pg_isready", vdc_driver::ExitInfo::code(2));
        let err = check(addr, &probe, Duration::from_secs(1), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err, "`pg_isready -p ${PORT}` exited with code 2");
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
            check(addr, &probe, Duration::from_secs(2), &context())
                .await
                .unwrap();
            let after = server.await.unwrap();
            assert!(matches!(after, Ok(0)), "body {body}: {after:?}");
        }
    }
}
