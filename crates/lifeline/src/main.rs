//! lifeline: one backup and recovery tool for every data store, with proof it can bring data back.

mod cli;
mod commands;
mod context;
mod exit;
mod key_file;
mod options;
mod password;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    configure_workers();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::code_for(&err))
        }
    }
}

/// Twice as many workers as cores, so reads from a cold disk overlap with hashing and compression, and
/// a large stack, because directory recursion runs on these threads and trees may be thousands deep.
fn configure_workers() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads((2 * cores).max(4))
        .stack_size(256 << 20)
        .build_global();
    if let Err(e) = built {
        tracing::warn!("worker pool: {e}");
    }
}
