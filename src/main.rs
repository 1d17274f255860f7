//! The `hyco` binary: parses the command line, sets up logging, the status line and
//! signals, runs the command, and turns its result into an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use hyco::cli::{Cli, Command, LogFormat};
use hyco::status::Stats;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = hyco::app::log_filter(level, std::env::var("RUST_LOG").ok().as_deref());
    let stats = Arc::new(Stats::default());
    let status = match &cli.command {
        Command::Listen(_) | Command::Connect(_) if std::io::stderr().is_terminal() && !cli.quiet => {
            Some(hyco::status::StatusLine::new())
        }
        _ => None,
    };
    let writer = hyco::status::LogWriter::new(status.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Json => builder.json().finish().with(hyco::app::secret_cap()).init(),
        LogFormat::Text => builder.finish().with(hyco::app::secret_cap()).init(),
    }

    let threads = cli.threads.map_or_else(
        || match cli.command {
            Command::Serve(_) | Command::Demo(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            _ => 1,
        },
        usize::from,
    );
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyco: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        if let Some(status) = &status {
            tokio::spawn(status.clone().run(stats.clone(), shutdown.clone()));
        }
        hyco::app::run(cli.command, stats, shutdown).await
    });
    if let Some(status) = &status {
        status.finish();
    }
    // stdin's reader thread may still be blocked; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyco: {e:#}");
            ExitCode::from(hyco::error::exit_code(&e))
        }
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    for round in 0..2 {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        if round == 0 {
            tracing::info!("shutting down (again to force)");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
