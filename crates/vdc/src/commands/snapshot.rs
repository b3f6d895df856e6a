//! `vdc snapshot create|list|show|delete|restore|export|import`.

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use vdc_api::{RestoreRequest, Restored, SnapshotRequest, SnapshotSummary, SnapshotTaken};

use crate::cli::{Format, SnapshotCommand};
use crate::client::{url_path_escape, Client};
use crate::exit::{fail, Code};

pub async fn run(client: &Client, command: SnapshotCommand, format: Format) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Create { target, name } => {
            let taken: SnapshotTaken = client
                .post("/v1/snapshots", &SnapshotRequest { target, name })
                .await?;
            if format != Format::Table {
                println!("{}", serde_json::to_string_pretty(&taken)?);
                return Ok(());
            }
            let s = &taken.snapshot;
            println!(
                "snapshot {} of {}/{}/{}: {} file(s), {} ({} stored)",
                short(&s.id),
                s.app,
                s.component,
                s.index,
                s.files,
                bytes(s.logical_bytes),
                bytes(s.stored_bytes),
            );
            println!(
                "frozen {} ms ({}, {}); {} ms in all",
                s.frozen_ms,
                taken.freeze,
                if taken.reflinked {
                    "reflinked copy"
                } else {
                    "copied"
                },
                taken.total_ms
            );
            Ok(())
        }
        SnapshotCommand::List { app } => {
            let path = match &app {
                Some(app) => format!("/v1/snapshots?app={}", url_path_escape(app)),
                None => "/v1/snapshots".to_owned(),
            };
            let all: Vec<SnapshotSummary> = client.get(&path).await?;
            print(&all, format)
        }
        SnapshotCommand::Show { snapshot } => {
            let one: SnapshotSummary = client
                .get(&format!("/v1/snapshots/{}", url_path_escape(&snapshot)))
                .await?;
            if format == Format::Table {
                println!("{}", serde_json::to_string_pretty(&one)?);
                Ok(())
            } else {
                print(&[one], format)
            }
        }
        SnapshotCommand::Delete { snapshot } => {
            client
                .delete(&format!("/v1/snapshots/{}", url_path_escape(&snapshot)))
                .await?;
            println!("deleted {snapshot}");
            Ok(())
        }
        SnapshotCommand::Restore {
            snapshot,
            to,
            timeout,
        } => {
            let restored: Restored = client
                .post(
                    &format!("/v1/snapshots/{}/restore", url_path_escape(&snapshot)),
                    &RestoreRequest {
                        to,
                        timeout_ms: Some(timeout.saturating_mul(1000)),
                    },
                )
                .await?;
            if format != Format::Table {
                println!("{}", serde_json::to_string_pretty(&restored)?);
            } else {
                println!(
                    "restored {} into {}: {} file(s), {}; down {} ms{}",
                    short(&restored.snapshot),
                    restored.instance,
                    restored.files,
                    bytes(restored.bytes),
                    restored.downtime_ms,
                    if restored.ready { ", ready again" } else { "" }
                );
            }
            if !restored.ready {
                let app = restored.instance.split('/').next().unwrap_or_default();
                return Err(fail(
                    Code::Failure,
                    format!(
                        "{} did not become ready within {timeout}s after the restore (the data is restored): see `vdc logs {}` and `vdc events {app}`",
                        restored.instance, restored.instance
                    ),
                ));
            }
            Ok(())
        }
        SnapshotCommand::Export {
            snapshot,
            file: output,
        } => {
            let response = client
                .stream(&format!(
                    "/v1/snapshots/{}/export",
                    url_path_escape(&snapshot)
                ))
                .await?;
            // Into a directory: one file named after the snapshot.
            let output = if output.is_dir() {
                let name = response
                    .headers()
                    .get(reqwest::header::CONTENT_DISPOSITION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split("filename=\"").nth(1))
                    .and_then(|v| v.split('"').next())
                    .filter(|n| !n.is_empty() && !n.contains('/'))
                    .map_or_else(|| format!("{snapshot}.vdcsnap"), str::to_owned);
                output.join(name)
            } else {
                output
            };
            // Into a file beside the target, renamed when complete: a cut
            // download never leaves a file that looks whole.
            let partial = output.with_extension("partial");
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let mut body = response.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.context("the export was cut short")?;
                written += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .with_context(|| format!("cannot write {}", partial.display()))?;
            }
            file.flush().await?;
            file.sync_all().await?;
            tokio::fs::rename(&partial, &output)
                .await
                .with_context(|| format!("cannot rename to {}", output.display()))?;
            println!("wrote {} ({})", output.display(), bytes(written));
            Ok(())
        }
        SnapshotCommand::Import { file } => {
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {}", file.display()))?;
            let imported: SnapshotSummary =
                client.post_file("/v1/snapshots/import", opened).await?;
            if format != Format::Table {
                println!("{}", serde_json::to_string_pretty(&imported)?);
                return Ok(());
            }
            println!(
                "imported snapshot {} of {}/{}/{} ({} file(s), {})",
                short(&imported.id),
                imported.app,
                imported.component,
                imported.index,
                imported.files,
                bytes(imported.logical_bytes)
            );
            Ok(())
        }
    }
}

/// `vdc move APP/COMPONENT/INDEX --to NODE`: asks for the move, then
/// follows it until it is done or failed.
pub async fn move_instance(
    client: &Client,
    instance: &str,
    to: &str,
    timeout: std::time::Duration,
    format: Format,
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        instance: &'a str,
        to: &'a str,
    }
    let started: serde_json::Value = client.post("/v1/moves", &Request { instance, to }).await?;
    if format == Format::Table {
        println!(
            "moving {instance} from {} to {}{}",
            started["from"].as_str().unwrap_or("?"),
            to,
            if started["stateful"] == true {
                " with its volumes"
            } else {
                ""
            }
        );
    }
    let path = format!(
        "/v1/moves/{}",
        instance
            .split('/')
            .map(url_path_escape)
            .collect::<Vec<_>>()
            .join("/")
    );
    let started_at = tokio::time::Instant::now();
    let deadline = started_at + timeout;
    let mut last_phase = String::new();
    loop {
        let record: serde_json::Value = client.get(&path).await?;
        let phase = record["phase"].as_str().unwrap_or_default().to_owned();
        if phase != last_phase && format == Format::Table && phase != "done" && phase != "failed" {
            println!("  {phase}");
        }
        last_phase.clone_from(&phase);
        match phase.as_str() {
            "done" => {
                // Done for the nodes; for the caller once the new node
                // reports the instance ready there.
                let app = instance.split('/').next().unwrap_or_default();
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                crate::commands::wait::until(
                    client,
                    app,
                    &format!("{instance} ready on {to}"),
                    left,
                    |list| {
                        list.iter().any(|s| {
                            s.id.to_string() == instance
                                && s.node.0 == to
                                && s.state.serves_traffic()
                        })
                    },
                )
                .await?;
                if format != Format::Table {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                } else {
                    println!(
                        "{instance} runs on {to}; down {} ms",
                        record["downtime_ms"].as_u64().unwrap_or(0)
                    );
                }
                return Ok(());
            }
            "failed" => anyhow::bail!(
                "the move of {instance} failed: {}; it runs on {} as before",
                record["error"].as_str().unwrap_or("no reason given"),
                record["from"].as_str().unwrap_or("its node")
            ),
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the move of {instance} is still at `{phase}` after {}s: see `vdc events {}`",
                timeout.as_secs(),
                instance.split('/').next().unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn print(all: &[SnapshotSummary], format: Format) -> anyhow::Result<()> {
    if format != Format::Table {
        println!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    println!(
        "{:<12} {:<16} {:<24} {:<7} {:>10} {:>10} {:>8}  TAKEN",
        "ID", "NAME", "INSTANCE", "KIND", "SIZE", "STORED", "FROZEN"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for s in all {
        println!(
            "{:<12} {:<16} {:<24} {:<7} {:>10} {:>10} {:>8}  {} ago",
            short(&s.id),
            s.name.as_deref().unwrap_or("-"),
            format!("{}/{}/{}", s.app, s.component, s.index),
            s.kind,
            bytes(s.logical_bytes),
            bytes(s.stored_bytes),
            format!("{}ms", s.frozen_ms),
            age(now.saturating_sub(s.created_ms)),
        );
    }
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn bytes(n: u64) -> String {
    vdc_spec::Bytes(n).to_string()
}
