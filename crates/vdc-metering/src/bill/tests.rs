//! Unit tests of bills and their CSV.

use expect_test::expect;

use super::*;
use crate::csv::usage_csv;

const M0: Minute = Minute(28_333_334);

fn entry(minute: Minute, component: &str) -> LedgerEntry {
    LedgerEntry {
        minute,
        tenant: "acme".into(),
        app: "shop".into(),
        component: component.into(),
        cpu_seconds_used: 12.5,
        cpu_minutes_reserved_quota: 1.0,
        cpu_minutes_reserved_burst: 0.5,
        memory_gib_minutes_reserved_quota: 2.0,
        memory_gib_minutes_reserved_burst: 0.25,
        memory_gib_minutes_used: 0.75,
        instance_minutes: 3.0,
        burst_instance_minutes: 1.0,
        requests: 100,
        bytes_in: 2_000,
        bytes_out: 30_000,
    }
}

fn prices() -> Prices {
    Prices {
        cpu_minute: "0.0004".parse().unwrap(),
        gib_minute: "0.0001".parse().unwrap(),
        burst_cpu_minute: "0.0008".parse().unwrap(),
        burst_gib_minute: "0.0002".parse().unwrap(),
    }
}

#[test]
fn reserved_cpu_and_memory_are_priced_quota_and_burst_apart() {
    let entries = [entry(M0, "web"), entry(M0.next(), "web")];
    let bill = Bill::compute(&entries, &prices(), M0, Minute(M0.0 + 2));
    assert_eq!(bill.lines.len(), 1);
    let c = bill.lines[0].charges;
    // Two minutes: 2 CPU-minutes at 0.0004, 1 at 0.0008 in burst; 4
    // GiB-minutes at 0.0001, 0.5 at 0.0002 in burst.
    assert_eq!(c.cpu_quota.to_string(), "0.000800");
    assert_eq!(c.cpu_burst.to_string(), "0.000800");
    assert_eq!(c.memory_quota.to_string(), "0.000400");
    assert_eq!(c.memory_burst.to_string(), "0.000100");
    assert_eq!(c.quota.to_string(), "0.001200");
    assert_eq!(c.burst.to_string(), "0.000900");
    assert_eq!(c.total.to_string(), "0.002100");
    // Used CPU, used memory and traffic are reported, not priced.
    let u = bill.lines[0].usage;
    assert_eq!(u.cpu_seconds_used, Qty(25_000_000));
    assert_eq!(u.memory_gib_minutes_used, Qty(1_500_000));
    assert_eq!(u.requests, 200);
    assert_eq!(u.minutes, 2);
    assert_eq!(bill.total.charges, c);
}

#[test]
fn only_the_period_is_billed() {
    let entries = [
        entry(Minute(M0.0 - 1), "web"),
        entry(M0, "web"),
        entry(M0.next(), "web"),
    ];
    let bill = Bill::compute(&entries, &prices(), M0, M0.next());
    assert_eq!(bill.total.usage.minutes, 1);
    assert_eq!(bill.total.usage.cpu_minutes_reserved_quota, Qty(1_000_000));
}

#[test]
fn a_minute_given_twice_is_billed_once() {
    let mut second = entry(M0, "web");
    second.cpu_minutes_reserved_quota = 40.0;
    let entries = [entry(M0, "web"), second];
    let bill = Bill::compute(&entries, &prices(), M0, M0.next());
    assert_eq!(bill.duplicates_ignored, 1);
    assert_eq!(bill.total.usage.minutes, 1);
    assert_eq!(bill.total.usage.cpu_minutes_reserved_quota, Qty(1_000_000));
}

#[test]
fn lines_are_per_component_and_totals_are_their_sums() {
    let entries = [entry(M0, "web"), entry(M0, "db"), entry(M0.next(), "web")];
    let bill = Bill::compute(&entries, &prices(), M0, Minute(M0.0 + 2));
    let names: Vec<&str> = bill.lines.iter().map(|l| l.component.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    let sum: Money = bill.lines.iter().map(|l| l.charges.total).sum();
    assert_eq!(bill.total.charges.total, sum);
    assert_eq!(bill.total.usage.minutes, 3);
}

#[test]
fn an_empty_period_is_an_empty_bill() {
    let bill = Bill::compute(&[], &prices(), M0, M0.next());
    assert!(bill.lines.is_empty());
    assert_eq!(bill.total, BillTotal::default());
    expect![[r#"
        tenant,app,component,minutes,cpu_seconds_used,memory_gib_minutes_used,instance_minutes,burst_instance_minutes,cpu_minutes_reserved_quota,cpu_minutes_reserved_burst,memory_gib_minutes_reserved_quota,memory_gib_minutes_reserved_burst,requests,bytes_in,bytes_out,charge_cpu_quota,charge_cpu_burst,charge_memory_quota,charge_memory_burst,charge_quota,charge_burst,charge_total
        total,,,0,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0,0,0,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000
    "#]]
    .assert_eq(&bill.to_csv());
}

#[test]
fn prices_from_micros_match_parsed_prices() {
    assert_eq!(Prices::from_micros(400, 100, 800, 200), prices());
}

#[test]
fn prices_read_from_toml_like_json() {
    let p: Prices = serde_json::from_str(
        r#"{"cpu_minute": 0.0004, "gib_minute": "0.0001", "burst_cpu_minute": "0.0008", "burst_gib_minute": 0.0002}"#,
    )
    .unwrap();
    assert_eq!(p, prices());
}

#[test]
fn bill_csv_has_a_row_per_line_and_a_total() {
    let entries = [entry(M0, "web"), entry(M0, "db")];
    let bill = Bill::compute(&entries, &prices(), M0, M0.next());
    expect![[r#"
        tenant,app,component,minutes,cpu_seconds_used,memory_gib_minutes_used,instance_minutes,burst_instance_minutes,cpu_minutes_reserved_quota,cpu_minutes_reserved_burst,memory_gib_minutes_reserved_quota,memory_gib_minutes_reserved_burst,requests,bytes_in,bytes_out,charge_cpu_quota,charge_cpu_burst,charge_memory_quota,charge_memory_burst,charge_quota,charge_burst,charge_total
        acme,shop,db,1,12.500000,0.750000,3.000000,1.000000,1.000000,0.500000,2.000000,0.250000,100,2000,30000,0.000400,0.000400,0.000200,0.000050,0.000600,0.000450,0.001050
        acme,shop,web,1,12.500000,0.750000,3.000000,1.000000,1.000000,0.500000,2.000000,0.250000,100,2000,30000,0.000400,0.000400,0.000200,0.000050,0.000600,0.000450,0.001050
        total,,,2,25.000000,1.500000,6.000000,2.000000,2.000000,1.000000,4.000000,0.500000,200,4000,60000,0.000800,0.000800,0.000400,0.000100,0.001200,0.000900,0.002100
    "#]]
    .assert_eq(&bill.to_csv());
}

#[test]
fn usage_csv_has_a_row_per_minute_per_component() {
    let entries = [entry(M0.next(), "web"), entry(M0, "web"), entry(M0, "db")];
    expect![[r#"
        minute,tenant,app,component,cpu_seconds_used,cpu_minutes_reserved_quota,cpu_minutes_reserved_burst,memory_gib_minutes_reserved_quota,memory_gib_minutes_reserved_burst,memory_gib_minutes_used,instance_minutes,burst_instance_minutes,requests,bytes_in,bytes_out
        2023-11-14T22:14:00Z,acme,shop,db,12.500000,1.000000,0.500000,2.000000,0.250000,0.750000,3.000000,1.000000,100,2000,30000
        2023-11-14T22:14:00Z,acme,shop,web,12.500000,1.000000,0.500000,2.000000,0.250000,0.750000,3.000000,1.000000,100,2000,30000
        2023-11-14T22:15:00Z,acme,shop,web,12.500000,1.000000,0.500000,2.000000,0.250000,0.750000,3.000000,1.000000,100,2000,30000
    "#]]
    .assert_eq(&usage_csv(&entries));
}
