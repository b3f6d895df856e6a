//! `vdc up FILE`: submit an app, show progress until it is ready, print its
//! gateways, then (in the foreground) a live status until Ctrl-C.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;
use vdc_api::{AppDetail, AppState, SubmitApp, Submitted};

use crate::cli::{Format, UpArgs};
use crate::client::{url_path_escape, ApiError, Client};
use crate::commands::list::ps_table;
use crate::commands::{down, server, validate};
use crate::exit::{fail, Code, Coded};

pub async fn run(client: &Client, addr: &str, format: Format, args: UpArgs) -> anyhow::Result<()> {
    let loaded = validate::load(&args.file, format)?;
    let app = loaded.validated.spec.name.to_string();

    let mut embedded = None;
    if !client.is_up().await {
        if args.detach {
            server::start_background(client, addr, &args.server).await?;
        } else {
            embedded = Some(server::start_embedded(addr, &args.server).await?);
        }
    }

    let result = launch(client, &app, &loaded, &args, embedded.is_some()).await;
    let Some(embedded) = embedded else {
        return result;
    };
    // In the foreground the app lives as long as this command.
    if result.is_ok() {
        eprintln!("taking {app} down…");
    }
    let taken_down = down(client, &app, true, false).await;
    embedded.stop().await?;
    result.and(taken_down)
}

async fn launch(
    client: &Client,
    app: &str,
    loaded: &validate::Loaded,
    args: &UpArgs,
    foreground_server: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let submitted: Submitted = client
        .post(
            "/v1/apps",
            &SubmitApp {
                file: loaded.file.clone(),
                base_dir: loaded.base_dir.display().to_string(),
                source: loaded.source.clone(),
            },
        )
        .await
        .map_err(|e| match e.downcast::<ApiError>() {
            Ok(api) if !api.body.diagnostics.is_empty() => {
                for d in &api.body.diagnostics {
                    eprintln!("{}", d.render(&loaded.source));
                }
                anyhow::Error::new(Coded {
                    code: Code::InvalidSpec,
                    message: api.body.error,
                    printed: false,
                })
            }
            Ok(api) => fail(Code::Failure, api.body.error),
            Err(e) => e,
        })?;
    if submitted.changed {
        eprintln!(
            "{app}: revision {} submitted to {}",
            submitted.revision,
            client.addr()
        );
    } else {
        eprintln!("{app}: unchanged (revision {})", submitted.revision);
    }

    // One signal watch for the whole command, so no signal falls between two.
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let detail = tokio::select! {
        r = wait_ready(client, app, Duration::from_secs(args.timeout)) => r?,
        _ = &mut interrupt => return Err(fail(Code::Failure, "interrupted")),
    };
    eprintln!("{app} is ready in {:.2}s", started.elapsed().as_secs_f64());
    for gateway in &detail.summary.gateways {
        println!("{gateway}");
    }
    if args.detach {
        return Ok(());
    }
    if !foreground_server {
        eprintln!("press Ctrl-C to take {app} down");
    } else {
        eprintln!("press Ctrl-C to take {app} down and stop the server");
    }
    live(client, app, interrupt).await
}

/// Restarts after which `up` stops waiting for an instance.
const CRASH_LOOP: u32 = 3;

/// The last non-empty line an instance wrote (not vdc's own markers).
async fn last_log_line(client: &Client, id: &vdc_model::InstanceId) -> Option<String> {
    let path = format!(
        "/v1/logs/{}/{}/{}?tail=5",
        url_path_escape(id.app.as_str()),
        url_path_escape(id.component.as_str()),
        id.index
    );
    let text = client.stream(&path).await.ok()?.text().await.ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--- vdc:"))
        .map(str::to_owned)
}

/// Polls the app until every instance is ready, printing each change.
async fn wait_ready(client: &Client, app: &str, timeout: Duration) -> anyhow::Result<AppDetail> {
    let path = format!("/v1/apps/{}", url_path_escape(app));
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let detail: AppDetail = client.get(&path).await?;
        for s in &detail.instances {
            let state = s.state.to_string();
            if seen.get(&s.id.to_string()) != Some(&state) {
                let why = s
                    .message
                    .as_deref()
                    .filter(|_| !s.state.serves_traffic())
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                eprintln!(
                    "  {:>6.2}s  {:<24} {state}{why}",
                    started.elapsed().as_secs_f64(),
                    s.id.to_string()
                );
                seen.insert(s.id.to_string(), state);
            }
        }
        if !detail.summary.unplaced.is_empty() {
            return Err(fail(Code::Failure, detail.summary.unplaced.join("; ")));
        }
        // An instance that keeps exiting will not become ready by waiting:
        // say so now, with the end of its output.
        if let Some(s) = detail
            .instances
            .iter()
            .find(|s| s.restarts >= CRASH_LOOP && !s.state.serves_traffic())
        {
            let last = last_log_line(client, &s.id).await;
            return Err(fail(
                Code::Failure,
                format!(
                    "{} keeps exiting ({} restarts, last: {}){}; the app stays submitted: see `vdc logs {}/{}`, fix the spec and run `vdc up` again, or `vdc down {app}`",
                    s.id,
                    s.restarts,
                    s.last_exit.as_deref().unwrap_or("exited"),
                    last.map(|l| format!("; its last output: {l}")).unwrap_or_default(),
                    s.id.app,
                    s.id.component,
                ),
            ));
        }
        if detail.summary.state == AppState::Ready {
            return Ok(detail);
        }
        if started.elapsed() > timeout {
            let waiting: Vec<String> = detail
                .instances
                .iter()
                .filter(|s| !s.state.serves_traffic())
                .map(|s| match &s.message {
                    Some(m) => format!("{} is {} ({m})", s.id, s.state),
                    None => format!("{} is {}", s.id, s.state),
                })
                .collect();
            return Err(fail(
                Code::Failure,
                format!(
                    "{app} was not ready after {}s: {}; see `vdc logs {app}/COMPONENT` (the app stays submitted; `vdc down {app}` removes it)",
                    timeout.as_secs(),
                    waiting.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A live view until Ctrl-C: a redrawn table on a terminal, a line per
/// change otherwise.
async fn live(
    client: &Client,
    app: &str,
    mut interrupt: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> anyhow::Result<()> {
    let path = format!("/v1/apps/{}", url_path_escape(app));
    let tty = std::io::stdout().is_terminal();
    let mut last: BTreeMap<String, (String, u32)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut interrupt => return Ok(()),
            _ = tick.tick() => {}
        }
        let detail: AppDetail = match client.get(&path).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("status unavailable: {e}");
                continue;
            }
        };
        if tty {
            let mut out = std::io::stdout().lock();
            // Clear the screen and home the cursor, then redraw.
            let _ = write!(
                out,
                "\x1b[2J\x1b[H{} {} — {}/{} ready — {}\n\n{}\n(Ctrl-C to stop)\n",
                detail.summary.name,
                detail.summary.state,
                detail.summary.ready,
                detail.summary.desired,
                detail.summary.gateways.join(" "),
                ps_table(&detail.instances).render()
            );
            let _ = out.flush();
        } else {
            for s in &detail.instances {
                let now = (s.state.to_string(), s.restarts);
                if last.get(&s.id.to_string()) != Some(&now) {
                    println!("{} {} restarts={}", s.id, now.0, now.1);
                    last.insert(s.id.to_string(), now);
                }
            }
        }
    }
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP: each means "take the app down".
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
