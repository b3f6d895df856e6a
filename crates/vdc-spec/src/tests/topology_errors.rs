//! Mistakes across components: links, cycles, gateways and the budget.

use expect_test::expect;

use super::check;

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
