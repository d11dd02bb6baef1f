//! The `ferry` command line: its flags, and each command's printing around a library call.

mod help;
mod installs;
mod output;

use crate::progress::Terminal;
use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use ferry::bundle;
use ferry::bundle_drivers::{self, Source};
use ferry::config::{self, LimitOverrides, Limits};
use ferry::driver::{self, Driver, Drivers, Policy, Runtime, Settings, VerifiedComponent};
use ferry::export::{self, ExportOptions};
use ferry::opened::Opened;
use ferry::registry::{Registry, RegistryOptions};
use ferry::relocate::{self, RelocateOptions};
use ferry::thick;
use ferry::untrusted::escape;
use output::{Format, Report, Style};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move CNAB bundles, whatever their image types, into air-gapped sites",
    after_help = "-o/--output FILE is always a file (what a command writes, or its report) and --format text|json \
                  always the style of what it prints, errors included. Exit status: 0 done, 1 failed or found \
                  problems, 2 usage error, 130 interrupted. See docs/cli.md."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Config file [default: ~/.config/ferry/config.toml]
    #[arg(long, global = true, help_heading = help::GLOBAL, value_name = "FILE", env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Where compiled drivers are cached [default: ~/.cache/ferry]
    #[arg(long, global = true, help_heading = help::GLOBAL, value_name = "DIR", env = "FERRY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Memory a driver may use per operation, e.g. 256MiB
    #[arg(long, global = true, help_heading = help::DRIVER_LIMITS, value_name = "SIZE", value_parser = config::parse_size)]
    driver_memory: Option<u64>,
    /// Wall-clock time a driver operation may take, e.g. 60s
    #[arg(long, global = true, help_heading = help::DRIVER_LIMITS, value_name = "DURATION", value_parser = config::parse_duration)]
    driver_timeout: Option<Duration>,
    /// Bytes a driver may hand to ferry in one call, e.g. 16MiB
    #[arg(long, global = true, help_heading = help::DRIVER_LIMITS, value_name = "SIZE", value_parser = config::parse_size)]
    driver_call_bytes: Option<u64>,
    /// Host handles a driver may hold at once
    #[arg(long, global = true, help_heading = help::DRIVER_LIMITS, value_name = "N")]
    driver_handles: Option<u32>,
    /// Bytes of a driver's stdout and stderr that are kept, e.g. 64KiB
    #[arg(long, global = true, help_heading = help::DRIVER_LIMITS, value_name = "SIZE", value_parser = config::parse_size)]
    driver_output: Option<u64>,
    /// Time a download may go without receiving a byte, e.g. 60s [default: 60s]
    #[arg(long, global = true, help_heading = help::REGISTRY, value_name = "DURATION", value_parser = config::parse_duration)]
    stall_timeout: Option<Duration>,
    /// Print drivers' info and debug lines, and each retry of a download, too
    #[arg(short, long, global = true, help_heading = help::GLOBAL)]
    verbose: bool,
    /// Print no progress, warnings or summary; errors only
    #[arg(short, long, global = true, help_heading = help::GLOBAL, conflicts_with = "verbose")]
    quiet: bool,
    /// Load no driver that a bundle ships; images that need one are refused
    #[arg(long, global = true, help_heading = help::BUNDLE_DRIVERS)]
    no_bundle_drivers: bool,
    /// Let a driver the bundle ships handle TYPE even though a built-in driver does; repeatable
    #[arg(long = "allow-driver-override", global = true, help_heading = help::BUNDLE_DRIVERS, value_name = "TYPE")]
    overrides: Vec<String>,
    #[command(flatten)]
    registries: RegistryFlags,
}

/// How registries (and image URLs' servers) are reached; docs/cli.md, "Registries: TLS,
/// credentials and network errors".
#[derive(Args)]
struct RegistryFlags {
    /// A registry (HOST[:PORT]) to reach over plain http, such as a local one; repeatable
    #[arg(long = "insecure-registry", global = true, help_heading = help::REGISTRY, value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Whether TLS certificates are checked: --tls-verify=false for every server, or
    /// --tls-verify=HOST[:PORT]=false for one; repeatable
    #[arg(
        long = "tls-verify",
        global = true,
        help_heading = help::REGISTRY,
        value_name = "[HOST=]BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    tls_verify: Vec<ferry::registry::TlsVerify>,
    /// Trust the CA certificates DIR/*.crt (PEM) for every server, instead of the certs.d
    /// directories (/etc/containers/certs.d/HOST:PORT/, /etc/docker/certs.d/HOST:PORT/)
    #[arg(long, global = true, help_heading = help::REGISTRY, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Credentials: REGISTRY=USER[:PASSWORD] for that registry, USER[:PASSWORD] for relocate's
    /// --to registry; the password is asked for on the terminal when left out; repeatable
    #[arg(long, global = true, help_heading = help::REGISTRY, value_name = "[REGISTRY=]USER[:PASSWORD]")]
    creds: Vec<ferry::registry::Creds>,
    /// The auth file to read credentials from, alone [default: $REGISTRY_AUTH_FILE, else
    /// podman's and docker's files]
    #[arg(long, global = true, help_heading = help::REGISTRY, value_name = "FILE")]
    authfile: Option<PathBuf>,
}

impl RegistryFlags {
    /// The registry client these flags describe; `destination`: the registry the command
    /// writes to; retries are told on `terminal` with -v.
    fn registry(&self, global: &Global, destination: Option<&str>, terminal: &Arc<Terminal>) -> Result<Arc<Registry>> {
        let notify: Option<ferry::registry::Notify> = global.verbose.then(|| {
            let terminal = terminal.clone();
            Arc::new(move |line: &str| terminal.note(line)) as ferry::registry::Notify
        });
        let options = RegistryOptions {
            insecure: self.insecure_registries.clone(),
            tls: ferry::registry::TlsOptions::from_flags(&self.tls_verify, self.cert_dir.clone()),
            credentials: ferry::registry::CredentialOptions {
                creds: self.creds.clone(),
                authfile: self.authfile.clone(),
            },
            destination: destination.map(str::to_owned),
            stall_timeout: global.stall_timeout.unwrap_or(ferry::transfer::STALL_TIMEOUT),
            notify,
        };
        Ok(Arc::new(Registry::new(&options)?))
    }
}

impl Global {
    fn policy(&self) -> Policy {
        Policy { refuse_all: self.no_bundle_drivers, overrides: self.overrides.clone() }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a bundle.json's structure and the CNAB spec's rules; print every problem
    #[command(after_help = help::VALIDATE)]
    Validate {
        /// A bundle.json, a clear-signed bundle.cnab, or a thick bundle
        bundle: PathBuf,
        #[command(flatten)]
        report: Report,
        /// Exit 1 on warnings too (fields CNAB does not define, images no driver handles)
        #[arg(long)]
        strict: bool,
    },
    /// Pull every image of a bundle through its driver into one thick bundle
    #[command(after_help = help::EXPORT)]
    Export {
        /// The bundle.json (or clear-signed bundle.cnab)
        bundle: PathBuf,
        #[command(flatten)]
        archive: ArchiveFlags,
        #[command(flatten)]
        style: Style,
    },
    /// List a thick or published bundle's images: key, reference, type, driver, digest, size,
    /// platforms
    #[command(after_help = help::INSPECT)]
    Inspect {
        /// A thick bundle (.tar, .tgz or .tar.zst), or REGISTRY/REPOSITORY[:TAG|@DIGEST] of a
        /// published bundle
        bundle: PathBuf,
        /// Also run each image's driver for what it knows (a disk's format and virtual size, a
        /// tarball's entries); without it no driver runs
        #[arg(long)]
        details: bool,
        #[command(flatten)]
        report: Report,
    },
    /// Check a thick bundle's digests and references, then each image's driver's checks
    ///
    /// Every blob's digest and size, every manifest's references and every image's digest, then
    /// each image's driver's own checks; exit 1 naming what is broken, and where.
    #[command(after_help = help::VERIFY)]
    Verify {
        /// A thick bundle (.tar, .tgz or .tar.zst)
        bundle: PathBuf,
        #[command(flatten)]
        report: Report,
    },
    /// Push a thick bundle's images into a registry or directory and write the CNAB relocation
    /// mapping
    #[command(after_help = help::RELOCATE)]
    Relocate {
        /// A thick bundle (.tar read in place; .tgz, .tar.zst), a bundle.json whose images are
        /// copied registry to registry, or REGISTRY/REPOSITORY[:TAG|@DIGEST] of a published bundle
        bundle: PathBuf,
        /// REGISTRY[/PREFIX] to push the images under, or file:///DIR to write them into a directory
        ///
        /// With file:///DIR (an absolute path) each image gets the directory DIR/REPOSITORY (named as
        /// under a registry prefix), opened as an OCI image layout, and its driver decides what goes
        /// in it: OCI images become layouts that skopeo and umoci read, a VM disk is written as a
        /// plain file (beside an empty layout), a tarball is extracted. Drivers see the kind of
        /// destination (DestinationKind::Directory) and may use write_file and extract_tar there.
        #[arg(long, required_unless_present = "map")]
        to: Option<String>,
        /// JSON file: image reference or key -> REGISTRY/REPOSITORY, overriding --to
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// Write relocation-mapping.json to FILE (replaced if it exists); without it, the mapping
        /// is printed
        #[arg(short, long, value_name = "FILE", value_parser = output::output_file)]
        output: Option<PathBuf>,
        /// Images relocated at once, and blob uploads at once per image
        #[arg(long, value_name = "N", default_value_t = 4)]
        jobs: usize,
        /// Print what would go where, and how much would be sent; send and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Relocate the other images when one fails (exit status 1, no mapping written)
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        style: Style,
    },
    /// Publish a bundle into one repository of a registry, as cnab-to-oci and porter do
    #[command(after_help = help::PUSH)]
    Push {
        /// A thick bundle (.tar, .tgz, .tar.zst), a bundle.json, or REGISTRY/REPOSITORY[:TAG|@DIGEST]
        /// of a published bundle to copy
        bundle: PathBuf,
        /// REGISTRY/REPOSITORY[:TAG] to publish to; the tag defaults to latest
        reference: String,
        /// Images pushed at once, and blob uploads at once per image
        #[arg(long, value_name = "N", default_value_t = 4)]
        jobs: usize,
        #[command(flatten)]
        style: Style,
    },
    /// Make a thick bundle from a bundle published in a registry
    #[command(after_help = help::PULL)]
    Pull {
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST] of the published bundle
        reference: String,
        #[command(flatten)]
        archive: ArchiveFlags,
        #[command(flatten)]
        style: Style,
    },
    /// Image-type drivers: list the built-in ones, inspect a component, declare one in a
    /// bundle.json
    #[command(subcommand)]
    Driver(DriverCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = help::COMPLETION)]
    Completion {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Write ferry's man pages (ferry.1, ferry-export.1, ...) into DIR
    #[command(hide = true)]
    Man {
        /// An existing directory
        dir: PathBuf,
    },
    /// Install a bundle: run its invocation image's install action and record the installation
    #[command(after_help = help::INSTALL)]
    Install(installs::Install),
    /// Run the upgrade action of an installation
    #[command(after_help = help::UPGRADE)]
    Upgrade(installs::Change),
    /// Run the uninstall action of an installation
    #[command(after_help = help::UNINSTALL)]
    Uninstall(installs::Change),
    /// Run one of the bundle's custom actions on an installation
    #[command(after_help = help::INVOKE)]
    Invoke(installs::Invoke),
    /// The installations ferry has recorded
    #[command(subcommand)]
    Installations(installs::Installations),
    /// An installation's outputs
    #[command(after_help = help::OUTPUTS)]
    Outputs(installs::Outputs),
}

#[derive(Subcommand)]
enum DriverCommand {
    /// List the built-in drivers, their versions and image types
    #[command(after_help = help::DRIVER_LIST)]
    List {
        #[command(flatten)]
        report: Report,
    },
    /// Show what a driver component declares, and whether this ferry can load it
    #[command(after_help = help::DRIVER_INSPECT)]
    Inspect {
        /// A driver component (.wasm)
        file: PathBuf,
        #[command(flatten)]
        report: Report,
    },
    /// Declare a driver the bundle ships in its bundle.json
    ///
    /// Its name, image types and digest, and its path relative to the bundle.json; the file is
    /// rewritten in place as canonical JSON.
    #[command(after_help = help::DRIVER_ADD)]
    Add {
        /// The bundle.json to change
        bundle: PathBuf,
        /// The driver component (.wasm), inside the bundle.json's directory
        file: PathBuf,
        /// FILE is a fresh build anywhere on this machine (a cargo target directory): copy it to
        /// drivers/NAME.wasm beside bundle.json and pin the copy, replacing an older build
        #[arg(long)]
        from_build: bool,
        #[command(flatten)]
        style: Style,
    },
}

impl Command {
    /// The style asked for, which errors take too.
    fn format(&self) -> Format {
        match self {
            Command::Validate { report, .. }
            | Command::Inspect { report, .. }
            | Command::Verify { report, .. }
            | Command::Driver(DriverCommand::List { report } | DriverCommand::Inspect { report, .. }) => {
                report.format()
            }
            Command::Export { style, .. }
            | Command::Push { style, .. }
            | Command::Pull { style, .. }
            | Command::Relocate { style, .. }
            | Command::Driver(DriverCommand::Add { style, .. }) => style.format,
            Command::Completion { .. } | Command::Man { .. } => Format::Text,
            Command::Install(args) => args.inputs.format(),
            Command::Upgrade(args) | Command::Uninstall(args) => args.inputs.format(),
            Command::Invoke(args) => args.inputs.format(),
            Command::Installations(command) => command.format(),
            Command::Outputs(args) => args.format(),
        }
    }
}

/// Where and how `export` and `pull` write the thick bundle.
#[derive(clap::Args)]
struct ArchiveFlags {
    /// The thick bundle to write: .tgz/.tar.gz, .tar or .tar.zst; its directory must exist
    #[arg(short, long, value_name = "FILE", value_parser = output::output_file)]
    output: PathBuf,
    /// Replace FILE if it exists (without it, an existing file is refused)
    #[arg(long)]
    force: bool,
    /// Images walked, and registry blobs fetched, at once
    #[arg(long, value_name = "N", default_value_t = 4)]
    jobs: usize,
    /// gzip (0-9, default 0: stored) or zstd (1-19, default 1) level
    #[arg(long, value_name = "N")]
    compression_level: Option<u32>,
}

impl ArchiveFlags {
    fn options(self, events: Arc<Terminal>) -> Result<ExportOptions> {
        output::check_parent(&self.output)?;
        let ArchiveFlags { output, force, jobs, compression_level: level } = self;
        Ok(ExportOptions { output, force, jobs, level, events })
    }
}

/// The command tree clap parses, for completion scripts and man pages.
fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command line; every outcome is an exit status (docs/cli.md): 0 done, 1 failed or
/// found problems, 2 usage error, 130 interrupted.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return output::usage(e),
    };
    let format = cli.command.format();
    execute(cli).unwrap_or_else(|e| output::fail(&e, format))
}

fn execute(cli: Cli) -> Result<ExitCode> {
    ferry::cleanup::remove_on_signals().context("installing the SIGINT and SIGTERM handler")?;
    match &cli.command {
        Command::Completion { shell } => {
            help::completion(command(), *shell);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            help::man_pages(command(), dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let terminal = Arc::new(Terminal::new(cli.global.verbose, cli.global.quiet));
    let runtime = runtime(&cli.global, terminal.clone())?;
    if let Command::Validate { bundle, report, strict } = &cli.command {
        let builtin = Drivers::builtin(&runtime)?;
        let unhandled = |b: &bundle::Bundle| {
            let mut warnings = bundle_drivers::unhandled_images(b, &builtin, &cli.global.policy());
            if let Some((path, message)) = ferry::install::wasi::problem(&b.doc) {
                warnings.push(bundle::Problem { path, rule: bundle::Rule::Extension, message });
            }
            warnings
        };
        return validate(bundle, report, *strict, unhandled);
    }
    let ctx = Session { global: &cli.global, runtime: &runtime, terminal: &terminal };
    match cli.command {
        Command::Validate { .. } | Command::Completion { .. } | Command::Man { .. } => unreachable!("handled above"),
        Command::Verify { bundle, report } => {
            report.check()?;
            let registry = ctx.registry(None)?;
            verify(&bundle, &report, |opened| ctx.drivers(opened, &registry))
        }
        Command::Export { bundle, archive, style } => {
            let options = archive.options(terminal.clone())?;
            let registry = ctx.registry(None)?;
            let opened = Opened::open(&bundle, &std::env::temp_dir())?;
            export(&ctx, opened, &registry, options, style.format)
        }
        Command::Push { bundle, reference, jobs, style } => push(&ctx, &bundle, reference, jobs, style.format),
        Command::Pull { reference, archive, style } => {
            let options = archive.options(terminal.clone())?;
            let registry = ctx.registry(None)?;
            if !ferry::published::is_reference(&reference) {
                bail!(
                    "pull takes REGISTRY/REPOSITORY[:TAG|@DIGEST], not {reference:?}; `ferry export` makes a thick bundle of a bundle.json"
                );
            }
            let opened = Opened::published(&reference, &registry)?;
            export(&ctx, opened, &registry, options, style.format)
        }
        Command::Relocate { bundle, to, map, output, jobs, dry_run, keep_going, style } => {
            output.as_deref().map(output::check_parent).transpose()?;
            relocate(&ctx, &bundle, Relocation { to, map, output, jobs, dry_run, keep_going }, style.format)
        }
        Command::Inspect { bundle, details, report } => {
            report.check()?;
            inspect(&ctx, &bundle, details, &report)
        }
        Command::Driver(DriverCommand::List { report }) => {
            report.check()?;
            driver_list(&runtime, &report)
        }
        Command::Driver(DriverCommand::Inspect { file, report }) => {
            report.check()?;
            driver_inspect(&runtime, &file, &report)
        }
        Command::Driver(DriverCommand::Add { bundle, file, from_build, style }) => {
            driver_add(&runtime, &bundle, &file, from_build, style.format)
        }
        Command::Install(args) => installs::install(&ctx, args),
        Command::Upgrade(args) => installs::change(&ctx, "upgrade", args),
        Command::Uninstall(args) => installs::change(&ctx, "uninstall", args),
        Command::Invoke(args) => installs::invoke(&ctx, args),
        Command::Installations(command) => installs::installations(command),
        Command::Outputs(args) => installs::outputs(args),
    }
}

/// What every command that runs drivers shares.
struct Session<'a> {
    global: &'a Global,
    runtime: &'a Runtime,
    terminal: &'a Arc<Terminal>,
}

impl Session<'_> {
    fn registry(&self, destination: Option<&str>) -> Result<Arc<Registry>> {
        self.global.registries.registry(self.global, destination, self.terminal)
    }

    /// The built-in drivers and those the opened bundle ships, as the operator's policy allows.
    fn drivers<'rt>(&'rt self, opened: &Opened, registry: &Registry) -> Result<Drivers<'rt>> {
        bundle_drivers::drivers(self.runtime, &Source { opened, registry }, &self.global.policy())
    }
}

/// `export` of a bundle.json, and `pull` of a published bundle: the same thick bundle.
fn export(
    ctx: &Session,
    opened: Opened,
    registry: &Arc<Registry>,
    options: ExportOptions,
    format: Format,
) -> Result<ExitCode> {
    let drivers = ctx.drivers(&opened, registry)?;
    let report = export::export(&opened, &drivers, registry, &options);
    ctx.terminal.finish();
    let report = report?;
    let verb = if matches!(opened.form, ferry::opened::Form::Published(_)) { "pulled" } else { "exported" };
    ctx.terminal.summary_archive(verb, report.bytes);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for image in &report.images {
                println!("{:<24} {:<8} {}", escape(&image.key), escape(&image.image_type), image.digest);
            }
            println!("wrote {} ({} bytes)", report.output.display(), report.bytes);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry relocate`'s flags.
struct Relocation {
    to: Option<String>,
    map: Option<std::path::PathBuf>,
    output: Option<std::path::PathBuf>,
    jobs: usize,
    dry_run: bool,
    keep_going: bool,
}

fn relocate(ctx: &Session, bundle: &std::path::Path, flags: Relocation, format: Format) -> Result<ExitCode> {
    let Relocation { to, map, output, jobs, dry_run, keep_going } = flags;
    let map = map.as_deref().map(relocate::read_map).transpose()?.unwrap_or_default();
    let destinations = relocate::Destinations::parse(to.as_deref(), &map)?;
    let registry = ctx.registry(match &destinations.to {
        Some(relocate::Destination::Registry(prefix)) => prefix.split('/').next(),
        _ => None,
    })?;
    // Temporary files go beside the mapping, on the filesystem that will hold it.
    let scratch = output.as_deref().map(ferry::files::parent_of).unwrap_or(std::path::Path::new(".")).to_owned();
    let opened = Opened::open_argument(bundle, &scratch, &registry)?;
    let drivers = ctx.drivers(&opened, &registry)?;
    let events = ctx.terminal.clone();
    let options = RelocateOptions { destinations, jobs, scratch, keep_going, events };
    if dry_run {
        let plan = relocate::dry_run(&opened, &drivers, &registry, &options)?;
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
            Format::Text => {
                for p in &plan {
                    println!(
                        "{:<22} {} -> {}\n{:<22} {} blobs, {} present, {} bytes to send",
                        escape(&p.key),
                        escape(&p.original),
                        escape(&p.destination),
                        "",
                        p.blobs,
                        p.present,
                        p.bytes_to_send
                    );
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = relocate::relocate(&opened, &drivers, &registry, &options);
    ctx.terminal.finish();
    ctx.terminal.summary("relocated");
    let (relocated, mapping) = result?;
    let Some(output) = output else {
        std::io::Write::write_all(&mut std::io::stdout(), &mapping.to_json())?;
        return Ok(ExitCode::SUCCESS);
    };
    mapping.write(&output)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&relocated)?),
        Format::Text => {
            for r in &relocated {
                println!("{:<24} {}", escape(&r.key), r.relocated);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn push(ctx: &Session, bundle: &std::path::Path, target: String, jobs: usize, format: Format) -> Result<ExitCode> {
    let registry = ctx.registry(target.split('/').next())?;
    let scratch = std::env::temp_dir();
    let opened = Opened::open_argument(bundle, &scratch, &registry)?;
    let drivers = ctx.drivers(&opened, &registry)?;
    let options = ferry::published::PushOptions { target, jobs, scratch, events: ctx.terminal.clone() };
    let pushed = ferry::published::push(&opened, &drivers, &registry, &options);
    ctx.terminal.finish();
    ctx.terminal.summary("pushed");
    let pushed = pushed?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&pushed)?),
        Format::Text => {
            for image in &pushed.images {
                println!("{:<24} {}", escape(&image.key), image.relocated);
            }
            for (name, at) in &pushed.drivers {
                println!("{:<24} {at}", format!("driver {}", escape(name)));
            }
            println!("pushed {}", pushed.reference);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(ctx: &Session, bundle: &std::path::Path, details: bool, report: &Report) -> Result<ExitCode> {
    let published = !bundle.exists() && ferry::published::is_reference(&bundle.to_string_lossy());
    let mut inspection = if published {
        let registry = ctx.registry(None)?;
        let opened = Opened::open_argument(bundle, &std::env::temp_dir(), &registry)?;
        if details {
            opened.thick()?;
        }
        ferry::published::inspect(&opened, &registry, &Drivers::builtin(ctx.runtime)?, &ctx.global.policy())?
    } else {
        thick::inspect(bundle, &Drivers::builtin(ctx.runtime)?, &ctx.global.policy())?
    };
    if details {
        let registry = ctx.registry(None)?;
        let opened = Opened::open(bundle, &std::env::temp_dir())?;
        let drivers = ctx.drivers(&opened, &registry)?;
        for (key, summary) in thick::details(&opened, &drivers)? {
            if let Some(image) = inspection.images.iter_mut().find(|i| i.key == key) {
                image.details = summary.details;
            }
        }
    }
    let text = match report.format() {
        Format::Json => output::json(&inspection)?,
        Format::Text => {
            let mut out = String::new();
            writeln!(out, "{} {}", escape(&inspection.name), escape(&inspection.version))?;
            let mut rows =
                vec![["KEY", "TYPE", "DRIVER", "DIGEST", "SIZE", "PLATFORMS", "REFERENCE"].map(String::from)];
            for i in &inspection.images {
                let digest = i.digest.as_deref().map(|d| &d[..d.len().min(19)]).unwrap_or("missing");
                let driver = match (&i.driver, &i.driver_from) {
                    (Some(name), Some(from)) if from.starts_with("bundle") => format!("{name} (bundle)"),
                    (Some(name), _) => name.clone(),
                    (None, _) => "none".into(),
                };
                rows.push(
                    [
                        i.key.clone(),
                        i.image_type.clone(),
                        driver,
                        digest.trim_start_matches("sha256:").to_owned(),
                        i.size.to_string(),
                        i.platforms.join(","),
                        i.reference.clone(),
                    ]
                    .map(|cell| escape(&cell).into_owned()),
                );
            }
            let widths: Vec<usize> =
                (0..7).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
            for (n, row) in rows.iter().enumerate() {
                let cells: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
                writeln!(out, "{}", cells.join("  ").trim_end())?;
                for (name, value) in n.checked_sub(1).map(|i| &inspection.images[i].details).into_iter().flatten() {
                    writeln!(out, "{:<w$}  {}: {}", "", escape(name), escape(value), w = widths[0])?;
                }
            }
            for d in &inspection.bundle_drivers {
                let handles = if d.handles.is_empty() { "nothing".to_owned() } else { d.handles.join(", ") };
                writeln!(out, "bundle driver {} {} handles {}", escape(&d.name), d.digest, escape(&handles))?;
            }
            if !inspection.installer_outbound_hosts.is_empty() {
                writeln!(
                    out,
                    "installer asks to reach {} (closed unless granted with --allow-outbound)",
                    escape(&inspection.installer_outbound_hosts.join(", "))
                )?;
            }
            out
        }
    };
    report.deliver(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn driver_add(
    runtime: &Runtime,
    bundle: &std::path::Path,
    file: &std::path::Path,
    from_build: bool,
    format: Format,
) -> Result<ExitCode> {
    let added = if from_build {
        ferry::authoring::add_built_driver(runtime, bundle, file)?
    } else {
        ferry::authoring::add_driver(runtime, bundle, file)?
    };
    match format {
        Format::Json => print!("{}", output::json(&added)?),
        Format::Text => println!(
            "{}: driver {:?} for {} ({}, {})",
            bundle.display(),
            added.name,
            added.image_types.join(", "),
            added.digest,
            added.path.as_deref().unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The config file: the one given, which must exist, else the default one if it exists.
fn config_path(global: &Global) -> Result<Option<PathBuf>> {
    if let Some(explicit) = &global.config {
        anyhow::ensure!(explicit.exists(), "config file {} does not exist", explicit.display());
    }
    Ok(global.config.clone().or_else(config::default_config_path))
}

fn runtime(global: &Global, events: Arc<Terminal>) -> Result<Runtime> {
    let flags = LimitOverrides {
        memory: global.driver_memory,
        timeout: global.driver_timeout,
        call_bytes: global.driver_call_bytes,
        handles: global.driver_handles,
        output: global.driver_output,
    };
    let limits = Limits::load(config_path(global)?.as_deref(), &flags)?;
    Runtime::new(Settings { limits, cache_dir: global.cache_dir.clone().or_else(config::default_cache_dir), events })
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DriverReport<'a> {
    name: &'a str,
    version: &'a str,
    image_types: &'a [String],
    interface: &'static str,
    digest: String,
    imports: &'a [String],
}

impl<'a> DriverReport<'a> {
    fn of(d: &'a Driver<'_>) -> Self {
        DriverReport {
            name: &d.info().name,
            version: &d.info().version,
            image_types: &d.info().image_types,
            interface: driver::INTERFACE,
            digest: d.digest().to_string(),
            imports: d.imports(),
        }
    }
}

fn driver_list(runtime: &Runtime, report: &Report) -> Result<ExitCode> {
    let components = driver::builtin_components()?;
    let drivers = components.iter().map(|c| runtime.load(c)).collect::<Result<Vec<_>, _>>()?;
    let reports: Vec<_> = drivers.iter().map(DriverReport::of).collect();
    let text = match report.format() {
        Format::Json => output::json(&reports)?,
        Format::Text => {
            let mut out = format!("{:<12} {:<10} IMAGE TYPES\n", "NAME", "VERSION");
            for r in &reports {
                writeln!(out, "{:<12} {:<10} {}", r.name, r.version, r.image_types.join(", "))?;
            }
            out
        }
    };
    report.deliver(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn driver_inspect(runtime: &Runtime, file: &std::path::Path, report: &Report) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let component = VerifiedComponent::local(bytes);
    let driver = runtime
        .load(&component)
        .map_err(|e| anyhow::anyhow!("{} is not a driver ferry can load: {}", file.display(), e.message))?;
    let declared = DriverReport::of(&driver);
    let text = match report.format() {
        Format::Json => output::json(&declared)?,
        Format::Text => {
            let mut out = String::new();
            writeln!(out, "name:        {}", escape(declared.name))?;
            writeln!(out, "version:     {}", escape(declared.version))?;
            writeln!(out, "image types: {}", escape(&declared.image_types.join(", ")))?;
            writeln!(out, "interface:   {}", declared.interface)?;
            writeln!(out, "digest:      {}", declared.digest)?;
            writeln!(out, "imports:")?;
            for import in declared.imports {
                writeln!(out, "  {}", escape(import))?;
            }
            out
        }
    };
    report.deliver(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn validate(
    path: &std::path::Path,
    report: &Report,
    strict: bool,
    unhandled: impl Fn(&bundle::Bundle) -> Vec<bundle::Problem>,
) -> Result<ExitCode> {
    use ferry::bundle::file::{Kind, identify};
    report.check()?;
    let read = || -> Result<Vec<u8>> {
        match identify(path)? {
            Kind::Thick => ferry::archive::bundle_json(path),
            Kind::ClearSigned => {
                eprintln!("{}: a clear-signed bundle; its signature was not checked", path.display());
                bundle::Bundle::read_json(path)
            }
            Kind::Json => bundle::Bundle::read_json(path),
        }
    };
    let (problems, warnings) = match read() {
        Ok(bytes) => {
            let problems = bundle::validate(&bytes);
            let mut warnings = bundle::warnings(&bytes);
            // Which driver handles an image is asked only of a bundle that is valid.
            if problems.is_empty() {
                warnings.extend(unhandled(&bundle::Bundle::from_bytes(bytes, &path.display().to_string())?));
            }
            (problems, warnings)
        }
        // A script asking for JSON gets the validation document whatever happened.
        Err(e) if report.format() == Format::Json => {
            let unreadable =
                bundle::Problem { path: "$".into(), rule: bundle::Rule::Unreadable, message: format!("{e:#}") };
            (vec![unreadable], Vec::new())
        }
        Err(e) => return Err(e),
    };
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut lines: Vec<String> = problems.iter().map(|p| format!("{}: {p}", path.display())).collect();
    lines.extend(warnings.iter().map(|w| format!("{}: warning: {w}", path.display())));
    let counted = if warnings.is_empty() { String::new() } else { format!(", {}", plural(warnings.len(), "warning")) };
    let summary = match problems.len() {
        0 => format!("{}: valid{counted}", path.display()),
        n => format!("{}: {}{counted}", path.display(), plural(n, "problem")),
    };
    match report.format() {
        Format::Json => {
            let list = |list: &[bundle::Problem]| -> Vec<serde_json::Value> {
                list.iter()
                    .map(|p| serde_json::json!({ "path": p.path, "rule": format!("{:?}", p.rule), "message": p.message }))
                    .collect()
            };
            let document = serde_json::json!({
                "valid": problems.is_empty(),
                "problems": list(&problems),
                "warnings": list(&warnings),
            });
            report.deliver(&output::json(&document)?)?;
        }
        Format::Text => text_report(report, &lines, &summary, problems.is_empty())?,
    }
    let failed = !problems.is_empty() || (strict && !warnings.is_empty());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A text report of problems: on the terminal, each problem and the count on stderr and a clean
/// result on stdout; with `-o FILE`, all of it in the file.
fn text_report(report: &Report, problems: &[String], summary: &str, clean: bool) -> Result<()> {
    if report.output.is_some() {
        let mut text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        text.push_str(summary);
        text.push('\n');
        return report.deliver(&text);
    }
    for p in problems {
        eprintln!("{}", ferry::untrusted::escape_keeping_lines(p));
    }
    if clean {
        println!("{summary}");
    } else {
        eprintln!("{summary}");
    }
    Ok(())
}

/// The host's checks (every byte hashed, in one streaming pass), then, when the bytes are sound,
/// every image's driver's, on the bundle opened in place.
fn verify<'rt>(
    path: &std::path::Path,
    report: &Report,
    drivers: impl FnOnce(&Opened) -> Result<Drivers<'rt>>,
) -> Result<ExitCode> {
    let mut problems = thick::verify(path)?;
    if problems.is_empty() {
        let opened = Opened::open(path, &std::env::temp_dir())?;
        problems = thick::verify_images(&opened, &drivers(&opened)?)?;
    }
    match report.format() {
        Format::Json => {
            let document = serde_json::json!({ "verified": problems.is_empty(), "problems": problems });
            report.deliver(&output::json(&document)?)?;
        }
        Format::Text => {
            let lines: Vec<String> = problems.iter().map(|p| format!("{}: {p}", path.display())).collect();
            let summary = match problems.len() {
                0 => format!("{}: verified", path.display()),
                n => format!("{}: {n} problem{}", path.display(), if n == 1 { "" } else { "s" }),
            };
            text_report(report, &lines, &summary, problems.is_empty())?;
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
