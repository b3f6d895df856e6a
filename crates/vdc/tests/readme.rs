//! The README's shell commands, run as written, in order, against real
//! servers: the quick start (its foreground `vdc up` interrupted with
//! Ctrl-C once the next block has run), the tour of the CLI, tenants and
//! tokens. A command that fails, or a `curl` that gets an error status,
//! fails the test with the command. Build steps (`cargo …`) are what built
//! this test. Commands that follow a stream (`-f`, `curl -N`, `vdc top`)
//! run for a few seconds and must print something.
//!
//! Everything runs in a network namespace of its own, so the README's
//! addresses (the API on 7700, the gateway on 8080) are free, in a
//! directory laid out like a checkout (`examples/`, `target/release/vdc`),
//! with a home of its own (data directory, saved token). `.ci/run`
//! installs curl and jq.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The shell blocks of a Markdown text, each as its commands: comments
/// kept, continuation lines joined.
fn sh_blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    for block in markdown.split("```sh\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        let mut commands = Vec::new();
        let mut current = String::new();
        for line in body.lines() {
            if let Some(start) = line.trim_end().strip_suffix('\\') {
                current.push_str(start);
                current.push(' ');
                continue;
            }
            current.push_str(line);
            if !current.trim().is_empty() {
                commands.push(std::mem::take(&mut current));
            }
            current.clear();
        }
        blocks.push(commands);
    }
    blocks
}

/// `text` in single quotes for bash.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What each command needs: skipped, run in the foreground of "another
/// terminal", followed for a while, or run and checked.
fn script(blocks: &[Vec<String>]) -> String {
    let mut out = String::from(PRELUDE);
    let mut interrupt_after_block = false;
    for block in blocks {
        let mut started_foreground = false;
        for command in block {
            let words: Vec<&str> = command
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let step = if words.first() == Some(&"cargo") {
                "skip"
            } else if words.starts_with(&["vdc", "up"]) && !words.contains(&"-d") {
                started_foreground = true;
                "foreground"
            } else if words.contains(&"-f")
                || words.contains(&"-N")
                || words.starts_with(&["vdc", "top"])
            {
                "follow"
            } else {
                "run"
            };
            out.push_str(&format!("{step} {}\n", quoted(command)));
        }
        if interrupt_after_block {
            out.push_str("interrupt\n");
        }
        interrupt_after_block = started_foreground;
    }
    if interrupt_after_block {
        out.push_str("interrupt\n");
    }
    out.push_str("echo 'README: every command worked' >&2\n");
    out
}

const PRELUDE: &str = r#"set -u
# A curl that fails on an error status, as a reader would notice one.
curl() { command curl --fail-with-body --silent --show-error --max-time 10 "$@"; }
export -f curl
FG=
cleanup() {
    [ -n "$FG" ] && kill -TERM "$FG" 2>/dev/null && wait "$FG"
    vdc server stop >/dev/null 2>&1
}
trap cleanup EXIT
fail() { echo "README command failed: $*" >&2; exit 1; }
skip() { echo "(skipped, built already) \$ $1" >&2; }
run() {
    echo "\$ $1" >&2
    eval "$1"
    local rc=$?
    [ "$rc" = 0 ] || fail "$1 (exit $rc)"
}
follow() {
    echo "\$ $1   (followed for 3 s)" >&2
    local out rc
    out=$(timeout 3 bash -c "$1" 2>&1)
    rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || fail "$1 (exit $rc): $out"
    [ -n "$out" ] || fail "$1 printed nothing in 3 s"
    printf '%s\n' "$out" | head -n 8
}
foreground() {
    echo "\$ $1   (in the foreground of another terminal)" >&2
    # `exec`, so that FG is vdc itself, which Ctrl-C reaches.
    (eval "exec $1") >foreground.out 2>foreground.err &
    FG=$!
    for _ in $(seq 600); do
        grep -q 'press Ctrl-C' foreground.err && return 0
        kill -0 "$FG" 2>/dev/null || fail "$1 exited: $(cat foreground.err)"
        sleep 0.1
    done
    fail "$1 was not ready within 60 s: $(cat foreground.err)"
}
interrupt() {
    echo "^C" >&2
    kill -INT "$FG"
    wait "$FG" || fail "vdc up did not end cleanly on Ctrl-C: $(tail -n 5 foreground.err)"
    grep -q 'taking .* down' foreground.err || fail "vdc up did not take its app down: $(cat foreground.err)"
    FG=
}
"#;

#[test]
fn every_command_of_the_readme_works_as_written() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root (CI does): the commands run in a network namespace of their own"
    );
    for tool in ["curl", "jq", "unshare", "ip", "timeout"] {
        require(tool);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    let script = script(&blocks);
    // The README's main parts are there, or this test would test nothing.
    for expected in [
        "vdc up examples/shop.toml'",
        "curl http://127.0.0.1:8080/",
        "vdc ps shop",
        "vdc tenant create acme",
        "vdc server stop",
    ] {
        assert!(script.contains(expected), "no `{expected}` in:\n{script}");
    }

    // A checkout, as the README's reader has one.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    open_to_instances(root);
    let copied = Command::new("cp")
        .arg("-r")
        .arg(examples_dir())
        .arg(root.join("examples"))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(BIN, root.join("target/release/vdc")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::write(root.join("readme.sh"), &script).unwrap();

    let out = Command::new("unshare")
        .args([
            "--net",
            "--",
            "bash",
            "-c",
            "ip link set lo up && exec bash readme.sh",
        ])
        .current_dir(root)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", root.join("home"))
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}\n--- the foreground vdc up:\n{}",
        out.status,
        std::fs::read_to_string(root.join("foreground.err")).unwrap_or_default()
    );
    // What the README's comments promise.
    assert!(stdout.contains(r#""instance": "shop/web/"#), "{stdout}");
    assert!(stdout.contains("red"), "the apple read back: {stdout}");
    assert!(stdout.contains("net+pid+cgroup+fs+user"), "{stdout}");
    assert!(stderr.contains("README: every command worked"), "{stderr}");
}

#[test]
fn blocks_are_read_as_a_reader_would_type_them() {
    let md = "text\n```sh\nvdc a \\\n    --b c   # d\n\nvdc e\n```\n```toml\nx = 1\n```\n```sh\ncargo build\n```\n";
    let blocks = sh_blocks(md);
    assert_eq!(
        blocks,
        [
            vec!["vdc a      --b c   # d".to_owned(), "vdc e".to_owned()],
            vec!["cargo build".to_owned()]
        ]
    );
    let script = script(&blocks);
    assert!(script.contains("run 'vdc a      --b c   # d'\nrun 'vdc e'\nskip 'cargo build'\n"));
    assert_eq!(quoted("jq '.[1]'"), r"'jq '\''.[1]'\'''");
}
