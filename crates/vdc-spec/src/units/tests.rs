//! Tests for unit parsing and display: every accepted and rejected form,
//! and round trips through `Display`.

use std::time::Duration;

use expect_test::{expect, Expect};
use proptest::prelude::*;

use super::*;

/// Each input and what the parser made of it, one per line.
fn table<T: fmt::Debug>(
    inputs: &[&str],
    parse: impl Fn(&str) -> Result<T, UnitError>,
    expect: Expect,
) {
    let out: Vec<String> = inputs
        .iter()
        .map(|s| match parse(s) {
            Ok(v) => format!("{s:?} => {v:?}"),
            Err(e) => format!("{s:?} => error: {e}"),
        })
        .collect();
    expect.assert_eq(&out.join("\n"));
}

// === memory ===

#[test]
fn memory_accepted() {
    let cases: &[(&str, u64)] = &[
        ("1B", 1),
        ("512B", 512),
        ("1KiB", 1024),
        ("64KiB", 64 << 10),
        ("256MiB", 256 << 20),
        ("1GiB", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("2TiB", 2 << 40),
        ("0.5KiB", 512),
        (" 4GiB ", 4 << 30),
        ("4 GiB", 4 << 30),
        ("007MiB", 7 << 20),
        ("1.50000MiB", 3 << 19),
        // Fractions of a byte are dropped.
        ("1.0001KiB", 1024),
        ("15TiB", 15 << 40),
    ];
    for (s, bytes) in cases {
        assert_eq!(parse_memory(s), Ok(Bytes(*bytes)), "{s}");
    }
    assert_eq!(memory_from_int(1), Ok(Bytes(1)));
    assert_eq!(memory_from_int(i64::MAX), Ok(Bytes(i64::MAX as u64)));
}

#[test]
fn memory_rejected() {
    table(
        &[
            "4GB",
            "4G",
            "4M",
            "4MB",
            "512k",
            "512K",
            "512kB",
            "1T",
            "2TB",
            "4Gi",
            "4Mi",
            "4gib",
            "4mib",
            "4b",
            "1024",
            "",
            "GiB",
            "lots",
            "4XB",
            "4PiB",
            "-1GiB",
            "0B",
            "0GiB",
            "0.0000000001KiB",
            "1.5B",
            "1.GiB",
            ".5GiB",
            "1..5GiB",
            "1.2.3GiB",
            "99999999TiB",
            "1000000000000000000000000000000000000GiB",
        ],
        parse_memory,
        expect![[r#"
            "4GB" => error: "4GB" is not a valid memory size: vdc uses binary units; did you mean "4GiB"?
            "4G" => error: "4G" is not a valid memory size: vdc uses binary units; did you mean "4GiB"?
            "4M" => error: "4M" is not a valid memory size: vdc uses binary units; did you mean "4MiB"?
            "4MB" => error: "4MB" is not a valid memory size: vdc uses binary units; did you mean "4MiB"?
            "512k" => error: "512k" is not a valid memory size: vdc uses binary units; did you mean "512KiB"?
            "512K" => error: "512K" is not a valid memory size: vdc uses binary units; did you mean "512KiB"?
            "512kB" => error: "512kB" is not a valid memory size: vdc uses binary units; did you mean "512KiB"?
            "1T" => error: "1T" is not a valid memory size: vdc uses binary units; did you mean "1TiB"?
            "2TB" => error: "2TB" is not a valid memory size: vdc uses binary units; did you mean "2TiB"?
            "4Gi" => error: "4Gi" is not a valid memory size: vdc uses binary units; did you mean "4GiB"?
            "4Mi" => error: "4Mi" is not a valid memory size: vdc uses binary units; did you mean "4MiB"?
            "4gib" => error: "4gib" is not a valid memory size: units are case-sensitive; did you mean "4GiB"?
            "4mib" => error: "4mib" is not a valid memory size: units are case-sensitive; did you mean "4MiB"?
            "4b" => error: "4b" is not a valid memory size: units are case-sensitive; did you mean "4B"?
            "1024" => error: "1024" is not a valid memory size: it needs a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`; did you mean "1024B"? (a number of bytes can also be written without quotes)
            "" => error: "" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "GiB" => error: "GiB" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "lots" => error: "lots" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "4XB" => error: "4XB" is not a valid memory size: unknown unit `XB`; expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "4PiB" => error: "4PiB" is not a valid memory size: unknown unit `PiB`; expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "-1GiB" => error: "-1GiB" is not a valid memory size: a size cannot be negative
            "0B" => error: "0B" is not a valid memory size: it must be greater than zero
            "0GiB" => error: "0GiB" is not a valid memory size: it must be greater than zero
            "0.0000000001KiB" => error: "0.0000000001KiB" is not a valid memory size: it must be greater than zero
            "1.5B" => error: "1.5B" is not a valid memory size: a number of bytes must be whole
            "1.GiB" => error: "1.GiB" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            ".5GiB" => error: ".5GiB" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "1..5GiB" => error: "1..5GiB" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "1.2.3GiB" => error: "1.2.3GiB" is not a valid memory size: expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like "256MiB"
            "99999999TiB" => error: "99999999TiB" is not a valid memory size: it is too large
            "1000000000000000000000000000000000000GiB" => error: "1000000000000000000000000000000000000GiB" is not a valid memory size: it is too large"#]],
    );
    assert!(memory_from_int(0).is_err());
    assert!(memory_from_int(-5).is_err());
}

// === cpu ===

#[test]
fn cpu_accepted() {
    let cases: &[(&str, u64)] = &[
        ("0.5", 500),
        ("2", 2000),
        ("0.125", 125),
        ("0.001", 1),
        ("0.5000", 500),
        ("500m", 500),
        ("1m", 1),
        ("2500m", 2500),
        (" 1.5 ", 1500),
        ("64", 64_000),
    ];
    for (s, millis) in cases {
        assert_eq!(parse_cpu(s), Ok(MilliCpu(*millis)), "{s}");
    }
    for (cores, millis) in [
        (0.5, 500),
        (2.0, 2000),
        (0.1, 100),
        (0.001, 1),
        (1.25, 1250),
        (3.0, 3000),
    ] {
        assert_eq!(cpu_from_cores(cores), Ok(MilliCpu(millis)), "{cores}");
    }
}

#[test]
fn cpu_rejected() {
    table(
        &[
            "0",
            "0.0",
            "0m",
            "-1",
            "-500m",
            "0.0001",
            "1.5m",
            "two",
            "",
            "1.2.3",
            "1e3",
            "500mc",
            "1 core",
            "99999999999999999999",
        ],
        parse_cpu,
        expect![[r#"
            "0" => error: "0" is not a valid CPU amount: it must be greater than zero
            "0.0" => error: "0.0" is not a valid CPU amount: it must be greater than zero
            "0m" => error: "0m" is not a valid CPU amount: it must be greater than zero
            "-1" => error: "-1" is not a valid CPU amount: it must be greater than zero
            "-500m" => error: "-500m" is not a valid CPU amount: it must be greater than zero
            "0.0001" => error: "0.0001" is not a valid CPU amount: CPU is counted in thousandths of a core, so at most three decimals, like "0.125"
            "1.5m" => error: "1.5m" is not a valid CPU amount: millicores must be a whole number, like "250m"
            "two" => error: "two" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "" => error: "" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "1.2.3" => error: "1.2.3" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "1e3" => error: "1e3" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "500mc" => error: "500mc" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "1 core" => error: "1 core" is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
            "99999999999999999999" => error: "99999999999999999999" is not a valid CPU amount: it is too large"#]],
    );
    let floats: Vec<String> = [0.0, -1.0, 0.0005, 1e-7, f64::NAN, f64::INFINITY, 1e30]
        .iter()
        .map(|f| match cpu_from_cores(*f) {
            Ok(v) => format!("{f} => {v:?}"),
            Err(e) => format!("{f} => error: {e}"),
        })
        .collect();
    expect![[r#"
        0 => error: 0 is not a valid CPU amount: it must be greater than zero
        -1 => error: -1 is not a valid CPU amount: it must be greater than zero
        0.0005 => error: 0.0005 is not a valid CPU amount: CPU is counted in thousandths of a core, so at most three decimals, like "0.125"
        0.0000001 => error: 0.0000001 is not a valid CPU amount: CPU is counted in thousandths of a core, so at most three decimals, like "0.125"
        NaN => error: NaN is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
        inf => error: inf is not a valid CPU amount: expected a number of cores like "0.5" or "2", or millicores like "500m"
        1000000000000000000000000000000 => error: 1000000000000000000000000000000 is not a valid CPU amount: it is too large"#]].assert_eq(&floats.join("\n"));
}

// === durations ===

#[test]
fn durations_accepted() {
    let cases: &[(&str, Duration)] = &[
        ("500ms", Duration::from_millis(500)),
        ("5s", Duration::from_secs(5)),
        ("1m", Duration::from_secs(60)),
        ("1h", Duration::from_secs(3600)),
        ("1m30s", Duration::from_secs(90)),
        ("1h 30m", Duration::from_secs(5400)),
        ("1.5s", Duration::from_millis(1500)),
        ("0.5ms", Duration::from_micros(500)),
        ("0s", Duration::ZERO),
        (" 2s ", Duration::from_secs(2)),
    ];
    for (s, d) in cases {
        assert_eq!(parse_duration(s), Ok(*d), "{s}");
    }
}

#[test]
fn durations_rejected() {
    table(
        &[
            "",
            "5",
            "5sec",
            "5S",
            "-1s",
            "s",
            "1d",
            "10us",
            "1.5.5s",
            "1s5",
            "99999999999h",
        ],
        parse_duration,
        expect![[r#"
            "" => error: "" is not a valid duration: expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "5" => error: "5" is not a valid duration: it needs a unit: `ms`, `s`, `m` or `h`; did you mean "5s"?
            "5sec" => error: "5sec" is not a valid duration: unknown unit `sec`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "5S" => error: "5S" is not a valid duration: unknown unit `S`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "-1s" => error: "-1s" is not a valid duration: a duration cannot be negative
            "s" => error: "s" is not a valid duration: expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "1d" => error: "1d" is not a valid duration: unknown unit `d`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "10us" => error: "10us" is not a valid duration: unknown unit `us`; expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "1.5.5s" => error: "1.5.5s" is not a valid duration: expected a number followed by a unit: `ms`, `s`, `m` or `h`, like "5s"
            "1s5" => error: "1s5" is not a valid duration: it needs a unit: `ms`, `s`, `m` or `h`; did you mean "1s5s"?
            "99999999999h" => error: "99999999999h" is not a valid duration: it is too long"#]],
    );
}

#[test]
fn duration_format() {
    let shown: Vec<String> = [0, 1, 500, 1000, 1500, 60_000, 90_000, 3_600_000, 3_661_001]
        .iter()
        .map(|ms| format_duration(Duration::from_millis(*ms)))
        .collect();
    expect!["0s 1ms 500ms 1s 1s500ms 1m 1m30s 1h 1h1m1s1ms"].assert_eq(&shown.join(" "));
}

// === display ===

#[test]
fn display() {
    let bytes: Vec<String> = [1, 512, 1024, 1536, 1 << 20, 3 << 29, 1 << 40, 5 << 40, 1100]
        .iter()
        .map(|b| Bytes(*b).to_string())
        .collect();
    expect!["1B 512B 1KiB 1.5KiB 1MiB 1.5GiB 1TiB 5TiB 1KiB"].assert_eq(&bytes.join(" "));
    let cpu: Vec<String> = [1, 10, 125, 500, 1000, 1500, 2250]
        .iter()
        .map(|m| MilliCpu(*m).to_string())
        .collect();
    expect!["0.001 0.01 0.125 0.5 1 1.5 2.25"].assert_eq(&cpu.join(" "));
}

proptest! {
    /// CPU display is exact, so it always reads back.
    #[test]
    fn cpu_display_round_trips(millis in 1u64..=u64::MAX / 1000) {
        prop_assert_eq!(parse_cpu(&MilliCpu(millis).to_string()), Ok(MilliCpu(millis)));
    }

    /// Memory display is exact for whole multiples of the unit it picks.
    #[test]
    fn memory_display_round_trips_when_exact(k in 1u64..1024, unit in 0u32..4, tenths in 0u64..10) {
        let size = 1u64 << (10 * unit);
        let exact = Bytes(k * size);
        prop_assert_eq!(parse_memory(&exact.to_string()), Ok(exact));
        // Halves of a unit are exact too ("1.5MiB").
        if unit > 0 && tenths == 5 {
            let half = Bytes(k * size + size / 2);
            prop_assert_eq!(parse_memory(&half.to_string()), Ok(half));
        }
    }

    /// Large TiB counts display as whole TiB and read back.
    #[test]
    fn memory_display_round_trips_in_tib(k in 1u64..(1 << 23)) {
        let b = Bytes(k << 40);
        prop_assert_eq!(parse_memory(&b.to_string()), Ok(b));
    }

    /// Elsewhere display rounds down to a tenth of its unit: what reads
    /// back is never more, and less by under a tenth of the unit.
    #[test]
    fn memory_display_is_close(bytes in 1u64..=(u64::MAX >> 1)) {
        let shown = Bytes(bytes).to_string();
        let back = parse_memory(&shown).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(back.0 <= bytes);
        let unit = [1u64 << 40, 1 << 30, 1 << 20, 1 << 10].into_iter().find(|u| bytes >= *u).unwrap_or(1);
        prop_assert!(bytes - back.0 < unit / 10 + 1, "{} shown as {} read back as {}", bytes, shown, back.0);
    }

    #[test]
    fn duration_format_round_trips(ms in 0u64..(1 << 40)) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn unit_parsers_never_panic(s in "\\PC{0,24}") {
        let _ = parse_memory(&s);
        let _ = parse_cpu(&s);
        let _ = parse_duration(&s);
    }

    #[test]
    fn unit_parsers_never_panic_on_number_like_text(s in "[-0-9. ]{0,40}[A-Za-z]{0,4}") {
        let _ = parse_memory(&s);
        let _ = parse_cpu(&s);
        let _ = parse_duration(&s);
    }
}
