//! Mistakes inside one component: appliances, commands, environment,
//! inputs and volumes.

use expect_test::expect;

use super::check;

// === appliances ===

#[test]
fn appliances() {
    check(
        r#"
app = "shop"
[components.a]
appliance = "container"
command = ["a"]
[components.b]
appliance = "vm"
command = ["b"]
[components.c]
appliance = "proces"
command = ["c"]
[components.d]
appliance = "container"
"#,
        expect![[r#"
            error: component `a` is a container but has no `image`
             --> shop.toml:3:13
              |
            3 | [components.a]
              |             ^
              = help: name it, like `image = "docker.io/library/redis:7"` or `image = "oci-archive:images/web.tar"`

            error: appliance `vm` is not supported yet; expected `process`, `container` or `builtin:http-lb`
             --> shop.toml:7:13
              |
            7 | appliance = "vm"
              |             ^^^^

            error: unknown appliance `proces`; expected `process`, `container` or `builtin:http-lb`
              --> shop.toml:10:13
               |
            10 | appliance = "proces"
               |             ^^^^^^^^
               = help: did you mean `process`?

            error: component `d` is a container but has no `image`
              --> shop.toml:12:13
               |
            12 | [components.d]
               |             ^
               = help: name it, like `image = "docker.io/library/redis:7"` or `image = "oci-archive:images/web.tar"`
        "#]],
    );
}

#[test]
fn builtin_forbids_process_fields() {
    check(
        r#"
app = "shop"
[components.lb]
appliance = "builtin:http-lb"
command = ["haproxy"]
inputs = { http = { protocol = "http" } }
env = { A = "b" }
workdir = "."
volumes = { data = {} }
resources = { cpu = 1 }
links = { backend = "web.http" }
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
"#,
        expect![[r#"
            error: `command` is not allowed on a `builtin:http-lb` component: the data plane serves it, no process is started
             --> shop.toml:5:1
              |
            5 | command = ["haproxy"]
              | ^^^^^^^

            error: `inputs` is not allowed on a `builtin:http-lb` component: it has one implicit input, `http`
             --> shop.toml:6:1
              |
            6 | inputs = { http = { protocol = "http" } }
              | ^^^^^^

            error: `env` is not allowed on a `builtin:http-lb` component: the data plane serves it, no process is started
             --> shop.toml:7:1
              |
            7 | env = { A = "b" }
              | ^^^

            error: `workdir` is not allowed on a `builtin:http-lb` component: the data plane serves it, no process is started
             --> shop.toml:8:1
              |
            8 | workdir = "."
              | ^^^^^^^

            error: `volumes` is not allowed on a `builtin:http-lb` component: the data plane serves it and keeps no data
             --> shop.toml:9:1
              |
            9 | volumes = { data = {} }
              | ^^^^^^^

            error: `resources` is not allowed on a `builtin:http-lb` component: the data plane serves it and reserves nothing for it
              --> shop.toml:10:1
               |
            10 | resources = { cpu = 1 }
               | ^^^^^^^^^
        "#]],
    );
}

#[test]
fn builtin_links() {
    check(
        r#"
app = "shop"
[components.nolinks]
appliance = "builtin:http-lb"
[components.extra]
appliance = "builtin:http-lb"
links = { backend = "web.http", metrics = "web.http" }
[components.tcp]
appliance = "builtin:http-lb"
links = { backend = "db.kv" }
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: component `nolinks` has no link `backend`; expected the input it balances
             --> shop.toml:3:13
              |
            3 | [components.nolinks]
              |             ^^^^^^^
              = help: add a line like `links = { backend = "web.http" }`

            error: link `metrics` is not allowed on a `builtin:http-lb` component: its only link is `backend`
             --> shop.toml:7:33
              |
            7 | links = { backend = "web.http", metrics = "web.http" }
              |                                 ^^^^^^^

            error: link `backend` of component `tcp` points to input `kv` of component `db`, which has protocol `tcp`; expected an `http` input for `builtin:http-lb` to balance
              --> shop.toml:10:21
               |
            10 | links = { backend = "db.kv" }
               |                     ^^^^^^^
        "#]],
    );
}

// === processes ===

#[test]
fn commands() {
    check(
        r#"
app = "shop"
[components.missing]
replicas = 1
[components.empty]
command = []
[components.blank]
command = ["", "x"]
[components.mixed]
command = ["web", 8080]
"#,
        expect![[r#"
            error: component `missing` has no `command`; expected the program to run and its arguments
             --> shop.toml:3:13
              |
            3 | [components.missing]
              |             ^^^^^^^
              = help: add a line like `command = ["python3", "web.py"]`, or set an `appliance`

            error: `command` is empty; expected the program to run and its arguments
             --> shop.toml:6:11
              |
            6 | command = []
              |           ^
              = help: write it like `command = ["python3", "web.py"]`

            error: the program in `command` is empty; expected a program name or path
             --> shop.toml:8:12
              |
            8 | command = ["", "x"]
              |            ^^

            error: wrong type for element 2 of `command`: expected a string, found integer
              --> shop.toml:10:19
               |
            10 | command = ["web", 8080]
               |                   ^^^^
        "#]],
    );
}

#[test]
fn env_names() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
env = { my-var = "1", 9LIVES = "x", VDC_TOKEN = "t", PORT = "80", GOOD_ONE = "ok" }
"#,
        expect![[r#"
            error: invalid environment variable name `my-var`: expected letters, digits and `_`, not starting with a digit
             --> shop.toml:5:9
              |
            5 | env = { my-var = "1", 9LIVES = "x", VDC_TOKEN = "t", PORT = "80", GOOD_ONE = "ok" }
              |         ^^^^^^
              = help: did you mean `MY_VAR`?

            error: invalid environment variable name `9LIVES`: expected letters, digits and `_`, not starting with a digit
             --> shop.toml:5:23
              |
            5 | env = { my-var = "1", 9LIVES = "x", VDC_TOKEN = "t", PORT = "80", GOOD_ONE = "ok" }
              |                       ^^^^^^

            error: environment variable `VDC_TOKEN` is reserved: vdc sets the `VDC_` variables itself
             --> shop.toml:5:37
              |
            5 | env = { my-var = "1", 9LIVES = "x", VDC_TOKEN = "t", PORT = "80", GOOD_ONE = "ok" }
              |                                     ^^^^^^^^^

            error: environment variable `PORT` is reserved: vdc sets it to the port the instance listens on
             --> shop.toml:5:54
              |
            5 | env = { my-var = "1", 9LIVES = "x", VDC_TOKEN = "t", PORT = "80", GOOD_ONE = "ok" }
              |                                                      ^^^^
        "#]],
    );
}

#[test]
fn workdir_empty() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
workdir = ""
"#,
        expect![[r#"
            error: `workdir` is empty; expected a directory, like "."
             --> shop.toml:5:11
              |
            5 | workdir = ""
              |           ^^
        "#]],
    );
}

// === inputs ===

#[test]
fn protocols_and_health() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
inputs.noproto = {}
inputs.udp = { protocol = "udp" }
inputs.kv = { protocol = "tcp", health = "/healthz" }
inputs.rel = { protocol = "http", health = "healthz" }
inputs.num = { protocol = "http", health = 5 }
inputs.zero = { protocol = "http", health = { path = "/h", failures = 0 } }
"#,
        expect![[r#"
            error: input `noproto` of component `web` has no `protocol`; expected `tcp` or `http`
             --> shop.toml:5:8
              |
            5 | inputs.noproto = {}
              |        ^^^^^^^
              = help: add `protocol = "http"` or `protocol = "tcp"`

            error: unknown protocol `udp`; expected `tcp` or `http`
             --> shop.toml:6:27
              |
            6 | inputs.udp = { protocol = "udp" }
              |                           ^^^^^

            error: input `kv` of component `web` has protocol `tcp`, so its health check cannot be an HTTP request
             --> shop.toml:7:42
              |
            7 | inputs.kv = { protocol = "tcp", health = "/healthz" }
              |                                          ^^^^^^^^^^
              = help: use `health = "tcp"`, or set `protocol = "http"`

            error: invalid health check "healthz": expected a path like "/healthz", or "tcp"
             --> shop.toml:8:44
              |
            8 | inputs.rel = { protocol = "http", health = "healthz" }
              |                                            ^^^^^^^^^

            error: wrong type for `health`: expected a path like "/healthz", "tcp", or a table like { path = "/healthz", interval = "1s" }, found integer
             --> shop.toml:9:44
              |
            9 | inputs.num = { protocol = "http", health = 5 }
              |                                            ^

            error: `failures` is 0; expected a number of failures of 1 or more
              --> shop.toml:10:71
               |
            10 | inputs.zero = { protocol = "http", health = { path = "/h", failures = 0 } }
               |                                                                       ^
        "#]],
    );
}

#[test]
fn probe_mistakes() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
inputs.two = { protocol = "http", health = { path = "/h", exec = ["true"] } }
inputs.nosend = { protocol = "tcp", health = { expect = "+PONG" } }
inputs.noexpect = { protocol = "tcp", health = { send = "PING\r\n" } }
inputs.empty = { protocol = "tcp", health = { send = "PING\r\n", expect = "" } }
inputs.noprogram = { protocol = "tcp", health = { exec = [] } }
inputs.string = { protocol = "tcp", health = { exec = "pg_isready -h 127.0.0.1" } }
inputs.delay = { protocol = "tcp", health = { exec = ["true"], initial_delay = "soon", start_period = "-1s" } }
"#,
        expect![[r#"
            error: the health check of input `two` of component `web` has `path` and `exec`; expected one kind of probe
             --> shop.toml:5:59
              |
            5 | inputs.two = { protocol = "http", health = { path = "/h", exec = ["true"] } }
              |                                                           ^^^^
              = help: a probe is an HTTP `path`, a command to `exec`, or bytes to `send` with an answer to `expect`

            error: the health check of input `nosend` of component `web` has `expect` without `send`
             --> shop.toml:6:48
              |
            6 | inputs.nosend = { protocol = "tcp", health = { expect = "+PONG" } }
              |                                                ^^^^^^
              = help: say what to send first, like `send = "PING\r\n"`

            error: the health check of input `noexpect` of component `web` has `send` without `expect`
             --> shop.toml:7:50
              |
            7 | inputs.noexpect = { protocol = "tcp", health = { send = "PING\r\n" } }
              |                                                  ^^^^
              = help: say what the answer must hold, like `expect = "+PONG"`

            error: the health check of input `empty` of component `web` expects an empty answer, which every answer holds; expected the text a healthy answer holds, like "+PONG"
             --> shop.toml:8:75
              |
            8 | inputs.empty = { protocol = "tcp", health = { send = "PING\r\n", expect = "" } }
              |                                                                           ^^

            error: the `exec` probe of input `noprogram` of component `web` has no program; expected a command as an array of strings, like ["pg_isready", "-h", "127.0.0.1"]
             --> shop.toml:9:58
              |
            9 | inputs.noprogram = { protocol = "tcp", health = { exec = [] } }
              |                                                          ^

            error: wrong type for `exec`: expected a command as an array of strings, like ["pg_isready", "-h", "127.0.0.1"], found string
              --> shop.toml:10:55
               |
            10 | inputs.string = { protocol = "tcp", health = { exec = "pg_isready -h 127.0.0.1" } }
               |                                                       ^^^^^^^^^^^^^^^^^^^^^^^^^

            error: invalid `initial_delay`: "soon" is not a valid duration: expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
              --> shop.toml:11:80
               |
            11 | inputs.delay = { protocol = "tcp", health = { exec = ["true"], initial_delay = "soon", start_period = "-1s" } }
               |                                                                                ^^^^^^

            error: invalid `start_period`: "-1s" is not a valid duration: a duration cannot be negative
              --> shop.toml:11:103
               |
            11 | inputs.delay = { protocol = "tcp", health = { exec = ["true"], initial_delay = "soon", start_period = "-1s" } }
               |                                                                                                       ^^^^^
        "#]],
    );
}

#[test]
fn container_mistakes() {
    check(
        r#"
app = "shop"
[components.a]
appliance = "container"
[components.b]
appliance = "container"
image = "Redis:7"
[components.c]
appliance = "container"
image = "oci:"
workdir = "srv"
command = "redis-server"
[components.d]
image = "redis"
args = ["-v"]
command = ["redis-server"]
[components.e]
appliance = "container"
image = "redis@sha256:1234"
"#,
        expect![[r#"
            error: component `a` is a container but has no `image`
             --> shop.toml:3:13
              |
            3 | [components.a]
              |             ^
              = help: name it, like `image = "docker.io/library/redis:7"` or `image = "oci-archive:images/web.tar"`

            error: `Redis:7` is not a valid image reference: repository names are lowercase
             --> shop.toml:7:9
              |
            7 | image = "Redis:7"
              |         ^^^^^^^^^

            error: `oci:` has no path after `oci:`
              --> shop.toml:10:9
               |
            10 | image = "oci:"
               |         ^^^^^^

            error: `workdir` of a container is a path inside it, so it starts with `/`; found "srv"
              --> shop.toml:11:11
               |
            11 | workdir = "srv"
               |           ^^^^^

            error: wrong type for `command`: expected an array of strings, like `command = ["/usr/bin/redis-server"]`, found string
              --> shop.toml:12:11
               |
            12 | command = "redis-server"
               |           ^^^^^^^^^^^^^^

            error: `image` is only for containers, and component `d` runs a process
              --> shop.toml:14:1
               |
            14 | image = "redis"
               | ^^^^^
               = help: add `appliance = "container"` to run it from the image

            error: `args` is only for containers, and component `d` runs a process
              --> shop.toml:15:1
               |
            15 | args = ["-v"]
               | ^^^^
               = help: give a process its arguments in `command`

            error: `redis@sha256:1234` is not a valid image reference: a digest is `sha256:` and 64 hexadecimal digits
              --> shop.toml:19:9
               |
            19 | image = "redis@sha256:1234"
               |         ^^^^^^^^^^^^^^^^^^^
        "#]],
    );
}

#[test]
fn volumes() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
volumes.a = { mount = "data" }
volumes.b = { mount = "/data" }
volumes.c = { mount = "/data", size = "1GB" }
volumes.d = { sise = "1GiB" }
"#,
        expect![[r#"
            error: `mount` of volume `a` of component `web` is "data"; expected an absolute path, like "/data"
             --> shop.toml:5:23
              |
            5 | volumes.a = { mount = "data" }
              |                       ^^^^^^

            error: `/data` is already the mount of volume `b`; expected one volume per path
             --> shop.toml:7:23
              |
            7 | volumes.c = { mount = "/data", size = "1GB" }
              |                       ^^^^^^^

            error: invalid `size`: "1GB" is not a valid memory size: vdc uses binary units; did you mean "1GiB"?
             --> shop.toml:7:39
              |
            7 | volumes.c = { mount = "/data", size = "1GB" }
              |                                       ^^^^^

            error: unknown field `sise` in volume `d` of component `web`; expected one of `size`, `mount`
             --> shop.toml:8:15
              |
            8 | volumes.d = { sise = "1GiB" }
              |               ^^^^
              = help: did you mean `size`?
        "#]],
    );
}

// === placement ===

#[test]
fn placement_label_keys_and_values() {
    check(
        r#"
app = "shop"
[components.db]
command = ["db"]
placement = { labels = { "disk type" = "ssd", "" = "x", zone = "", rack = "r 1", good = "ok" } }
[components.web]
command = ["web"]
placement.labels = { disk = "ssd", "0123456789012345678901234567890123456789012345678901234567890123" = "x" }
"#,
        expect![[r#"
            error: label key `disk type` has a character that is not allowed: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`
             --> shop.toml:5:26
              |
            5 | placement = { labels = { "disk type" = "ssd", "" = "x", zone = "", rack = "r 1", good = "ok" } }
              |                          ^^^^^^^^^^^
              = help: did you mean `disk-type`?

            error: label key is empty: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`
             --> shop.toml:5:47
              |
            5 | placement = { labels = { "disk type" = "ssd", "" = "x", zone = "", rack = "r 1", good = "ok" } }
              |                                               ^^

            error: label value is empty: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`
             --> shop.toml:5:64
              |
            5 | placement = { labels = { "disk type" = "ssd", "" = "x", zone = "", rack = "r 1", good = "ok" } }
              |                                                                ^^

            error: label value `r 1` has a character that is not allowed: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`
             --> shop.toml:5:75
              |
            5 | placement = { labels = { "disk type" = "ssd", "" = "x", zone = "", rack = "r 1", good = "ok" } }
              |                                                                           ^^^^^
              = help: did you mean `r-1`?

            error: label key `0123456789012345678901234567890123456789012345678901234567890123` has 64 characters: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`
             --> shop.toml:8:36
              |
            8 | placement.labels = { disk = "ssd", "0123456789012345678901234567890123456789012345678901234567890123" = "x" }
              |                                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        "#]],
    );
}

#[test]
fn placement_label_values_are_strings() {
    check(
        r#"
app = "shop"
[components.db]
command = ["db"]
placement = { labels = { disk = "ssd", gen = 5, fast = true } }
[components.web]
command = ["web"]
placement = { labels = ["disk=ssd"] }
[components.cache]
command = ["cache"]
placement = "disk=ssd"
"#,
        expect![[r#"
            error: wrong type for label `gen`: expected a string, found integer
             --> shop.toml:5:46
              |
            5 | placement = { labels = { disk = "ssd", gen = 5, fast = true } }
              |                                              ^
              = help: label values are strings: put the value in quotes

            error: wrong type for label `fast`: expected a string, found boolean
             --> shop.toml:5:56
              |
            5 | placement = { labels = { disk = "ssd", gen = 5, fast = true } }
              |                                                        ^^^^
              = help: label values are strings: put the value in quotes

            error: wrong type for `labels`: expected a table of node labels, like { disk = "ssd" }, found array
             --> shop.toml:8:24
              |
            8 | placement = { labels = ["disk=ssd"] }
              |                        ^

            error: wrong type for `placement`: expected a table like { labels = { disk = "ssd" } }, found string
              --> shop.toml:11:13
               |
            11 | placement = "disk=ssd"
               |             ^^^^^^^^^^
        "#]],
    );
}

#[test]
fn placement_unknown_fields() {
    check(
        r#"
app = "shop"
[components.db]
command = ["db"]
inputs = { http = { protocol = "http" } }
[components.db.placement]
lables = { disk = "ssd" }
spread = true
[components.lb]
appliance = "builtin:http-lb"
links = { backend = "db.http" }
placement = { labels = { disk = "ssd" } }
"#,
        expect![[r#"
            error: unknown field `lables` in `placement` of component `db`; expected one of `labels`
             --> shop.toml:7:1
              |
            7 | lables = { disk = "ssd" }
              | ^^^^^^
              = help: did you mean `labels`?

            error: unknown field `spread` in `placement` of component `db`; expected one of `labels`
             --> shop.toml:8:1
              |
            8 | spread = true
              | ^^^^^^

            error: `placement` is not allowed on a `builtin:http-lb` component: the data plane serves it, no instance is placed on a node
              --> shop.toml:12:1
               |
            12 | placement = { labels = { disk = "ssd" } }
               | ^^^^^^^^^
        "#]],
    );
}
