//! lifeline: one backup and recovery tool for every data store, with proof it can bring data back.

mod cli;
mod commands;
mod context;
mod exit;
mod names;
mod progress;
mod recorder;

// The options model and key reading are shared with the plan; `crate::options` etc. name them here.
use lifeline_plan::{key_file, options, password};

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    return_large_buffers_to_the_os();
    quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    let json = cli.json;
    // The daemon's log is its record of what ran: info by default, timed, JSON on request.
    let daemon_json = match &cli.command {
        cli::Command::Daemon(args) => Some(args.log_format == "json"),
        _ => None,
    };
    let filter = match (cli.verbose, daemon_json.is_some()) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let log = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match daemon_json {
        Some(true) => log.json().init(),
        Some(false) => log.init(),
        None => log.without_time().init(),
    }
    configure_workers();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::from(exit::BROKEN_PIPE),
        Err(err) => {
            let code = exit::code_for(&err);
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = exit::io_hint(&err) {
                eprintln!("hint: {hint}");
            }
            if json {
                // Scripts and monitors read stdout: the error is one JSON object there too.
                let report = serde_json::json!({ "error": {
                    "code": code,
                    "message": err.to_string(),
                    "causes": err.chain().skip(1).map(ToString::to_string).collect::<Vec<_>>(),
                    "hint": exit::hint_for(&err),
                }});
                println!("{report}");
            }
            ExitCode::from(code)
        }
    }
}

/// Printing to a closed standard output (`lifeline ls latest --json | head`) panics in Rust's
/// `println!`; end quietly instead, with SIGPIPE's status, as every Unix tool does. Only that panic
/// is caught: a write to a closed socket or child stays an error where it happens.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(exit::BROKEN_PIPE));
        }
        default(info);
    }));
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

/// glibc's malloc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB),
/// after which a backup's batches, packs and chunks come from per-thread arenas that keep what was
/// freed. Held at 2 MiB, blocks that large are mapped and returned when freed: a file-mode base
/// backup of 0.9 GB peaked at 79 MiB instead of 100 MiB (a streamed one at 89 instead of 133), for
/// about 0.3 s more system time. At 1 MiB every average chunk was mapped and zeroed, tripling the
/// system time; mimalloc peaked higher (175 MiB). docs/benchmarks-pg.md has the full-size figures.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_large_buffers_to_the_os() {
    // SAFETY: mallopt only sets one of malloc's tunables, before any other thread exists. Its
    // result is not checked: a refusal only leaves glibc's default, which works, with more memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers_to_the_os() {}
