//! `vdc usage`: bills from the metering ledger.

use vdc_api::TenantView;
use vdc_metering::Bill;

use crate::cli::Format;
use crate::client::{url_path_escape, Client};
use crate::exit::{fail, Code};
use crate::output::Table;

/// Unix seconds from `1700000000`, or relative to now: `-90s`, `-30m`,
/// `-2h`, `-7d`.
fn when(text: &str, now: u64) -> anyhow::Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let bad = || {
        fail(
            Code::Failure,
            format!("`{text}` is not a time: expected unix seconds or -N followed by s, m, h or d"),
        )
    };
    let rest = text.strip_prefix('-').ok_or_else(bad)?;
    let (n, unit) = rest.split_at(rest.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(now.saturating_sub(n.saturating_mul(scale)))
}

pub async fn run(
    client: &Client,
    tenant: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    let now = crate::output::now_ms() / 1000;
    let mut query = Vec::new();
    if let Some(f) = from {
        query.push(format!("from={}", when(f, now)?));
    }
    if let Some(t) = to {
        query.push(format!("to={}", when(t, now)?));
    }
    if format == Format::Csv {
        query.push("format=csv".to_owned());
    }
    let query = query.join("&");
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t.to_owned()],
        None => client
            .get::<Vec<TenantView>>("/v1/tenants")
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect(),
    };
    for (i, name) in tenants.iter().enumerate() {
        let path = format!("/v1/tenants/{}/bill?{query}", url_path_escape(name));
        match format {
            Format::Csv => {
                let text = client.stream(&path).await?.text().await?;
                // One header for all tenants.
                let body = if i == 0 {
                    text.as_str()
                } else {
                    text.split_once('\n').map_or("", |(_, b)| b)
                };
                print!("{body}");
            }
            Format::Json => {
                let bill: serde_json::Value = client.get(&path).await?;
                println!("{}", serde_json::to_string_pretty(&bill)?);
            }
            Format::Table => {
                let bill: Bill = client.get(&path).await?;
                println!("tenant {name}: minutes {} to {} (UTC)", bill.from, bill.to);
                print!("{}", table(&bill).render());
                println!();
            }
        }
    }
    Ok(())
}

fn table(bill: &Bill) -> Table {
    let mut t = Table::new(&[
        "APP",
        "COMPONENT",
        "MINUTES",
        "CPU-S USED",
        "CPU-MIN",
        "BURST CPU-MIN",
        "GIB-MIN",
        "BURST GIB-MIN",
        "INSTANCE-MIN",
        "REQUESTS",
        "QUOTA",
        "BURST",
        "TOTAL",
    ]);
    let mut row =
        |app: &str, component: &str, u: &vdc_metering::Usage, c: &vdc_metering::Charges| {
            t.row(vec![
                app.to_owned(),
                component.to_owned(),
                u.minutes.to_string(),
                u.cpu_seconds_used.to_string(),
                u.cpu_minutes_reserved_quota.to_string(),
                u.cpu_minutes_reserved_burst.to_string(),
                u.memory_gib_minutes_reserved_quota.to_string(),
                u.memory_gib_minutes_reserved_burst.to_string(),
                u.instance_minutes.to_string(),
                u.requests.to_string(),
                c.quota.to_string(),
                c.burst.to_string(),
                c.total.to_string(),
            ]);
        };
    for line in &bill.lines {
        row(&line.app, &line.component, &line.usage, &line.charges);
    }
    row("total", "", &bill.total.usage, &bill.total.charges);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_or_relative() {
        assert_eq!(when("1700000000", 5).unwrap(), 1_700_000_000);
        assert_eq!(when("-1h", 10_000).unwrap(), 6_400);
        assert_eq!(when("-2d", 10).unwrap(), 0);
        for bad in ["", "-", "-5", "-5w", "yesterday", "1.5"] {
            assert!(when(bad, 10).is_err(), "{bad}");
        }
    }
}
