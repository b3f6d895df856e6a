//! `vdc login` and `vdc tenant …`.

use std::io::BufRead;

use anyhow::Context;
use vdc_api::{CreateTenant, PricesSpec, QuotaSpec, SetQuota, SetRunAs, TenantToken, TenantView};

use crate::cli::{Format, LimitArgs, TenantCommand};
use crate::client::{url_path_escape, Client};
use crate::output::{print, Table};

/// Checks a token against the server and saves it for later commands.
pub async fn login(client: &Client, token: Option<String>) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => t,
        None => {
            eprintln!("paste the token and press Enter:");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the token from stdin")?;
            line
        }
    };
    let token = token.trim().to_owned();
    let tenants: Vec<TenantView> = client.with_token(token.clone()).get("/v1/tenants").await?;
    let path =
        crate::cli::token_file().context("cannot tell where to save the token: HOME is not set")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_secret(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    let who = if token.starts_with("vdc-admin.") {
        "the admin".to_owned()
    } else {
        tenants
            .first()
            .map_or("a tenant".to_owned(), |t| format!("tenant `{}`", t.name))
    };
    println!(
        "logged in to {} as {who}; token saved in {}",
        client.addr(),
        path.display()
    );
    Ok(())
}

fn write_secret(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{content}")
}

fn quota(limits: &LimitArgs) -> (Option<QuotaSpec>, Option<QuotaSpec>) {
    let quota = match (&limits.cpu, &limits.memory, limits.instances) {
        (Some(cpu), Some(memory), Some(instances)) => Some(QuotaSpec {
            cpu: cpu.clone(),
            memory: memory.clone(),
            instances,
        }),
        _ => None,
    };
    let burst = match (
        &limits.burst_cpu,
        &limits.burst_memory,
        limits.burst_instances,
    ) {
        (Some(cpu), Some(memory), Some(instances)) => Some(QuotaSpec {
            cpu: cpu.clone(),
            memory: memory.clone(),
            instances,
        }),
        _ => None,
    };
    (quota, burst)
}

pub async fn run(client: &Client, command: TenantCommand, format: Format) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            name,
            limits,
            price_cpu_minute,
            price_gib_minute,
            price_burst_cpu_minute,
            price_burst_gib_minute,
            run_as,
        } => {
            let (quota, burst) = quota(&limits);
            let created: TenantToken = client
                .post(
                    "/v1/tenants",
                    &CreateTenant {
                        name,
                        quota,
                        burst,
                        prices: Some(PricesSpec {
                            cpu_minute: price_cpu_minute,
                            gib_minute: price_gib_minute,
                            burst_cpu_minute: price_burst_cpu_minute,
                            burst_gib_minute: price_burst_gib_minute,
                        }),
                        run_as,
                    },
                )
                .await?;
            print_token(&created, format)
        }
        TenantCommand::List => {
            let tenants: Vec<TenantView> = client.get("/v1/tenants").await?;
            print(format, &tenants, |list| table(list))
        }
        TenantCommand::Show { name } => {
            let tenant: TenantView = client
                .get(&format!("/v1/tenants/{}", url_path_escape(&name)))
                .await?;
            print(format, &tenant, |t| table(std::slice::from_ref(t)))
        }
        TenantCommand::SetQuota { name, limits } => {
            let (quota, burst) = quota(&limits);
            let tenant: TenantView = client
                .put(
                    &format!("/v1/tenants/{}/quota", url_path_escape(&name)),
                    &SetQuota { quota, burst },
                )
                .await?;
            print(format, &tenant, |t| table(std::slice::from_ref(t)))
        }
        TenantCommand::RotateToken { name } => {
            let rotated: TenantToken = client
                .post_for(&format!("/v1/tenants/{}/token", url_path_escape(&name)))
                .await?;
            print_token(&rotated, format)
        }
        TenantCommand::RunAs { name, users } => {
            let tenant: TenantView = client
                .put(
                    &format!("/v1/tenants/{}/run-as", url_path_escape(&name)),
                    &SetRunAs { run_as: users },
                )
                .await?;
            print(format, &tenant, |t| table(std::slice::from_ref(t)))
        }
    }
}

fn print_token(t: &TenantToken, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(t)?),
        Format::Table | Format::Csv => {
            eprintln!(
                "token of tenant `{}` (shown once; give it to the tenant, who runs `vdc login`):",
                t.tenant.name
            );
            println!("{}", t.token);
        }
    }
    Ok(())
}

fn table(list: &[TenantView]) -> Table {
    let mut t = Table::new(&[
        "TENANT", "APPS", "RESERVED", "QUOTA", "BURST", "CPU-MIN", "GIB-MIN", "RUN-AS",
    ]);
    let price = |micros: u64| format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    for v in list {
        t.row(vec![
            v.name.clone(),
            v.apps.to_string(),
            v.reserved.to_string(),
            v.quota.map_or("none".into(), |q| q.to_string()),
            v.burst.map_or("none".into(), |q| q.to_string()),
            price(v.prices.cpu_minute_micros),
            price(v.prices.gib_minute_micros),
            if v.run_as.is_empty() {
                "-".to_owned()
            } else {
                v.run_as.join(",")
            },
        ]);
    }
    t
}
