use crate::progress::Terminal;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Move CNAB bundles, whatever their image types, into air-gapped sites")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Config file [default: ~/.config/ferry/config.toml]
    #[arg(long, global = true, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Where compiled drivers are cached [default: ~/.cache/ferry]
    #[arg(long, global = true, env = "FERRY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Memory a driver may use per operation, e.g. 256MiB
    #[arg(long, global = true, value_name = "SIZE", value_parser = config::parse_size)]
    driver_memory: Option<u64>,
    /// Wall-clock time a driver operation may take, e.g. 60s
    #[arg(long, global = true, value_name = "DURATION", value_parser = config::parse_duration)]
    driver_timeout: Option<Duration>,
    /// Bytes a driver may hand to ferry in one call, e.g. 16MiB
    #[arg(long, global = true, value_name = "SIZE", value_parser = config::parse_size)]
    driver_call_bytes: Option<u64>,
    /// Host handles a driver may hold at once
    #[arg(long, global = true, value_name = "N")]
    driver_handles: Option<u32>,
    /// Bytes of a driver's stdout and stderr that are kept, e.g. 64KiB
    #[arg(long, global = true, value_name = "SIZE", value_parser = config::parse_size)]
    driver_output: Option<u64>,
    /// Time a download may go without receiving a byte, e.g. 60s [default: 60s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = config::parse_duration)]
    stall_timeout: Option<Duration>,
    /// A registry (host[:port]) to reach over plain http, such as a local one; repeatable
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Print drivers' info and debug lines too
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Load no driver that a bundle ships; images that need one are refused
    #[arg(long, global = true)]
    no_bundle_drivers: bool,
    /// Let a driver the bundle ships handle TYPE even though a built-in driver does; repeatable
    #[arg(long = "allow-driver-override", global = true, value_name = "TYPE")]
    overrides: Vec<String>,
}

impl Global {
    fn policy(&self) -> Policy {
        Policy { refuse_all: self.no_bundle_drivers, overrides: self.overrides.clone() }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a bundle.json's structure and the CNAB spec's rules; print every problem
    Validate {
        /// A bundle.json, or a thick bundle
        bundle: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Pull every image of a bundle through its driver into one thick bundle
    Export {
        /// The bundle.json
        bundle: PathBuf,
        /// The thick bundle to write: .tgz/.tar.gz (default), .tar or .tar.zst
        #[arg(short, long)]
        output: PathBuf,
        /// Images walked, and registry blobs fetched, at once
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// gzip (0-9, default 0: stored) or zstd (1-19, default 1) level
        #[arg(long, value_name = "N")]
        compression_level: Option<u32>,
        #[arg(long = "format", value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// List a thick bundle's images: key, reference, type, driver, digest, size, platforms
    Inspect {
        /// A thick bundle
        bundle: PathBuf,
        /// Also run each image's driver for what it knows (a disk's format and virtual size, a
        /// tarball's entries); without it no driver runs
        #[arg(long)]
        details: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Check every blob's digest and size, every manifest's references and every image's digest
    Verify {
        /// A thick bundle
        bundle: PathBuf,
    },
    /// Push a thick bundle's images into a registry and write the CNAB relocation mapping
    Relocate {
        /// A thick bundle (.tar read in place; .tgz, .tar.zst), or a bundle.json whose images are
        /// copied registry to registry
        bundle: PathBuf,
        /// REGISTRY[/PREFIX] to push the images under
        #[arg(long, required_unless_present = "map")]
        to: Option<String>,
        /// JSON file: image reference or key -> REGISTRY/REPOSITORY, overriding --to
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// Where to write relocation-mapping.json; without it, the mapping is printed
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Images relocated at once, and blob uploads at once per image
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Print what would go where, and how much would be sent; send and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Relocate the other images when one fails (exit status 1, no mapping written)
        #[arg(long)]
        keep_going: bool,
        #[arg(long = "format", value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Image-type drivers: list the built-in ones, inspect a component
    #[command(subcommand)]
    Driver(DriverCommand),
}

#[derive(Subcommand)]
enum DriverCommand {
    /// List the built-in drivers, their versions and image types
    List {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show what a driver component declares, and whether this ferry can load it
    Inspect {
        /// A driver component (.wasm)
        file: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Declare a driver in a bundle.json: its image types and digest, its path relative to the
    /// bundle.json; the file is rewritten as canonical JSON
    Add {
        /// The bundle.json to change
        bundle: PathBuf,
        /// The driver component (.wasm), inside the bundle.json's directory
        file: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    ferry::cleanup::remove_on_signals().context("installing the SIGINT and SIGTERM handler")?;
    if let Command::Validate { bundle, output } = &cli.command {
        return validate(bundle, *output);
    }
    let terminal = Arc::new(Terminal::new(cli.global.verbose));
    let runtime = runtime(&cli.global, terminal.clone())?;
    let ctx = Session { global: &cli.global, runtime: &runtime, terminal: &terminal };
    match cli.command {
        Command::Validate { .. } => unreachable!("handled above"),
        Command::Verify { bundle } => {
            let registry = registry(&cli.global)?;
            verify(&bundle, |opened| ctx.drivers(opened, &registry))
        }
        Command::Export { bundle, output, jobs, compression_level, format } => {
            export(&ctx, &bundle, ExportOptions { output, jobs, level: compression_level }, format)
        }
        Command::Relocate { bundle, to, map, output, jobs, dry_run, keep_going, format } => {
            relocate(&ctx, &bundle, Relocation { to, map, output, jobs, dry_run, keep_going }, format)
        }
        Command::Inspect { bundle, details, output } => inspect(&ctx, &bundle, details, output),
        Command::Driver(DriverCommand::List { output }) => driver_list(&runtime, output),
        Command::Driver(DriverCommand::Inspect { file, output }) => driver_inspect(&runtime, &file, output),
        Command::Driver(DriverCommand::Add { bundle, file }) => driver_add(&runtime, &bundle, &file),
    }
}

/// What every command that runs drivers shares.
struct Session<'a> {
    global: &'a Global,
    runtime: &'a Runtime,
    terminal: &'a Arc<Terminal>,
}

impl Session<'_> {
    /// The built-in drivers and those the opened bundle ships, as the operator's policy allows.
    fn drivers<'rt>(&'rt self, opened: &Opened, registry: &Registry) -> Result<Drivers<'rt>> {
        bundle_drivers::drivers(self.runtime, &Source { opened, registry }, &self.global.policy())
    }
}

fn export(ctx: &Session, bundle: &std::path::Path, options: ExportOptions, format: Output) -> Result<ExitCode> {
    let registry = registry(ctx.global)?;
    let opened = Opened::open(bundle, &std::env::temp_dir())?;
    let drivers = ctx.drivers(&opened, &registry)?;
    ctx.terminal.start(format!("exporting {}", bundle.display()));
    let report = export::export(&opened, &drivers, &registry, &options);
    ctx.terminal.finish();
    let report = report?;
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
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

fn relocate(ctx: &Session, bundle: &std::path::Path, flags: Relocation, format: Output) -> Result<ExitCode> {
    let Relocation { to, map, output, jobs, dry_run, keep_going } = flags;
    let map = map.as_deref().map(relocate::read_map).transpose()?.unwrap_or_default();
    let destinations = relocate::Destinations::parse(to.as_deref(), &map)?;
    let registry = registry(ctx.global)?;
    // Temporary files go beside the mapping, on the filesystem that will hold it.
    let scratch = output.as_deref().map(ferry::files::parent_of).unwrap_or(std::path::Path::new(".")).to_owned();
    let opened = Opened::open(bundle, &scratch)?;
    let drivers = ctx.drivers(&opened, &registry)?;
    let options = RelocateOptions { destinations, jobs, scratch, keep_going };
    if dry_run {
        let plan = relocate::dry_run(&opened, &drivers, &registry, &options)?;
        match format {
            Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
            Output::Text => {
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
    ctx.terminal.start(format!("relocating {}", bundle.display()));
    let result = relocate::relocate(&opened, &drivers, &registry, &options);
    ctx.terminal.finish();
    let (relocated, mapping) = result?;
    let Some(output) = output else {
        std::io::Write::write_all(&mut std::io::stdout(), &mapping.to_json())?;
        return Ok(ExitCode::SUCCESS);
    };
    mapping.write(&output)?;
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(&relocated)?),
        Output::Text => {
            for r in &relocated {
                println!("{:<24} {}", escape(&r.key), r.relocated);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(ctx: &Session, bundle: &std::path::Path, details: bool, output: Output) -> Result<ExitCode> {
    let mut inspection = thick::inspect(bundle, &Drivers::builtin(ctx.runtime)?, &ctx.global.policy())?;
    if details {
        let registry = registry(ctx.global)?;
        let opened = Opened::open(bundle, &std::env::temp_dir())?;
        let drivers = ctx.drivers(&opened, &registry)?;
        for (key, summary) in thick::details(&opened, &drivers)? {
            if let Some(image) = inspection.images.iter_mut().find(|i| i.key == key) {
                image.details = summary.details;
            }
        }
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&inspection)?),
        Output::Text => {
            println!("{} {}", escape(&inspection.name), escape(&inspection.version));
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
                println!("{}", cells.join("  ").trim_end());
                for (name, value) in n.checked_sub(1).map(|i| &inspection.images[i].details).into_iter().flatten() {
                    println!("{:<w$}  {name}: {value}", "", w = widths[0]);
                }
            }
            for d in &inspection.bundle_drivers {
                let handles = if d.handles.is_empty() { "nothing".to_owned() } else { d.handles.join(", ") };
                println!("bundle driver {} {} handles {}", escape(&d.name), d.digest, escape(&handles));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn driver_add(runtime: &Runtime, bundle: &std::path::Path, file: &std::path::Path) -> Result<ExitCode> {
    let added = ferry::authoring::add_driver(runtime, bundle, file)?;
    println!(
        "{}: driver {:?} for {} ({}, {})",
        bundle.display(),
        added.name,
        added.image_types.join(", "),
        added.digest,
        added.path.as_deref().unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn registry(global: &Global) -> Result<Arc<Registry>> {
    let options = RegistryOptions {
        insecure: global.insecure_registries.clone(),
        docker_config: None,
        stall_timeout: global.stall_timeout.unwrap_or(ferry::transfer::STALL_TIMEOUT),
    };
    Ok(Arc::new(Registry::new(&options)?))
}

fn runtime(global: &Global, events: Arc<Terminal>) -> Result<Runtime> {
    let flags = LimitOverrides {
        memory: global.driver_memory,
        timeout: global.driver_timeout,
        call_bytes: global.driver_call_bytes,
        handles: global.driver_handles,
        output: global.driver_output,
    };
    let config_path = global.config.clone().or_else(config::default_config_path);
    if let Some(explicit) = &global.config {
        anyhow::ensure!(explicit.exists(), "config file {} does not exist", explicit.display());
    }
    let limits = Limits::load(config_path.as_deref(), &flags)?;
    Runtime::new(Settings { limits, cache_dir: global.cache_dir.clone().or_else(config::default_cache_dir), events })
}

#[derive(serde::Serialize)]
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

fn driver_list(runtime: &Runtime, output: Output) -> Result<ExitCode> {
    let components = driver::builtin_components()?;
    let drivers = components.iter().map(|c| runtime.load(c)).collect::<Result<Vec<_>, _>>()?;
    let reports: Vec<_> = drivers.iter().map(DriverReport::of).collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Output::Text => {
            println!("{:<12} {:<10} IMAGE TYPES", "NAME", "VERSION");
            for r in &reports {
                println!("{:<12} {:<10} {}", r.name, r.version, r.image_types.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn driver_inspect(runtime: &Runtime, file: &std::path::Path, output: Output) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let component = VerifiedComponent::local(bytes);
    let driver = runtime
        .load(&component)
        .map_err(|e| anyhow::anyhow!("{} is not a driver ferry can load: {}", file.display(), e.message))?;
    let report = DriverReport::of(&driver);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            println!("name:        {}", report.name);
            println!("version:     {}", report.version);
            println!("image types: {}", report.image_types.join(", "));
            println!("interface:   {}", report.interface);
            println!("digest:      {}", report.digest);
            println!("imports:");
            for import in report.imports {
                println!("  {import}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(path: &std::path::Path, output: Output) -> Result<ExitCode> {
    use ferry::bundle::file::{Kind, identify};
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
    let problems = match read() {
        Ok(bytes) => bundle::validate(&bytes),
        // A script asking for JSON gets a JSON document whatever happened.
        Err(e) if output == Output::Json => {
            vec![bundle::Problem { path: "$".into(), rule: bundle::Rule::Unreadable, message: format!("{e:#}") }]
        }
        Err(e) => return Err(e),
    };
    match output {
        Output::Json => {
            let list: Vec<_> = problems
                .iter()
                .map(|p| serde_json::json!({ "path": p.path, "rule": format!("{:?}", p.rule), "message": p.message }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "valid": problems.is_empty(), "problems": list }))?
            );
        }
        Output::Text if problems.is_empty() => println!("{}: valid", path.display()),
        Output::Text => {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            eprintln!("{}: {} problem{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" });
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The host's checks (every byte hashed, in one streaming pass), then, when the bytes are sound,
/// every image's driver's, on the bundle opened in place.
fn verify<'rt>(path: &std::path::Path, drivers: impl FnOnce(&Opened) -> Result<Drivers<'rt>>) -> Result<ExitCode> {
    let mut problems = thick::verify(path)?;
    if problems.is_empty() {
        let opened = Opened::open(path, &std::env::temp_dir())?;
        problems = thick::verify_images(&opened, &drivers(&opened)?)?;
    }
    for p in &problems {
        eprintln!("{}: {p}", path.display());
    }
    if problems.is_empty() {
        println!("{}: verified", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}: {} problem{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" });
        Ok(ExitCode::FAILURE)
    }
}
