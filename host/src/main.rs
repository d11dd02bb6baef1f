//! The `ferry` command line: parses flags, calls the library, prints.

mod cli;
mod progress;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            // Errors quote bundles and drivers; ferry's own line breaks are kept.
            eprintln!("ferry: error: {}", ferry::untrusted::escape_keeping_lines(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
