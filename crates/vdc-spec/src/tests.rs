//! Data-driven tests: a spec in, the validated model or the rendered
//! diagnostics out.

mod component_errors;
mod input_limits;
mod props;
mod sla_errors;
mod toml_errors;
mod topology_errors;
mod value_errors;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use expect_test::{expect, Expect};

use crate::*;

/// The directory the test specs pretend to live in.
const BASE: &str = "/srv/shop";

/// Parses `src` and renders the outcome: a summary of the model and any
/// warnings, or every diagnostic as a person would see it.
fn check(src: &str, expect: Expect) {
    expect.assert_eq(&outcome(src));
}

fn outcome(src: &str) -> String {
    match parse(src, "shop.toml", Path::new(BASE)) {
        Ok(v) => {
            let mut out = describe(&v.spec);
            for w in &v.warnings {
                out.push('\n');
                out.push_str(&w.render(src));
            }
            out
        }
        Err(d) => d.render(src),
    }
}

/// A compact, readable summary of a validated spec.
fn describe(spec: &AppSpec) -> String {
    let mut out = format!("app {} of tenant {}", spec.name, spec.tenant);
    if let Some(b) = spec.budget {
        let _ = write!(out, ", budget {} CPU and {}", b.cpu, b.memory);
    }
    let _ = writeln!(out, ", base {}", spec.base_dir.display());
    for c in spec.components.values() {
        let r = c.replicas;
        let _ = writeln!(
            out,
            "component {} ({}): {} replicas ({}..={}), {} CPU, {}, stop grace {}",
            c.name,
            c.appliance,
            r.count,
            r.min,
            r.max,
            c.resources.cpu,
            c.resources.memory,
            format_duration(c.stop_grace)
        );
        if let Some(image) = &c.image {
            let _ = writeln!(out, "  image {image}");
        }
        if let Some(args) = &c.args {
            let _ = writeln!(out, "  args {args:?}");
        }
        if !c.command.is_empty() {
            let _ = writeln!(out, "  command {:?} in {}", c.command, c.workdir.display());
        } else if c.appliance == Appliance::Container && !c.workdir.as_os_str().is_empty() {
            let _ = writeln!(out, "  in {}", c.workdir.display());
        }
        if let Some(user) = &c.user {
            let _ = writeln!(out, "  as {user}");
        }
        for (k, v) in &c.env {
            let _ = writeln!(out, "  env {k}={v}");
        }
        for i in c.inputs.values() {
            let h = &i.health;
            let probe = match &h.probe {
                Probe::Tcp => "tcp connect".to_owned(),
                Probe::Http { path } => format!("GET {path}"),
                Probe::Send { send, expect } => format!("send {send:?} expect {expect:?}"),
                Probe::Exec { command } => format!("exec {command:?}"),
            };
            let _ = writeln!(
                out,
                "  input {} ({}): {probe} every {}, timeout {}, {} failures",
                i.name,
                i.protocol,
                format_duration(h.interval),
                format_duration(h.timeout),
                h.failures
            );
            if h.initial_delay != Duration::ZERO
                || h.start_period != HealthCheck::DEFAULT_START_PERIOD
            {
                let _ = writeln!(
                    out,
                    "    first probe after {}, start period {}",
                    format_duration(h.initial_delay),
                    format_duration(h.start_period)
                );
            }
            if let Some(sla) = &i.sla {
                let mut objectives = Vec::new();
                if let Some(l) = sla.latency {
                    objectives.push(format!("p{} <= {:?}", l.percentile, l.threshold));
                }
                if let Some(r) = sla.max_error_ratio {
                    objectives.push(format!("error ratio <= {r}"));
                }
                let _ = writeln!(
                    out,
                    "    sla {} over {}, scale down after {}",
                    objectives.join(", "),
                    format_duration(sla.window),
                    format_duration(sla.scale_down_after)
                );
            }
        }
        for (name, target) in &c.links {
            let _ = writeln!(out, "  link {name} -> {target}");
        }
        for v in c.volumes.values() {
            let size = v.size.map_or("-".to_owned(), |s| s.to_string());
            let mount = v.mount.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  volume {}: size {size}, mount {mount}", v.name);
        }
        if let Some(g) = &c.gateway {
            let _ = writeln!(out, "  gateway {}:{} -> {}", g.address, g.port, g.input);
        }
        for (k, v) in &c.placement.labels {
            let _ = writeln!(out, "  placement label {k}={v}");
        }
        if let Some(b) = &c.backup {
            let _ = writeln!(
                out,
                "  backup every {}, keep {}",
                format_duration(b.every),
                b.keep
            );
        }
    }
    out
}

pub(crate) const SHOP: &str = r#"app = "shop"
tenant = "default"
budget = { cpu = 4, memory = "4GiB" }

[components.lb]
appliance = "builtin:http-lb"
gateway = { port = 8080 }
links = { backend = "web.http" }

[components.web]
replicas = 3
min = 2
max = 6
command = ["python3", "shop/web.py"]
env = { GREETING = "hello" }
workdir = "."
resources = { cpu = 0.5, memory = "256MiB" }
stop_grace = "5s"
inputs = { http = { protocol = "http", health = "/healthz" } }
links = { db = "db.kv" }
volumes = { data = { size = "1GiB", mount = "/data" } }

[components.db]
command = ["python3", "shop/kvdb.py"]
inputs = { kv = { protocol = "tcp" } }
"#;

// === valid specs ===

#[test]
fn shop() {
    check(
        SHOP,
        expect![[r#"
            app shop of tenant default, budget 4 CPU and 4GiB, base /srv/shop
            component db (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["python3", "shop/kvdb.py"] in /srv/shop
              input kv (tcp): tcp connect every 1s, timeout 1s, 3 failures
            component lb (builtin:http-lb): 1 replicas (1..=1), 0 CPU, 0B, stop grace 5s
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
              link backend -> web.http
              gateway 0.0.0.0:8080 -> http
            component web (process): 3 replicas (2..=6), 0.5 CPU, 256MiB, stop grace 5s
              command ["python3", "shop/web.py"] in /srv/shop
              env GREETING=hello
              input http (http): GET /healthz every 1s, timeout 1s, 3 failures
              link db -> db.kv
              volume data: size 1GiB, mount /data
        "#]],
    );
}

#[test]
fn minimal() {
    check(
        r#"
app = "hello"

[components.web]
command = ["./serve"]
"#,
        expect![[r#"
            app hello of tenant default, base /srv/shop
            component web (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["./serve"] in /srv/shop
        "#]],
    );
}

#[test]
fn defaults_and_explicit_forms() {
    check(
        r#"
app = "a1"
tenant = "acme"
budget = { cpu = "1500m", memory = 1073741824 }

[components.api]
command = ["bin/api", "--verbose"]
workdir = "services/api"
replicas = 0
resources = { cpu = "250m" }
stop_grace = "1m30s"
inputs.http = { protocol = "http", health = { path = "/ready", interval = "500ms", timeout = "2s", failures = 5 } }
inputs.admin = { protocol = "http" }
inputs.raw = { protocol = "tcp", health = "tcp" }
volumes = { cache = {} }
gateway = { port = 9000, input = "admin", address = "127.0.0.1" }

[components.worker]
command = ["/usr/bin/worker"]
workdir = "/var/lib/worker"
min = 2
max = 4
links = { api = "api.http" }
"#,
        expect![[r#"
            app a1 of tenant acme, budget 1.5 CPU and 1GiB, base /srv/shop
            component api (process): 0 replicas (0..=1), 0.25 CPU, 128MiB, stop grace 1m30s
              command ["bin/api", "--verbose"] in /srv/shop/services/api
              input admin (http): tcp connect every 1s, timeout 1s, 3 failures
              input http (http): GET /ready every 500ms, timeout 2s, 5 failures
              input raw (tcp): tcp connect every 1s, timeout 1s, 3 failures
              volume cache: size -, mount -
              gateway 127.0.0.1:9000 -> admin
            component worker (process): 2 replicas (2..=4), 0.25 CPU, 128MiB, stop grace 5s
              command ["/usr/bin/worker"] in /var/lib/worker
              link api -> api.http
        "#]],
    );
}

#[test]
fn probes_of_every_kind() {
    check(
        r#"
app = "stack"

[components.db]
command = ["postgres"]
inputs.pg = { protocol = "tcp", health = { exec = ["pg_isready", "-h", "127.0.0.1", "-p", "${PORT}"], timeout = "3s", start_period = "30s" } }

[components.cache]
command = ["redis-server"]
inputs.redis = { protocol = "tcp", health = { send = "PING\r\n", expect = "+PONG", initial_delay = "200ms" } }

[components.mail]
command = ["smtpd"]
inputs.smtp = { protocol = "tcp", health = { send = "", expect = "220 " } }
"#,
        expect![[r#"
            app stack of tenant default, base /srv/shop
            component cache (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["redis-server"] in /srv/shop
              input redis (tcp): send "PING\r\n" expect "+PONG" every 1s, timeout 1s, 3 failures
                first probe after 200ms, start period 2s
            component db (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["postgres"] in /srv/shop
              input pg (tcp): exec ["pg_isready", "-h", "127.0.0.1", "-p", "${PORT}"] every 1s, timeout 3s, 3 failures
                first probe after 0s, start period 30s
            component mail (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["smtpd"] in /srv/shop
              input smtp (tcp): send "" expect "220 " every 1s, timeout 1s, 3 failures
        "#]],
    );
}

#[test]
fn containers() {
    check(
        r#"
app = "shop"

[components.cache]
appliance = "container"
image = "redis:7"
args = ["--port", "${PORT}"]
inputs.resp = { protocol = "tcp", health = { send = "PING\r\n", expect = "+PONG" } }
volumes.data = { mount = "/data" }

[components.web]
appliance = "container"
image = "oci-archive:images/web.tar:1.4"
command = ["/usr/bin/python3", "web.py"]
workdir = "/srv/web"
user = "www-data"
env = { MODE = "prod" }
inputs.http = { protocol = "http", health = "/healthz" }

[components.pinned]
appliance = "container"
image = "registry.example:5000/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component cache (container): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              image docker.io/library/redis:7
              args ["--port", "${PORT}"]
              input resp (tcp): send "PING\r\n" expect "+PONG" every 1s, timeout 1s, 3 failures
              volume data: size -, mount /data
            component pinned (container): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              image registry.example:5000/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            component web (container): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              image oci-archive:/srv/shop/images/web.tar:1.4
              command ["/usr/bin/python3", "web.py"] in /srv/web
              as www-data
              env MODE=prod
              input http (http): GET /healthz every 1s, timeout 1s, 3 failures
        "#]],
    );
}

#[test]
fn placement_labels() {
    check(
        r#"
app = "shop"

[components.db]
command = ["db"]
placement = { labels = { disk = "ssd", "topology.example.com/zone" = "eu-west_1.a" } }

[components.web]
command = ["web"]

[components.web.placement]
labels.disk = "hdd"

[components.cache]
command = ["cache"]
placement = {}
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component cache (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["cache"] in /srv/shop
            component db (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["db"] in /srv/shop
              placement label disk=ssd
              placement label topology.example.com/zone=eu-west_1.a
            component web (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["web"] in /srv/shop
              placement label disk=hdd
        "#]],
    );
}

#[test]
fn a_backup_policy_is_read() {
    check(
        r#"
app = "shop"

[components.db]
command = ["db"]
volumes = { data = { mount = "/data" } }
backup = { every = "1h", keep = 24 }
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component db (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["db"] in /srv/shop
              volume data: size -, mount /data
              backup every 1h, keep 24
        "#]],
    );
}

#[test]
fn backups_need_a_period_a_count_and_a_volume() {
    check(
        r#"
app = "shop"

[components.cache]
command = ["cache"]
backup = { every = "1s", keep = 0 }

[components.web]
command = ["web"]
volumes = { data = {}, scratch = { mount = "/tmp/scratch" } }
backup = { every = "10m" }

[components.lb]
appliance = "builtin:http-lb"
links = { backend = "cache.http" }
backup = { every = "1h", keep = 1 }
"#,
        expect![[r#"
            error: component `cache` has a `backup` but no volumes: there is nothing to back up
             --> shop.toml:6:1
              |
            6 | backup = { every = "1s", keep = 0 }
              | ^^^^^^
              = help: declare the data to keep, like volumes = { data = { mount = "/data" } }

            error: `every` is 1s; expected at least 5s between backups
             --> shop.toml:6:20
              |
            6 | backup = { every = "1s", keep = 0 }
              |                    ^^^^

            error: `keep` is 0; expected a number of backups of 1 or more
             --> shop.toml:6:33
              |
            6 | backup = { every = "1s", keep = 0 }
              |                                 ^

            error: `mount` of volume `scratch` of component `web` is "/tmp/scratch", where an instance has its own directory or the kernel's
              --> shop.toml:10:44
               |
            10 | volumes = { data = {}, scratch = { mount = "/tmp/scratch" } }
               |                                            ^^^^^^^^^^^^^^
               = help: mount volumes elsewhere, like "/data" or "/var/lib/NAME"

            error: `backup` of component `web` is missing keep
              --> shop.toml:11:1
               |
            11 | backup = { every = "10m" }
               | ^^^^^^
               = help: write both, like backup = { every = "1h", keep = 24 }

            error: link `backend` of component `lb` points to input `http` of component `cache`, which does not exist
              --> shop.toml:15:21
               |
            15 | links = { backend = "cache.http" }
               |                     ^^^^^^^^^^^^
               = help: component `cache` declares no inputs

            error: `backup` is not allowed on a `builtin:http-lb` component: the data plane serves it and keeps no data
              --> shop.toml:16:1
               |
            16 | backup = { every = "1h", keep = 1 }
               | ^^^^^^
        "#]],
    );
}

#[test]
fn budget_exceeded_at_max_is_a_warning() {
    check(
        r#"
app = "shop"
budget = { cpu = 2, memory = "1GiB" }

[components.web]
command = ["web"]
replicas = 2
max = 10
resources = { cpu = 0.5, memory = "256MiB" }
"#,
        expect![[r#"
            app shop of tenant default, budget 2 CPU and 1GiB, base /srv/shop
            component web (process): 2 replicas (2..=10), 0.5 CPU, 256MiB, stop grace 5s
              command ["web"] in /srv/shop

            warning: components would reserve 5 CPU at their maximum replica counts but the budget is 2 (web: 10 × 0.5)
             --> shop.toml:3:1
              |
            3 | budget = { cpu = 2, memory = "1GiB" }
              | ^^^^^^
              = help: autoscaling will stop adding replicas when the budget is used up

            warning: components would reserve 2.5GiB of memory at their maximum replica counts but the budget is 1GiB (web: 10 × 256MiB)
             --> shop.toml:3:1
              |
            3 | budget = { cpu = 2, memory = "1GiB" }
              | ^^^^^^
              = help: autoscaling will stop adding replicas when the budget is used up
        "#]],
    );
}

#[test]
fn privileged_gateway_port_is_a_warning() {
    check(
        r#"
app = "shop"

[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
gateway = { port = 80 }
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component web (process): 1 replicas (1..=1), 0.25 CPU, 128MiB, stop grace 5s
              command ["web"] in /srv/shop
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
              gateway 0.0.0.0:80 -> http

            warning: port 80 is privileged: listening on it needs root or the CAP_NET_BIND_SERVICE capability
             --> shop.toml:7:20
              |
            7 | gateway = { port = 80 }
              |                    ^^
              = help: use a port of 1024 or more, like 8080
        "#]],
    );
}

#[test]
fn parse_exposes_model_and_positions() {
    let v = parse(SHOP, "shop.toml", Path::new(BASE)).expect("the shop spec is valid");
    assert!(v.warnings.is_empty());
    let web = ComponentName::new("web").expect("valid name");
    let web = v.spec.component(&web).expect("web exists");
    assert_eq!(web.workdir, Path::new(BASE));
    assert_eq!(
        v.spec.reserved(),
        Resources {
            cpu: MilliCpu(1750),
            memory: Bytes((3 * 256 + 128) << 20)
        }
    );
    for (c, link) in v
        .spec
        .components
        .values()
        .flat_map(|c| c.links.values().map(move |l| (c, l)))
    {
        assert!(v.spec.link_input(link).is_some(), "{} -> {link}", c.name);
    }
}

#[test]
fn display_is_one_line_per_diagnostic() {
    let src = "app = \"shop\"\n[components.web]\ncommand = [\"web\"]\nlinks = { db = \"dbx.kv\" }\nreplicas = -1\n";
    let err = parse(src, "shop.toml", Path::new(BASE)).expect_err("two errors");
    expect![[r#"
        shop.toml:4:16: error: link `db` of component `web` points to component `dbx`, which does not exist; help: the components are `web`
        shop.toml:5:12: error: `replicas` is -1; expected a replica count of 0 or more"#]]
    .assert_eq(&err.to_string());
    let json = serialized(&err.0[0]);
    expect![[r#"
        severity = "error"
        file = "shop.toml"
        line = 4
        column = 16
        message = "link `db` of component `web` points to component `dbx`, which does not exist"
        help = "the components are `web`"
    "#]]
    .assert_eq(&json);
}

/// The serialized field names and severity spelling, without a JSON crate:
/// through TOML, which shares the serde data model.
fn serialized(d: &Diagnostic) -> String {
    toml::to_string(d).unwrap_or_else(|e| e.to_string())
}

/// The examples in the format's documentation are valid specs.
#[test]
fn documented_examples_are_valid() {
    let doc = include_str!("../../../docs/spec.md");
    let mut found = 0;
    for block in doc.split("```toml\n").skip(1) {
        let example = block.split("```").next().unwrap_or_default();
        match parse(example, "spec.md", Path::new(BASE)) {
            Ok(v) => assert!(v.warnings.is_empty(), "{:?}", v.warnings),
            Err(e) => panic!("{}", e.render(example)),
        }
        found += 1;
    }
    assert_eq!(found, 6);
}
