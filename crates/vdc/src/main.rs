//! `vdc`: the command line. Parses arguments and wires the crates together;
//! every command but `validate` talks to a server through its HTTP API.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod exit;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // When this process is an instance's PID-namespace init, it runs that
    // and never returns; it must come before any thread starts.
    vdc_sandbox::run_if_requested();
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VDC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::Code::Failure.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => exit::Code::Success.into(),
        Err(e) => {
            let code = exit::code_of(&e);
            if !matches!(code, exit::Code::InvalidSpec) || !exit::already_printed(&e) {
                eprintln!("error: {}", exit::one_line(&e));
            }
            code.into()
        }
    }
}
