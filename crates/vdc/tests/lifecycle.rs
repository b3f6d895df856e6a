//! End to end: updates, admission, conflicts and bad input through the CLI
//! against a real server.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// A one-component app serving HTTP with Python's built-in server.
fn http_app(vdc: &Vdc, file: &str, app: &str, port: u16, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"app = "{app}"

[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {port}, address = "127.0.0.1" }}
links = {{ backend = "web.http" }}

[components.web]
replicas = 2
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1"]
resources = {{ cpu = 0.1, memory = "64MiB" }}
inputs = {{ http = {{ protocol = "http", health = "/" }} }}
{extra}

[components.side]
command = ["sleep", "1000"]
resources = {{ cpu = 0.1, memory = "16MiB" }}
"#
    );
    let path = vdc.dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn resubmitting_restarts_only_what_changed() {
    let vdc = Vdc::start();
    let port = free_port();
    let v1 = http_app(&vdc, "a.toml", "a", port, "");
    vdc.ok(&["up", "-d", v1.to_str().unwrap()]);
    let before = vdc.instances("a");
    let pid = |list: &[serde_json::Value], name: &str| {
        list.iter().find(|i| instance_name(i) == name).unwrap()["pid"]
            .as_i64()
            .unwrap()
    };

    // The same file again changes nothing.
    let out = vdc.run(&["up", "-d", v1.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("unchanged"), "{}", stderr(&out));

    // A changed `web` replaces the web instances; `side` keeps running.
    let v2 = http_app(&vdc, "a.toml", "a", port, "env = { VERSION = \"2\" }");
    vdc.ok(&["up", "-d", v2.to_str().unwrap()]);
    let after = vdc.wait_instances("a", "web to be replaced", |list| {
        list.len() == 3
            && list.iter().all(|i| {
                i["state"] == "ready" && i["revision"] == 2 || instance_name(i) == "a/side/0"
            })
    });
    assert_eq!(pid(&before, "a/side/0"), pid(&after, "a/side/0"));
    assert_ne!(pid(&before, "a/web/0"), pid(&after, "a/web/0"));
    assert_ne!(pid(&before, "a/web/1"), pid(&after, "a/web/1"));
    let apps: serde_json::Value = serde_json::from_str(&vdc.ok(&["apps", "-o", "json"])).unwrap();
    assert_eq!(apps[0]["revision"], 2);
}

#[test]
fn a_gateway_port_held_by_another_app_is_refused_whole() {
    let vdc = Vdc::start();
    let port = free_port();
    let a = http_app(&vdc, "a.toml", "a", port, "");
    vdc.ok(&["up", "-d", a.to_str().unwrap()]);
    let b = http_app(&vdc, "b.toml", "b", port, "");
    let out = vdc.run(&["up", "-d", b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("port {port}")),
        "{}",
        stderr(&out)
    );
    let apps: Vec<serde_json::Value> =
        serde_json::from_str(&vdc.ok(&["apps", "-o", "json"])).unwrap();
    assert_eq!(apps.len(), 1, "nothing of b was applied: {apps:?}");
}

#[test]
fn an_app_larger_than_the_pool_is_refused_and_nothing_starts() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("big.toml");
    std::fs::write(
        &path,
        "app = \"big\"\n[components.small]\ncommand = [\"sleep\", \"100\"]\n\
         [components.huge]\ncommand = [\"sleep\", \"100\"]\nresources = { cpu = 512, memory = \"1GiB\" }\n",
    )
    .unwrap();
    let out = vdc.run(&["up", "-d", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("does not fit") && err.contains("512 CPU") && err.contains("largest free"),
        "{err}"
    );
    assert_eq!(vdc.ok(&["apps", "-o", "json"]).trim(), "[]");
    assert_eq!(vdc.ok(&["ps", "-o", "json"]).trim(), "[]");
}

#[test]
fn a_program_that_does_not_exist_is_reported_by_up() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "app = \"typo\"\n[components.web]\ncommand = [\"pyhton3\", \"web.py\"]\n",
    )
    .unwrap();
    let out = vdc.run(&["up", "-d", "--timeout", "3", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("pyhton3") && err.contains("not found"),
        "{err}"
    );
    // The app stays submitted, so the user can look and fix it.
    let ps = vdc.ok(&["ps", "typo"]);
    assert!(ps.contains("backoff"), "{ps}");
    vdc.ok(&["down", "typo"]);
}

#[test]
fn bad_requests_get_clear_errors_and_exit_codes() {
    let vdc = Vdc::start();
    let out = vdc.run(&["down", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no app named `nope`"),
        "{}",
        stderr(&out)
    );
    let out = vdc.run(&["ps", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let out = vdc.run(&["logs", "nope/web/0"]);
    assert_eq!(out.status.code(), Some(1));
    let out = vdc.run(&["logs", "not-a-target"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("APP/COMPONENT"), "{}", stderr(&out));

    // No server at the address: exit code 4 and a hint.
    let nobody = Vdc::new();
    let out = nobody.run(&["apps"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("no vdc server answers"),
        "{}",
        stderr(&out)
    );
    let out = nobody.run(&["bogus-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn two_servers_run_side_by_side_and_a_data_dir_has_one_owner() {
    let one = Vdc::start();
    let two = Vdc::start();
    let a = http_app(&one, "a.toml", "a", free_port(), "");
    let b = http_app(&two, "a.toml", "a", free_port(), "");
    one.ok(&["up", "-d", a.to_str().unwrap()]);
    two.ok(&["up", "-d", b.to_str().unwrap()]);
    assert_eq!(one.instances("a").len(), 3);
    assert_eq!(two.instances("a").len(), 3);

    // A second server on the same data directory is refused.
    let out = std::process::Command::new(BIN)
        .args([
            "server",
            "--api",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(one.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot open the state store"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn up_stops_waiting_for_an_instance_that_keeps_exiting() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("crash.toml");
    std::fs::write(
        &path,
        "app = \"crash\"\n[components.web]\ncommand = [\"sh\", \"-c\", \"echo cannot open config.yaml >&2; exit 2\"]\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = vdc.run(&["up", "-d", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("keeps exiting") && err.contains("exited with code 2"),
        "{err}"
    );
    assert!(
        err.contains("cannot open config.yaml"),
        "the last output is shown: {err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "did not wait for the timeout"
    );
    vdc.ok(&["down", "crash"]);
}

#[test]
fn the_logs_of_an_app_taken_down_are_still_served() {
    let vdc = Vdc::start();
    let path = http_app(&vdc, "logged.toml", "logged", free_port(), "");
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    vdc.ok(&["down", "logged"]);
    let out = vdc.run(&["logs", "logged/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--- vdc: starting logged/web/0"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("was taken down"), "{}", stderr(&out));
    // After a purge there is nothing left to show.
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    vdc.ok(&["down", "logged", "--purge"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = vdc.run(&["logs", "logged/web"]);
        if !out.status.success() {
            assert!(stderr(&out).contains("no logs kept"), "{}", stderr(&out));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served after a purge"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `vdc scale` answers once the instances are ready, and fails when they
/// do not come up in time.
#[test]
fn scale_waits_for_its_instances_and_fails_when_they_do_not_come() {
    let vdc = Vdc::start();
    let path = vdc.dir.path().join("grow.toml");
    std::fs::write(
        &path,
        r#"app = "grow"
[components.box]
command = ["sh", "-c", "[ \"$VDC_INDEX\" -lt 2 ] || exit 4; exec sleep 1000"]
resources = { cpu = 0.1, memory = "16MiB" }
max = 4
"#,
    )
    .unwrap();
    vdc.ok(&["up", "-d", path.to_str().unwrap()]);
    let out = vdc.ok(&["scale", "grow/box", "2"]);
    assert!(out.contains("2 instance(s) ready"), "{out}");
    assert_eq!(vdc.instances("grow").len(), 2);
    let out = vdc.run(&["scale", "grow/box", "3", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("3 ready instance(s) of grow/box did not happen within 3s")
            && err.contains("grow/box/2 backoff"),
        "{err}"
    );
    let out = vdc.ok(&["scale", "grow/box", "1"]);
    assert!(out.contains("1 instance(s) ready"), "{out}");
    vdc.ok(&["down", "grow"]);
}
