//! Snapshots of a real database's volume, taken from the host: redis with
//! an append-only file, written to through its link and its gateway. A
//! restore gives back exactly the data of the snapshot; a snapshot taken
//! while a writer appends holds a gap-free prefix of its records; a
//! corrupted snapshot is refused and changes nothing; scheduled backups run
//! on time and keep what the spec says. `.ci/run` installs redis-server.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A redis client speaking just enough RESP for these tests.
struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Int(i64),
    Text(String),
    Nil,
    List(Vec<Reply>),
}

impl Redis {
    /// Connects to `port`, retrying while the database (re)starts.
    fn connect(port: u16) -> Redis {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut redis = Redis {
                    reader: BufReader::new(stream.try_clone().unwrap()),
                    writer: stream,
                };
                if redis.try_command(&["PING"]).is_ok() {
                    return redis;
                }
            }
            assert!(Instant::now() < deadline, "redis on {port} never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&mut self, args: &[&str]) -> Reply {
        self.try_command(args).unwrap()
    }

    fn try_command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(out.as_bytes())?;
        self.reply()
    }

    fn reply(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (kind, rest) = line.trim_end().split_at(1);
        Ok(match kind {
            ":" => Reply::Int(rest.parse().unwrap()),
            "+" => Reply::Text(rest.to_owned()),
            "-" => return Err(std::io::Error::other(rest.to_owned())),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    Reply::Nil
                } else {
                    let mut data = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(n as usize);
                    Reply::Text(String::from_utf8(data).unwrap())
                }
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.reply()?);
                }
                Reply::List(items)
            }
            other => panic!("unexpected reply {other}{rest}"),
        })
    }

    fn get(&mut self, key: &str) -> Option<String> {
        match self.command(&["GET", key]) {
            Reply::Text(v) => Some(v),
            Reply::Nil => None,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// The list `log` as numbers.
    fn log(&mut self) -> Vec<u64> {
        match self.command(&["LRANGE", "log", "0", "-1"]) {
            Reply::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Reply::Text(t) => t.parse().unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("LRANGE: {other:?}"),
        }
    }
}

/// An app with one redis keeping an append-only file in its volume, open
/// on `port`, and optionally a writer appending through its link.
fn spec(vdc: &Vdc, app: &str, port: u16, extra: &str) -> PathBuf {
    let path = vdc.dir.path().join(format!("{app}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"app = "{app}"

[components.redis]
command = ["redis-server", "--port", "${{PORT}}", "--bind", "127.0.0.1", "--dir", "${{VDC_VOLUME_DATA}}",
           "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
resources = {{ cpu = 0.25, memory = "128MiB" }}
inputs = {{ resp = {{ protocol = "tcp" }} }}
volumes = {{ data = {{}} }}
gateway = {{ port = {port} }}
{extra}
"#
        ),
    )
    .unwrap();
    path
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn ready(vdc: &Vdc, app: &str, count: usize) {
    vdc.wait_instances(app, "every instance to be ready", |list| {
        list.len() == count && list.iter().all(|i| i["state"] == "ready")
    });
}

#[test]
fn a_database_gets_back_exactly_the_data_of_its_snapshot() {
    require("redis-server");
    let vdc = Vdc::start();
    let port = free_port();
    let file = spec(&vdc, "snap", port, "");
    vdc.ok(&["up", "-d", file.to_str().unwrap()]);
    ready(&vdc, "snap", 1);

    let mut db = Redis::connect(port);
    for i in 0..100 {
        db.command(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let taken = json(&vdc.ok(&[
        "snapshot",
        "create",
        "snap/redis",
        "--name",
        "before",
        "-o",
        "json",
    ]));
    let snapshot = &taken["snapshot"];
    assert_eq!(snapshot["name"], "before");
    assert_eq!(snapshot["kind"], "manual");
    assert!(snapshot["files"].as_u64().unwrap() >= 1, "{taken:#}");
    let freeze = taken["freeze"].as_str().unwrap();
    assert!(
        freeze == "cgroup-freezer" || freeze == "sigstop",
        "{taken:#}"
    );
    println!(
        "snapshot of a small redis: frozen {} ms ({freeze}), {} ms in all",
        snapshot["frozen_ms"], taken["total_ms"]
    );
    // The database kept running through it.
    assert_eq!(db.get("k7").as_deref(), Some("v7"));

    // More writes after the snapshot, then a restore.
    for i in 100..200 {
        db.command(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    db.command(&["SET", "k0", "changed"]);
    let pid = vdc.pid_of("snap", "snap/redis/0").unwrap();
    let restored = json(&vdc.ok(&["snapshot", "restore", "before", "-o", "json"]));
    assert_eq!(restored["instance"], "snap/redis/0");
    assert_eq!(restored["ready"], true, "{restored:#}");
    println!(
        "restore of a small redis: down {} ms",
        restored["downtime_ms"]
    );
    assert_ne!(vdc.pid_of("snap", "snap/redis/0").unwrap(), pid);
    let mut db = Redis::connect(port);
    assert_eq!(db.command(&["DBSIZE"]), Reply::Int(100));
    assert_eq!(db.get("k0").as_deref(), Some("v0"));
    assert_eq!(db.get("k99").as_deref(), Some("v99"));
    assert_eq!(db.get("k150"), None);

    let list = vdc.ok(&["snapshot", "list"]);
    assert!(
        list.contains("before") && list.contains("snap/redis/0"),
        "{list}"
    );

    // Export to a file; then break a blob in the store: the restore is
    // refused, and the running database is untouched.
    let export = vdc.dir.path().join("before.vdcsnap");
    vdc.ok(&["snapshot", "export", "before", export.to_str().unwrap()]);
    // Into a directory: a file named after the snapshot.
    let exports = vdc.dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    vdc.ok(&["snapshot", "export", "before", exports.to_str().unwrap()]);
    let names: Vec<_> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() == 1 && names[0].ends_with(".vdcsnap"),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(exports.join(&names[0])).unwrap(),
        std::fs::read(&export).unwrap()
    );
    db.command(&["SET", "after-restore", "yes"]);
    let pid = vdc.pid_of("snap", "snap/redis/0").unwrap();
    let blob = first_file(&vdc.data_dir().join("snapshots/blobs"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let refused = vdc.run(&["snapshot", "restore", "before"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("blob") || stderr.contains("checksum") || stderr.contains("zstd"),
        "{stderr}"
    );
    assert_eq!(
        vdc.pid_of("snap", "snap/redis/0"),
        Some(pid),
        "the instance was stopped"
    );
    assert_eq!(db.get("after-restore").as_deref(), Some("yes"));

    // The exported file still holds it: delete the broken one, import it
    // back, and restore from it.
    vdc.ok(&["snapshot", "delete", "before"]);
    assert!(!vdc.ok(&["snapshot", "list"]).contains("before"));
    // A truncated copy of the file is refused.
    let whole = std::fs::read(&export).unwrap();
    let cut = vdc.dir.path().join("cut.vdcsnap");
    std::fs::write(&cut, &whole[..whole.len() - 10]).unwrap();
    let refused = vdc.run(&["snapshot", "import", cut.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(!vdc.ok(&["snapshot", "list"]).contains("before"));
    vdc.ok(&["snapshot", "import", export.to_str().unwrap()]);
    vdc.ok(&["snapshot", "restore", "before"]);
    let mut db = Redis::connect(port);
    assert_eq!(db.command(&["DBSIZE"]), Reply::Int(100));
    assert_eq!(db.get("after-restore"), None);

    // `down` keeps the volume: the app comes back with its data. `down
    // --purge` deletes it.
    let volumes = vdc.data_dir().join("volumes/default/snap");
    vdc.ok(&["down", "snap"]);
    assert!(volumes.exists());
    vdc.ok(&["up", "-d", file.to_str().unwrap()]);
    ready(&vdc, "snap", 1);
    let mut db = Redis::connect(port);
    assert_eq!(db.get("k42").as_deref(), Some("v42"));
    vdc.ok(&["down", "snap", "--purge"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while volumes.exists() {
        assert!(Instant::now() < deadline, "the volumes were not purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Snapshots outlive the app.
    assert!(vdc.ok(&["snapshot", "list"]).contains("before"));
}

#[test]
fn snapshots_under_writes_hold_gap_free_prefixes_and_backups_keep_their_count() {
    require("redis-server");
    let vdc = Vdc::start();
    let port = free_port();
    let writer = format!(
        r#"backup = {{ every = "5s", keep = 2 }}

[components.writer]
command = ["python3", "{0}/appender.py"]
workdir = "{0}"
resources = {{ cpu = 0.1, memory = "32MiB" }}
links = {{ db = "redis.resp" }}
"#,
        programs()
    );
    // The backup line belongs to redis: it follows its table.
    let file = spec(&vdc, "ledger", port, &writer);
    vdc.ok(&["up", "-d", file.to_str().unwrap()]);
    ready(&vdc, "ledger", 2);
    let check_port = free_port();
    let check = spec(&vdc, "check", check_port, "");
    vdc.ok(&["up", "-d", check.to_str().unwrap()]);
    ready(&vdc, "check", 1);
    let started = Instant::now();

    // Snapshots while the writer appends, each restored into the `check`
    // app's database: every one holds records 1..=k, without a gap, and k
    // grows.
    let mut db = Redis::connect(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.log().is_empty() {
        assert!(Instant::now() < deadline, "the writer never wrote");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut last = 0;
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        let before = db.log().len() as u64;
        let taken = json(&vdc.ok(&["snapshot", "create", "ledger/redis", "-o", "json"]));
        let after = db.log().len() as u64;
        let id = taken["snapshot"]["id"].as_str().unwrap().to_owned();
        vdc.ok(&["snapshot", "restore", &id, "--to", "check/redis"]);
        let mut copy = Redis::connect(check_port);
        let log = copy.log();
        let k = log.len() as u64;
        assert_eq!(
            log,
            (1..=k).collect::<Vec<_>>(),
            "snapshot {round} is not a gap-free prefix"
        );
        assert!(
            before <= k && k <= after,
            "snapshot {round} has {k} records; the database had {before} before and {after} after"
        );
        assert!(k > last, "no progress between snapshots");
        println!(
            "snapshot {round} under writes: {k} records, frozen {} ms",
            taken["snapshot"]["frozen_ms"]
        );
        last = k;
    }

    // Scheduled backups: every 5 s, the newest 2 kept.
    let backups = |vdc: &Vdc| -> Vec<Value> {
        let all = json(&vdc.ok(&["snapshot", "list", "ledger", "-o", "json"]));
        all.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "backup")
            .cloned()
            .collect()
    };
    let taken_events = |vdc: &Vdc| {
        vdc.ok(&["events", "ledger", "--limit", "500"])
            .lines()
            .filter(|l| l.contains("backup snapshot"))
            .count()
    };
    let deadline = started + Duration::from_secs(40);
    while taken_events(&vdc) < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 backups in 40 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let kept = backups(&vdc);
    assert_eq!(kept.len(), 2, "{kept:#?}");
    let mut times: Vec<u64> = kept
        .iter()
        .map(|s| s["created_ms"].as_u64().unwrap())
        .collect();
    times.sort();
    let gap = times[1] - times[0];
    println!("backups 5 s apart: {gap} ms between the two kept");
    assert!(
        (4_000..=8_000).contains(&gap),
        "backups every 5s came {gap} ms apart"
    );
}

/// Some file under `dir`, depth first.
fn first_file(dir: &std::path::Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_file() {
                return path;
            }
            stack.push(path);
        }
    }
    panic!("no file under {}", dir.display());
}

/// A restore whose instance does not come back says so and fails, within
/// the time it was given.
#[test]
fn a_restore_that_does_not_come_back_fails_within_its_timeout() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("fragile.toml");
    std::fs::write(
        &path,
        r#"app = "fragile"
[components.box]
command = ["sh", "-c", "if [ -f \"$VDC_VOLUME_DATA/poison\" ]; then echo poisoned >&2; exit 3; fi; exec sleep 1000"]
resources = { cpu = 0.1, memory = "32MiB" }
volumes = { data = {} }
"#,
    )
    .unwrap();
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    // What it will not start with is already in its volume when the
    // snapshot is taken; it only reads it at its next start.
    let volume = vdc.data_dir().join("volumes/default/fragile/box-0/data");
    std::fs::write(volume.join("poison"), "x").unwrap();
    vdc.ok(&["snapshot", "create", "fragile/box", "--name", "poisoned"]);
    let started = Instant::now();
    let out = vdc.run(&["snapshot", "restore", "poisoned", "--timeout", "3"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not become ready within 3s")
            && stderr.contains("vdc logs fragile/box/0")
            && stderr.contains("vdc events fragile"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    vdc.ok(&["down", "fragile"]);
}
