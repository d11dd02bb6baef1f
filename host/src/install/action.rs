//! One action on an installation, as the CNAB runtime contract has it (103, 400): inputs resolved
//! and refused before anything runs, the claim written, the invocation image run, the result and
//! outputs recorded. Every step that can fail before the run leaves nothing recorded.

use super::claim::{self, Claim, ClaimResult, OutputRecord, Status};
use super::credentials::{self, CredentialSource};
use super::executor::{Exit, Finished, Run};
use super::outputs;
use super::parameters::{self, Given, applies};
use super::store::{Action, Store, check_name};
use crate::bundle::BundleDoc;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// What the operator asked for.
pub struct Request {
    pub installation: String,
    pub action: String,
    pub parameters: BTreeMap<String, Given>,
    pub credentials: BTreeMap<String, CredentialSource>,
    pub output_limit: u64,
}

/// The bundle an action runs, as the command opened it.
pub struct App<'a> {
    /// bundle.json's exact bytes.
    pub bytes: &'a [u8],
    pub doc: &'a BundleDoc,
    /// Where it came from (a path or a reference), kept in the claim for the next action.
    pub reference: String,
}

/// How an action ended, for the command to report.
pub struct Outcome {
    pub claim: Claim,
    pub result: ClaimResult,
}

/// Checks everything an action needs, in the order an operator would fix them, and returns the
/// claim it will record and what the run tool gets, without running anything.
pub struct Prepared {
    pub claim: Claim,
    pub run_env: BTreeMap<String, String>,
    pub files: Vec<(String, Vec<u8>)>,
    pub outputs: BTreeMap<String, String>,
    /// Output name → the value it takes when the run does not write it.
    pub defaults: BTreeMap<String, Vec<u8>>,
    pub stateless: bool,
}

/// Takes the installation's lock and reads its history; a `running` action left by a ferry that
/// stopped is recorded as `unknown` and reported.
pub fn begin(store: &mut dyn Store, installation: &str, notices: &mut Vec<String>) -> Result<Vec<Action>> {
    check_name(installation)?;
    if !store.try_lock(installation)? {
        let history = store.history(installation)?;
        let running = history.iter().rev().find(|a| a.result.as_ref().is_none_or(|r| !r.status.is_final()));
        match running {
            Some(a) => bail!(
                "installation {installation:?} is busy: {} (claim {}) has been running since {}",
                a.claim.action,
                a.claim.id,
                a.claim.created
            ),
            None => bail!("installation {installation:?} is busy: another ferry holds it"),
        }
    }
    let mut history = store.history(installation)?;
    if let Some(last) = history.last_mut()
        && last.result.as_ref().is_none_or(|r| !r.status.is_final())
    {
        let result = ClaimResult {
            id: claim::new_id(),
            claim_id: last.claim.id.clone(),
            created: claim::now(),
            status: Status::Unknown,
            message: Some("the ferry that ran this action stopped before it ended".into()),
            outputs: BTreeMap::new(),
        };
        store.add_result(&last.claim, &result, &BTreeMap::new())?;
        notices.push(format!(
            "installation {installation:?}: its last action, {} (claim {}), never finished; recorded as unknown",
            last.claim.action, last.claim.id
        ));
        last.result = Some(result);
    }
    Ok(history)
}

pub fn prepare(request: &Request, app: &App, history: &[Action]) -> Result<Prepared> {
    let (name, action, doc) = (&request.installation, request.action.as_str(), app.doc);
    let installed = history.iter().rev().find_map(|a| match (a.claim.action.as_str(), &a.result) {
        ("install", Some(r)) if r.status == Status::Succeeded => Some(true),
        ("uninstall", Some(r)) if r.status == Status::Succeeded => Some(false),
        _ => None,
    });
    let exists = !history.is_empty() && installed != Some(false);
    let custom = doc.actions.as_ref().and_then(|a| a.get(action));
    let stateless = custom.and_then(|a| a.stateless).unwrap_or(false);
    match action {
        "install" if exists => {
            bail!("installation {name:?} already exists; change it with `ferry upgrade {name}`")
        }
        "install" => {}
        "upgrade" | "uninstall" if !exists => {
            bail!("there is no installation {name:?} to {action} (`ferry installations list` shows them)")
        }
        "upgrade" | "uninstall" => {}
        _ if custom.is_none() => {
            let declared: Vec<&str> = doc.actions.iter().flatten().map(|(k, _)| k.as_str()).collect();
            bail!(
                "bundle {} declares no action {action:?} (it declares: {})",
                doc.name,
                if declared.is_empty() { "none".into() } else { declared.join(", ") }
            )
        }
        _ if !stateless && !exists => {
            bail!("there is no installation {name:?} to run {action} on (`ferry installations list` shows them)")
        }
        _ => {}
    }

    let last = history.last();
    let previous = last.map(|a| a.claim.parameters.clone()).unwrap_or_default();
    let values = parameters::resolve(doc, action, &request.parameters, &previous).map_err(|refused| {
        let lines: Vec<String> = refused.iter().map(|r| format!("  {r}")).collect();
        anyhow::anyhow!("{} parameter value(s) refused; nothing was run:\n{}", refused.len(), lines.join("\n"))
    })?;

    let declared = doc.credentials.clone().unwrap_or_default();
    let mut problems = Vec::new();
    for given in request.credentials.keys().filter(|n| !declared.contains_key(*n)) {
        problems.push(format!("  credential {given:?}: the bundle declares no such credential"));
    }
    for (cred, definition) in &declared {
        if definition.required == Some(true)
            && applies(definition.apply_to.as_deref(), action)
            && !request.credentials.contains_key(cred)
        {
            problems.push(format!("  credential {cred:?}: required for {action} (give it with --cred {cred}=SOURCE)"));
        }
    }
    if !problems.is_empty() {
        bail!("{} credential problem(s); nothing was run:\n{}", problems.len(), problems.join("\n"));
    }

    let mut env = BTreeMap::from([
        ("CNAB_INSTALLATION_NAME".to_owned(), name.clone()),
        ("CNAB_BUNDLE_NAME".to_owned(), doc.name.clone()),
        ("CNAB_BUNDLE_VERSION".to_owned(), doc.version.clone()),
        ("CNAB_ACTION".to_owned(), action.to_owned()),
        ("CNAB_CLAIMS_VERSION".to_owned(), claim::CLAIMS_VERSION.to_owned()),
    ]);
    let mut files = Vec::new();
    let mut place = |what: String, env_name: Option<&String>, path: Option<&String>, value: Vec<u8>| -> Result<()> {
        if let Some(var) = env_name {
            if var.starts_with("CNAB_") {
                bail!("{what}: its environment variable {var} is reserved for the CNAB runtime");
            }
            env.insert(var.clone(), String::from_utf8(value.clone()).with_context(|| format!("{what} is not text"))?);
        }
        if let Some(path) = path {
            check_destination(&what, path)?;
            files.push((path.clone(), value));
        }
        Ok(())
    };
    let parameters_declared = doc.parameters.clone().unwrap_or_default();
    for (param, value) in &values {
        let definition = &parameters_declared[param];
        if applies(definition.apply_to.as_deref(), action) {
            let text = parameters::as_text(value).into_bytes();
            place(
                format!("parameter {param:?}"),
                definition.destination.env.as_ref(),
                definition.destination.path.as_ref(),
                text,
            )?;
        }
    }
    let secrets = credentials::read_all(&request.credentials)?;
    for (cred, secret) in secrets {
        let definition = &declared[&cred];
        if applies(definition.apply_to.as_deref(), action) {
            place(
                format!("credential {cred:?}"),
                definition.env.as_ref(),
                definition.path.as_ref(),
                secret.expose().to_vec(),
            )?;
        }
    }

    let mut wanted = BTreeMap::new();
    let mut defaults = BTreeMap::new();
    for (output, definition) in doc.outputs.iter().flatten() {
        outputs::check_path(output, &definition.path)?;
        if applies(definition.apply_to.as_deref(), action) {
            wanted.insert(output.clone(), definition.path.clone());
            let default =
                doc.definitions.as_ref().and_then(|d| d.get(&definition.definition)).and_then(|d| d.get("default"));
            if let Some(default) = default {
                defaults.insert(output.clone(), parameters::as_text(default).into_bytes());
            }
        }
    }

    let modifies = claim::modifies(doc, action) && !stateless;
    let revision = match last {
        Some(a) if !modifies => a.claim.revision.clone(),
        _ => claim::new_id(),
    };
    let claim = Claim {
        id: claim::new_id(),
        installation: name.clone(),
        revision,
        action: action.to_owned(),
        bundle: serde_json::from_slice(app.bytes).context("bundle.json")?,
        bundle_reference: Some(app.reference.clone()),
        created: claim::now(),
        parameters: values,
    };
    env.insert("CNAB_REVISION".into(), claim.revision.clone());
    files.push(("/cnab/bundle.json".into(), app.bytes.to_vec()));
    files.push(("/cnab/claim.json".into(), serde_json::to_vec_pretty(&claim)?));
    Ok(Prepared { claim, run_env: env, files, outputs: wanted, defaults, stateless })
}

/// A failure's message with what the executor saw that may explain it.
fn explained(message: String, remarks: &[String]) -> String {
    std::iter::once(message).chain(remarks.iter().cloned()).collect::<Vec<_>>().join("; ")
}

/// A parameter's or credential's file: an absolute path that does not replace what the runtime
/// places or the image must provide.
fn check_destination(what: &str, path: &str) -> Result<()> {
    const RESERVED: [&str; 4] =
        ["/cnab/bundle.json", "/cnab/claim.json", "/cnab/app/run", "/cnab/app/relocation-mapping.json"];
    let clean = path.strip_prefix('/').is_some_and(outputs::plain_relative);
    if !clean {
        bail!("{what}: its path {path:?} is not an absolute path without . or .. components");
    }
    if RESERVED.contains(&path) || path.starts_with(outputs::OUTPUTS_DIR) || path.starts_with("/cnab/app/artifacts/") {
        bail!("{what}: its path {path} is one the CNAB runtime reserves");
    }
    Ok(())
}

/// Records the claim, runs, records the result. `run` does the running (a container engine).
pub fn perform(
    store: &mut dyn Store,
    prepared: Prepared,
    run: Run,
    execute: impl FnOnce(&Run) -> Result<Finished>,
) -> Result<Outcome> {
    let Prepared { claim, defaults, stateless, .. } = prepared;
    let record = !stateless;
    let result = |status: Status, message: Option<String>, outputs| ClaimResult {
        id: claim::new_id(),
        claim_id: claim.id.clone(),
        created: claim::now(),
        status,
        message,
        outputs,
    };
    if record {
        store.add_claim(&claim)?;
        store.add_result(&claim, &result(Status::Running, None, BTreeMap::new()), &BTreeMap::new())?;
    }
    let finished = execute(&run);
    let (mut status, mut message, mut values) = match finished {
        Ok(Finished { exit: Exit::Code(0), outputs, .. }) => (Status::Succeeded, None, outputs),
        Ok(Finished { exit: Exit::Code(code), outputs, remarks }) => {
            (Status::Failed, Some(explained(format!("the run tool exited with status {code}"), &remarks)), outputs)
        }
        Ok(Finished { exit: Exit::Stopped(why), remarks, .. }) => {
            (Status::Failed, Some(explained(why, &remarks)), BTreeMap::new())
        }
        Ok(Finished { exit: Exit::Lost(why), .. }) => {
            (Status::Unknown, Some(format!("the container engine was lost: {why}")), BTreeMap::new())
        }
        Ok(Finished { exit: Exit::Canceled, .. }) => {
            (Status::Canceled, Some("interrupted by the operator".into()), BTreeMap::new())
        }
        Err(e) => (Status::Failed, Some(format!("{e:#}")), BTreeMap::new()),
    };
    if status == Status::Succeeded {
        let missing: Vec<&String> =
            run.outputs.keys().filter(|o| !values.contains_key(*o) && !defaults.contains_key(*o)).collect();
        if !missing.is_empty() {
            status = Status::Failed;
            let list: Vec<String> = missing.iter().map(|o| format!("{o} ({})", run.outputs[*o])).collect();
            message = Some(format!("the run tool did not write the output(s) {}", list.join(", ")));
        }
        for (output, default) in defaults {
            if run.outputs.contains_key(&output) {
                values.entry(output).or_insert(default);
            }
        }
    }
    let records = values
        .iter()
        .map(|(name, value)| {
            let digest = crate::oci::Digest::of(value).to_string();
            (name.clone(), OutputRecord { content_digest: digest })
        })
        .collect();
    let ended = result(status, message, records);
    if record {
        store.add_result(&claim, &ended, &values)?;
        store.unlock(&claim.installation)?;
    }
    Ok(Outcome { claim, result: ended })
}
