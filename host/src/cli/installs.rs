//! `ferry install`, `upgrade`, `uninstall`, `invoke`, `installations`, `outputs`.

use super::output::{Format, Report, Style};
use super::{Session, help};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry::config::{InstallerLimits, InstallerOverrides};
use ferry::install::action::{self, App, Request};
use ferry::install::claim::Status;
use ferry::install::credentials::CredentialSource;
use ferry::install::engine::Engine;
use ferry::install::executor::Run;
use ferry::install::parameters::Given;
use ferry::install::staging::{self, Invocation};
use ferry::install::store::{self, Store};
use ferry::install::wasi::{self, Grant, Network, WasiExecutor};
use ferry::opened::Opened;
use ferry::untrusted::escape;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct Inputs {
    /// A parameter's value; repeatable. Read as the parameter's definition types it
    #[arg(long = "param", id = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A JSON or YAML file mapping parameter names to values
    #[arg(long, value_name = "FILE")]
    param_file: Option<PathBuf>,
    /// A credential's source: env:VAR, file:PATH, value:TEXT or command:CMD; repeatable
    // Its own id: the registry options' global `--creds` is another flag.
    #[arg(long = "cred", id = "cred", value_name = "NAME=SOURCE")]
    credentials: Vec<String>,
    /// A JSON or YAML file mapping credential names to sources
    #[arg(long, value_name = "FILE")]
    cred_file: Option<PathBuf>,
    /// The relocation mapping `ferry relocate` wrote: the invocation image runs from its
    /// relocated reference and the mapping is given to it
    #[arg(long, value_name = "FILE")]
    relocation_mapping: Option<PathBuf>,
    /// The most bytes one output may hold, e.g. 1MiB
    #[arg(long, value_name = "SIZE", value_parser = ferry::config::parse_size, default_value = "1MiB")]
    output_limit: u64,
    #[command(flatten)]
    installer: InstallerFlags,
    #[command(flatten)]
    store: StoreFlag,
    #[command(flatten)]
    style: Style,
}

/// The sandbox a WebAssembly invocation image runs in (docs/wasi-installers.md).
#[derive(Args)]
pub struct InstallerFlags {
    /// Let the installer reach HOST (on PORT only, if given) when its bundle declares it under
    /// custom["io.ferry.wasi"].allowedOutboundHosts; repeatable
    #[arg(long, value_name = "HOST[:PORT]", help_heading = help::INSTALLER_SANDBOX)]
    allow_outbound: Vec<String>,
    /// Memory the installer may use [default: 1GiB]
    #[arg(long, value_name = "SIZE", value_parser = ferry::config::parse_size, help_heading = help::INSTALLER_SANDBOX)]
    installer_memory: Option<u64>,
    /// Wall-clock time the installer may run [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = ferry::config::parse_duration, help_heading = help::INSTALLER_SANDBOX)]
    installer_timeout: Option<std::time::Duration>,
    /// Bytes the installer may write to stdout and stderr together [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = ferry::config::parse_size, help_heading = help::INSTALLER_SANDBOX)]
    installer_output: Option<u64>,
}

impl InstallerFlags {
    fn overrides(&self) -> InstallerOverrides {
        InstallerOverrides {
            memory: self.installer_memory,
            timeout: self.installer_timeout,
            output: self.installer_output,
            allow_outbound: self.allow_outbound.clone(),
        }
    }
}

#[derive(Args)]
pub struct StoreFlag {
    /// Where installations are recorded: a SQLite file, or a PostgreSQL database as
    /// postgres://USER@HOST:PORT/DATABASE (password from PGPASSWORD) [default:
    /// $XDG_DATA_HOME/ferry/ferry.db]
    #[arg(long = "store", env = "FERRY_STORE", value_name = "PATH|URL")]
    location: Option<String>,
}

impl StoreFlag {
    fn open(&self) -> Result<Box<dyn Store>> {
        store::open(self.location.as_deref())
    }
}

#[derive(Args)]
pub struct Install {
    /// A name for the installation, unique in the store
    installation: String,
    /// A bundle.json or a thick bundle (.tar, .tgz, .tar.zst)
    app: PathBuf,
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Args)]
pub struct Change {
    /// The installation's name
    installation: String,
    /// The bundle to use [default: the one the installation's last action used]
    app: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Args)]
pub struct Invoke {
    /// The installation's name
    installation: String,
    /// One of the bundle's custom actions
    action: String,
    /// The bundle to use [default: the one the installation's last action used]
    app: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Subcommand)]
pub enum Installations {
    /// The installations in the store, as their last action left them
    #[command(after_help = help::INSTALLATIONS_LIST)]
    List {
        /// Also those that were uninstalled
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreFlag,
        #[command(flatten)]
        report: Report,
    },
    /// Every action on an installation: claim, revision, result, outputs
    #[command(after_help = help::INSTALLATIONS_SHOW)]
    Show {
        /// The installation's name
        installation: String,
        #[command(flatten)]
        store: StoreFlag,
        #[command(flatten)]
        report: Report,
    },
}

#[derive(Args)]
pub struct Outputs {
    /// The installation's name
    installation: String,
    /// One output, printed as it is (sensitive ones only this way)
    name: Option<String>,
    #[command(flatten)]
    store: StoreFlag,
    #[command(flatten)]
    report: Report,
}

impl Inputs {
    pub fn format(&self) -> Format {
        self.style.format
    }
}

impl Installations {
    pub fn format(&self) -> Format {
        match self {
            Installations::List { report, .. } | Installations::Show { report, .. } => report.format(),
        }
    }
}

impl Outputs {
    pub fn format(&self) -> Format {
        self.report.format()
    }
}

pub fn install(ctx: &Session, args: Install) -> Result<ExitCode> {
    act(ctx, &args.installation, "install", Some(args.app), &args.inputs)
}

pub fn change(ctx: &Session, action: &str, args: Change) -> Result<ExitCode> {
    act(ctx, &args.installation, action, args.app, &args.inputs)
}

pub fn invoke(ctx: &Session, args: Invoke) -> Result<ExitCode> {
    act(ctx, &args.installation, &args.action, args.app, &args.inputs)
}

fn act(ctx: &Session, installation: &str, action: &str, app: Option<PathBuf>, inputs: &Inputs) -> Result<ExitCode> {
    let mut store = inputs.store.open()?;
    let mut notices = Vec::new();
    let history = action::begin(store.as_mut(), installation, &mut notices)?;
    for notice in &notices {
        eprintln!("ferry: {}", escape(notice));
    }
    let app = match app {
        Some(app) => app,
        None => match history.last().and_then(|a| a.claim.bundle_reference.clone()) {
            Some(reference) => PathBuf::from(reference),
            None => bail!("give the bundle: installation {installation:?} records none to reuse"),
        },
    };
    let registry = ctx.registry(None)?;
    // A published bundle is recorded by the reference it was pinned to, a file by its path.
    let absolute = match app.exists() || !ferry::published::is_reference(&app.to_string_lossy()) {
        true => std::path::absolute(&app).with_context(|| format!("{}", app.display()))?,
        false => app.clone(),
    };
    let opened = Opened::open_argument(&absolute, &std::env::temp_dir(), &registry)
        .with_context(|| format!("opening the bundle {} for {action}", app.display()))?;
    let absolute = opened.path.clone();
    let request = Request {
        installation: installation.to_owned(),
        action: action.to_owned(),
        parameters: parameters(inputs)?,
        credentials: credentials(inputs)?,
        output_limit: inputs.output_limit,
    };
    let prepared = action::prepare(
        &request,
        &App { bytes: opened.bundle.bytes(), doc: &opened.bundle.doc, reference: absolute.display().to_string() },
        &history,
    )?;

    // Refused before anything runs, as every other input is.
    let (_, spec) = staging::invocation_image(&opened)?;
    let sandboxed = staging::is_component(spec);
    let installer = if sandboxed {
        let limits = InstallerLimits::load(super::config_path(ctx.global)?.as_deref(), &inputs.installer.overrides())?;
        let grants = limits.allow_outbound.iter().map(|g| Grant::parse(g)).collect::<Result<Vec<_>>>()?;
        let network = Network::decide(&wasi::declared(&opened.bundle.doc)?, &grants);
        Some((limits, network))
    } else {
        None
    };
    let drivers = ctx.drivers(&opened, &registry)?;
    let mapping = inputs
        .relocation_mapping
        .as_deref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    // A container engine is looked for before the images are staged: without one, nothing moves.
    let engine = if sandboxed { None } else { Some(Engine::connect()?) };
    let staged =
        staging::stage(&opened, &drivers, &registry, mapping.as_deref(), &std::env::temp_dir(), ctx.terminal.clone());
    ctx.terminal.finish();
    let staged = staged?;
    let (image, executor) = match (&staged.invocation, engine, installer) {
        (Invocation::Container { layout, image_id }, Some(engine), _) => {
            engine.load(layout, image_id)?;
            (image_id.clone(), Executor::Engine(engine))
        }
        (Invocation::Component(component), _, Some((limits, network))) => {
            let executor = WasiExecutor::new(ctx.runtime.sandbox(), component, limits, network)?;
            (component.digest().to_string(), Executor::Wasi(executor))
        }
        _ => bail!("the staged invocation image and its executor do not match"),
    };
    let mut files = prepared.files.clone();
    if let Some(mapping) = &staged.mapping {
        files.push(("/cnab/app/relocation-mapping.json".into(), mapping.clone()));
    }
    let run = Run {
        id: prepared.claim.id.clone(),
        image,
        env: prepared.run_env.clone(),
        files,
        artifacts: staged.artifacts.clone(),
        outputs: prepared.outputs.clone(),
        output_cap: request.output_limit,
        stdout_to_stderr: inputs.style.format == Format::Json,
    };
    let interrupt = ferry::cleanup::Interruptible::new();
    let outcome = action::perform(store.as_mut(), prepared, run, |run| match &executor {
        Executor::Engine(engine) => engine.run(run, interrupt.notify()),
        Executor::Wasi(wasi) => wasi.run(run, &interrupt, &std::env::temp_dir()),
    })?;
    drop(interrupt);
    let result = &outcome.result;
    match inputs.style.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "claim": outcome.claim, "result": result }))?
        ),
        Format::Text => eprintln!(
            "{installation}: {action} {}{} (claim {}, revision {})",
            result.status.as_str(),
            result.message.as_deref().map(|m| format!(": {}", escape(m))).unwrap_or_default(),
            outcome.claim.id,
            outcome.claim.revision
        ),
    }
    Ok(match result.status {
        Status::Succeeded => ExitCode::SUCCESS,
        Status::Canceled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

enum Executor<'s> {
    Engine(Engine),
    Wasi(WasiExecutor<'s>),
}

fn parameters(inputs: &Inputs) -> Result<BTreeMap<String, Given>> {
    let mut given: BTreeMap<String, Given> = BTreeMap::new();
    if let Some(file) = &inputs.param_file {
        for (name, value) in read_map(file)? {
            given.insert(name, Given::Typed(value));
        }
    }
    for pair in &inputs.params {
        let (name, value) = pair.split_once('=').with_context(|| format!("--param {pair:?}: expected NAME=VALUE"))?;
        given.insert(name.to_owned(), Given::Text(value.to_owned()));
    }
    Ok(given)
}

fn credentials(inputs: &Inputs) -> Result<BTreeMap<String, CredentialSource>> {
    let mut sources = BTreeMap::new();
    if let Some(file) = &inputs.cred_file {
        for (name, value) in read_map(file)? {
            let text = value.as_str().with_context(|| {
                format!("{}: credential {name:?}: a source is a string such as env:VAR", file.display())
            })?;
            let source =
                CredentialSource::parse(text).with_context(|| format!("{}: credential {name:?}", file.display()))?;
            sources.insert(name, source);
        }
    }
    for pair in &inputs.credentials {
        // Only the name is quoted in errors: the rest may be the secret.
        let Some((name, source)) = pair.split_once('=') else {
            bail!("--cred: expected NAME=SOURCE");
        };
        sources.insert(name.to_owned(), CredentialSource::parse(source).with_context(|| format!("--cred {name}"))?);
    }
    Ok(sources)
}

/// A JSON or YAML file holding one map.
fn read_map(path: &Path) -> Result<BTreeMap<String, serde_json::Value>> {
    const MAX: u64 = 1 << 20;
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if size > MAX {
        bail!("{} is larger than {MAX} bytes", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: Result<BTreeMap<String, serde_json::Value>> = if path.extension().is_some_and(|e| e == "json") {
        ferry::bundle::json::from_slice_strict(&bytes)
    } else {
        serde_norway::from_slice(&bytes).map_err(Into::into)
    };
    parsed.with_context(|| format!("{}: expected a map of names to values (JSON or YAML)", path.display()))
}

pub fn installations(command: Installations) -> Result<ExitCode> {
    match command {
        Installations::List { all, store, report } => {
            report.check()?;
            let list = store.open()?.list(all)?;
            let mut out = String::new();
            match report.format() {
                Format::Json => out = serde_json::to_string_pretty(&list)? + "\n",
                Format::Text => {
                    out += &format!(
                        "{:<24} {:<24} {:<10} {:<12} {:<10} MODIFIED\n",
                        "NAME", "BUNDLE", "VERSION", "ACTION", "STATUS"
                    );
                    for i in &list {
                        out += &format!(
                            "{:<24} {:<24} {:<10} {:<12} {:<10} {}\n",
                            escape(&i.name),
                            escape(&i.bundle_name),
                            escape(&i.bundle_version),
                            escape(&i.last_action),
                            i.status.map(|s| s.as_str()).unwrap_or("running"),
                            i.modified
                        );
                    }
                }
            }
            report.deliver(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Installations::Show { installation, store, report } => {
            report.check()?;
            let history = store.open()?.history(&installation)?;
            if history.is_empty() {
                bail!("there is no installation {installation:?} (`ferry installations list` shows them)");
            }
            let mut out = String::new();
            match report.format() {
                Format::Json => {
                    let actions: Vec<_> =
                        history.iter().map(|a| serde_json::json!({ "claim": a.claim, "result": a.result })).collect();
                    let shown = serde_json::json!({ "name": installation, "actions": actions });
                    out = serde_json::to_string_pretty(&shown)? + "\n";
                }
                Format::Text => {
                    out += &format!("{}\n", escape(&installation));
                    for a in &history {
                        let c = &a.claim;
                        let (status, message, outputs) = match &a.result {
                            Some(r) => (
                                r.status.as_str(),
                                r.message.clone().unwrap_or_default(),
                                r.outputs.keys().cloned().collect::<Vec<_>>(),
                            ),
                            None => ("pending", String::new(), Vec::new()),
                        };
                        out += &format!(
                            "  {} {:<10} {} {} {}  {}\n",
                            c.created,
                            escape(&c.action),
                            escape(c.bundle["name"].as_str().unwrap_or_default()),
                            escape(c.bundle["version"].as_str().unwrap_or_default()),
                            status,
                            escape(&message)
                        );
                        out += &format!("      claim {}  revision {}\n", c.id, c.revision);
                        if !outputs.is_empty() {
                            out += &format!("      outputs: {}\n", escape(&outputs.join(", ")));
                        }
                    }
                }
            }
            report.deliver(&out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn outputs(args: Outputs) -> Result<ExitCode> {
    args.report.check()?;
    let mut store = args.store.open()?;
    let history = store.history(&args.installation)?;
    let Some(last) = history.iter().rev().find(|a| a.result.as_ref().is_some_and(|r| !r.outputs.is_empty())) else {
        if history.is_empty() {
            bail!("there is no installation {:?} (`ferry installations list` shows them)", args.installation);
        }
        if let Some(name) = &args.name {
            bail!("installation {:?} has no output {name:?}", args.installation);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let bundle: ferry::bundle::BundleDoc = serde_json::from_value(last.claim.bundle.clone())?;
    let sensitive = |name: &str| {
        let definition = bundle.outputs.as_ref().and_then(|o| o.get(name)).map(|o| o.definition.clone());
        definition
            .and_then(|d| bundle.definitions.as_ref()?.get(&d).cloned())
            .and_then(|d| d.get("writeOnly").and_then(|w| w.as_bool()))
            .unwrap_or(false)
    };
    if let Some(name) = &args.name {
        let value = store
            .output(&args.installation, name)?
            .with_context(|| format!("installation {:?} has no output {name:?}", args.installation))?;
        match &args.report.output {
            Some(path) => super::output::write_file(path, &value)?,
            None => std::io::Write::write_all(&mut std::io::stdout(), &value)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = last.result.as_ref().map(|r| r.outputs.keys().cloned().collect()).unwrap_or_default();
    let mut shown = BTreeMap::new();
    for name in names {
        let value = if sensitive(&name) {
            None
        } else {
            store.output(&args.installation, &name)?.map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        shown.insert(name, value);
    }
    let mut out = String::new();
    match args.report.format() {
        Format::Json => out = serde_json::to_string_pretty(&shown)? + "\n",
        Format::Text => {
            for (name, value) in shown {
                let value = value
                    .map(|v| escape(&v).into_owned())
                    .unwrap_or_else(|| format!("(sensitive: ferry outputs {} {name})", args.installation));
                out += &format!("{:<20} {}\n", escape(&name), value);
            }
        }
    }
    args.report.deliver(&out)?;
    Ok(ExitCode::SUCCESS)
}
