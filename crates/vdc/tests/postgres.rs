//! End to end with PostgreSQL from Debian, run as a user would run it: as
//! the instance's own user, its data directory owned by that user with mode
//! 0700 (postgres refuses anything else), under pgbench. A snapshot taken
//! under load is restored and postgres starts on it, its tables consistent:
//! owners and modes come back with the data, with no `chown` in the
//! component's command. Its health check is `pg_isready`, run inside the
//! instance: vdc calls it ready only once it accepts queries.
//! `.ci/run` installs postgresql.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The directory of PostgreSQL's server programs (`initdb`, `postgres`).
fn postgres_bin() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .flatten()
                .map(|v| v.path().join("bin"))
                .find(|bin| bin.join("postgres").is_file())
        });
    found.expect("PostgreSQL is not installed: run .ci/run (or apt-get install postgresql)")
}

fn spec(vdc: &Vdc, bin: &std::path::Path) -> PathBuf {
    let bin = bin.display();
    let text = format!(
        r#"app = "pg"
[components.db]
command = ["sh", "-c", "[ -f \"$VDC_VOLUME_DATA/pgdata/PG_VERSION\" ] || {bin}/initdb -D \"$VDC_VOLUME_DATA/pgdata\" -U app --auth=trust >/dev/null; exec {bin}/postgres -D \"$VDC_VOLUME_DATA/pgdata\" -p ${{PORT}} -k /tmp -c listen_addresses=127.0.0.1"]
resources = {{ cpu = 0.5, memory = "256MiB" }}
inputs = {{ sql = {{ protocol = "tcp", health = {{ exec = ["{bin}/pg_isready", "-h", "127.0.0.1", "-p", "${{PORT}}", "-U", "app", "-d", "postgres"], timeout = "3s", start_period = "30s" }} }} }}
volumes = {{ data = {{}} }}
stop_grace = "10s"
"#
    );
    let path = vdc.dir.path().join("pg.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A command run in the instance's network namespace, where its input
/// listens (as root, from the host: the test's client).
fn in_instance(pid: i32, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-n", program]);
    cmd
}

/// pgbench against the `postgres` database as `app`, with `args`.
fn pgbench(pid: i32, port: &str, args: &[&str]) -> Command {
    let mut cmd = in_instance(pid, "pgbench");
    cmd.args(["-h", "127.0.0.1", "-p", port, "-U", "app"])
        .args(args)
        .arg("postgres");
    cmd
}

fn psql(pid: i32, port: &str, sql: &str) -> Result<String, String> {
    let out = in_instance(pid, "psql")
        .args(["-h", "127.0.0.1", "-p", port, "-U", "app", "-d", "postgres"])
        .args(["-At", "-c", sql])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The instance's outer pid and the port its input listens on, once it
/// is ready; postgres must then accept queries at once (`pg_isready` is
/// its health check: ready means ready, not merely listening).
fn wait_for_postgres(vdc: &Vdc) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = vdc.instances("pg");
        if let Some(db) = list.first().filter(|i| i["state"] == "ready") {
            let pid = db["pid"].as_i64().unwrap() as i32;
            let port = db["locators"]["sql"]
                .as_str()
                .and_then(|a| a.rsplit(':').next())
                .unwrap()
                .to_owned();
            if let Err(e) = psql(pid, &port, "select 1") {
                panic!("ready, but postgres refused a query: {e}");
            }
            return (pid, port);
        }
        assert!(
            Instant::now() < deadline,
            "postgres never became ready: {list:#?}\n{}",
            vdc.ok(&["logs", "pg/db"])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// pgbench's tables agree with each other: every transaction added its
/// delta to an account, a teller and a branch, and recorded it in the
/// history, all or nothing.
fn consistent(pid: i32, port: &str) -> (i64, i64) {
    let sums = psql(
        pid,
        port,
        "select (select count(*) from pgbench_accounts), (select count(*) from pgbench_history), \
         (select coalesce(sum(abalance), 0) from pgbench_accounts), \
         (select coalesce(sum(tbalance), 0) from pgbench_tellers), \
         (select coalesce(sum(bbalance), 0) from pgbench_branches), \
         (select coalesce(sum(delta), 0) from pgbench_history)",
    )
    .unwrap();
    let v: Vec<i64> = sums.split('|').map(|n| n.parse().unwrap()).collect();
    assert_eq!(v[0], 100_000, "accounts: {sums}");
    assert!(
        v[2] == v[5] && v[3] == v[5] && v[4] == v[5],
        "balances disagree with the history: {sums}"
    );
    (v[1], v[5])
}

#[test]
fn postgres_starts_on_a_snapshot_taken_under_load_with_its_owners_and_modes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root (CI does): instances are confined as their own users"
    );
    require("nsenter");
    let bin = postgres_bin();
    let vdc = Vdc::start();
    let path = spec(&vdc, &bin);
    vdc.ok(&["up", "-d", "--timeout", "60", path.to_str().unwrap()]);
    let (pid, port) = wait_for_postgres(&vdc);
    let init = pgbench(pid, &port, &["-i", "-q"]).output().unwrap();
    assert!(init.status.success(), "{init:?}");

    // Load while the snapshot is taken.
    let mut load: Child = pgbench(pid, &port, &["-c", "4", "-T", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    vdc.ok(&["snapshot", "create", "pg/db", "--name", "under-load"]);
    assert!(load.wait().unwrap().success());
    let (after_load, _) = consistent(pid, &port);

    let out = vdc.ok(&["snapshot", "restore", "under-load"]);
    assert!(out.contains("ready again"), "{out}");
    let (pid, port) = wait_for_postgres(&vdc);
    let (at_snapshot, _) = consistent(pid, &port);
    assert!(
        at_snapshot > 0 && at_snapshot < after_load,
        "history rows: {at_snapshot} at the snapshot, {after_load} after the load"
    );
    // Its data directory came back its user's, private.
    let data = vdc.data_dir().join("volumes/default/pg/db-0/data/pgdata");
    let meta = std::fs::metadata(&data).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(meta.uid(), 0);
    assert_eq!(meta.mode() & 0o777, 0o700);
    let log = vdc.ok(&["logs", "pg/db"]);
    assert!(!log.contains("Permission denied"), "{log}");
    // The probes connect as a role to a database that exist: postgres
    // logs them only while it starts ("the database system is starting
    // up"), as it does any client then.
    assert!(!log.contains("does not exist"), "{log}");
}
