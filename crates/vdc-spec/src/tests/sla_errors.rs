//! SLAs on inputs: the accepted forms and every mistake.

use expect_test::expect;

use super::check;

// === accepted ===

#[test]
fn accepted_forms() {
    check(
        r#"
app = "shop"

[components.web]
command = ["web"]
min = 2
max = 6
inputs = { http = { protocol = "http", health = "/healthz", sla = { latency = "p99 <= 50ms", errors = "1%", window = "20s", scale_down_after = "1m" } } }

[components.api]
command = ["api"]
max = 4
inputs.http = { protocol = "http", sla = { latency = "p99.9<2.5ms" } }
inputs.admin = { protocol = "http" }

[components.db]
command = ["db"]
max = 3
inputs.kv = { protocol = "tcp", sla = { errors = "0.5%" } }

[components.cache]
command = ["cache"]
max = 2

[components.cache.inputs.http]
protocol = "http"

[components.cache.inputs.http.sla]
latency = "  p50 <=1s "
window = "2s"
scale_down_after = "1h"
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component api (process): 1 replicas (1..=4), 0.25 CPU, 128MiB, stop grace 5s
              command ["api"] in /srv/shop
              input admin (http): tcp connect every 1s, timeout 1s, 3 failures
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
                sla p99.9 <= 2.5ms over 10s, scale down after 30s
            component cache (process): 1 replicas (1..=2), 0.25 CPU, 128MiB, stop grace 5s
              command ["cache"] in /srv/shop
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
                sla p50 <= 1s over 2s, scale down after 1h
            component db (process): 1 replicas (1..=3), 0.25 CPU, 128MiB, stop grace 5s
              command ["db"] in /srv/shop
              input kv (tcp): tcp connect every 1s, timeout 1s, 3 failures
                sla error ratio <= 0.005 over 10s, scale down after 30s
            component web (process): 2 replicas (2..=6), 0.25 CPU, 128MiB, stop grace 5s
              command ["web"] in /srv/shop
              input http (http): GET /healthz every 1s, timeout 1s, 3 failures
                sla p99 <= 50ms, error ratio <= 0.01 over 20s, scale down after 1m
        "#]],
    );
}

#[test]
fn no_room_to_scale_is_a_warning() {
    check(
        r#"
app = "shop"

[components.web]
command = ["web"]
replicas = 3
inputs = { http = { protocol = "http", sla = { latency = "p99 <= 50ms" } } }

[components.api]
command = ["api"]
min = 2
max = 2

[components.api.inputs.http]
protocol = "http"

[components.api.inputs.http.sla]
errors = "1%"
"#,
        expect![[r#"
            app shop of tenant default, base /srv/shop
            component api (process): 2 replicas (2..=2), 0.25 CPU, 128MiB, stop grace 5s
              command ["api"] in /srv/shop
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
                sla error ratio <= 0.01 over 10s, scale down after 30s
            component web (process): 3 replicas (3..=3), 0.25 CPU, 128MiB, stop grace 5s
              command ["web"] in /srv/shop
              input http (http): tcp connect every 1s, timeout 1s, 3 failures
                sla p99 <= 50ms over 10s, scale down after 30s

            warning: component `web` has an SLA on input `http` but `min` and `max` are both 3: autoscaling has no room, so only steering traffic can keep the objective
             --> shop.toml:7:40
              |
            7 | inputs = { http = { protocol = "http", sla = { latency = "p99 <= 50ms" } } }
              |                                        ^^^
              = help: let the replica count move, like `min = 3` and `max = 6`

            warning: component `api` has an SLA on input `http` but `min` and `max` are both 2: autoscaling has no room, so only steering traffic can keep the objective
              --> shop.toml:17:29
               |
            17 | [components.api.inputs.http.sla]
               |                             ^^^
               = help: let the replica count move, like `min = 2` and `max = 4`
        "#]],
    );
}

// === mistakes ===

#[test]
fn latency_mistakes() {
    check(
        r#"
app = "shop"
[components.a]
command = ["a"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p999 <= 50ms" } }
[components.b]
command = ["b"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p99 <= 50" } }
[components.c]
command = ["c"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p99 <= 2h" } }
[components.d]
command = ["d"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "50ms" } }
[components.e]
command = ["e"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p100 <= 0ms" } }
[components.f]
command = ["f"]
max = 2
inputs.http = { protocol = "http", sla = { latency = 50 } }
[components.g]
command = ["g"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p99 >= 5sec" } }
"#,
        expect![[r#"
            error: invalid `latency`: "p999 <= 50ms" is not a valid latency objective: the percentile p999 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9
             --> shop.toml:6:54
              |
            6 | inputs.http = { protocol = "http", sla = { latency = "p999 <= 50ms" } }
              |                                                      ^^^^^^^^^^^^^^
              = help: did you mean p99.9?

            error: invalid `latency`: "p99 <= 50" is not a valid latency objective: the threshold "50" needs a unit: `ms`, `s`, `m` or `h`
              --> shop.toml:10:54
               |
            10 | inputs.http = { protocol = "http", sla = { latency = "p99 <= 50" } }
               |                                                      ^^^^^^^^^^^
               = help: did you mean "p99 <= 50ms"?

            error: invalid `latency`: "p99 <= 2h" is not a valid latency objective: the threshold "2h" is more than 1h; expected a latency of at most 1h, like "p99 <= 50ms"
              --> shop.toml:14:54
               |
            14 | inputs.http = { protocol = "http", sla = { latency = "p99 <= 2h" } }
               |                                                      ^^^^^^^^^^^

            error: invalid `latency`: "50ms" is not a valid latency objective: expected a percentile, `<=` and a duration, like "p99 <= 50ms" or "p99.9 <= 200ms"
              --> shop.toml:18:54
               |
            18 | inputs.http = { protocol = "http", sla = { latency = "50ms" } }
               |                                                      ^^^^^^
               = help: name the percentile, like "p99 <= 50ms"

            error: invalid `latency`: "p100 <= 0ms" is not a valid latency objective: the percentile p100 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9
              --> shop.toml:22:54
               |
            22 | inputs.http = { protocol = "http", sla = { latency = "p100 <= 0ms" } }
               |                                                      ^^^^^^^^^^^^^

            error: wrong type for `latency`: expected a latency objective, like "p99 <= 50ms" or "p99.9 <= 200ms", found integer
              --> shop.toml:26:54
               |
            26 | inputs.http = { protocol = "http", sla = { latency = 50 } }
               |                                                      ^^

            error: invalid `latency`: "p99 >= 5sec" is not a valid latency objective: expected `<=` and a duration after `p99`, like "p99 <= 50ms"
              --> shop.toml:30:54
               |
            30 | inputs.http = { protocol = "http", sla = { latency = "p99 >= 5sec" } }
               |                                                      ^^^^^^^^^^^^^
               = help: an objective bounds the latency from above: "p99 <= 5sec"
        "#]],
    );
}

#[test]
fn error_ratio_mistakes() {
    check(
        r#"
app = "shop"
[components.a]
command = ["a"]
max = 2
inputs.http = { protocol = "http", sla = { errors = 0.01 } }
[components.b]
command = ["b"]
max = 2
inputs.http = { protocol = "http", sla = { errors = 1 } }
[components.c]
command = ["c"]
max = 2
inputs.http = { protocol = "http", sla = { errors = "1" } }
[components.d]
command = ["d"]
max = 2
inputs.http = { protocol = "http", sla = { errors = "0%" } }
[components.e]
command = ["e"]
max = 2
inputs.http = { protocol = "http", sla = { errors = "150%" } }
[components.f]
command = ["f"]
max = 2
inputs.http = { protocol = "http", sla = { errors = true } }
"#,
        expect![[r#"
            error: wrong type for `errors`: expected a percentage like "1%", found float
             --> shop.toml:6:53
              |
            6 | inputs.http = { protocol = "http", sla = { errors = 0.01 } }
              |                                                     ^^^^
              = help: write it as a percentage, such as "1%"

            error: wrong type for `errors`: expected a percentage like "1%", found integer
              --> shop.toml:10:53
               |
            10 | inputs.http = { protocol = "http", sla = { errors = 1 } }
               |                                                     ^
               = help: write it as a percentage, such as "1%"

            error: invalid `errors`: "1" is not a valid share of errors: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
              --> shop.toml:14:53
               |
            14 | inputs.http = { protocol = "http", sla = { errors = "1" } }
               |                                                     ^^^
               = help: write it as a percentage, such as "1%"

            error: invalid `errors`: "0%" is not a valid share of errors: it is zero; expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
              --> shop.toml:18:53
               |
            18 | inputs.http = { protocol = "http", sla = { errors = "0%" } }
               |                                                     ^^^^
               = help: no objective can promise no errors at all: allow a small share, such as "0.1%"

            error: invalid `errors`: "150%" is not a valid share of errors: it is more than 100%; expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
              --> shop.toml:22:53
               |
            22 | inputs.http = { protocol = "http", sla = { errors = "150%" } }
               |                                                     ^^^^^^

            error: wrong type for `errors`: expected a percentage like "1%" or "0.5%", found boolean
              --> shop.toml:26:53
               |
            26 | inputs.http = { protocol = "http", sla = { errors = true } }
               |                                                     ^^^^
        "#]],
    );
}

#[test]
fn window_and_scale_down_after() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
max = 2
inputs.a = { protocol = "http", sla = { errors = "1%", window = "1s", scale_down_after = "2h" } }
[components.api]
command = ["api"]
max = 2
inputs.a = { protocol = "http", sla = { errors = "1%", window = "2m", scale_down_after = "500ms" } }
[components.db]
command = ["db"]
max = 2
inputs.a = { protocol = "http", sla = { errors = "1%", window = "2.5s", scale_down_after = 30 } }
"#,
        expect![[r#"
            error: `window` is 1s; expected a duration from 2s to 1m, like "10s"
             --> shop.toml:6:65
              |
            6 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "1s", scale_down_after = "2h" } }
              |                                                                 ^^^^

            error: `scale_down_after` is 2h; expected a duration from 1s to 1h, like "30s"
             --> shop.toml:6:90
              |
            6 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "1s", scale_down_after = "2h" } }
              |                                                                                          ^^^^

            error: `window` is 2m; expected a duration from 2s to 1m, like "10s"
              --> shop.toml:10:65
               |
            10 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "2m", scale_down_after = "500ms" } }
               |                                                                 ^^^^

            error: `scale_down_after` is 500ms; expected a duration from 1s to 1h, like "30s"
              --> shop.toml:10:90
               |
            10 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "2m", scale_down_after = "500ms" } }
               |                                                                                          ^^^^^^^

            error: `window` is 2.5s; expected whole seconds (vdc judges traffic second by second), like "2s"
              --> shop.toml:14:65
               |
            14 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "2.5s", scale_down_after = 30 } }
               |                                                                 ^^^^^^

            error: wrong type for `scale_down_after`: expected a duration like "5s", found integer
              --> shop.toml:14:92
               |
            14 | inputs.a = { protocol = "http", sla = { errors = "1%", window = "2.5s", scale_down_after = 30 } }
               |                                                                                            ^^
               = help: durations need a unit: "30s" or "30ms"
        "#]],
    );
}

#[test]
fn table_mistakes() {
    check(
        r#"
app = "shop"
[components.a]
command = ["a"]
max = 2
inputs.a = { protocol = "http", sla = {} }
[components.b]
command = ["b"]
max = 2
inputs.b = { protocol = "http", sla = { window = "10s" } }
[components.c]
command = ["c"]
max = 2
inputs.c = { protocol = "http", sla = "p99 <= 50ms" }
[components.d]
command = ["d"]
max = 2
inputs.d = { protocol = "http", sla = { latncy = "p99 <= 50ms", p99 = "50ms" } }
"#,
        expect![[r#"
            error: the SLA of input `a` of component `a` has no objective; expected `latency`, `errors` or both
             --> shop.toml:6:33
              |
            6 | inputs.a = { protocol = "http", sla = {} }
              |                                 ^^^
              = help: add one, like `latency = "p99 <= 50ms"` or `errors = "1%"`

            error: the SLA of input `b` of component `b` has no objective; expected `latency`, `errors` or both
              --> shop.toml:10:33
               |
            10 | inputs.b = { protocol = "http", sla = { window = "10s" } }
               |                                 ^^^
               = help: add one, like `latency = "p99 <= 50ms"` or `errors = "1%"`

            error: wrong type for `sla`: expected a table like { latency = "p99 <= 50ms", errors = "1%" }, found string
              --> shop.toml:14:39
               |
            14 | inputs.c = { protocol = "http", sla = "p99 <= 50ms" }
               |                                       ^^^^^^^^^^^^^

            error: unknown field `latncy` in the SLA of input `d` of component `d`; expected one of `latency`, `errors`, `window`, `scale_down_after`
              --> shop.toml:18:41
               |
            18 | inputs.d = { protocol = "http", sla = { latncy = "p99 <= 50ms", p99 = "50ms" } }
               |                                         ^^^^^^
               = help: did you mean `latency`?

            error: unknown field `p99` in the SLA of input `d` of component `d`; expected one of `latency`, `errors`, `window`, `scale_down_after`
              --> shop.toml:18:65
               |
            18 | inputs.d = { protocol = "http", sla = { latncy = "p99 <= 50ms", p99 = "50ms" } }
               |                                                                 ^^^
        "#]],
    );
}

#[test]
fn latency_needs_http() {
    check(
        r#"
app = "shop"
[components.db]
command = ["db"]
max = 2
inputs.kv = { protocol = "tcp", sla = { latency = "p99 <= 5ms", errors = "1%" } }
"#,
        expect![[r#"
            error: input `kv` of component `db` has protocol `tcp`, so its SLA cannot have a `latency` objective
             --> shop.toml:6:51
              |
            6 | inputs.kv = { protocol = "tcp", sla = { latency = "p99 <= 5ms", errors = "1%" } }
              |                                                   ^^^^^^^^^^^^
              = help: vdc measures request latency on `http` inputs only: keep an `errors` objective, or set `protocol = "http"`
        "#]],
    );
}

#[test]
fn one_sla_per_component() {
    check(
        r#"
app = "shop"
[components.web]
command = ["web"]
max = 2
inputs.http = { protocol = "http", sla = { latency = "p99 <= 50ms" } }
inputs.admin = { protocol = "http", sla = { errors = "1%" } }
inputs.grpc = { protocol = "http", sla = { errors = "2%" } }
"#,
        expect![[r#"
            error: input `admin` of component `web` has an SLA, but input `http` already has one; expected at most one input with an SLA per component
             --> shop.toml:7:37
              |
            7 | inputs.admin = { protocol = "http", sla = { errors = "1%" } }
              |                                     ^^^
              = help: vdc scales a component on one objective: keep the SLA of the input whose users matter most

            error: input `grpc` of component `web` has an SLA, but input `http` already has one; expected at most one input with an SLA per component
             --> shop.toml:8:36
              |
            8 | inputs.grpc = { protocol = "http", sla = { errors = "2%" } }
              |                                    ^^^
              = help: vdc scales a component on one objective: keep the SLA of the input whose users matter most
        "#]],
    );
}

#[test]
fn not_on_the_builtin_balancer() {
    check(
        r#"
app = "shop"
[components.lb]
appliance = "builtin:http-lb"
links = { backend = "web.http" }
inputs = { http = { protocol = "http", sla = { latency = "p99 <= 50ms" } } }
[components.web]
command = ["web"]
max = 4
inputs = { http = { protocol = "http" } }
"#,
        expect![[r#"
            error: `inputs` is not allowed on a `builtin:http-lb` component: it has one implicit input, `http`
             --> shop.toml:6:1
              |
            6 | inputs = { http = { protocol = "http", sla = { latency = "p99 <= 50ms" } } }
              | ^^^^^^
              = help: an SLA cannot be set on the balancer's input: give the `sla` to `web.http`, whose component vdc scales to keep it
        "#]],
    );
}
