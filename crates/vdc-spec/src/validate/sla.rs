//! Reading an input's SLA: `sla = { latency = "p99 <= 50ms", errors = "1%",
//! window = "10s", scale_down_after = "30s" }`.

use std::time::Duration;

use super::read::{self, Fields};
use crate::diagnostic::{Sink, Span};
use crate::model::{LatencyObjective, Protocol, Replicas, Sla};
use crate::raw::{Entry, Value};
use crate::units;

const FIELDS: &[&str] = &["latency", "errors", "window", "scale_down_after"];

const TABLE_EXPECTED: &str = "a table like { latency = \"p99 <= 50ms\", errors = \"1%\" }";
const LATENCY_EXAMPLE: &str = "like \"p99 <= 50ms\" or \"p99.9 <= 200ms\"";
const ERRORS_HELP: &str = "write it as a percentage, such as \"1%\"";

/// The shortest latency threshold: latency is measured in microseconds.
const MIN_THRESHOLD: Duration = Duration::from_micros(1);
/// The longest latency threshold: past it, an objective says nothing a
/// request timeout would not.
const MAX_THRESHOLD: Duration = Duration::from_secs(3600);
/// The decimals a percentile may have: `p99.9999` is as fine as it gets.
const PERCENTILE_DECIMALS: usize = 4;
/// At most a minute: the server keeps a minute of per-second history.
const WINDOW: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));
const SCALE_DOWN_AFTER: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// Reads the `sla` of an input. `protocol` is the input's protocol when it
/// was valid; `what` names the input ("input `http` of component `web`").
/// `None` when anything in it was reported.
pub(super) fn sla(
    sink: &mut Sink,
    entry: &Entry,
    protocol: Option<Protocol>,
    what: &str,
) -> Option<Sla> {
    let table = read::table(sink, entry, TABLE_EXPECTED)?;
    let f = Fields::new(sink, table, &format!("the SLA of {what}"), FIELDS);
    let mut ok = true;

    let latency = f.get("latency").and_then(|e| {
        let objective = latency_entry(sink, e);
        if objective.is_some() && protocol == Some(Protocol::Tcp) {
            sink.error_help(
                e.value_span(),
                format!("{what} has protocol `tcp`, so its SLA cannot have a `latency` objective"),
                "vdc measures request latency on `http` inputs only: \
                 keep an `errors` objective, or set `protocol = \"http\"`",
            );
            return None;
        }
        objective
    });
    ok &= latency.is_some() || f.get("latency").is_none();

    let max_error_ratio = f.get("errors").and_then(|e| errors(sink, e));
    ok &= max_error_ratio.is_some() || f.get("errors").is_none();

    let window = bounded(sink, f.get("window"), WINDOW, Sla::DEFAULT_WINDOW);
    let scale_down_after = bounded(
        sink,
        f.get("scale_down_after"),
        SCALE_DOWN_AFTER,
        Sla::DEFAULT_SCALE_DOWN_AFTER,
    );

    if f.get("latency").is_none() && f.get("errors").is_none() {
        // A misspelt objective is already reported as an unknown field.
        let misspelt = table.iter().any(|e| !FIELDS.contains(&e.key.as_str()));
        if !misspelt {
            sink.error_help(
                entry.key_span.clone(),
                format!("the SLA of {what} has no objective; expected `latency`, `errors` or both"),
                "add one, like `latency = \"p99 <= 50ms\"` or `errors = \"1%\"`",
            );
        }
        return None;
    }
    Some(Sla {
        latency,
        max_error_ratio,
        window: window?,
        scale_down_after: scale_down_after?,
    })
    .filter(|_| ok)
}

/// The warning for a component whose replica bounds leave autoscaling no
/// room to keep its SLA. `at` is where the SLA is written.
pub(super) fn check_room(
    sink: &mut Sink,
    at: Span,
    component: &str,
    input: &str,
    replicas: Replicas,
) {
    if replicas.min != replicas.max {
        return;
    }
    let n = replicas.max;
    sink.warning(
        at,
        format!(
            "component `{component}` has an SLA on input `{input}` but `min` and `max` are both {n}: \
             autoscaling has no room, so only steering traffic can keep the objective"
        ),
        format!(
            "let the replica count move, like `min = {n}` and `max = {}`",
            n.saturating_mul(2).max(2)
        ),
    );
}

// === latency ===

fn latency_entry(sink: &mut Sink, entry: &Entry) -> Option<LatencyObjective> {
    let text = read::string(
        sink,
        entry,
        &format!("a latency objective, {LATENCY_EXAMPLE}"),
    )?;
    match parse_latency(text) {
        Ok(objective) => Some(objective),
        Err(e) => {
            sink.error_maybe_help(
                entry.value_span(),
                format!(
                    "invalid `{}`: {text:?} is not a valid latency objective: {}",
                    entry.key, e.reason
                ),
                e.help,
            );
            None
        }
    }
}

/// Why a latency objective or a percentage could not be read, and the
/// likely fix.
#[derive(Debug, PartialEq)]
pub(crate) struct Invalid {
    pub reason: String,
    pub help: Option<String>,
}

impl Invalid {
    fn new(reason: impl Into<String>) -> Self {
        Invalid {
            reason: reason.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Parses `pQ <= DURATION` (or `pQ < DURATION`, read the same): the Q-th
/// percentile of request latency stays at or under the duration.
pub(crate) fn parse_latency(s: &str) -> Result<LatencyObjective, Invalid> {
    let text = s.trim();
    let expected = format!("expected a percentile, `<=` and a duration, {LATENCY_EXAMPLE}");
    let Some(rest) = text.strip_prefix('p') else {
        let err = Invalid::new(expected);
        // A bare duration: the percentile was left out.
        return Err(if units::parse_duration(text).is_ok() {
            err.help(format!("name the percentile, like \"p99 <= {text}\""))
        } else if let Some(rest) = text.strip_prefix('P') {
            err.help(format!("write the percentile in lowercase: \"p{rest}\""))
        } else {
            err
        });
    };
    let q_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (q, rest) = rest.split_at(q_len);
    let percentile = percentile(q)?;
    let rest = rest.trim_start();
    let threshold = if let Some(t) = rest.strip_prefix("<=").or_else(|| rest.strip_prefix('<')) {
        t.trim()
    } else {
        let err = Invalid::new(format!(
            "expected `<=` and a duration after `p{q}`, like \"p{q} <= 50ms\""
        ));
        let (op, tail) = match ["≤", "=<", "==", ">=", "=>", ">", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
        {
            Some(op) => (Some(op), rest[op.len()..].trim()),
            None => (None, rest),
        };
        let tail = if tail.is_empty() { "50ms" } else { tail };
        return Err(match op {
            Some(">=" | "=>" | ">") => err.help(format!(
                "an objective bounds the latency from above: \"p{q} <= {tail}\""
            )),
            Some(_) => err.help(format!("write it as \"p{q} <= {tail}\"")),
            None => err,
        });
    };
    let threshold = latency_threshold(threshold, q)?;
    Ok(LatencyObjective {
        percentile,
        threshold,
    })
}

fn percentile(q: &str) -> Result<f64, Invalid> {
    let expected = "expected a percentile more than 0 and less than 100, like p99 or p99.9";
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || q.ends_with('.') {
        return Err(Invalid::new(expected));
    }
    if frac.trim_end_matches('0').len() > PERCENTILE_DECIMALS {
        return Err(Invalid::new(format!(
            "the percentile p{q} has more than {PERCENTILE_DECIMALS} decimals; {expected}"
        )));
    }
    let value: f64 = q.parse().map_err(|_| Invalid::new(expected))?;
    if value > 0.0 && value < 100.0 {
        return Ok(value);
    }
    let err = Invalid::new(format!("the percentile p{q} is out of range; {expected}"));
    // `p999` is how some tools spell p99.9.
    let nines = int.trim_start_matches('0');
    let meant = frac.is_empty()
        && nines.starts_with("99")
        && (3..=2 + PERCENTILE_DECIMALS).contains(&nines.len());
    Err(if meant {
        err.help(format!("did you mean p99.{}?", &nines[2..]))
    } else {
        err
    })
}

fn latency_threshold(text: &str, q: &str) -> Result<Duration, Invalid> {
    if text.is_empty() {
        return Err(Invalid::new(format!(
            "expected a duration after `<=`, like \"p{q} <= 50ms\""
        )));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(Invalid::new(format!(
            "the threshold {text:?} needs a unit: `ms`, `s`, `m` or `h`"
        ))
        .help(format!("did you mean \"p{q} <= {text}ms\"?")));
    }
    let threshold =
        units::parse_duration(text).map_err(|e| Invalid::new(format!("the threshold {e}")))?;
    if threshold.is_zero() {
        return Err(Invalid::new(format!(
            "the threshold is zero; expected a latency more than zero, like \"p{q} <= 50ms\""
        )));
    }
    if threshold < MIN_THRESHOLD {
        return Err(Invalid::new(format!(
            "the threshold {text:?} is less than 0.001ms, the finest latency vdc measures; \
             expected a latency like \"p{q} <= 50ms\""
        )));
    }
    if threshold > MAX_THRESHOLD {
        return Err(Invalid::new(format!(
            "the threshold {text:?} is more than 1h; expected a latency of at most 1h, like \"p{q} <= 50ms\""
        )));
    }
    Ok(threshold)
}

// === errors ===

/// `errors = "1%"`: the largest share of failed requests, as a ratio.
fn errors(sink: &mut Sink, entry: &Entry) -> Option<f64> {
    let at = entry.value_span();
    let text = match &entry.node.value {
        Value::String(s) => s.as_str(),
        Value::Integer(_) | Value::Float(_) => {
            sink.error_help(
                at,
                format!(
                    "wrong type for `{}`: expected a percentage like \"1%\", found {}",
                    entry.key,
                    entry.node.kind()
                ),
                ERRORS_HELP,
            );
            return None;
        }
        _ => {
            read::wrong_type(sink, entry, "a percentage like \"1%\" or \"0.5%\"");
            return None;
        }
    };
    match parse_percentage(text) {
        Ok(ratio) => Some(ratio),
        Err(e) => {
            sink.error_maybe_help(
                at,
                format!(
                    "invalid `{}`: {text:?} is not a valid share of errors: {}",
                    entry.key, e.reason
                ),
                e.help,
            );
            None
        }
    }
}

/// `"1%"` as 0.01: more than 0 and at most 100 percent.
pub(crate) fn parse_percentage(s: &str) -> Result<f64, Invalid> {
    let expected = "expected a percentage more than 0% and at most 100%, like \"1%\" or \"0.5%\"";
    let text = s.trim();
    let Some(number) = text.strip_suffix('%').map(str::trim_end) else {
        let err = Invalid::new(expected);
        return Err(if text.parse::<f64>().is_ok() {
            err.help(ERRORS_HELP)
        } else {
            err
        });
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || number.ends_with('.') {
        return Err(Invalid::new(expected));
    }
    let value: f64 = number.parse().map_err(|_| Invalid::new(expected))?;
    if value <= 0.0 {
        return Err(Invalid::new(format!("it is zero; {expected}")).help(
            "no objective can promise no errors at all: allow a small share, such as \"0.1%\"",
        ));
    }
    if value > 100.0 {
        return Err(Invalid::new(format!("it is more than 100%; {expected}")));
    }
    Ok(value / 100.0)
}

// === durations ===

/// A whole number of seconds within `lo..=hi`, `default` when absent;
/// `None` when it was reported. Whole, because vdc judges traffic second by
/// second: a fraction would be dropped without a word.
fn bounded(
    sink: &mut Sink,
    entry: Option<&Entry>,
    (lo, hi): (Duration, Duration),
    default: Duration,
) -> Option<Duration> {
    let Some(entry) = entry else {
        return Some(default);
    };
    let d = read::duration(sink, entry)?;
    let written = match &entry.node.value {
        Value::String(s) => s.trim().to_owned(),
        _ => units::format_duration(d),
    };
    if d < lo || d > hi {
        sink.error(
            entry.value_span(),
            format!(
                "`{}` is {written}; expected a duration from {} to {}, like \"{}\"",
                entry.key,
                units::format_duration(lo),
                units::format_duration(hi),
                units::format_duration(default)
            ),
        );
        return None;
    }
    if d.subsec_nanos() != 0 {
        sink.error(
            entry.value_span(),
            format!(
                "`{}` is {written}; expected whole seconds (vdc judges traffic second by second), like \"{}\"",
                entry.key,
                units::format_duration(Duration::from_secs(d.as_secs().max(lo.as_secs())))
            ),
        );
        return None;
    }
    Some(d)
}

#[cfg(test)]
mod tests;
