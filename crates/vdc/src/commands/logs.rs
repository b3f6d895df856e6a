//! `vdc logs APP/COMPONENT[/INDEX] [-f]`.

use std::io::Write;

use futures_util::StreamExt;
use vdc_api::KeptLogs;

use crate::client::{url_path_escape, Client};
use crate::exit::{fail, Code};

pub async fn run(
    client: &Client,
    target: &str,
    follow: bool,
    tail: Option<usize>,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let parts: Vec<&str> = target.split('/').collect();
    let (app, component, index) = match parts[..] {
        [app, component] => (app, component, None),
        [app, component, index] => (app, component, Some(index)),
        _ => {
            return Err(fail(
                Code::Failure,
                format!("invalid target `{target}`: expected APP/COMPONENT or APP/COMPONENT/INDEX"),
            ))
        }
    };
    let whose = tenant.map_or_else(String::new, |t| format!("?tenant={}", url_path_escape(t)));
    // Every instance whose log this node keeps, running or not.
    let kept: KeptLogs = client
        .get(&format!("/v1/logs/{}{whose}", url_path_escape(app)))
        .await?;
    let mut indexes: Vec<String> = kept
        .instances
        .iter()
        .filter_map(|i| {
            let (_, rest) = i.split_once('/')?;
            let (c, index) = rest.split_once('/')?;
            (c == component).then(|| index.to_owned())
        })
        .collect();
    if let Some(i) = index {
        indexes = vec![i.to_owned()];
    }
    if indexes.is_empty() {
        return Err(fail(
            Code::Failure,
            format!("{app} has no logs of component `{component}` on this node"),
        ));
    }
    if !kept.running {
        eprintln!(
            "app `{app}` was taken down: these are the logs it left (tenant `{}`); `vdc down --purge` deletes them",
            kept.tenant
        );
    }
    let prefix = indexes.len() > 1;
    let mut tasks = Vec::new();
    for i in indexes {
        let mut path = format!(
            "/v1/logs/{}/{}/{}?follow={}",
            url_path_escape(app),
            url_path_escape(component),
            url_path_escape(&i),
            follow && kept.running
        );
        if let Some(t) = tenant {
            path.push_str(&format!("&tenant={}", url_path_escape(t)));
        }
        if let Some(n) = tail {
            path.push_str(&format!("&tail={n}"));
        }
        let label = prefix.then(|| format!("{component}/{i} | "));
        let client = client.clone();
        tasks.push(tokio::spawn(
            async move { copy(&client, &path, label).await },
        ));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Streams one log to stdout, prefixing whole lines when several are shown.
async fn copy(client: &Client, path: &str, label: Option<String>) -> anyhow::Result<()> {
    let response = client.stream(path).await?;
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        match &label {
            None => std::io::stdout().write_all(&chunk)?,
            Some(label) => {
                pending.extend_from_slice(&chunk);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let mut out = std::io::stdout().lock();
                    out.write_all(label.as_bytes())?;
                    out.write_all(&line)?;
                }
            }
        }
        std::io::stdout().flush()?;
    }
    if let (Some(label), false) = (&label, pending.is_empty()) {
        let mut out = std::io::stdout().lock();
        out.write_all(label.as_bytes())?;
        out.write_all(&pending)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
