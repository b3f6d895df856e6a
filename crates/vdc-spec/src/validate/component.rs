//! Reading one component: its appliance, command, environment, resources,
//! replica bounds, inputs, links, volumes and gateway, with the rules that
//! need nothing but the component itself.

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};

use super::read::{self, Fields};
use super::{check_name, terminals, Draft, DraftInput};
use crate::diagnostic::{Sink, Span};
use crate::model::*;
use crate::raw::{Entry, Value};
use crate::units::Bytes;

const FIELDS: &[&str] = &[
    "appliance",
    "image",
    "command",
    "args",
    "env",
    "workdir",
    "resources",
    "replicas",
    "min",
    "max",
    "stop_grace",
    "egress",
    "inputs",
    "links",
    "volumes",
    "gateway",
    "placement",
    "backup",
    "user",
];

/// Fields a built-in appliance must not have, and why.
const NOT_FOR_BUILTIN: &[(&str, &str)] = &[
    ("inputs", "it has one implicit input, `http`"),
    ("command", "the data plane serves it, no process is started"),
    ("image", "the data plane serves it, no process is started"),
    ("args", "the data plane serves it, no process is started"),
    ("egress", "the data plane serves it, no process is started"),
    ("env", "the data plane serves it, no process is started"),
    ("workdir", "the data plane serves it, no process is started"),
    ("volumes", "the data plane serves it and keeps no data"),
    ("backup", "the data plane serves it and keeps no data"),
    ("user", "the data plane serves it, no process is started"),
    (
        "resources",
        "the data plane serves it and reserves nothing for it",
    ),
    (
        "placement",
        "the data plane serves it, no instance is placed on a node",
    ),
];

/// Reads the component at `entry` (whose value is `table`).
pub(super) fn read(sink: &mut Sink, entry: &Entry, table: &[Entry], base_dir: &Path) -> Draft {
    let name = entry.key.clone();
    let at = entry.key_span.clone();
    check_name(sink, at.clone(), "component", &name);
    let what = format!("component `{name}`");
    let f = Fields::new(sink, table, &what, FIELDS);

    let given = f.get("appliance").map(|e| appliance(sink, e));
    // An appliance that is not understood counts as `process` for the
    // remaining checks, except that a missing command is then not news.
    let understood = !matches!(given, Some(None));
    let appliance = given.flatten().unwrap_or(Appliance::Process);
    let builtin = appliance.is_builtin();
    if builtin {
        for (field, why) in NOT_FOR_BUILTIN {
            if let Some(e) = f.get(field) {
                let help = (*field == "inputs")
                    .then(|| lb_sla_help(e, f.get("links")))
                    .flatten();
                sink.error_maybe_help(
                    e.key_span.clone(),
                    format!("`{field}` is not allowed on a `{appliance}` component: {why}"),
                    help,
                );
            }
        }
    }

    let mut draft = Draft {
        name,
        at: at.clone(),
        appliance,
        command: Vec::new(),
        image: None,
        args: None,
        env: BTreeMap::new(),
        workdir: if appliance == Appliance::Container {
            PathBuf::new()
        } else {
            base_dir.to_path_buf()
        },
        resources: Resources::default(),
        resources_at: at.clone(),
        replicas: replicas(sink, &f),
        inputs: BTreeMap::new(),
        links: Vec::new(),
        volumes: BTreeMap::new(),
        gateway: None,
        stop_grace: f
            .get("stop_grace")
            .and_then(|e| read::duration(sink, e))
            .unwrap_or(ComponentSpec::DEFAULT_STOP_GRACE),
        egress: f
            .get("egress")
            .and_then(|e| read::boolean(sink, e, "`true` or `false`"))
            .unwrap_or(false),
        placement: Placement::default(),
        backup: None,
        user: None,
    };

    if builtin {
        draft.inputs.insert(
            ComponentSpec::LB_INPUT.to_owned(),
            DraftInput {
                protocol: Protocol::Http,
                health: HealthCheck::default(),
                sla: None,
            },
        );
    } else if appliance == Appliance::Container {
        draft.image = image(sink, &f, &draft.name, &at, base_dir);
        if let Some(e) = f.get("command") {
            draft.command = container_words(sink, e, "command", "[\"/usr/bin/redis-server\"]");
        }
        if let Some(e) = f.get("args") {
            draft.args = Some(container_words(
                sink,
                e,
                "args",
                "[\"--port\", \"${PORT}\"]",
            ));
        }
        if let Some(e) = f.get("workdir") {
            draft.workdir = container_workdir(sink, e);
        }
    } else {
        for field in ["image", "args"] {
            if let Some(e) = f.get(field) {
                sink.error_help(
                    e.key_span.clone(),
                    format!(
                        "`{field}` is only for containers, and component `{}` runs a process",
                        draft.name
                    ),
                    if field == "image" {
                        "add `appliance = \"container\"` to run it from the image"
                    } else {
                        "give a process its arguments in `command`"
                    },
                );
            }
        }
        if understood || f.get("command").is_some() {
            draft.command = command(sink, &f, &draft.name, &at);
        }
        if let Some(e) = f.get("workdir") {
            draft.workdir = workdir(sink, e, base_dir);
        }
    }
    if !builtin {
        draft.env = f.get("env").map(|e| env(sink, e)).unwrap_or_default();
        draft.resources = Resources::PROCESS_DEFAULT;
        if let Some(e) = f.get("resources") {
            draft.resources_at = e.key_span.clone();
            draft.resources = resources(sink, e);
        }
        if let Some(e) = f.get("inputs") {
            draft.inputs = super::input::inputs(sink, e, &draft.name, draft.replicas);
        }
        if let Some(e) = f.get("volumes") {
            draft.volumes = volumes(sink, e, &draft.name);
        }
        if let Some(e) = f.get("placement") {
            draft.placement = placement(sink, e, &draft.name);
        }
        if let Some(e) = f.get("user") {
            draft.user = user(sink, e, &draft.name);
        }
        if let Some(e) = f.get("backup") {
            draft.backup = backup(sink, e, &draft.name);
            if draft.volumes.is_empty() && f.get("volumes").is_none() {
                sink.error_help(
                    e.key_span.clone(),
                    format!(
                        "component `{}` has a `backup` but no volumes: there is nothing to back up",
                        draft.name
                    ),
                    "declare the data to keep, like volumes = { data = { mount = \"/data\" } }",
                );
            }
        }
    }
    if let Some(e) = f.get("links") {
        draft.links = terminals::links(sink, e);
    }
    if builtin {
        terminals::lb_links(sink, &draft, f.get("links"));
    }
    if let Some(e) = f.get("gateway") {
        draft.gateway = terminals::gateway(sink, e, &draft);
    }
    draft
}

/// When the `inputs` of a load balancer try to give its implicit input an
/// SLA: where the SLA belongs instead, the input it balances, whose
/// component vdc scales to keep it.
fn lb_sla_help(inputs: &Entry, links: Option<&Entry>) -> Option<String> {
    let Value::Table(inputs) = &inputs.node.value else {
        return None;
    };
    let has_sla = inputs.iter().any(|input| match &input.node.value {
        Value::Table(fields) => fields.iter().any(|f| f.key == "sla"),
        _ => false,
    });
    if !has_sla {
        return None;
    }
    let backend = links
        .and_then(|links| match &links.node.value {
            Value::Table(links) => links.iter().find(|l| l.key == ComponentSpec::LB_BACKEND),
            _ => None,
        })
        .and_then(|link| match &link.node.value {
            Value::String(target) => Some(format!("`{target}`")),
            _ => None,
        })
        .unwrap_or_else(|| {
            format!(
                "the input its `{}` link leads to",
                ComponentSpec::LB_BACKEND
            )
        });
    Some(format!(
        "an SLA cannot be set on the balancer's input: give the `sla` to {backend}, \
         whose component vdc scales to keep it"
    ))
}

fn appliance(sink: &mut Sink, entry: &Entry) -> Option<Appliance> {
    let word = read::string(
        sink,
        entry,
        "an appliance, like \"process\" or \"builtin:http-lb\"",
    )?;
    let expected = "expected `process`, `container` or `builtin:http-lb`";
    match word {
        "process" => Some(Appliance::Process),
        "builtin:http-lb" => Some(Appliance::BuiltinHttpLb),
        "container" => Some(Appliance::Container),
        "vm" => {
            sink.error(
                entry.value_span(),
                format!("appliance `{word}` is not supported yet; {expected}"),
            );
            None
        }
        _ => {
            let help = read::closest(
                word,
                ["process", "container", "builtin:http-lb"].into_iter(),
            )
            .map(|w| format!("did you mean `{w}`?"));
            sink.error_maybe_help(
                entry.value_span(),
                format!("unknown appliance `{word}`; {expected}"),
                help,
            );
            None
        }
    }
}

/// `replicas`, `min` and `max`: missing bounds default to the replica count,
/// a missing count to `min` (or 1).
fn replicas(sink: &mut Sink, f: &Fields<'_>) -> Replicas {
    let read = |sink: &mut Sink, key: &str, least: u32| {
        let e = f.get(key)?;
        read::u32_field(sink, e, "a replica count", least).map(|n| (n, e.value_span()))
    };
    let given = read(sink, "replicas", 0);
    let min = read(sink, "min", 0);
    let max = read(sink, "max", 1);
    let count = given
        .as_ref()
        .map_or_else(|| min.as_ref().map_or(1, |(n, _)| (*n).max(1)), |(n, _)| *n);
    let out = Replicas {
        count,
        min: min.as_ref().map_or(count, |(n, _)| *n),
        max: max.as_ref().map_or(count.max(1), |(n, _)| *n),
    };
    let expected = "expected `min` <= `replicas` <= `max`";
    if let (Some((lo, at)), Some((hi, _))) = (&min, &max) {
        if lo > hi {
            sink.error(
                at.clone(),
                format!("`min` is {lo} but `max` is {hi}; {expected}"),
            );
            return out;
        }
    }
    let count_at = given.as_ref().map(|(_, at)| at.clone());
    if let Some((lo, at)) = &min {
        if count < *lo {
            sink.error(
                count_at.clone().unwrap_or_else(|| at.clone()),
                format!("`replicas` is {count} but `min` is {lo}; {expected}"),
            );
        }
    }
    if let Some((hi, at)) = &max {
        if count > *hi {
            sink.error(
                count_at.unwrap_or_else(|| at.clone()),
                format!("`replicas` is {count} but `max` is {hi}; {expected}"),
            );
        }
    }
    out
}

fn command(sink: &mut Sink, f: &Fields<'_>, name: &str, at: &Span) -> Vec<String> {
    let example = "command = [\"python3\", \"web.py\"]";
    let Some(entry) = f.get("command") else {
        sink.error_help(
            at.clone(),
            format!("component `{name}` has no `command`; expected the program to run and its arguments"),
            format!("add a line like `{example}`, or set an `appliance`"),
        );
        return Vec::new();
    };
    if let Value::String(line) = &entry.node.value {
        let words: Vec<String> = line.split_whitespace().map(|w| format!("{w:?}")).collect();
        sink.error_help(
            entry.value_span(),
            "wrong type for `command`: expected an array of strings, found string",
            format!(
                "give the program and each argument separately: `command = [{}]`",
                words.join(", ")
            ),
        );
        return Vec::new();
    }
    let Some(words) = read::strings(
        sink,
        entry,
        &format!("an array of strings, like `{example}`"),
    ) else {
        return Vec::new();
    };
    match words.first() {
        None => sink.error_help(
            entry.value_span(),
            "`command` is empty; expected the program to run and its arguments",
            format!("write it like `{example}`"),
        ),
        Some((program, at)) if program.trim().is_empty() => sink.error(
            at.clone(),
            "the program in `command` is empty; expected a program name or path",
        ),
        Some(_) => {}
    }
    words.into_iter().map(|(w, _)| w.to_owned()).collect()
}

fn env(sink: &mut Sink, entry: &Entry) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(table) = read::table(sink, entry, "a table like { GREETING = \"hello\" }") else {
        return out;
    };
    for var in table {
        check_env_name(sink, var);
        if let Value::String(value) = &var.node.value {
            out.insert(var.key.clone(), value.clone());
        } else {
            sink.error_help(
                var.value_span(),
                format!(
                    "wrong type for `{}`: expected a string, found {}",
                    var.key,
                    var.node.kind()
                ),
                "environment values are strings: put the value in quotes",
            );
        }
    }
    out
}

fn check_env_name(sink: &mut Sink, var: &Entry) {
    let name = var.key.as_str();
    let at = var.key_span.clone();
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        let fixed: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let fixable = fixed
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
        sink.error_maybe_help(
            at,
            format!(
                "invalid environment variable name `{name}`: expected letters, digits and `_`, \
                 not starting with a digit"
            ),
            fixable.then(|| format!("did you mean `{fixed}`?")),
        );
    } else if name.starts_with("VDC_") {
        sink.error(
            at,
            format!(
                "environment variable `{name}` is reserved: vdc sets the `VDC_` variables itself"
            ),
        );
    } else if name == "PORT" {
        sink.error(
            at,
            "environment variable `PORT` is reserved: vdc sets it to the port the instance listens on",
        );
    }
}

/// A working directory, resolved against the spec file's directory.
/// A container's `image`: required; its syntax checked here, its presence
/// at submission. Local files are made absolute against the spec's
/// directory.
fn image(
    sink: &mut Sink,
    f: &Fields<'_>,
    name: &str,
    at: &Span,
    base_dir: &Path,
) -> Option<String> {
    let Some(entry) = f.get("image") else {
        sink.error_help(
            at.clone(),
            format!("component `{name}` is a container but has no `image`"),
            "name it, like `image = \"docker.io/library/redis:7\"` or `image = \"oci-archive:images/web.tar\"`",
        );
        return None;
    };
    let text = read::string(sink, entry, "an image reference, like \"redis:7\"")?;
    match vdc_image::ImageRef::parse(text, base_dir) {
        Ok(image) => Some(image.to_string()),
        Err(e) => {
            sink.error(entry.value_span(), e.to_string());
            None
        }
    }
}

/// A container's `command` or `args`: strings, possibly none.
fn container_words(sink: &mut Sink, entry: &Entry, field: &str, example: &str) -> Vec<String> {
    read::strings(
        sink,
        entry,
        &format!("an array of strings, like `{field} = {example}`"),
    )
    .map(|words| words.into_iter().map(|(w, _)| w.to_owned()).collect())
    .unwrap_or_default()
}

/// A container's `workdir`: an absolute path inside it.
fn container_workdir(sink: &mut Sink, entry: &Entry) -> PathBuf {
    let Some(dir) = read::string(
        sink,
        entry,
        "a directory inside the container, like \"/srv\"",
    ) else {
        return PathBuf::new();
    };
    if !dir.starts_with('/') || dir.contains('\0') {
        sink.error(
            entry.value_span(),
            format!("`workdir` of a container is a path inside it, so it starts with `/`; found {dir:?}"),
        );
        return PathBuf::new();
    }
    PathBuf::from(dir)
}

fn workdir(sink: &mut Sink, entry: &Entry, base_dir: &Path) -> PathBuf {
    let Some(dir) = read::string(sink, entry, "a directory, like \".\" or \"shop\"") else {
        return base_dir.to_path_buf();
    };
    if dir.is_empty() || dir.contains('\0') {
        sink.error(
            entry.value_span(),
            "`workdir` is empty; expected a directory, like \".\"",
        );
        return base_dir.to_path_buf();
    }
    // `.` parts are dropped so "." is the base directory itself; `..` is
    // kept because only the file system knows where it leads.
    let mut out = base_dir.to_path_buf();
    for part in Path::new(dir).components() {
        if part != PathPart::CurDir {
            out.push(part);
        }
    }
    out
}

fn resources(sink: &mut Sink, entry: &Entry) -> Resources {
    let mut out = Resources::PROCESS_DEFAULT;
    let Some(table) = read::table(
        sink,
        entry,
        "a table like { cpu = 0.5, memory = \"256MiB\" }",
    ) else {
        return out;
    };
    let f = Fields::new(sink, table, "`resources`", &["cpu", "memory"]);
    if let Some(cpu) = f.get("cpu").and_then(|e| read::cpu(sink, e)) {
        out.cpu = cpu;
    }
    if let Some(memory) = f.get("memory").and_then(|e| read::memory(sink, e)) {
        out.memory = memory;
    }
    out
}

fn volumes(
    sink: &mut Sink,
    entry: &Entry,
    component: &str,
) -> BTreeMap<String, (Option<Bytes>, Option<String>)> {
    let mut out = BTreeMap::new();
    let Some(table) = read::table(sink, entry, "a table like { data = { mount = \"/data\" } }")
    else {
        return out;
    };
    let mut mounts: Vec<(String, String)> = Vec::new();
    for (volume, fields) in read::named_tables(
        sink,
        table,
        "a table like { size = \"1GiB\", mount = \"/data\" }",
    ) {
        let name_ok = check_name(sink, volume.key_span.clone(), "volume", &volume.key);
        let what = format!("volume `{}` of component `{component}`", volume.key);
        let f = Fields::new(sink, fields, &what, &["size", "mount"]);
        let size = f.get("size").and_then(|e| read::memory(sink, e));
        let mount = f.get("mount").and_then(|e| {
            let path = read::string(sink, e, "an absolute path, like \"/data\"")?;
            if !path.starts_with('/') {
                sink.error(
                    e.value_span(),
                    format!("`mount` of {what} is \"{path}\"; expected an absolute path, like \"/data\""),
                );
                return None;
            }
            let normalized = std::path::Path::new(path);
            if normalized == std::path::Path::new("/")
                || ["/tmp", "/var/tmp", "/dev/shm", "/proc", "/sys", "/dev"]
                    .iter()
                    .any(|private| normalized.starts_with(private))
            {
                sink.error_help(
                    e.value_span(),
                    format!("`mount` of {what} is \"{path}\", where an instance has its own directory or the kernel's"),
                    "mount volumes elsewhere, like \"/data\" or \"/var/lib/NAME\"",
                );
                return None;
            }
            if let Some((other, _)) = mounts.iter().find(|(_, m)| m == path) {
                sink.error(
                    e.value_span(),
                    format!("`{path}` is already the mount of volume `{other}`; expected one volume per path"),
                );
            }
            mounts.push((volume.key.clone(), path.to_owned()));
            Some(path.to_owned())
        });
        if name_ok {
            out.insert(volume.key.clone(), (size, mount));
        }
    }
    out
}

/// `user = "postgres"`, `"root"`, `"1000"` or `"1000:1000"`: a user name as
/// the node's `/etc/passwd` writes them, or numbers.
fn user(sink: &mut Sink, entry: &Entry, component: &str) -> Option<String> {
    let expected =
        "a user name like \"postgres\", \"root\", or a uid like \"1000\" or \"1000:1000\"";
    let text = read::string(sink, entry, expected)?;
    if crate::is_user(text) {
        Some(text.to_owned())
    } else {
        sink.error(
            entry.value_span(),
            format!(
                "`user` of component `{component}` is \"{}\"; expected {expected}",
                read::shorten(text)
            ),
        );
        None
    }
}

/// `backup = { every = "1h", keep = 24 }`: both fields required.
fn backup(sink: &mut Sink, entry: &Entry, component: &str) -> Option<BackupPolicy> {
    let table = read::table(sink, entry, "a table like { every = \"1h\", keep = 24 }")?;
    let what = format!("`backup` of component `{component}`");
    let f = Fields::new(sink, table, &what, &["every", "keep"]);
    let mut missing = Vec::new();
    let every = match f.get("every") {
        Some(e) => read::duration(sink, e).and_then(|every| {
            if every < BackupPolicy::MIN_EVERY {
                sink.error(
                    e.value_span(),
                    format!(
                        "`every` is {every:?}; expected at least {:?} between backups",
                        BackupPolicy::MIN_EVERY
                    ),
                );
                return None;
            }
            Some(every)
        }),
        None => {
            missing.push("every");
            None
        }
    };
    let keep = match f.get("keep") {
        Some(e) => read::integer(
            sink,
            e,
            "a number of backups",
            1,
            i64::from(BackupPolicy::MAX_KEEP),
        )
        .and_then(|n| u32::try_from(n).ok()),
        None => {
            missing.push("keep");
            None
        }
    };
    if !missing.is_empty() {
        sink.error_help(
            entry.key_span.clone(),
            format!("{what} is missing {}", missing.join(" and ")),
            "write both, like backup = { every = \"1h\", keep = 24 }",
        );
    }
    Some(BackupPolicy {
        every: every?,
        keep: keep?,
    })
}

/// `placement = { labels = { KEY = "VALUE" } }`: the node labels an instance
/// needs.
fn placement(sink: &mut Sink, entry: &Entry, component: &str) -> Placement {
    let mut out = Placement::default();
    let Some(table) = read::table(sink, entry, "a table like { labels = { disk = \"ssd\" } }")
    else {
        return out;
    };
    let what = format!("`placement` of component `{component}`");
    let f = Fields::new(sink, table, &what, &["labels"]);
    let Some(labels) = f
        .get("labels")
        .and_then(|e| read::table(sink, e, "a table of node labels, like { disk = \"ssd\" }"))
    else {
        return out;
    };
    for label in labels {
        let key_ok = check_label(sink, label.key_span.clone(), "label key", &label.key);
        let value = match &label.node.value {
            Value::String(value) => {
                check_label(sink, label.value_span(), "label value", value).then_some(value)
            }
            _ => {
                sink.error_help(
                    label.value_span(),
                    format!(
                        "wrong type for label `{}`: expected a string, found {}",
                        label.key,
                        label.node.kind()
                    ),
                    "label values are strings: put the value in quotes",
                );
                None
            }
        };
        if let (true, Some(value)) = (key_ok, value) {
            out.labels.insert(label.key.clone(), value.clone());
        }
    }
    out
}

/// True for a label key or value: 1 to 63 ASCII letters, digits, `.`, `_`,
/// `-` or `/`.
fn is_valid_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

/// Checks a label key or value (`what`), suggesting a fixed-up one.
fn check_label(sink: &mut Sink, at: Span, what: &str, word: &str) -> bool {
    if is_valid_label(word) {
        return true;
    }
    let fixed: String = word
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let help =
        (is_valid_label(&fixed) && fixed != word).then(|| format!("did you mean `{fixed}`?"));
    let problem = if word.is_empty() {
        format!("{what} is empty")
    } else if word.chars().count() > 63 {
        format!("{what} `{word}` has {} characters", word.chars().count())
    } else {
        format!("{what} `{word}` has a character that is not allowed")
    };
    sink.error_maybe_help(
        at,
        format!("{problem}: expected 1 to 63 letters, digits, `.`, `_`, `-` or `/`"),
        help,
    );
    false
}
