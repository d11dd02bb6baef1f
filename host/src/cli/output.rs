//! Where a command's output goes and in which style: `-o/--output FILE` is always a file,
//! `--format text|json` always the style (docs/cli.md). With `--format json` an error is a JSON
//! document too, so a script reads one document from stdout whatever happened.

use anyhow::Result;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people
    #[default]
    Text,
    /// One JSON document, camelCase field names
    Json,
}

/// `--format`, for commands whose `-o` is a file they produce (export, relocate) or that have none.
#[derive(Args)]
pub struct Style {
    /// Style of what is printed: text, or one JSON document (errors too)
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `-o` and `--format` of a command whose only output is its report.
#[derive(Args)]
pub struct Report {
    /// Write the report to FILE instead of standard output (replaced if it exists)
    #[arg(short, long, value_name = "FILE", value_parser = output_file)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub style: Style,
}

impl Report {
    pub fn format(&self) -> Format {
        self.style.format
    }

    /// Refuses before any work an `-o` whose directory does not exist.
    pub fn check(&self) -> Result<()> {
        self.output.as_deref().map(check_parent).transpose().map(drop)
    }

    /// Prints `text` to stdout, or writes it to the `-o` file.
    pub fn deliver(&self, text: &str) -> Result<()> {
        match &self.output {
            Some(path) => write_file(path, text.as_bytes()),
            None => {
                std::io::stdout().write_all(text.as_bytes())?;
                Ok(())
            }
        }
    }
}

/// `value_parser` for every `-o`: the old spelling `-o json` / `-o text` chose a style, and
/// silently writing a file of that name is the mistake this refuses.
pub fn output_file(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("an empty file name".into());
    }
    if Format::from_str(value, true).is_ok() {
        return Err(format!(
            "-o/--output names a file; for {value} output use --format {lower} (to write a file named {value}, say -o ./{value})",
            lower = value.to_ascii_lowercase()
        ));
    }
    Ok(PathBuf::from(value))
}

/// The directory an output file goes into must exist: ferry creates no directories the operator
/// did not ask for (docker save and skopeo refuse alike), and says so naming the path given.
pub fn check_parent(path: &Path) -> Result<()> {
    let dir = ferry::files::parent_of(path);
    if !dir.is_dir() {
        anyhow::bail!("cannot write {}: the directory {} does not exist", path.display(), dir.display());
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    check_parent(path)?;
    let mut tmp = ferry::files::temporary_beside(path)?;
    tmp.write_all(bytes)?;
    ferry::files::persist(tmp, path)
}

/// Pretty JSON with a final newline.
pub fn json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Reports a failed command: `ferry: error: ...` on stderr, or with `--format json`
/// `{"error": {"message": ..., "causes": [...]}}` on stdout (the whole sentence, and each of
/// its parts from the outermost to the root cause); the exit status is 1.
pub fn fail(error: &anyhow::Error, format: Format) -> ExitCode {
    match format {
        Format::Json => {
            let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
            print_error_json(&format!("{error:#}"), &causes);
        }
        // Errors quote bundles and drivers; ferry's own line breaks are kept.
        Format::Text => eprintln!("ferry: error: {}", ferry::untrusted::escape_keeping_lines(&format!("{error:#}"))),
    }
    ExitCode::FAILURE
}

/// A usage error (exit status 2). clap prints its own; a command line asking for JSON gets the
/// same sentence as a JSON error, found by looking for `--format json` among the raw arguments
/// since the parse that would have found it failed.
pub fn usage(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        args.iter().any(|a| a == "--format=json") || args.windows(2).any(|w| w[0] == "--format" && w[1] == "json")
    };
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !wants_json || informational {
        error.exit();
    }
    // The sentence and what it lists (a missing argument, say), up to the usage line.
    let rendered = error.render().to_string();
    let lines: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let message = lines.join(" ");
    let message = message.trim_start_matches("error: ");
    print_error_json(message, &[message.to_owned()]);
    ExitCode::from(2)
}

fn print_error_json(message: &str, causes: &[String]) {
    let document = serde_json::json!({ "error": { "message": message, "causes": causes } });
    println!("{}", serde_json::to_string_pretty(&document).expect("a JSON value serializes"));
}
