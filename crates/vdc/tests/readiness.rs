//! Ready means ready: an instance is called ready only when its program
//! answers as a client needs it to, not when its port is open. redis
//! accepts connections while it loads its data and answers `-LOADING` to
//! every command until it is done; with `health = { send, expect }` vdc
//! waits for `+PONG`. `.ci/run` installs redis-server.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Sends one inline command and returns the first line of the answer.
fn ask(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.ends_with(b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&answer).trim_end().to_owned())
}

/// The first answer to PING once the gateway has somewhere to send it.
fn first_ping(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ask(port, "PING") {
            Ok(answer) => return answer,
            // Until the balancer has the ready instance: nothing behind
            // the gateway, so the connection is closed.
            Err(e) => assert!(Instant::now() < deadline, "no answer: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn redis_is_ready_when_it_answers_pong_not_while_it_loads() {
    require("redis-server");
    let vdc = Vdc::start();
    let port = free_port();
    let path = vdc.dir.path().join("kv.toml");
    std::fs::write(
        &path,
        format!(
            r#"app = "kv"
[components.redis]
command = ["redis-server", "--port", "${{PORT}}", "--bind", "127.0.0.1", "--dir", "${{VDC_VOLUME_DATA}}",
           "--save", "", "--protected-mode", "no", "--enable-debug-command", "yes"]
resources = {{ cpu = 1, memory = "1GiB" }}
inputs = {{ resp = {{ protocol = "tcp", health = {{ send = "PING\r\n", expect = "+PONG", interval = "100ms", start_period = "0s" }} }} }}
volumes = {{ data = {{}} }}
gateway = {{ port = {port} }}
"#
        ),
    )
    .unwrap();
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    vdc.wait_instances("kv", "redis to be ready", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    });
    assert_eq!(first_ping(port), "+PONG");
    // Enough data that loading it takes a while.
    assert_eq!(ask(port, "DEBUG POPULATE 3000000").unwrap(), "+OK");
    assert_eq!(ask(port, "SAVE").unwrap(), "+OK");

    let pid = vdc.pid_of("kv", "kv/redis/0").unwrap();
    signal(pid, Signal::SIGKILL);
    let restarted = Instant::now();
    let mut loading = false;
    vdc.wait_instances("kv", "redis to come back", |list| {
        let back = list[0]["restarts"] == 1;
        if back && list[0]["state"] != "ready" {
            // Up but not ready: what the probe saw says why.
            loading |= list[0]["message"]
                .as_str()
                .is_some_and(|s| s.contains("LOADING"));
        }
        back && list[0]["state"] == "ready"
    });
    let waited = restarted.elapsed();
    // The first command a client sends once vdc says ready is served.
    assert_eq!(first_ping(port), "+PONG", "after {waited:?}");
    assert_eq!(ask(port, "DBSIZE").unwrap(), ":3000000");
    let events = vdc.ok(&["events", "kv"]);
    assert!(
        loading || events.contains("LOADING"),
        "the probe never saw redis loading (ready {waited:?} after the kill): {events}"
    );
}
