//! The `ferry` command line: parses flags, calls the library, prints.

mod cli;
mod progress;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`ferry inspect app.tar | head -1`)
    // would panic; the default action ends ferry quietly, as it ends cat or grep.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    cli::run()
}
