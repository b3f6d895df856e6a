//! One test per kind of mistake: the spec, then every diagnostic as a
//! person would see it.

use expect_test::expect;

use super::check;

// === TOML ===

#[test]
fn syntax_error() {
    check(
        r#"
app = "shop
[components.web]
"#,
        expect![[r#"
            error: invalid basic string
             --> shop.toml:2:12
              |
            2 | app = "shop
              |            ^
        "#]],
    );
}

#[test]
fn duplicate_table() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
[components.web]
command = ["web2"]
"#,
        expect![[r#"
            error: invalid table header: duplicate key `web` in table `components`
             --> shop.toml:5:1
              |
            5 | [components.web]
              | ^
        "#]],
    );
}

#[test]
fn duplicate_input_in_inline_table() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" }, http = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: duplicate key `http`
             --> shop.toml:5:42
              |
            5 | inputs = { http = { protocol = "http" }, http = { protocol = "tcp" } }
              |                                          ^^^^
        "#]],
    );
}

#[test]
fn unknown_fields() {
    check(
        r#"
app = "shop"
name = "shop"
[components.web]
comand = ["web"]
command = ["web"]
inputs = { http = { proto = "http", protocol = "http" } }
gateway = { port = 8080, host = "0.0.0.0" }
resources = { cpus = 1 }
"#,
        expect![[r#"
            error: unknown field `name` in the app file; expected one of `app`, `tenant`, `budget`, `components`
             --> shop.toml:3:1
              |
            3 | name = "shop"
              | ^^^^

            error: unknown field `comand` in component `web`; expected one of `appliance`, `command`, `env`, `workdir`, `resources`, `replicas`, `min`, `max`, `stop_grace`, `inputs`, `links`, `volumes`, `gateway`
             --> shop.toml:5:1
              |
            5 | comand = ["web"]
              | ^^^^^^
              = help: did you mean `command`?

            error: unknown field `proto` in input `http` of component `web`; expected one of `protocol`, `health`
             --> shop.toml:7:21
              |
            7 | inputs = { http = { proto = "http", protocol = "http" } }
              |                     ^^^^^

            error: unknown field `host` in the gateway of component `web`; expected one of `port`, `input`, `address`
             --> shop.toml:8:26
              |
            8 | gateway = { port = 8080, host = "0.0.0.0" }
              |                          ^^^^

            error: unknown field `cpus` in `resources`; expected one of `cpu`, `memory`
             --> shop.toml:9:15
              |
            9 | resources = { cpus = 1 }
              |               ^^^^
              = help: did you mean `cpu`?
        "#]],
    );
}

#[test]
fn wrong_types() {
    check(
        r#"
app = 1979-05-27
tenant = 7
[components.web]
command = "python3 web.py --port 80"
replicas = "3"
stop_grace = 5
env = { DEBUG = true }
resources = { memory = true, cpu = [1] }
inputs = { http = "http" }
links = { db = 1 }
"#,
        expect![[r#"
            error: wrong type for `app`: expected the app's name, like "shop", found datetime
             --> shop.toml:2:7
              |
            2 | app = 1979-05-27
              |       ^^^^^^^^^^

            error: wrong type for `tenant`: expected a tenant name, like "default", found integer
             --> shop.toml:3:10
              |
            3 | tenant = 7
              |          ^

            error: wrong type for `command`: expected an array of strings, found string
             --> shop.toml:5:11
              |
            5 | command = "python3 web.py --port 80"
              |           ^^^^^^^^^^^^^^^^^^^^^^^^^^
              = help: give the program and each argument separately: `command = ["python3", "web.py", "--port", "80"]`

            error: wrong type for `replicas`: expected a replica count (an integer), found string
             --> shop.toml:6:12
              |
            6 | replicas = "3"
              |            ^^^

            error: wrong type for `stop_grace`: expected a duration like "5s", found integer
             --> shop.toml:7:14
              |
            7 | stop_grace = 5
              |              ^
              = help: durations need a unit: "5s" or "5ms"

            error: wrong type for `DEBUG`: expected a string, found boolean
             --> shop.toml:8:17
              |
            8 | env = { DEBUG = true }
              |                 ^^^^
              = help: environment values are strings: put the value in quotes

            error: wrong type for `memory`: expected a size like "256MiB" or a number of bytes, found boolean
             --> shop.toml:9:24
              |
            9 | resources = { memory = true, cpu = [1] }
              |                        ^^^^

            error: wrong type for `cpu`: expected a number of cores like 0.5, or millicores like "500m", found array
             --> shop.toml:9:36
              |
            9 | resources = { memory = true, cpu = [1] }
              |                                    ^

            error: wrong type for `http`: expected a table like { protocol = "http", health = "/healthz" }, found string
              --> shop.toml:10:19
               |
            10 | inputs = { http = "http" }
               |                   ^^^^^^

            error: wrong type for `db`: expected a target `component.input`, like "db.kv", found integer
              --> shop.toml:11:16
               |
            11 | links = { db = 1 }
               |                ^
        "#]],
    );
}

#[test]
fn components_of_the_wrong_shape() {
    check(
        r#"
app = "shop"
[[components]]
command = ["web"]
"#,
        expect![[r#"
            error: wrong type for `components`: expected a table of components, like [components.web], found array
             --> shop.toml:3:1
              |
            3 | [[components]]
              | ^
        "#]],
    );
    check(
        r#"
app = "shop"
components = { web = ["web"] }
"#,
        expect![[r#"
            error: wrong type for `web`: expected a table describing the component, found array
             --> shop.toml:3:22
              |
            3 | components = { web = ["web"] }
              |                      ^
        "#]],
    );
}

#[test]
fn missing_app_and_components() {
    check("tenant = \"default\"\n", expect![[r#"
        error: missing field `app`: expected the app's name
         --> shop.toml:1:1
          |
        1 | tenant = "default"
          | ^^^^^^
          = help: add a line like `app = "shop"` at the top of the file

        error: missing `components`: expected at least one component
         --> shop.toml:1:1
          |
        1 | tenant = "default"
          | ^^^^^^
          = help: declare one with a table like `[components.web]`
    "#]]);
}

#[test]
fn empty_components() {
    check(
        r#"
app = "shop"
components = {}
"#,
        expect![[r#"
            error: `components` is empty: expected at least one component
             --> shop.toml:3:14
              |
            3 | components = {}
              |              ^
              = help: declare one with a table like `[components.web]`
        "#]],
    );
}

// === names ===

#[test]
fn invalid_names() {
    check(
        r#"
app = "Shop"
tenant = "my_tenant"
[components.Web]
command = ["web"]
inputs = { HTTP = { protocol = "http" } }
links = { db_link = "db.kv" }
volumes = { -data = {} }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: invalid app name `Shop`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:2:7
              |
            2 | app = "Shop"
              |       ^^^^^^
              = help: did you mean `shop`?

            error: invalid tenant name `my_tenant`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:3:10
              |
            3 | tenant = "my_tenant"
              |          ^^^^^^^^^^^
              = help: did you mean `my-tenant`?

            error: invalid component name `Web`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:4:13
              |
            4 | [components.Web]
              |             ^^^
              = help: did you mean `web`?

            error: invalid input name `HTTP`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:6:12
              |
            6 | inputs = { HTTP = { protocol = "http" } }
              |            ^^^^
              = help: did you mean `http`?

            error: invalid link name `db_link`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:7:11
              |
            7 | links = { db_link = "db.kv" }
              |           ^^^^^^^
              = help: did you mean `db-link`?

            error: invalid volume name `-data`: expected 1 to 63 lowercase letters, digits or `-`, starting with a letter and not ending with `-`
             --> shop.toml:8:13
              |
            8 | volumes = { -data = {} }
              |             ^^^^^
        "#]],
    );
}

// === units ===

#[test]
fn memory_units() {
    check(
        r#"
app = "shop"
budget = { cpu = 8, memory = "4GB" }
[components.a]
command = ["a"]
resources = { memory = "4G" }
[components.b]
command = ["b"]
resources = { memory = "512k" }
[components.c]
command = ["c"]
resources = { memory = "1.5 gib" }
[components.d]
command = ["d"]
resources = { memory = -1 }
[components.e]
command = ["e"]
resources = { memory = "lots" }
volumes = { data = { size = "0MiB" } }
"#,
        expect![[r#"
            error: invalid `memory`: "4GB" is not a valid memory size: vdc uses binary units; did you mean "4GiB"?
             --> shop.toml:3:30
              |
            3 | budget = { cpu = 8, memory = "4GB" }
              |                              ^^^^^

            error: invalid `memory`: "4G" is not a valid memory size: vdc uses binary units; did you mean "4GiB"?
             --> shop.toml:6:24
              |
            6 | resources = { memory = "4G" }
              |                        ^^^^

            error: invalid `memory`: "512k" is not a valid memory size: vdc uses binary units; did you mean "512KiB"?
             --> shop.toml:9:24
              |
            9 | resources = { memory = "512k" }
              |                        ^^^^^^

            error: invalid `memory`: "1.5 gib" is not a valid memory size: units are case-sensitive; did you mean "1.5GiB"?
              --> shop.toml:12:24
               |
            12 | resources = { memory = "1.5 gib" }
               |                        ^^^^^^^^^

            error: invalid `memory`: -1 is not a valid memory size: a size cannot be negative
              --> shop.toml:15:24
               |
            15 | resources = { memory = -1 }
               |                        ^^

            error: invalid `memory`: "lots" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
              --> shop.toml:18:24
               |
            18 | resources = { memory = "lots" }
               |                        ^^^^^^

            error: invalid `size`: "0MiB" is not a valid memory size: it must be greater than zero
              --> shop.toml:19:29
               |
            19 | volumes = { data = { size = "0MiB" } }
               |                             ^^^^^^
        "#]],
    );
}

#[test]
fn cpu_units() {
    check(
        r#"
app = "shop"
[components.a]
command = ["a"]
resources = { cpu = 0 }
[components.b]
command = ["b"]
resources = { cpu = 0.0005 }
[components.c]
command = ["c"]
resources = { cpu = "1.5m" }
[components.d]
command = ["d"]
resources = { cpu = "two" }
[components.e]
command = ["e"]
resources = { cpu = -1 }
"#,
        expect![[r#"
            error: invalid `cpu`: 0 is not a valid CPU amount: it must be greater than zero
             --> shop.toml:5:21
              |
            5 | resources = { cpu = 0 }
              |                     ^

            error: invalid `cpu`: 0.0005 is not a valid CPU amount: CPU is counted in thousandths of a core, so at most three decimals, like "0.125"
             --> shop.toml:8:21
              |
            8 | resources = { cpu = 0.0005 }
              |                     ^^^^^^

            error: invalid `cpu`: "1.5m" is not a valid CPU amount: millicores must be a whole number, like "250m"
              --> shop.toml:11:21
               |
            11 | resources = { cpu = "1.5m" }
               |                     ^^^^^^

            error: invalid `cpu`: "two" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
              --> shop.toml:14:21
               |
            14 | resources = { cpu = "two" }
               |                     ^^^^^

            error: invalid `cpu`: -1 is not a valid CPU amount: it must be greater than zero
              --> shop.toml:17:21
               |
            17 | resources = { cpu = -1 }
               |                     ^^
        "#]],
    );
}

#[test]
fn durations() {
    check(
        r#"
app = "shop"
[components.a]
command = ["a"]
stop_grace = "5"
inputs = { http = { protocol = "http", health = { interval = "5sec", timeout = "0s" } } }
[components.b]
command = ["b"]
stop_grace = "-1s"
"#,
        expect![[r#"
            error: invalid `stop_grace`: "5" is not a valid duration: it needs a unit: `ms`, `s`, `m` or `h`; did you mean "5s"?
             --> shop.toml:5:14
              |
            5 | stop_grace = "5"
              |              ^^^

            error: invalid `interval`: "5sec" is not a valid duration: unknown unit `sec`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
             --> shop.toml:6:62
              |
            6 | inputs = { http = { protocol = "http", health = { interval = "5sec", timeout = "0s" } } }
              |                                                              ^^^^^^

            error: `timeout` is zero; expected a duration of at least 1ms, like "1s"
             --> shop.toml:6:80
              |
            6 | inputs = { http = { protocol = "http", health = { interval = "5sec", timeout = "0s" } } }
              |                                                                                ^^^^

            error: invalid `stop_grace`: "-1s" is not a valid duration: a duration cannot be negative
             --> shop.toml:9:14
              |
            9 | stop_grace = "-1s"
              |              ^^^^^
        "#]],
    );
}

// === replicas ===

#[test]
fn replica_bounds() {
    check(
        r#"
app = "shop"
[components.below]
command = ["a"]
replicas = 1
min = 2
[components.above]
command = ["a"]
replicas = 7
max = 6
[components.crossed]
command = ["a"]
min = 4
max = 3
[components.never]
command = ["a"]
replicas = 0
max = 0
[components.negative]
command = ["a"]
replicas = -1
"#,
        expect![[r#"
            error: `replicas` is 1 but `min` is 2; expected `min` <= `replicas` <= `max`
             --> shop.toml:5:12
              |
            5 | replicas = 1
              |            ^

            error: `replicas` is 7 but `max` is 6; expected `min` <= `replicas` <= `max`
             --> shop.toml:9:12
              |
            9 | replicas = 7
              |            ^

            error: `min` is 4 but `max` is 3; expected `min` <= `replicas` <= `max`
              --> shop.toml:13:7
               |
            13 | min = 4
               |       ^

            error: `max` is 0; expected a replica count of 1 or more
              --> shop.toml:18:7
               |
            18 | max = 0
               |       ^

            error: `replicas` is -1; expected a replica count of 0 or more
              --> shop.toml:21:12
               |
            21 | replicas = -1
               |            ^^
        "#]],
    );
}

// === links ===

#[test]
fn link_target_syntax() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
links = { db = "db", cache = "db.kv.x", empty = "" }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: link `db` of component `web` has target "db"; expected `component.input`, like "db.kv"
             --> shop.toml:5:16
              |
            5 | links = { db = "db", cache = "db.kv.x", empty = "" }
              |                ^^^^
              = help: did you mean "db.kv"?

            error: link `cache` of component `web` has target "db.kv.x"; expected `component.input`, like "db.kv"
             --> shop.toml:5:30
              |
            5 | links = { db = "db", cache = "db.kv.x", empty = "" }
              |                              ^^^^^^^^^

            error: link `empty` of component `web` has target ""; expected `component.input`, like "db.kv"
             --> shop.toml:5:49
              |
            5 | links = { db = "db", cache = "db.kv.x", empty = "" }
              |                                                 ^^
        "#]],
    );
}

#[test]
fn link_to_missing_component() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
links = { db = "dbx.kv", other = "queue.in" }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: link `db` of component `web` points to component `dbx`, which does not exist
             --> shop.toml:5:16
              |
            5 | links = { db = "dbx.kv", other = "queue.in" }
              |                ^^^^^^^^
              = help: did you mean `db`? the components are `db` and `web`

            error: link `other` of component `web` points to component `queue`, which does not exist
             --> shop.toml:5:34
              |
            5 | links = { db = "dbx.kv", other = "queue.in" }
              |                                  ^^^^^^^^^^
              = help: the components are `db` and `web`
        "#]],
    );
}

#[test]
fn link_to_missing_input() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
links = { db = "db.sql", log = "sink.in" }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" }, admin = { protocol = "http" } }
[components.sink]
command = ["sink"]
"#,
        expect![[r#"
            error: link `db` of component `web` points to input `sql` of component `db`, which does not exist
             --> shop.toml:5:16
              |
            5 | links = { db = "db.sql", log = "sink.in" }
              |                ^^^^^^^^
              = help: the inputs of component `db` are `admin` and `kv`

            error: link `log` of component `web` points to input `in` of component `sink`, which does not exist
             --> shop.toml:5:32
              |
            5 | links = { db = "db.sql", log = "sink.in" }
              |                                ^^^^^^^^^
              = help: component `sink` declares no inputs
        "#]],
    );
}

#[test]
fn self_link() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
links = { me = "web.http" }
"#,
        expect![[r#"
            error: link `me` of component `web` points to component `web` itself; expected a link to another component
             --> shop.toml:6:16
              |
            6 | links = { me = "web.http" }
              |                ^^^^^^^^^^
        "#]],
    );
}

#[test]
fn cycles() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
links = { db = "db.kv" }
[components.db]
command = ["db"]
inputs = { kv = { protocol = "tcp" } }
links = { notify = "web.http" }
[components.a]
command = ["a"]
inputs = { in = { protocol = "tcp" } }
links = { next = "b.in" }
[components.b]
command = ["b"]
inputs = { in = { protocol = "tcp" } }
links = { next = "c.in" }
[components.c]
command = ["c"]
inputs = { in = { protocol = "tcp" } }
links = { back = "a.in" }
"#,
        expect![[r#"
            error: link `notify` of component `db` closes a cycle: web -> db -> web
              --> shop.toml:10:11
               |
            10 | links = { notify = "web.http" }
               |           ^^^^^^
               = help: links must not loop: vdc starts a component after the components it links to

            error: link `back` of component `c` closes a cycle: a -> b -> c -> a
              --> shop.toml:22:11
               |
            22 | links = { back = "a.in" }
               |           ^^^^
               = help: links must not loop: vdc starts a component after the components it links to
        "#]],
    );
}

// === gateways ===

#[test]
fn gateway_port_conflicts() {
    check(
        r#"
app = "shop"
[components.lb]
appliance = "builtin:http-lb"
gateway = { port = 8080 }
links = { backend = "web.http" }
[components.web]
command = ["web"]
inputs = { http = { protocol = "http" } }
gateway = { port = 8080 }
[components.admin]
command = ["admin"]
inputs = { http = { protocol = "http" } }
gateway = { port = 8080, address = "127.0.0.1" }
[components.other]
command = ["other"]
inputs = { http = { protocol = "http" } }
gateway = { port = 9090, address = "127.0.0.1" }
[components.other2]
command = ["other"]
inputs = { http = { protocol = "http" } }
gateway = { port = 9090, address = "127.0.0.2" }
"#,
        expect![[r#"
            error: port 8080 is already used by the gateway of component `lb` (line 5)
              --> shop.toml:10:20
               |
            10 | gateway = { port = 8080 }
               |                    ^^^^
               = help: gateways listen on the node's address; give component `web` another port

            error: port 8080 is already used by the gateway of component `lb` (line 5), which listens on 0.0.0.0
              --> shop.toml:14:20
               |
            14 | gateway = { port = 8080, address = "127.0.0.1" }
               |                    ^^^^
               = help: gateways listen on the node's address; give component `admin` another port
        "#]],
    );
}

#[test]
fn gateway_inputs() {
    check(
        r#"
app = "shop"
[components.none]
command = ["a"]
gateway = { port = 8001 }
[components.several]
command = ["a"]
inputs = { http = { protocol = "http" }, admin = { protocol = "http" } }
gateway = { port = 8002 }
[components.missing]
command = ["a"]
inputs = { http = { protocol = "http" } }
gateway = { port = 8003, input = "htp" }
[components.fields]
command = ["a"]
inputs = { http = { protocol = "http" } }
gateway = { address = "localhost" }
[components.range]
command = ["a"]
inputs = { http = { protocol = "http" } }
gateway = { port = 70000 }
"#,
        expect![[r#"
            error: the gateway of component `none` has no input to expose: the component declares no inputs
             --> shop.toml:5:1
              |
            5 | gateway = { port = 8001 }
              | ^^^^^^^
              = help: declare one, like `inputs = { http = { protocol = "http" } }`

            error: the gateway of component `several` needs an `input`: the component has inputs `admin` and `http`
             --> shop.toml:9:1
              |
            9 | gateway = { port = 8002 }
              | ^^^^^^^
              = help: name the one to expose, like `input = "admin"`

            error: the gateway of component `missing` exposes input `htp`, which does not exist
              --> shop.toml:13:34
               |
            13 | gateway = { port = 8003, input = "htp" }
               |                                  ^^^^^
               = help: the inputs of component `missing` are `http`

            error: the gateway of component `fields` has no `port`; expected the port to listen on
              --> shop.toml:17:1
               |
            17 | gateway = { address = "localhost" }
               | ^^^^^^^
               = help: write it like `gateway = { port = 8080 }`

            error: invalid `address` "localhost": expected an IP address, like "0.0.0.0" or "127.0.0.1"
              --> shop.toml:17:23
               |
            17 | gateway = { address = "localhost" }
               |                       ^^^^^^^^^^^

            error: `port` is 70000; expected a port of at most 65535
              --> shop.toml:21:20
               |
            21 | gateway = { port = 70000 }
               |                    ^^^^^
        "#]],
    );
}

// === budget ===

#[test]
fn budget_exceeded() {
    check(
        r#"
app = "shop"
budget = { cpu = 4, memory = "1GiB" }
[components.lb]
appliance = "builtin:http-lb"
links = { backend = "web.http" }
[components.web]
command = ["web"]
replicas = 3
resources = { cpu = 0.5, memory = "256MiB" }
inputs = { http = { protocol = "http" } }
links = { db = "db.kv" }
[components.db]
command = ["db"]
resources = { cpu = 3 }
inputs = { kv = { protocol = "tcp" } }
"#,
        expect![[r#"
            error: components reserve 4.5 CPU at their replica counts but the budget is 4 (web: 3 × 0.5, db: 1 × 3)
             --> shop.toml:3:1
              |
            3 | budget = { cpu = 4, memory = "1GiB" }
              | ^^^^^^
        "#]],
    );
}

#[test]
fn instance_larger_than_budget() {
    check(
        r#"
app = "shop"
budget = { cpu = 2, memory = "4GiB" }
[components.db]
command = ["db"]
replicas = 0
resources = { cpu = 3, memory = "1GiB" }
"#,
        expect![[r#"
            error: one instance of component `db` reserves 3 CPU but the budget is 2
             --> shop.toml:7:1
              |
            7 | resources = { cpu = 3, memory = "1GiB" }
              | ^^^^^^^^^
        "#]],
    );
}

#[test]
fn budget_needs_both_fields() {
    check(
        r#"
app = "shop"
budget = { cpu = 2 }
[components.web]
command = ["web"]
"#,
        expect![[r#"
            error: `budget` has no `memory`; expected both `cpu` and `memory`
             --> shop.toml:3:1
              |
            3 | budget = { cpu = 2 }
              | ^^^^^^
              = help: write it like `budget = { cpu = 4, memory = "4GiB" }`
        "#]],
    );
}

#[test]
fn memory_totals_that_print_alike() {
    check(
        r#"
app = "shop"
budget = { cpu = 4, memory = "1GiB" }
[components.web]
command = ["web"]
resources = { memory = 1073741825 }
"#,
        expect![[r#"
            error: components reserve 1GiB (1073741825 bytes) of memory at their replica counts but the budget is 1GiB (1073741824 bytes) (web: 1 × 1GiB)
             --> shop.toml:3:1
              |
            3 | budget = { cpu = 4, memory = "1GiB" }
              | ^^^^^^

            error: one instance of component `web` reserves 1GiB (1073741825 bytes) of memory but the budget is 1GiB (1073741824 bytes)
             --> shop.toml:6:1
              |
            6 | resources = { memory = 1073741825 }
              | ^^^^^^^^^
        "#]],
    );
}

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
"#,
        expect![[r#"
            error: appliance `container` is not supported yet; expected `process` or `builtin:http-lb`
             --> shop.toml:4:13
              |
            4 | appliance = "container"
              |             ^^^^^^^^^^^

            error: appliance `vm` is not supported yet; expected `process` or `builtin:http-lb`
             --> shop.toml:7:13
              |
            7 | appliance = "vm"
              |             ^^^^

            error: unknown appliance `proces`; expected `process` or `builtin:http-lb`
              --> shop.toml:10:13
               |
            10 | appliance = "proces"
               |             ^^^^^^^^
               = help: did you mean `process`?
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
