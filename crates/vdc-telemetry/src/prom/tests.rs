//! Tests of the exposition: the text parses back under a strict reading of
//! format 0.0.4, counters accumulate, labels are escaped, tenants are kept
//! apart.

use std::collections::{BTreeMap, BTreeSet};

use expect_test::expect;

use super::*;
use crate::testutil::{instance_tags, link_tags, resources, traffic, traffic_msg};

// === a strict parser ===

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Parsed {
    /// Family name → (help, type).
    families: BTreeMap<String, (String, String)>,
    samples: Vec<Sample>,
}

impl Parsed {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(found.len() <= 1, "duplicate series {name} {labels:?}");
        found.first().map(|s| s.value)
    }
}

fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn family_of<'a>(name: &'a str, families: &BTreeMap<String, (String, String)>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (families.get(base)?.1 == "histogram").then_some(base)
    })
}

fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break i,
                (_, '\n') => return Err("raw newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            if rest.starts_with('}') {
                return Err("trailing comma".into());
            }
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at {rest:?}"));
        }
    }
}

fn parse(text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut help = BTreeMap::new();
    // Families that have samples, and the family of the last sample: a
    // family's samples must be contiguous, after its HELP and TYPE.
    let mut with_samples = BTreeSet::new();
    let mut last_family: Option<String> = None;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name.ok_or("comment without a name")?.to_string();
            let arg = arg.ok_or("comment without text")?.to_string();
            if !valid_name(&name, true) {
                return Err(format!("bad metric name {name:?}"));
            }
            if with_samples.contains(&name) {
                return Err(format!("{keyword:?} for {name} after its samples"));
            }
            match keyword {
                Some("HELP") => {
                    if help.insert(name.clone(), arg).is_some() {
                        return Err(format!("HELP for {name} twice"));
                    }
                }
                Some("TYPE") => {
                    let types = ["counter", "gauge", "histogram", "summary", "untyped"];
                    if !types.contains(&arg.as_str()) {
                        return Err(format!("bad type {arg}"));
                    }
                    let h = help
                        .get(&name)
                        .cloned()
                        .ok_or(format!("TYPE before HELP for {name}"))?;
                    if parsed.families.insert(name.clone(), (h, arg)).is_some() {
                        return Err(format!("TYPE for {name} twice"));
                    }
                }
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("no value in {line:?}"))?;
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after)?,
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value = rest
            .strip_prefix(' ')
            .ok_or(format!("no space before value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
        };
        let family = family_of(name, &parsed.families).ok_or(format!("{name} has no TYPE"))?;
        if last_family.as_deref() != Some(family) && !with_samples.insert(family.to_string()) {
            return Err(format!("{name} is not grouped with its family"));
        }
        last_family = Some(family.to_string());
        if parsed.families[family].1 == "counter" && !family.ends_with("_total") {
            return Err(format!("counter {family} without _total"));
        }
        parsed.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&parsed)?;
    Ok(parsed)
}

type Labels = Vec<(String, String)>;

/// Buckets grow with `le`, end in `+Inf`, and `+Inf` equals `_count`.
fn check_histograms(parsed: &Parsed) -> Result<(), String> {
    for (family, _) in parsed
        .families
        .iter()
        .filter(|(_, (_, t))| t == "histogram")
    {
        // Labels but `le` → (le, cumulative count) in order of appearance.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in parsed
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s.labels.get("le").ok_or("bucket without le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| "bad le")?
            };
            let key = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, buckets) in series {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!("{family} {key:?}: buckets not cumulative"));
            }
            let (last_le, inf) = *buckets.last().ok_or("no buckets")?;
            let labels: Vec<(&str, &str)> =
                key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = parsed.value(&format!("{family}_count"), &labels);
            if last_le != f64::INFINITY || count != Some(inf) {
                return Err(format!("{family} {key:?}: +Inf {inf} vs count {count:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_is_strict() {
    for bad in [
        "x_total 1\n",
        "# HELP a x\n# TYPE a gauge\na{b=\"1\",} 1\n",
        "# HELP a x\n# TYPE a gauge\na{b=\"\\x\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na 1",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na{c=\"d\"} 2\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# TYPE a gauge\n",
        "# HELP a x\n# TYPE a gauge\na{b=\"1\",b=\"2\"} 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

// === the exposition ===

fn http_sample(ts: u64, requests: u64) -> (Message, Histogram) {
    let mut s = traffic(ts, SeriesKind::Link, link_tags(), requests);
    s.traffic.responses_5xx = 1;
    s.traffic.errors_timeout = 1;
    let mut h = Histogram::new();
    for i in 0..requests {
        h.record_us(400 + i * 1_000);
    }
    s.latency = Some(h.summary());
    (Message::Traffic(s), h)
}

const LINK: [(&str, &str); 6] = [
    ("tenant", "acme"),
    ("app", "shop"),
    ("component", "web"),
    ("link", "db"),
    ("target", "db.kv"),
    ("kind", "link"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    LINK.iter().chain(extra).copied().collect()
}

#[test]
fn renders_parseable_text_and_counters_accumulate() {
    let mut e = Exposition::new();
    let (m1, h1) = http_sample(1, 3);
    let (m2, h2) = http_sample(2, 2);
    e.observe(&m1, Some(&h1));
    let first = parse(&e.render(None)).unwrap();
    assert_eq!(first.value("vdc_requests_total", &LINK), Some(3.0));
    e.observe(&m2, Some(&h2));
    e.observe(&Message::Dropped { count: 1 }, None);
    let p = parse(&e.render(None)).unwrap();

    assert_eq!(p.value("vdc_requests_total", &LINK), Some(5.0));
    assert_eq!(
        p.value("vdc_responses_total", &with(&[("class", "2xx")])),
        Some(5.0)
    );
    assert_eq!(
        p.value("vdc_responses_total", &with(&[("class", "5xx")])),
        Some(2.0)
    );
    assert_eq!(
        p.value("vdc_errors_total", &with(&[("cause", "timeout")])),
        Some(2.0)
    );
    assert_eq!(
        p.value("vdc_errors_total", &with(&[("cause", "refused")])),
        Some(0.0)
    );
    assert_eq!(
        p.value("vdc_bytes_total", &with(&[("direction", "in")])),
        Some(500.0)
    );
    assert_eq!(
        p.value("vdc_bytes_total", &with(&[("direction", "out")])),
        Some(5000.0)
    );
    assert_eq!(p.value("vdc_connections_total", &LINK), Some(2.0));
    assert_eq!(
        p.value("vdc_connections_active", &LINK),
        Some(2.0),
        "a gauge, not a sum"
    );
    // Latencies 400, 1400, 2400 and 400, 1400 µs.
    let bucket = |le| p.value("vdc_request_duration_seconds_bucket", &with(&[("le", le)]));
    assert_eq!(bucket("0.0005"), Some(2.0));
    assert_eq!(bucket("0.001"), Some(2.0));
    assert_eq!(bucket("0.0025"), Some(5.0));
    assert_eq!(bucket("10"), Some(5.0));
    assert_eq!(bucket("+Inf"), Some(5.0));
    assert_eq!(
        p.value("vdc_request_duration_seconds_count", &LINK),
        Some(5.0)
    );
    assert_eq!(
        p.value("vdc_request_duration_seconds_sum", &LINK),
        Some(0.006)
    );
    assert_eq!(p.families["vdc_connections_active"].1, "gauge");
    assert!(p.samples.iter().all(|s| !s.labels.contains_key("instance")));
}

#[test]
fn instances_of_a_target_roll_up_without_the_instance_label() {
    let mut e = Exposition::new();
    for (i, active) in [(0, 3), (1, 4)] {
        let tags = Tags::new("acme", "shop", "db")
            .with_target("db.kv")
            .with_instance(format!("shop/db/{i}"));
        let mut s = traffic(1, SeriesKind::Instance, tags, 10);
        s.protocol = "tcp".to_string();
        s.traffic.connections_active = active;
        let mut h = Histogram::new();
        h.record_us(2_000_000);
        e.observe(&Message::Traffic(s), Some(&h));
    }
    let p = parse(&e.render(None)).unwrap();
    let db = [
        ("tenant", "acme"),
        ("app", "shop"),
        ("component", "db"),
        ("target", "db.kv"),
        ("kind", "instance"),
    ];
    assert_eq!(p.value("vdc_connections_active", &db), Some(7.0));
    assert_eq!(p.value("vdc_connections_total", &db), Some(2.0));
    assert_eq!(
        p.value("vdc_requests_total", &db),
        None,
        "no requests for tcp"
    );
    assert_eq!(
        p.value("vdc_connection_duration_seconds_count", &db),
        Some(2.0)
    );
    assert_eq!(
        p.value("vdc_connection_duration_seconds_sum", &db),
        Some(4.0)
    );

    e.forget_instance("shop/db/1");
    let p = parse(&e.render(None)).unwrap();
    assert_eq!(p.value("vdc_connections_active", &db), Some(3.0));
}

#[test]
fn label_values_are_escaped() {
    let mut e = Exposition::new();
    let tenant = "we\"ird\\ten\nant";
    let tags = Tags::new(tenant, "shop", "web").with_link("db");
    e.observe(&traffic_msg(1, tags, 1), None);
    let text = e.render(None);
    assert!(text.contains(r#"tenant="we\"ird\\ten\nant""#), "{text}");
    let p = parse(&text).unwrap();
    let labels = [
        ("tenant", tenant),
        ("app", "shop"),
        ("component", "web"),
        ("link", "db"),
        ("kind", "link"),
    ];
    assert_eq!(p.value("vdc_requests_total", &labels), Some(1.0));
    assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
}

#[test]
fn instances_have_counters_that_survive_restarts() {
    let mut e = Exposition::new();
    e.observe(&Message::Resources(resources(1, instance_tags(0))), None);
    let mut later = resources(2, instance_tags(0));
    later.cpu_user_ms = 2_250;
    e.observe(&Message::Resources(later), None);
    // The instance restarted: its totals start again from zero.
    let mut restarted = resources(3, instance_tags(0));
    restarted.cpu_user_ms = 5;
    restarted.cpu_system_ms = 100;
    restarted.throttled_ms = 10;
    restarted.io_read_bytes = 1000;
    restarted.oom_kills = 1;
    restarted.memory_limit_bytes = None;
    e.observe(&Message::Resources(restarted), None);

    let p = parse(&e.render(None)).unwrap();
    let me = [
        ("tenant", "acme"),
        ("app", "shop"),
        ("component", "web"),
        ("instance", "shop/web/0"),
    ];
    let with_mode = |mode| {
        me.iter()
            .copied()
            .chain([("mode", mode)])
            .collect::<Vec<_>>()
    };
    assert_eq!(
        p.value("vdc_instance_cpu_seconds_total", &with_mode("user")),
        Some(2.255)
    );
    assert_eq!(
        p.value("vdc_instance_cpu_seconds_total", &with_mode("system")),
        Some(0.35)
    );
    assert_eq!(p.value("vdc_instance_oom_kills_total", &me), Some(1.0));
    assert_eq!(
        p.value("vdc_instance_memory_bytes", &me),
        Some((50u64 << 20) as f64)
    );
    assert_eq!(p.value("vdc_instance_memory_limit_bytes", &me), None);
    assert_eq!(
        p.value("vdc_instance_cpu_throttled_seconds_total", &me),
        Some(0.05)
    );
    let read = me
        .iter()
        .copied()
        .chain([("direction", "read")])
        .collect::<Vec<_>>();
    assert_eq!(p.value("vdc_instance_io_bytes_total", &read), Some(5096.0));
}

#[test]
fn render_for_one_tenant_and_forget_an_app() {
    let mut e = Exposition::new();
    e.observe(&traffic_msg(1, link_tags(), 1), None);
    e.observe(
        &traffic_msg(1, Tags::new("globex", "blog", "web").with_link("db"), 1),
        None,
    );
    e.observe(&Message::Resources(resources(1, instance_tags(0))), None);
    let globex = e.render(Some("globex"));
    assert!(
        globex.contains("globex") && !globex.contains("acme"),
        "{globex}"
    );
    assert_eq!(e.render(Some("nobody")), "");

    e.forget_app("shop");
    let text = e.render(None);
    assert!(!text.contains("shop") && text.contains("blog"));
    parse(&text).unwrap();
}

#[test]
fn text_shape() {
    let mut e = Exposition::new();
    let mut s = traffic(
        1,
        SeriesKind::Gateway,
        Tags::new("acme", "shop", "lb")
            .with_link("gateway")
            .with_target("web.http"),
        4,
    );
    s.traffic.connections_active = 1;
    let mut h = Histogram::new();
    for v in [300, 700, 30_000, 12_000_000] {
        h.record_us(v);
    }
    e.observe(&Message::Traffic(s), Some(&h));
    let mut r = resources(1, instance_tags(0));
    r.memory_limit_bytes = None;
    e.observe(&Message::Resources(r), None);
    expect![[r##"
        # HELP vdc_requests_total HTTP requests received.
        # TYPE vdc_requests_total counter
        vdc_requests_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 4
        # HELP vdc_responses_total HTTP responses sent, by status class.
        # TYPE vdc_responses_total counter
        vdc_responses_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",class="1xx"} 0
        vdc_responses_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",class="2xx"} 4
        vdc_responses_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",class="3xx"} 0
        vdc_responses_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",class="4xx"} 0
        vdc_responses_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",class="5xx"} 0
        # HELP vdc_errors_total Requests or connections that could not be served, by cause.
        # TYPE vdc_errors_total counter
        vdc_errors_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",cause="refused"} 0
        vdc_errors_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",cause="reset"} 0
        vdc_errors_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",cause="timeout"} 0
        vdc_errors_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",cause="no_backend"} 0
        vdc_errors_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",cause="other"} 0
        # HELP vdc_retries_total Extra endpoints tried after a failure.
        # TYPE vdc_retries_total counter
        vdc_retries_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 0
        # HELP vdc_bytes_total Bytes from the caller (in) and to it (out).
        # TYPE vdc_bytes_total counter
        vdc_bytes_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",direction="in"} 400
        vdc_bytes_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",direction="out"} 4000
        # HELP vdc_connections_total Connections opened.
        # TYPE vdc_connections_total counter
        vdc_connections_total{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 1
        # HELP vdc_connections_active Connections open now.
        # TYPE vdc_connections_active gauge
        vdc_connections_active{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 1
        # HELP vdc_request_duration_seconds HTTP time from request to response head.
        # TYPE vdc_request_duration_seconds histogram
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.0005"} 1
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.001"} 2
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.0025"} 2
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.005"} 2
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.01"} 2
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.025"} 2
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.05"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.1"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.25"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="0.5"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="1"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="2.5"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="5"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="10"} 3
        vdc_request_duration_seconds_bucket{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway",le="+Inf"} 4
        vdc_request_duration_seconds_sum{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 12.031
        vdc_request_duration_seconds_count{tenant="acme",app="shop",component="lb",link="gateway",target="web.http",kind="gateway"} 4
        # HELP vdc_instance_cpu_seconds_total CPU time used by the instance, by mode.
        # TYPE vdc_instance_cpu_seconds_total counter
        vdc_instance_cpu_seconds_total{tenant="acme",app="shop",component="web",instance="shop/web/0",mode="user"} 1.5
        vdc_instance_cpu_seconds_total{tenant="acme",app="shop",component="web",instance="shop/web/0",mode="system"} 0.25
        # HELP vdc_instance_cpu_throttled_seconds_total Time the instance was throttled by its CPU limit.
        # TYPE vdc_instance_cpu_throttled_seconds_total counter
        vdc_instance_cpu_throttled_seconds_total{tenant="acme",app="shop",component="web",instance="shop/web/0"} 0.04
        # HELP vdc_instance_memory_bytes Memory used by the instance.
        # TYPE vdc_instance_memory_bytes gauge
        vdc_instance_memory_bytes{tenant="acme",app="shop",component="web",instance="shop/web/0"} 52428800
        # HELP vdc_instance_memory_peak_bytes Highest memory use of the instance.
        # TYPE vdc_instance_memory_peak_bytes gauge
        vdc_instance_memory_peak_bytes{tenant="acme",app="shop",component="web",instance="shop/web/0"} 67108864
        # HELP vdc_instance_oom_kills_total Processes of the instance killed for lack of memory.
        # TYPE vdc_instance_oom_kills_total counter
        vdc_instance_oom_kills_total{tenant="acme",app="shop",component="web",instance="shop/web/0"} 0
        # HELP vdc_instance_io_bytes_total Bytes read from and written to block devices by the instance.
        # TYPE vdc_instance_io_bytes_total counter
        vdc_instance_io_bytes_total{tenant="acme",app="shop",component="web",instance="shop/web/0",direction="read"} 4096
        vdc_instance_io_bytes_total{tenant="acme",app="shop",component="web",instance="shop/web/0",direction="write"} 8192
        # HELP vdc_instance_pids Processes and threads of the instance.
        # TYPE vdc_instance_pids gauge
        vdc_instance_pids{tenant="acme",app="shop",component="web",instance="shop/web/0"} 4
    "##]].assert_eq(&e.render(None));
}
