//! Properties: parsing never panics, always answers with a spec or at least
//! one error at a real position, and every spec it accepts keeps the
//! model's invariants.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::{BASE, SHOP};
use crate::*;

/// Parses `src` and checks the shape of the answer, whatever it is.
fn parse_checked(src: &str) -> Result<Option<AppSpec>, TestCaseError> {
    let lines = src.split('\n').count();
    match parse(src, "t.toml", Path::new(BASE)) {
        Ok(v) => {
            for w in &v.warnings {
                prop_assert_eq!(w.severity, Severity::Warning);
                prop_assert!(w.line >= 1 && w.line <= lines && w.column >= 1);
            }
            check_invariants(&v.spec)?;
            Ok(Some(v.spec))
        }
        Err(d) => {
            prop_assert!(d.errors().count() > 0, "refused without an error");
            for e in &d.0 {
                prop_assert!(
                    e.line >= 1 && e.line <= lines,
                    "line {} of {}",
                    e.line,
                    lines
                );
                prop_assert!(e.column >= 1);
                prop_assert!(!e.message.is_empty());
                // Rendering must not panic either.
                let _ = e.render(src);
                let _ = e.to_string();
            }
            Ok(None)
        }
    }
}

/// What [`AppSpec`]'s documentation promises to holders of a validated spec.
fn check_invariants(spec: &AppSpec) -> Result<(), TestCaseError> {
    prop_assert!(!spec.components.is_empty());
    let mut next: BTreeMap<&ComponentName, Vec<&ComponentName>> = BTreeMap::new();
    for (name, c) in &spec.components {
        prop_assert_eq!(name, &c.name);
        let r = c.replicas;
        prop_assert!(
            r.min <= r.count && r.count <= r.max && r.max >= 1,
            "{:?}",
            r
        );
        prop_assert_eq!(c.command.is_empty(), c.appliance.is_builtin());
        for target in c.links.values() {
            prop_assert!(spec.link_input(target).is_some(), "{} -> {}", name, target);
            prop_assert!(&target.component != name);
            next.entry(name).or_default().push(&target.component);
        }
        if let Some(g) = &c.gateway {
            prop_assert!(c.inputs.contains_key(&g.input));
        }
        let slas: Vec<(&InputSpec, &Sla)> = c
            .inputs
            .values()
            .filter_map(|i| Some((i, i.sla.as_ref()?)))
            .collect();
        prop_assert!(
            slas.len() <= 1,
            "{} inputs of {} have an SLA",
            slas.len(),
            name
        );
        prop_assert!(slas.is_empty() || !c.appliance.is_builtin());
        for (input, sla) in slas {
            prop_assert!(sla.latency.is_some() || sla.max_error_ratio.is_some());
            if let Some(l) = sla.latency {
                prop_assert_eq!(input.protocol, Protocol::Http);
                prop_assert!(l.percentile > 0.0 && l.percentile < 100.0);
                prop_assert!(!l.threshold.is_zero() && l.threshold.as_secs() <= 3600);
            }
            if let Some(r) = sla.max_error_ratio {
                prop_assert!(r > 0.0 && r <= 1.0);
            }
            prop_assert!((2..=600).contains(&sla.window.as_secs()));
            prop_assert!((1..=3600).contains(&sla.scale_down_after.as_secs()));
            prop_assert_eq!(sla.window.subsec_nanos(), 0);
            prop_assert_eq!(sla.scale_down_after.subsec_nanos(), 0);
        }
    }
    if let Some(b) = spec.budget {
        let limit = Resources {
            cpu: b.cpu,
            memory: b.memory,
        };
        prop_assert!(spec.reserved().fits_in(limit));
    }
    // Acyclic: repeatedly remove components that link nowhere.
    let mut left: Vec<&ComponentName> = spec.components.keys().collect();
    while !left.is_empty() {
        let before = left.len();
        let remaining = left.clone();
        left.retain(|c| {
            next.get(c)
                .is_some_and(|ts| ts.iter().any(|t| remaining.contains(t)))
        });
        prop_assert!(left.len() < before, "links loop among {:?}", left);
    }
    Ok(())
}

/// Small pieces of TOML and of the spec's vocabulary, to splice into a valid
/// spec.
const SNIPPETS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "#",
    "-1",
    "0",
    "1e9",
    "0.5",
    "\"4GB\"",
    "\"\"",
    "[components.x]\n",
    "replicas = 0\n",
    "max = 0\n",
    "links = { a = \"web.http\" }\n",
    "links = { a = \"db.kv\" }\n",
    "appliance = \"builtin:http-lb\"\n",
    "appliance = \"vm\"\n",
    "gateway = { port = 8080 }\n",
    "budget = { cpu = 0.001, memory = 1 }\n",
    "inputs = {}\n",
    "health = \"/x\"\n",
    "sla = { latency = \"p99 <= 50ms\" }",
    "sla = { errors = \"1%\", window = \"10s\" }",
    ", sla = { latency = \"p999 < 2.5ms\", errors = 1 }",
    "p99.9 <=",
    "\"1%\"",
    "%",
    "\u{e9}",
    "\u{1F600}",
    "\r\n",
    "\t",
    "\\",
    "1979-05-27T07:32:00Z",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize, usize),
    Replace(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 1usize..10, 0..SNIPPETS.len())
            .prop_map(|(at, n, s)| Edit::Replace(at, n, s)),
    ]
}

/// Applies edits at char boundaries.
fn mutate(base: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match *e {
            Edit::Insert(at, s) => {
                let at = at % (len + 1);
                let at = at.min(chars.len());
                chars.splice(at..at, SNIPPETS[s].chars());
            }
            Edit::Delete(at, n) => {
                let at = (at % len).min(chars.len());
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::Replace(at, n, s) => {
                let at = (at % len).min(chars.len());
                let end = (at + n).min(chars.len());
                chars.splice(at..end, SNIPPETS[s].chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// An `sla` table: each field left out, well formed or wrong, so that some
/// pass and the others fail in every way the validator knows.
fn sla() -> impl Strategy<Value = String> {
    let latency = prop_oneof![
        6 => Just("p99 <= 50ms"),
        6 => Just("p99.9<2.5ms"),
        6 => Just("p50 < 1s"),
        1 => Just("p999 <= 50ms"),
        1 => Just("p100 <= 1ms"),
        1 => Just("p99 <= 2h"),
        1 => Just("p99 <= 0ms"),
        1 => Just("p99 <="),
        1 => Just("50ms"),
    ];
    let errors = prop_oneof![
        6 => Just("\"1%\""),
        6 => Just("\"0.5%\""),
        6 => Just("\"100%\""),
        1 => Just("\"0%\""),
        1 => Just("\"1\""),
        1 => Just("0.01"),
    ];
    let window = prop_oneof![
        6 => Just("\"10s\""),
        6 => Just("\"2s\""),
        1 => Just("\"1s\""),
        1 => Just("\"2.5s\"")
    ];
    let scale = prop_oneof![
        6 => Just("\"30s\""),
        6 => Just("\"1h\""),
        1 => Just("\"0s\""),
        1 => Just("30")
    ];
    (
        prop::option::of(latency),
        prop::option::of(errors),
        prop::option::of(window),
        prop::option::of(scale),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(latency, errors, window, scale, typo)| {
            let mut fields = Vec::new();
            if let Some(l) = latency {
                fields.push(format!("latency = \"{l}\""));
            }
            if let Some(e) = errors {
                fields.push(format!("errors = {e}"));
            }
            if let Some(w) = window {
                fields.push(format!("window = {w}"));
            }
            if let Some(s) = scale {
                fields.push(format!("scale_down_after = {s}"));
            }
            if typo {
                fields.push("latncy = \"p99 <= 1s\"".to_owned());
            }
            format!("{{ {} }}", fields.join(", "))
        })
}

/// A spec with random components, links, replica bounds and budget: mostly
/// well formed, often invalid in the ways that span components.
fn topology() -> impl Strategy<Value = String> {
    // Replica bounds are mostly ordered (min, then count above it, then max
    // above that) so that some specs pass; a bound left out takes its
    // default.
    let ordered = (0u32..3, 0u32..3, 0u32..3, prop::bool::ANY).prop_map(|(lo, up, more, shown)| {
        let count = lo + up;
        let max = (count + more).max(1);
        if shown {
            format!("replicas = {count}\nmin = {lo}\nmax = {max}\n")
        } else {
            format!("replicas = {count}\n")
        }
    });
    let crossed = (0u32..4, 0u32..4).prop_map(|(min, max)| format!("min = {min}\nmax = {max}\n"));
    let replicas = prop_oneof![8 => ordered, 1 => crossed];
    let component = (
        prop::bool::ANY,
        prop::collection::vec(0usize..6, 0..3),
        replicas,
        1u32..2000,
        prop::option::of(1u16..3),
        prop::option::of(sla()),
    );
    (
        prop::collection::vec(component, 1..6),
        prop::option::of((1u32..16000, 1u32..8192)),
    )
        .prop_map(|(components, budget)| {
            let mut out = String::from("app = \"gen\"\n");
            if let Some((cpu, mib)) = budget {
                out.push_str(&format!(
                    "budget = {{ cpu = \"{cpu}m\", memory = \"{mib}MiB\" }}\n"
                ));
            }
            let n = components.len();
            for (i, (http, links, replicas, millis, port, sla)) in
                components.into_iter().enumerate()
            {
                out.push_str(&format!(
                    "[components.c{i}]\ncommand = [\"run\"]\n{replicas}"
                ));
                out.push_str(&format!("resources = {{ cpu = \"{millis}m\" }}\n"));
                let protocol = if http { "http" } else { "tcp" };
                let sla = sla.map_or_else(String::new, |t| format!(", sla = {t}"));
                out.push_str(&format!(
                    "inputs = {{ in = {{ protocol = \"{protocol}\"{sla} }} }}\n"
                ));
                let links: Vec<String> = links
                    .iter()
                    .enumerate()
                    .map(|(j, to)| format!("l{j} = \"c{}.in\"", to % (n + 1)))
                    .collect();
                out.push_str(&format!("links = {{ {} }}\n", links.join(", ")));
                if let Some(port) = port {
                    out.push_str(&format!("gateway = {{ port = {} }}\n", 8000 + port));
                }
            }
            out
        })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        parse_checked(&src)?;
    }

    #[test]
    fn toml_like_text_never_panics(src in "([a-z.]{1,8} = (\"[^\"\n]{0,8}\"|[0-9.-]{1,5}|\\{ ?\\}|\\[\\])\n|\\[[a-z.]{1,12}\\]\n){0,12}") {
        parse_checked(&src)?;
    }

    #[test]
    fn mutated_specs_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
        parse_checked(&mutate(SHOP, &edits))?;
    }

    #[test]
    fn accepted_topologies_keep_the_invariants(src in topology()) {
        parse_checked(&src)?;
    }

    #[test]
    fn slas_keep_the_invariants(
        first in sla(),
        second in prop::option::of(sla()),
        http in prop::bool::ANY,
        max in 1u32..4,
    ) {
        let protocol = if http { "http" } else { "tcp" };
        let mut src = format!(
            "app = \"gen\"\n[components.web]\ncommand = [\"web\"]\nmax = {max}\n\
             inputs.a = {{ protocol = \"{protocol}\", sla = {first} }}\n"
        );
        if let Some(second) = second {
            src.push_str(&format!("inputs.b = {{ protocol = \"http\", sla = {second} }}\n"));
        }
        let spec = parse_checked(&src)?;
        let warned = match parse(&src, "t.toml", Path::new(BASE)) {
            Ok(v) => v.warnings.iter().any(|w| w.message.contains("SLA")),
            Err(_) => false,
        };
        if let Some(spec) = spec {
            let web = spec.components.values().next().map(|c| c.replicas);
            prop_assert_eq!(warned, web.is_some_and(|r| r.min == r.max));
        }
    }
}

#[test]
fn the_shop_keeps_the_invariants() {
    let spec = parse_checked(SHOP).expect("no property failure");
    assert!(spec.is_some());
}
