//! `vdc-loadgen`: HTTP requests at a fixed rate over keep-alive
//! connections, with each request's latency counted from the moment it was
//! due, not from when it could be sent. A closed-loop tool (wrk) waits for
//! an answer before sending the next request on a connection, so a stall
//! delays the requests behind it without counting them as slow: the
//! coordinated omission that hides tail latency. Here request `k` is due at
//! `start + k / rate` whatever happened before it; if every connection is
//! busy when it is due, the wait is part of its latency.
//!
//! `wrk2` does this too but is not packaged by Debian; this is the few
//! dozen lines of it the benchmarks need, with HdrHistogram.
//!
//! ```text
//! vdc-loadgen --url http://127.0.0.1:8080/ --rate 5000 --duration 10s --connections 64
//! ```
//!
//! Prints one JSON object: due, completed, errors, the achieved rate, and
//! p50/p90/p99/p99.9/max latency in milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Open-loop HTTP load at a fixed rate, latency from when each request was due")]
struct Args {
    /// `http://HOST:PORT/PATH`.
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long)]
    rate: u64,
    /// How long to send for, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Keep-alive connections (the most requests in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Load before measuring, e.g. `2s`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("`{s}` is not a duration like 10s or 500ms")),
    }
}

struct Target {
    addr: String,
    host: String,
    path: String,
}

fn target(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("`{url}`: only http:// URLs");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("`{url}` has no host");
    }
    Ok(Target {
        addr: authority.to_owned(),
        host: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// What one connection saw.
struct Seen {
    hist: Histogram<u64>,
    completed: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.connections == 0 {
        bail!("--rate and --connections must be more than 0");
    }
    let target = Arc::new(target(&args.url)?);
    if !args.warmup.is_zero() {
        run(&target, args.rate, args.warmup, args.connections).await?;
    }
    let (seen, elapsed, due) = run(&target, args.rate, args.duration, args.connections).await?;
    let mut hist = Histogram::<u64>::new(3).context("histogram")?;
    let (mut completed, mut errors) = (0, 0);
    for s in seen {
        hist.add(&s.hist).context("histogram")?;
        completed += s.completed;
        errors += s.errors;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let out = serde_json::json!({
        "url": args.url,
        "rate": args.rate,
        "connections": args.connections,
        "due": due,
        "completed": completed,
        "errors": errors,
        "achieved_rate": completed as f64 / elapsed.as_secs_f64(),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": hist.max() as f64 / 1000.0,
    });
    println!("{out}");
    Ok(())
}

/// Sends `rate` requests a second for `duration` over `connections`
/// connections; returns what each saw, the time taken and how many were due.
async fn run(
    target: &Arc<Target>,
    rate: u64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<(Vec<Seen>, Duration, u64)> {
    let start = Instant::now() + Duration::from_millis(50);
    let due_total = (rate as f64 * duration.as_secs_f64()) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let interval_ns = 1_000_000_000f64 / rate as f64;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (target, next) = (Arc::clone(target), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            connection(&target, &next, start, interval_ns, due_total).await
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.context("a connection task failed")??);
    }
    Ok((seen, start.elapsed(), due_total))
}

async fn connection(
    target: &Target,
    next: &AtomicU64,
    start: Instant,
    interval_ns: f64,
    due_total: u64,
) -> anyhow::Result<Seen> {
    let mut seen = Seen {
        hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
        completed: 0,
        errors: 0,
    };
    let mut sender: Option<http1::SendRequest<Empty<bytes::Bytes>>> = None;
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= due_total {
            return Ok(seen);
        }
        let due = start + Duration::from_nanos((k as f64 * interval_ns) as u64);
        tokio::time::sleep_until(due).await;
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = open(target).await.ok();
        }
        let Some(s) = sender.as_mut() else {
            seen.errors += 1;
            continue;
        };
        let request = http::Request::get(&target.path)
            .header(http::header::HOST, &target.host)
            .body(Empty::new())
            .context("request")?;
        let ok = match s.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await;
                body.is_ok() && status.is_success()
            }
            Err(_) => false,
        };
        if ok {
            let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            seen.hist.saturating_record(us.max(1));
            seen.completed += 1;
        } else {
            seen.errors += 1;
            sender = None;
        }
    }
}

async fn open(target: &Target) -> anyhow::Result<http1::SendRequest<Empty<bytes::Bytes>>> {
    let stream = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("cannot connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
