//! The `hyco` binary: parses the command line, sets up logging, the status line and
//! signals, runs the command, and turns its result into an exit code.

use std::io::{IsTerminal, Write as _};
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
    // `connect --stdio` shares its terminal with the program it serves (ssh): no status
    // line, and only warnings and errors unless asked (-v).
    let stdio = matches!(&cli.command, Command::Connect(args) if args.stdio);
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) if stdio => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = hyco::app::log_filter(level, std::env::var("RUST_LOG").ok().as_deref());
    let stats = Arc::new(Stats::default());
    let client = matches!(cli.command, Command::Listen(_) | Command::Connect(_) | Command::Up(_));
    // SIGHUP stops listen and connect (a closed terminal); `hyco up` reloads its file.
    let hangup = matches!(cli.command, Command::Listen(_) | Command::Connect(_));
    let status =
        (client && !stdio && std::io::stderr().is_terminal() && !cli.quiet).then(hyco::status::StatusLine::new);
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
        tokio::spawn(signals(shutdown.clone(), hangup, status.clone()));
        if let Some(status) = &status {
            tokio::spawn(status.clone().run(stats.clone()));
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
            // Not `eprintln!`, which panics when stderr is gone (a closed terminal).
            let _ = writeln!(std::io::stderr(), "hyco: {e:#}");
            ExitCode::from(hyco::error::exit_code(&e))
        }
    }
}

/// First SIGINT/SIGTERM (and, for `listen` and `connect`, SIGHUP: a closed terminal,
/// or ssh done with its ProxyCommand): graceful shutdown. A second SIGINT/SIGTERM exits
/// at once; another SIGHUP does not (ssh's is often followed by the terminal's, as the
/// session it ran in closes), the drain's bound being the limit.
async fn signals(shutdown: CancellationToken, hangup: bool, status: Option<hyco::status::StatusLine>) {
    #[cfg(unix)]
    let (mut term, mut hup) = {
        use tokio::signal::unix::{SignalKind, signal};
        let hup = if hangup { Some(signal(SignalKind::hangup()).expect("SIGHUP handler")) } else { None };
        (signal(SignalKind::terminate()).expect("SIGTERM handler"), hup)
    };
    #[cfg(not(unix))]
    let _ = hangup;
    loop {
        #[cfg(unix)]
        let hung_up = tokio::select! {
            _ = tokio::signal::ctrl_c() => false,
            _ = term.recv() => false,
            Some(()) = async { match &mut hup { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        #[cfg(not(unix))]
        let hung_up = {
            let _ = tokio::signal::ctrl_c().await;
            false
        };
        if !shutdown.is_cancelled() {
            tracing::info!("shutting down (again to force)");
            shutdown.cancel();
        } else if !hung_up {
            if let Some(status) = &status {
                status.finish();
            }
            std::process::exit(130);
        }
    }
}
