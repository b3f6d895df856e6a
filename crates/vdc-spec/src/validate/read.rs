//! Typed reads from the raw tree. Each read reports a diagnostic and returns
//! `None` when the value has the wrong shape, so validation carries on and
//! finds the other mistakes too.

use std::time::Duration;

use crate::diagnostic::{Sink, Span};
use crate::raw::{Entry, Value};
use crate::units::{self, Bytes, MilliCpu};

/// The entries of a table whose keys are fixed field names.
pub(super) struct Fields<'a> {
    entries: &'a [Entry],
}

// === impl Fields ===

impl<'a> Fields<'a> {
    /// Reports every key not in `known` as an unknown field of `what`
    /// ("component `web`"), listing what is expected.
    pub(super) fn new(sink: &mut Sink, entries: &'a [Entry], what: &str, known: &[&str]) -> Self {
        for entry in entries {
            if known.contains(&entry.key.as_str()) {
                continue;
            }
            let list = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            sink.error_maybe_help(
                entry.key_span.clone(),
                format!(
                    "unknown field `{}` in {what}; expected one of {list}",
                    entry.key
                ),
                closest(&entry.key, known.iter().copied()).map(|k| format!("did you mean `{k}`?")),
            );
        }
        Fields { entries }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

// === typed values ===

/// Reports that `entry` holds the wrong type of value.
pub(super) fn wrong_type(sink: &mut Sink, entry: &Entry, expected: &str) {
    sink.error(
        entry.value_span(),
        format!(
            "wrong type for `{}`: expected {expected}, found {}",
            entry.key,
            entry.node.kind()
        ),
    );
}

pub(super) fn string<'a>(sink: &mut Sink, entry: &'a Entry, expected: &str) -> Option<&'a str> {
    match &entry.node.value {
        Value::String(s) => Some(s),
        _ => {
            wrong_type(sink, entry, expected);
            None
        }
    }
}

pub(super) fn boolean(sink: &mut Sink, entry: &Entry, expected: &str) -> Option<bool> {
    match &entry.node.value {
        Value::Boolean(b) => Some(*b),
        _ => {
            wrong_type(sink, entry, expected);
            None
        }
    }
}

pub(super) fn table<'a>(sink: &mut Sink, entry: &'a Entry, expected: &str) -> Option<&'a [Entry]> {
    match &entry.node.value {
        Value::Table(entries) => Some(entries),
        _ => {
            wrong_type(sink, entry, expected);
            None
        }
    }
}

/// An integer in `min..=max`; `expected` says what it counts ("a replica
/// count").
pub(super) fn integer(
    sink: &mut Sink,
    entry: &Entry,
    expected: &str,
    min: i64,
    max: i64,
) -> Option<i64> {
    match entry.node.value {
        Value::Integer(n) if (min..=max).contains(&n) => Some(n),
        Value::Integer(n) => {
            let bound = if n < min {
                format!("{min} or more")
            } else {
                format!("at most {max}")
            };
            sink.error(
                entry.value_span(),
                format!("`{}` is {n}; expected {expected} of {bound}", entry.key),
            );
            None
        }
        _ => {
            wrong_type(sink, entry, &format!("{expected} (an integer)"));
            None
        }
    }
}

pub(super) fn u32_field(sink: &mut Sink, entry: &Entry, expected: &str, min: u32) -> Option<u32> {
    integer(sink, entry, expected, i64::from(min), i64::from(u32::MAX))
        .and_then(|n| u32::try_from(n).ok())
}

/// An array of strings, each element's span kept.
pub(super) fn strings<'a>(
    sink: &mut Sink,
    entry: &'a Entry,
    expected: &str,
) -> Option<Vec<(&'a str, Span)>> {
    let Value::Array(items) = &entry.node.value else {
        wrong_type(sink, entry, expected);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let at = item.span.clone().unwrap_or_else(|| entry.value_span());
        match &item.value {
            Value::String(s) => out.push((s.as_str(), at)),
            _ => {
                ok = false;
                sink.error(
                    at,
                    format!(
                        "wrong type for element {} of `{}`: expected a string, found {}",
                        i + 1,
                        entry.key,
                        item.kind()
                    ),
                );
            }
        }
    }
    ok.then_some(out)
}

/// A memory size: a string with a binary unit, or an integer number of
/// bytes.
pub(super) fn memory(sink: &mut Sink, entry: &Entry) -> Option<Bytes> {
    let parsed = match &entry.node.value {
        Value::String(s) => units::parse_memory(s),
        Value::Integer(n) => units::memory_from_int(*n),
        _ => {
            wrong_type(sink, entry, "a size like \"256MiB\" or a number of bytes");
            return None;
        }
    };
    report(sink, entry, parsed)
}

/// A CPU amount: a number of cores or a string of cores or millicores.
pub(super) fn cpu(sink: &mut Sink, entry: &Entry) -> Option<MilliCpu> {
    let parsed = match &entry.node.value {
        Value::String(s) => units::parse_cpu(s),
        Value::Integer(n) => units::cpu_from_cores(*n as f64),
        Value::Float(f) => units::cpu_from_cores(*f),
        _ => {
            wrong_type(
                sink,
                entry,
                "a number of cores like 0.5, or millicores like \"500m\"",
            );
            return None;
        }
    };
    report(sink, entry, parsed)
}

pub(super) fn duration(sink: &mut Sink, entry: &Entry) -> Option<Duration> {
    let parsed = match &entry.node.value {
        Value::String(s) => units::parse_duration(s),
        Value::Integer(n) => {
            sink.error_help(
                entry.value_span(),
                format!(
                    "wrong type for `{}`: expected a duration like \"5s\", found integer",
                    entry.key
                ),
                format!("durations need a unit: \"{n}s\" or \"{n}ms\""),
            );
            return None;
        }
        _ => {
            wrong_type(sink, entry, "a duration like \"5s\"");
            return None;
        }
    };
    report(sink, entry, parsed)
}

fn report<T>(sink: &mut Sink, entry: &Entry, parsed: Result<T, units::UnitError>) -> Option<T> {
    parsed
        .map_err(|e| sink.error(entry.value_span(), format!("invalid `{}`: {e}", entry.key)))
        .ok()
}

/// The table entries of a value that should be a map of named tables
/// (inputs, volumes): non-table values are reported and skipped.
pub(super) fn named_tables<'a>(
    sink: &mut Sink,
    entries: &'a [Entry],
    expected: &str,
) -> Vec<(&'a Entry, &'a [Entry])> {
    entries
        .iter()
        .filter_map(|e| table(sink, e, expected).map(|t| (e, t)))
        .collect()
}

// === suggestions ===

/// The candidate closest to `word` by edit distance, when it is close enough
/// to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `` `a`, `b` and `c` ``: names for a message.
pub(crate) fn list<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.as_ref())).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// `text` cut to at most 60 characters (with `…`), for quoting what a user
/// wrote in a message without repeating a huge value.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
