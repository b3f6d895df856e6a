//! Mistakes in the shape of the file: TOML syntax, unknown fields, wrong
//! types, missing parts and names. Each test is a spec, then every
//! diagnostic as a person would see it.

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

            error: unknown field `comand` in component `web`; expected one of `appliance`, `image`, `command`, `args`, `env`, `workdir`, `resources`, `replicas`, `min`, `max`, `stop_grace`, `egress`, `inputs`, `links`, `volumes`, `gateway`, `placement`, `backup`, `user`
             --> shop.toml:5:1
              |
            5 | comand = ["web"]
              | ^^^^^^
              = help: did you mean `command`?

            error: unknown field `proto` in input `http` of component `web`; expected one of `protocol`, `health`, `sla`
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
    check(
        "tenant = \"default\"\n",
        expect![[r#"
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
    "#]],
    );
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
