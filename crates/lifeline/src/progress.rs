//! Progress bars on a terminal; nothing otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lifeline_sources::Progress;

pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
}

impl Bar {
    /// A byte-counting bar on stderr when it is a terminal and output is not `--json`.
    pub fn new(quiet: bool, total_bytes: Option<u64>) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = match total_bytes {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        if !visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(style(total_bytes.is_some()));
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar {
            bar,
            files: AtomicU64::new(0),
        }
    }

    /// Lets another thread set the total once it is known.
    pub fn total_setter(&self) -> impl Fn(u64) + Send + 'static {
        let bar = self.bar.clone();
        move |bytes| {
            bar.set_length(bytes);
            bar.set_style(style(true));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn style(with_total: bool) -> ProgressStyle {
    let template = if with_total {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} · {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {bytes} {binary_bytes_per_sec} · {msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress for Bar {
    fn file_done(&self, _bytes: u64) {
        let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{files} files"));
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn total(&self, bytes: u64) {
        self.bar.set_length(bytes);
        self.bar.set_style(style(true));
    }
}
