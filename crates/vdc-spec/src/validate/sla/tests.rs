//! Every accepted and refused form of a latency objective and of a share of
//! errors.

use std::time::Duration;

use expect_test::{expect, Expect};
use proptest::prelude::*;

use super::*;

/// Each input and what the parser made of it, one per line.
fn table<T: std::fmt::Debug>(
    inputs: &[&str],
    parse: impl Fn(&str) -> Result<T, Invalid>,
    expect: Expect,
) {
    let out: Vec<String> = inputs
        .iter()
        .map(|s| match parse(s) {
            Ok(v) => format!("{s:?} => {v:?}"),
            Err(Invalid { reason, help }) => match help {
                Some(help) => format!("{s:?} => error: {reason}; help: {help}"),
                None => format!("{s:?} => error: {reason}"),
            },
        })
        .collect();
    expect.assert_eq(&out.join("\n"));
}

#[test]
fn latency_accepted() {
    let cases: &[(&str, f64, Duration)] = &[
        ("p99 <= 50ms", 99.0, Duration::from_millis(50)),
        ("p99<=50ms", 99.0, Duration::from_millis(50)),
        ("p99 < 50ms", 99.0, Duration::from_millis(50)),
        ("p99.9<2.5ms", 99.9, Duration::from_micros(2500)),
        ("  p50 <=1s  ", 50.0, Duration::from_secs(1)),
        ("p90 <= 1.5s", 90.0, Duration::from_millis(1500)),
        ("p99.99 <= 200 ms", 99.99, Duration::from_millis(200)),
        ("p0.1 <= 1ms", 0.1, Duration::from_millis(1)),
        ("p99.90 <= 1h", 99.9, Duration::from_secs(3600)),
        ("p99.9999 <= 1m", 99.9999, Duration::from_secs(60)),
    ];
    for (s, percentile, threshold) in cases {
        let got = parse_latency(s);
        let want = LatencyObjective {
            percentile: *percentile,
            threshold: *threshold,
        };
        assert_eq!(got, Ok(want), "{s}");
    }
}

#[test]
fn latency_display_reads_back() {
    for s in [
        "p99 <= 50ms",
        "p99.9 <= 1s",
        "p50 <= 1m30s",
        "p99.99 <= 1h",
        "p99.9 <= 2.5ms",
        "p99 <= 1002.5ms",
        "p90 <= 0.001ms",
    ] {
        let parsed = parse_latency(s).expect("valid");
        assert_eq!(parsed.to_string(), s);
        assert_eq!(parse_latency(&parsed.to_string()), Ok(parsed));
    }
}

#[test]
fn latency_refused() {
    table(
        &[
            "",
            "50ms",
            "P99 <= 50ms",
            "p999 <= 50ms",
            "p9999 <= 50ms",
            "p995 <= 50ms",
            "p100 <= 50ms",
            "p0 <= 50ms",
            "p99.99999 <= 50ms",
            "p <= 50ms",
            "p.9 <= 50ms",
            "p99. <= 50ms",
            "p 99 <= 50ms",
            "p99",
            "p99 50ms",
            "p99 >= 50ms",
            "p99 ≤ 50ms",
            "p99 = 50ms",
            "p99 <=",
            "p99 <= 50",
            "p99 <= 0ms",
            "p99 <= 0.0001ms",
            "p99 <= 5sec",
            "p99 <= 2h",
            "p99 <= -1ms",
        ],
        parse_latency,
        expect![[r#"
            "" => error: expected a percentile, `<=` and a duration, like "p99 <= 50ms" or "p99.9 <= 200ms"
            "50ms" => error: expected a percentile, `<=` and a duration, like "p99 <= 50ms" or "p99.9 <= 200ms"; help: name the percentile, like "p99 <= 50ms"
            "P99 <= 50ms" => error: expected a percentile, `<=` and a duration, like "p99 <= 50ms" or "p99.9 <= 200ms"; help: write the percentile in lowercase: "p99 <= 50ms"
            "p999 <= 50ms" => error: the percentile p999 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9; help: did you mean p99.9?
            "p9999 <= 50ms" => error: the percentile p9999 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9; help: did you mean p99.99?
            "p995 <= 50ms" => error: the percentile p995 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9; help: did you mean p99.5?
            "p100 <= 50ms" => error: the percentile p100 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p0 <= 50ms" => error: the percentile p0 is out of range; expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p99.99999 <= 50ms" => error: the percentile p99.99999 has more than 4 decimals; expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p <= 50ms" => error: expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p.9 <= 50ms" => error: expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p99. <= 50ms" => error: expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p 99 <= 50ms" => error: expected a percentile more than 0 and less than 100, like p99 or p99.9
            "p99" => error: expected `<=` and a duration after `p99`, like "p99 <= 50ms"
            "p99 50ms" => error: expected `<=` and a duration after `p99`, like "p99 <= 50ms"
            "p99 >= 50ms" => error: expected `<=` and a duration after `p99`, like "p99 <= 50ms"; help: an objective bounds the latency from above: "p99 <= 50ms"
            "p99 ≤ 50ms" => error: expected `<=` and a duration after `p99`, like "p99 <= 50ms"; help: write it as "p99 <= 50ms"
            "p99 = 50ms" => error: expected `<=` and a duration after `p99`, like "p99 <= 50ms"; help: write it as "p99 <= 50ms"
            "p99 <=" => error: expected a duration after `<=`, like "p99 <= 50ms"
            "p99 <= 50" => error: the threshold "50" needs a unit: `ms`, `s`, `m` or `h`; help: did you mean "p99 <= 50ms"?
            "p99 <= 0ms" => error: the threshold is zero; expected a latency more than zero, like "p99 <= 50ms"
            "p99 <= 0.0001ms" => error: the threshold "0.0001ms" is less than 0.001ms, the finest latency vdc measures; expected a latency like "p99 <= 50ms"
            "p99 <= 5sec" => error: the threshold "5sec" is not a valid duration: unknown unit `sec`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "p99 <= 2h" => error: the threshold "2h" is more than 1h; expected a latency of at most 1h, like "p99 <= 50ms"
            "p99 <= -1ms" => error: the threshold "-1ms" is not a valid duration: a duration cannot be negative"#]],
    );
}

#[test]
fn percentages() {
    table(
        &[
            "1%", "0.5%", "100%", " 2 %", "0.001%", "1", "0.01", "0%", "0.0%", "101%", "%", "1.%",
            "-1%", "one%", "1%%",
        ],
        parse_percentage,
        expect![[r#"
            "1%" => 0.01
            "0.5%" => 0.005
            "100%" => 1.0
            " 2 %" => 0.02
            "0.001%" => 1e-5
            "1" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"; help: write it as a percentage, such as "1%"
            "0.01" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"; help: write it as a percentage, such as "1%"
            "0%" => error: it is zero; expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"; help: no objective can promise no errors at all: allow a small share, such as "0.1%"
            "0.0%" => error: it is zero; expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"; help: no objective can promise no errors at all: allow a small share, such as "0.1%"
            "101%" => error: it is more than 100%; expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
            "%" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
            "1.%" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
            "-1%" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
            "one%" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%"
            "1%%" => error: expected a percentage more than 0% and at most 100%, like "1%" or "0.5%""#]],
    );
}

proptest! {
    #[test]
    fn latency_never_panics_and_stays_in_range(s in "\\PC{0,24}") {
        if let Ok(o) = parse_latency(&s) {
            prop_assert!(o.percentile > 0.0 && o.percentile < 100.0);
            prop_assert!(!o.threshold.is_zero() && o.threshold <= MAX_THRESHOLD);
        }
    }

    #[test]
    fn latency_like_text_never_panics(s in "[pP]?[0-9.]{0,8} ?(<=|<|>=|≤|=)? ?[0-9.]{0,6}(ms|s|m|h|us)?") {
        if let Ok(o) = parse_latency(&s) {
            prop_assert!(o.percentile > 0.0 && o.percentile < 100.0);
            prop_assert!(!o.threshold.is_zero() && o.threshold <= MAX_THRESHOLD);
        }
    }

    #[test]
    fn percentages_stay_in_range(s in "[0-9.]{0,8} ?%?") {
        if let Ok(r) = parse_percentage(&s) {
            prop_assert!(r > 0.0 && r <= 1.0);
        }
    }
}
