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
            for (i, (http, links, replicas, millis, port)) in components.into_iter().enumerate() {
                out.push_str(&format!(
                    "[components.c{i}]\ncommand = [\"run\"]\n{replicas}"
                ));
                out.push_str(&format!("resources = {{ cpu = \"{millis}m\" }}\n"));
                let protocol = if http { "http" } else { "tcp" };
                out.push_str(&format!(
                    "inputs = {{ in = {{ protocol = \"{protocol}\" }} }}\n"
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
}

#[test]
fn the_shop_keeps_the_invariants() {
    let spec = parse_checked(SHOP).expect("no property failure");
    assert!(spec.is_some());
}
