//! Reading a component's inputs: their protocol, health check and SLA.

use std::collections::BTreeMap;

use super::read::{self, Fields};
use super::{check_name, sla, DraftInput};
use crate::diagnostic::Sink;
use crate::model::*;
use crate::raw::{Entry, Value};

const HEALTH_EXPECTED: &str =
    "a path like \"/healthz\", \"tcp\", or a table like { path = \"/healthz\", interval = \"1s\" }";

/// Reads `inputs = { name = { protocol = ..., health = ..., sla = ... } }`.
/// Inputs with invalid names are reported and left out. At most one input
/// has an SLA, and an SLA on a component that cannot scale is a warning.
pub(super) fn inputs(
    sink: &mut Sink,
    entry: &Entry,
    component: &str,
    replicas: Replicas,
) -> BTreeMap<String, DraftInput> {
    let mut out = BTreeMap::new();
    let Some(table) = read::table(
        sink,
        entry,
        "a table like { http = { protocol = \"http\" } }",
    ) else {
        return out;
    };
    let expected = "a table like { protocol = \"http\", health = \"/healthz\" }";
    // The first input with an SLA: its name, and the SLA when it was valid.
    let mut first_sla: Option<(&str, Option<&Entry>)> = None;
    for (input, fields) in read::named_tables(sink, table, expected) {
        let name_ok = check_name(sink, input.key_span.clone(), "input", &input.key);
        let what = format!("input `{}` of component `{component}`", input.key);
        let f = Fields::new(sink, fields, &what, &["protocol", "health", "sla"]);
        let protocol = match f.get("protocol") {
            Some(e) => protocol(sink, e),
            None => {
                sink.error_help(
                    input.key_span.clone(),
                    format!("{what} has no `protocol`; expected `tcp` or `http`"),
                    "add `protocol = \"http\"` or `protocol = \"tcp\"`",
                );
                None
            }
        };
        let health = match f.get("health") {
            Some(e) => health(sink, e, protocol, &what),
            None => HealthCheck::default(),
        };
        let sla = f.get("sla").and_then(|e| {
            let parsed = sla::sla(sink, e, protocol, &what);
            match first_sla {
                None => first_sla = Some((&input.key, parsed.as_ref().map(|_| e))),
                Some((first, _)) => sink.error_help(
                    e.key_span.clone(),
                    format!(
                        "{what} has an SLA, but input `{first}` already has one; \
                         expected at most one input with an SLA per component"
                    ),
                    "vdc scales a component on one objective: keep the SLA of the input \
                     whose users matter most",
                ),
            }
            parsed
        });
        if let (true, Some(protocol)) = (name_ok, protocol) {
            out.insert(
                input.key.clone(),
                DraftInput {
                    protocol,
                    health,
                    sla,
                },
            );
        }
    }
    if let Some((input, Some(e))) = first_sla {
        sla::check_room(sink, e.key_span.clone(), component, input, replicas);
    }
    out
}

fn protocol(sink: &mut Sink, entry: &Entry) -> Option<Protocol> {
    match read::string(sink, entry, "a protocol, `tcp` or `http`")? {
        "tcp" => Some(Protocol::Tcp),
        "http" => Some(Protocol::Http),
        other => {
            sink.error(
                entry.value_span(),
                format!("unknown protocol `{other}`; expected `tcp` or `http`"),
            );
            None
        }
    }
}

/// `health = "/path"`, `health = "tcp"` or a table; `protocol` is the input's
/// protocol when it was valid.
fn health(sink: &mut Sink, entry: &Entry, protocol: Option<Protocol>, what: &str) -> HealthCheck {
    let mut out = HealthCheck::default();
    match &entry.node.value {
        Value::String(s) => {
            if s != "tcp" {
                if let Some(path) = http_path(sink, entry, s, protocol, what) {
                    out.probe = Probe::Http { path };
                }
            }
        }
        Value::Table(fields) => {
            let f = Fields::new(
                sink,
                fields,
                &format!("the health check of {what}"),
                &[
                    "path",
                    "exec",
                    "send",
                    "expect",
                    "interval",
                    "timeout",
                    "failures",
                    "initial_delay",
                    "start_period",
                ],
            );
            let kinds: Vec<&Entry> = ["path", "exec", "send"]
                .iter()
                .filter_map(|k| f.get(k))
                .collect();
            if let [_, second, ..] = kinds.as_slice() {
                sink.error_help(
                    second.key_span.clone(),
                    format!(
                        "the health check of {what} has `{}` and `{}`; expected one kind of probe",
                        kinds[0].key, second.key
                    ),
                    "a probe is an HTTP `path`, a command to `exec`, or bytes to `send` with an answer to `expect`",
                );
            }
            if let Some(e) = f.get("path") {
                if let Some(path) = read::string(sink, e, "a path like \"/healthz\"")
                    .and_then(|s| http_path(sink, e, s, protocol, what))
                {
                    out.probe = Probe::Http { path };
                }
            }
            if let Some(e) = f.get("exec") {
                if let Some(command) = exec_command(sink, e, what) {
                    out.probe = Probe::Exec { command };
                }
            }
            match (f.get("send"), f.get("expect")) {
                (Some(send), Some(expect_entry)) => {
                    let send = read::string(sink, send, "the bytes to send, like \"PING\\r\\n\"");
                    let expect =
                        read::string(sink, expect_entry, "what the answer holds, like \"+PONG\"");
                    let expect = expect.filter(|x| {
                        if x.is_empty() {
                            sink.error(
                                expect_entry.value_span(),
                                format!(
                                    "the health check of {what} expects an empty answer, which every answer holds; expected the text a healthy answer holds, like \"+PONG\""
                                ),
                            );
                        }
                        !x.is_empty()
                    });
                    if let (Some(send), Some(expect)) = (send, expect) {
                        out.probe = Probe::Send {
                            send: send.to_owned(),
                            expect: expect.to_owned(),
                        };
                    }
                }
                (Some(e), None) => sink.error_help(
                    e.key_span.clone(),
                    format!("the health check of {what} has `send` without `expect`"),
                    "say what the answer must hold, like `expect = \"+PONG\"`",
                ),
                (None, Some(e)) => sink.error_help(
                    e.key_span.clone(),
                    format!("the health check of {what} has `expect` without `send`"),
                    "say what to send first, like `send = \"PING\\r\\n\"`",
                ),
                (None, None) => {}
            }
            for (key, slot) in [
                ("initial_delay", &mut out.initial_delay),
                ("start_period", &mut out.start_period),
            ] {
                if let Some(d) = f.get(key).and_then(|e| read::duration(sink, e)) {
                    *slot = d;
                }
            }
            for (key, slot) in [
                ("interval", &mut out.interval),
                ("timeout", &mut out.timeout),
            ] {
                let Some(e) = f.get(key) else { continue };
                match read::duration(sink, e) {
                    Some(d) if d.is_zero() => sink.error(
                        e.value_span(),
                        format!(
                            "`{key}` is zero; expected a duration of at least 1ms, like \"1s\""
                        ),
                    ),
                    Some(d) => *slot = d,
                    None => {}
                }
            }
            if let Some(n) = f
                .get("failures")
                .and_then(|e| read::u32_field(sink, e, "a number of failures", 1))
            {
                out.failures = n;
            }
        }
        _ => read::wrong_type(sink, entry, HEALTH_EXPECTED),
    }
    out
}

/// `exec = ["pg_isready", "-h", "127.0.0.1"]`: a program and its arguments.
fn exec_command(sink: &mut Sink, entry: &Entry, what: &str) -> Option<Vec<String>> {
    let expected = "a command as an array of strings, like [\"pg_isready\", \"-h\", \"127.0.0.1\"]";
    let command: Vec<String> = read::strings(sink, entry, expected)?
        .into_iter()
        .map(|(s, _)| s.to_owned())
        .collect();
    if command.first().is_none_or(|p| p.is_empty()) {
        sink.error(
            entry.value_span(),
            format!("the `exec` probe of {what} has no program; expected {expected}"),
        );
        return None;
    }
    Some(command)
}

/// An HTTP health path: it starts with `/`, has no spaces, and needs an
/// HTTP input.
fn http_path(
    sink: &mut Sink,
    entry: &Entry,
    path: &str,
    protocol: Option<Protocol>,
    what: &str,
) -> Option<String> {
    let at = entry.value_span();
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        sink.error(
            at,
            format!(
                "invalid health check \"{path}\": expected a path like \"/healthz\", or \"tcp\""
            ),
        );
        return None;
    }
    if protocol == Some(Protocol::Tcp) {
        sink.error_help(
            at,
            format!("{what} has protocol `tcp`, so its health check cannot be an HTTP request"),
            "use `health = \"tcp\"`, or set `protocol = \"http\"`",
        );
        return None;
    }
    Some(path.to_owned())
}
