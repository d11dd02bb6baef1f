//! What the operator sees while ferry works: a progress line on a terminal, nothing when stderr
//! is not one (scripts, CI), and drivers' warnings either way.

use ferry::driver::{Events, Level};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

pub struct Terminal {
    verbose: bool,
    bar: OnceLock<ProgressBar>,
}

impl Terminal {
    pub fn new(verbose: bool) -> Self {
        Terminal { verbose, bar: OnceLock::new() }
    }

    /// Shows a progress line for a long operation, if stderr is a terminal.
    pub fn start(&self, message: String) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {binary_bytes} ({binary_bytes_per_sec}) {elapsed}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_message(message);
    }

    /// Prints `line` on stderr, above the progress line if one is shown.
    pub fn note(&self, line: &str) {
        let line = format!("ferry: {line}");
        match self.bar.get() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Events for Terminal {
    fn log(&self, driver: &str, level: Level, message: &str) {
        if self.verbose || level <= Level::Warn {
            let line = format!("ferry: driver {driver}: {level:?}: {message}");
            match self.bar.get() {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }

    fn transferred(&self, bytes: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(bytes);
        }
    }
}
