//! The `changeflow` command line: parses arguments, sets up logging and runs one subcommand.
//! Data (results, endpoints) goes to stdout; progress and logs go to stderr.

mod cli;
mod commands;
mod config;
#[cfg(feature = "dev")]
mod dev_commands;
mod evidence_commands;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, LogFormat};
use commands::*;
#[cfg(feature = "dev")]
use dev_commands::*;
use evidence_commands::evidence;

fn main() -> std::process::ExitCode {
    let (argv, loaded) = match config::apply(&Cli::command(), std::env::args_os().collect()) {
        Ok(applied) => applied,
        Err(problem) => {
            eprintln!("error: {problem}");
            return std::process::ExitCode::from(2);
        }
    };
    let matches = Cli::command().get_matches_from(argv);
    if let Err(problem) = cli::secrets_only_from_environment(&matches) {
        eprintln!("error: {problem}");
        return std::process::ExitCode::from(2);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Config(_) = cli.command {
        let sub = matches
            .subcommand_matches("config")
            .and_then(|m| m.subcommand_matches("show"))
            .unwrap_or(&matches);
        print!("{}", config::show(&Cli::command(), &loaded, sub));
        return std::process::ExitCode::SUCCESS;
    }
    // Kept until the end: dropping it exports the spans still buffered.
    let _telemetry = match changeflow_engine::telemetry::init(
        matches!(cli.global.log_format, LogFormat::Json),
        "warn,changeflow=info",
        cli.command.service_name(),
        cli.global.otlp_endpoint.as_deref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(problem) => {
            eprintln!("error: --otlp-endpoint: {problem}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The Temporal worker is not Send: everything runs on a LocalSet.
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let g = cli.global;
    let success = |result: anyhow::Result<()>| result.map(|_| std::process::ExitCode::SUCCESS);
    match cli.command {
        #[cfg(feature = "dev")]
        Command::Demo(args) => demo(&g, args).await,
        #[cfg(feature = "dev")]
        Command::Dev(args) => success(dev(&g, args).await),
        Command::Worker(args) => success(worker(&g, args).await),
        #[cfg(feature = "dev")]
        Command::Simulate(args) => success(simulate(&g, args).await),
        Command::Audit(args) => audit(&g, args).await,
        Command::Policy(args) => policy(args),
        Command::Replay(args) => replay(&g, args).await,
        Command::Evidence(args) => evidence(&g, args).await,
        Command::Watch(args) => watch(&g, args).await,
        Command::Serve(args) => success(serve(&g, *args).await),
        #[cfg(feature = "dev")]
        Command::ConformanceServer(args) => success(conformance_server(&g, args).await),
        #[cfg(feature = "dev")]
        Command::Token(args) => success(token(&g, args).await),
        // Answered in `main`, before anything starts.
        Command::Config(_) => Ok(std::process::ExitCode::SUCCESS),
    }
}
