//! Mistakes in values: units, durations and replica bounds.

use expect_test::expect;

use super::check;

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
