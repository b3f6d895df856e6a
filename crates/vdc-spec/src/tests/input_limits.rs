//! What is not an app file at all, or is one of absurd size: bytes that are
//! not UTF-8, a file over the limit, a huge line, thousands of components.

use super::*;

#[test]
fn bytes_that_are_not_utf8_are_pointed_at() {
    let bytes = b"app = \"shop\"\n[components.web]\ncommand = [\"caf\xe9\"]\n";
    let err = parse_bytes(bytes, "shop.toml", Path::new(BASE)).unwrap_err();
    expect![[r#"
        shop.toml:3:16: error: the file is not UTF-8 text: byte 0xe9 at line 3, column 16 is not valid UTF-8; help: save the file as UTF-8 (TOML files are UTF-8)"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn a_file_over_the_limit_is_refused_unread() {
    let bytes = vec![b'#'; MAX_SPEC_BYTES + 1];
    let err = parse_bytes(&bytes, "huge.toml", Path::new(BASE)).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(
        err.0[0].message.contains("at most 4194304 bytes"),
        "{}",
        err.0[0].message
    );
}

#[test]
fn a_huge_line_is_shown_cut_around_the_problem() {
    let value = "x".repeat(3 << 20);
    let src =
        format!("app = \"shop\"\n[components.web]\ncommand = [\"sh\"]\nreplicas = \"{value}\"\n");
    let err = parse(&src, "shop.toml", Path::new(BASE)).unwrap_err();
    let rendered = err.render(&src);
    assert!(rendered.len() < 2000, "{} bytes of error", rendered.len());
    assert!(rendered.contains('…'), "{rendered}");
    for line in rendered.lines() {
        assert!(line.chars().count() <= 400, "{line}");
    }
}

/// A chain of `n` components, each linking to the next, and the last one
/// back to the first when `cycle`.
fn chain(n: usize, cycle: bool) -> String {
    let mut src = String::from("app = \"chain\"\n");
    for i in 0..n {
        let next = if i + 1 < n {
            Some(i + 1)
        } else if cycle {
            Some(0)
        } else {
            None
        };
        let _ = writeln!(
            src,
            "[components.c{i}]\ncommand = [\"true\"]\nresources = {{ cpu = 0.001, memory = \"1MiB\" }}\ninputs = {{ http = {{ protocol = \"http\" }} }}"
        );
        if let Some(next) = next {
            let _ = writeln!(src, "links = {{ next = \"c{next}.http\" }}");
        }
    }
    src
}

#[test]
fn twenty_thousand_linked_components_are_valid_and_a_long_loop_is_found() {
    let src = chain(20_000, false);
    let spec = parse(&src, "chain.toml", Path::new(BASE)).unwrap().spec;
    assert_eq!(spec.components.len(), 20_000);
    // The same chain closed into one loop: one error, naming the link that
    // closes it, found without recursing 20,000 levels deep.
    let src = chain(20_000, true);
    let err = parse(&src, "chain.toml", Path::new(BASE)).unwrap_err();
    let cycles: Vec<&Diagnostic> = err
        .0
        .iter()
        .filter(|d| d.message.contains("closes a cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{err}");
    assert!(
        cycles[0]
            .message
            .starts_with("link `next` of component `c19999` closes a cycle: c0 -> c1 -> "),
        "{}",
        &cycles[0].message[..200.min(cycles[0].message.len())]
    );
}
