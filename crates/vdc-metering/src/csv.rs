//! CSV renderings of the ledger and of bills (RFC 4180: a header row, comma
//! separated, fields quoted when they hold a comma, a quote or a line
//! break, lines ended by `\n`).

use std::fmt::Write as _;

use crate::bill::{Bill, Charges, Usage};
use crate::entry::LedgerEntry;

const USAGE_HEADER: &str = "minute,tenant,app,component,cpu_seconds_used,\
cpu_minutes_reserved_quota,cpu_minutes_reserved_burst,\
memory_gib_minutes_reserved_quota,memory_gib_minutes_reserved_burst,\
memory_gib_minutes_used,instance_minutes,burst_instance_minutes,\
requests,bytes_in,bytes_out";

const BILL_HEADER: &str = "tenant,app,component,minutes,cpu_seconds_used,\
memory_gib_minutes_used,instance_minutes,burst_instance_minutes,\
cpu_minutes_reserved_quota,cpu_minutes_reserved_burst,\
memory_gib_minutes_reserved_quota,memory_gib_minutes_reserved_burst,\
requests,bytes_in,bytes_out,\
charge_cpu_quota,charge_cpu_burst,charge_memory_quota,charge_memory_burst,\
charge_quota,charge_burst,charge_total";

/// One row per minute per component, sorted by tenant, app, component and
/// minute (the ledger's key order). `minute` is the minute's start in
/// RFC 3339; quantities have six decimals.
pub fn usage_csv(entries: &[LedgerEntry]) -> String {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.tenant, &a.app, &a.component, a.minute).cmp(&(
            &b.tenant,
            &b.app,
            &b.component,
            b.minute,
        ))
    });
    let mut out = String::from(USAGE_HEADER);
    out.push('\n');
    for e in sorted {
        let row = [
            e.minute.to_string(),
            field(&e.tenant),
            field(&e.app),
            field(&e.component),
            format!("{:.6}", e.cpu_seconds_used),
            format!("{:.6}", e.cpu_minutes_reserved_quota),
            format!("{:.6}", e.cpu_minutes_reserved_burst),
            format!("{:.6}", e.memory_gib_minutes_reserved_quota),
            format!("{:.6}", e.memory_gib_minutes_reserved_burst),
            format!("{:.6}", e.memory_gib_minutes_used),
            format!("{:.6}", e.instance_minutes),
            format!("{:.6}", e.burst_instance_minutes),
            e.requests.to_string(),
            e.bytes_in.to_string(),
            e.bytes_out.to_string(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

// === impl Bill ===

impl Bill {
    /// One row per line, then a row whose `tenant` is `total` and whose
    /// `app` and `component` are empty. Quantities and money have six
    /// decimals. The period and prices are not in the CSV; they are fields
    /// of the bill.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(BILL_HEADER);
        out.push('\n');
        for line in &self.lines {
            push_bill_row(
                &mut out,
                [&line.tenant, &line.app, &line.component],
                &line.usage,
                &line.charges,
            );
        }
        push_bill_row(
            &mut out,
            ["total", "", ""],
            &self.total.usage,
            &self.total.charges,
        );
        out
    }
}

fn push_bill_row(out: &mut String, names: [&str; 3], u: &Usage, c: &Charges) {
    let [tenant, app, component] = names.map(field);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{tenant},{app},{component},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        u.minutes,
        u.cpu_seconds_used,
        u.memory_gib_minutes_used,
        u.instance_minutes,
        u.burst_instance_minutes,
        u.cpu_minutes_reserved_quota,
        u.cpu_minutes_reserved_burst,
        u.memory_gib_minutes_reserved_quota,
        u.memory_gib_minutes_reserved_burst,
        u.requests,
        u.bytes_in,
        u.bytes_out,
        c.cpu_quota,
        c.cpu_burst,
        c.memory_quota,
        c.memory_burst,
        c.quota,
        c.burst,
        c.total,
    );
}

/// A CSV field, quoted when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(field("web"), "web");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
