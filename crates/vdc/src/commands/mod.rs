//! One module per command.

mod events;
mod image;
mod list;
mod logs;
mod nodes;
mod scale;
mod server;
mod snapshot;
mod stats;
mod tenant;
mod top;
mod up;
mod usage;
mod validate;
mod wait;

use std::time::Duration;

use crate::cli::{Cli, Command, ServerAction};
use crate::client::{url_path_escape, Client};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Without an explicit token: the one `vdc login` saved, else the admin
    // token of the local data directory (the embedded case).
    let data_dir = match &cli.command {
        Command::Up(args) => args.server.data_dir(),
        Command::Server(args) => args.opts.data_dir(),
        Command::Agent(args) => args.opts.data_dir(),
        _ => crate::cli::default_data_dir(),
    };
    let mut token_files: Vec<std::path::PathBuf> = crate::cli::token_file().into_iter().collect();
    token_files.push(data_dir.join("admin.token"));
    let client = Client::new(&cli.addr, cli.token.clone(), token_files)?;
    match cli.command {
        Command::Up(args) => up::run(&client, &cli.addr, cli.output, args).await,
        Command::Validate { file } => validate::run(&file, cli.output),
        Command::Apps => list::apps(&client, cli.output).await,
        Command::Ps { app } => list::ps(&client, app.as_deref(), cli.output).await,
        Command::Logs {
            target,
            follow,
            tail,
            tenant,
        } => logs::run(&client, &target, follow, tail, tenant.as_deref()).await,
        Command::Down {
            app,
            no_wait,
            purge,
        } => down(&client, &app, !no_wait, purge).await,
        Command::Events { app, follow, limit } => {
            events::run(&client, app.as_deref(), follow, limit, cli.output).await
        }
        Command::Stats { app, seconds } => stats::run(&client, &app, seconds, cli.output).await,
        Command::Top { app } => top::run(&client, app.as_deref()).await,
        Command::Scale {
            target,
            replicas,
            no_wait,
            timeout,
        } => {
            let wait = (!no_wait).then(|| std::time::Duration::from_secs(timeout));
            scale::scale(&client, &target, replicas, wait, cli.output).await
        }
        Command::Autoscale { target, state } => {
            scale::autoscale(&client, &target, state, cli.output).await
        }
        Command::Usage { tenant, from, to } => {
            usage::run(
                &client,
                tenant.as_deref(),
                from.as_deref(),
                to.as_deref(),
                cli.output,
            )
            .await
        }
        Command::Login { with_token } => tenant::login(&client, with_token).await,
        Command::Token => match client.token() {
            Some(token) => {
                println!("{token}");
                Ok(())
            }
            None => Err(crate::exit::fail(
                crate::exit::Code::Unauthorized,
                format!(
                    "no token: give --token or VDC_TOKEN, save one with `vdc login`, or run where the server's data directory ({}) is readable",
                    data_dir.display()
                ),
            )),
        },
        Command::Tenant(command) => tenant::run(&client, command, cli.output).await,
        Command::Server(args) => match args.action {
            None if args.detach => server::detached(&client, &cli.addr, &args.opts).await,
            None => server::foreground(&cli.addr, &args.opts).await,
            Some(ServerAction::Stop) => server::stop(&client).await,
        },
        Command::Agent(args) => server::agent(&args).await,
        Command::Node(command) => nodes::run(&client, command, cli.output).await,
        Command::Snapshot(command) => snapshot::run(&client, command, cli.output).await,
        Command::Image(command) => image::run(&client, command, cli.output).await,
        Command::Registry(command) => image::registry(&client, command).await,
        Command::Move {
            instance,
            to,
            timeout,
        } => {
            let timeout = std::time::Duration::from_secs(timeout);
            snapshot::move_instance(&client, &instance, &to, timeout, cli.output).await
        }
    }
}

/// Takes an app down and, unless told not to, waits until it is gone.
pub async fn down(client: &Client, app: &str, wait: bool, purge: bool) -> anyhow::Result<()> {
    let path = format!("/v1/apps/{}", url_path_escape(app));
    if purge {
        client.delete(&format!("{path}?purge=true")).await?;
    } else {
        client.delete(&path).await?;
    }
    if !wait {
        println!("taking {app} down");
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    loop {
        match client.get::<vdc_api::AppDetail>(&path).await {
            Ok(detail) => {
                if started.elapsed() > Duration::from_secs(120) {
                    anyhow::bail!(
                        "{app} is still stopping after 2 minutes ({} instances left)",
                        detail.instances.len()
                    );
                }
            }
            Err(e)
                if e.downcast_ref::<crate::client::ApiError>()
                    .is_some_and(|a| a.status == 404) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{app} is down ({:.1}s){}",
        started.elapsed().as_secs_f64(),
        if purge {
            "; its volumes are deleted"
        } else {
            ""
        }
    );
    Ok(())
}
