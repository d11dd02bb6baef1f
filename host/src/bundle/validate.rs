//! bundle.json validation: its structure (ferry's reading of CNAB Core 1.2, in `structure`),
//! then the rules the spec's prose states and the official schema misses. Each problem names its
//! JSON path.

use serde_json::Value;
use std::fmt;

/// Which rule a problem breaks: the schema, or a named rule of the spec's prose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The file could not be read as a bundle at all (not JSON, not a thick bundle).
    Unreadable,
    /// Not JSON at all.
    Syntax,
    /// RFC 8259 §4: names within an object SHOULD be unique; ferry refuses a repeated one,
    /// since tools disagree on which of them counts.
    DuplicateKey,
    /// The structure the official schema describes: a field's type, a required field, a field
    /// outside `custom` at the top level, the output path and version patterns, the JSON Schema
    /// keywords of `definitions`.
    Schema,
    /// 101 §Invocation Images: a bundle MUST have at least one invocation image.
    InvocationImageRequired,
    /// 101 §Name and Version: `version` MUST be SemVer 2 (the schema's pattern is unanchored).
    VersionSemver,
    /// 101 §Schema Version: `schemaVersion` is a SemVer, with or without a leading `v`.
    SchemaVersionSemver,
    /// ferry reads CNAB Core 1.x (`v1`, `v1.0.0-WD` … `v1.2.0`); another major is a format it
    /// does not know.
    SchemaVersionSupported,
    /// 101 §Name and Version: `name` holds only graphic characters and spaces.
    NameGraphic,
    /// 101 §Parameters: a destination MUST give `env` or `path`.
    ParameterDestination,
    /// 101 §Credentials: a credential MUST give `env` or `path`.
    CredentialDestination,
    /// 101 §Parameters, §Credentials: a path MUST NOT be under `/cnab/app/outputs`.
    PathUnderOutputs,
    /// 101 §Outputs: output paths are distinct.
    OutputPathDistinct,
    /// 101 §Custom Actions: `install`, `upgrade` and `uninstall` are built in, not custom actions.
    BuiltinActionName,
    /// 101 §Parameters, §Outputs: `definition` names an entry of `definitions`.
    DefinitionExists,
    /// 101 §Resolving Destination Conflicts: no variable shared by a parameter and a
    /// credential, and none with the reserved `CNAB_` prefix.
    EnvConflict,
    /// 101 §Resolving Destination Conflicts: no file path shared by a parameter and a
    /// credential (the spec calls it an error, as for variables).
    PathConflict,
    /// 101 §Invocation Images: `contentDigest` is an OCI digest, `algorithm:encoded`.
    ContentDigestFormat,
    /// 101 §Required Extensions: the schema checks nothing in this list; its items are names.
    RequiredExtensionNames,
    /// A warning: a field CNAB does not define in an object whose fields it defines (allowed,
    /// but usually a misspelling that changes what happens).
    UnknownField,
    /// A warning: an image whose `imageType` no available driver handles (the built-in ones,
    /// and those the bundle ships and the operator allows); exporting it would fail.
    NoDriver,
    /// A warning: what the bundle declares under a ferry extension's `custom` key (such as
    /// `io.ferry.wasi`) cannot be read; the commands that use it refuse the bundle.
    Extension,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A JSON path such as `$.parameters.port.destination`.
    pub path: String,
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem with `bytes` as a bundle.json; empty when it is valid.
pub fn validate(bytes: &[u8]) -> Vec<Problem> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![Problem { path: "$".into(), rule: Rule::Syntax, message: format!("not JSON: {e}") }];
        }
    };
    if let Err(e) = super::json::check_duplicate_keys(bytes) {
        let text = e.to_string();
        let (path, message) = match text.split_once(' ') {
            Some((path, rest)) if path.starts_with('$') => (path.to_owned(), format!("the key {rest}")),
            _ => ("$".to_owned(), format!("not JSON: {text}")),
        };
        let rule = if e.is_data() { Rule::DuplicateKey } else { Rule::Syntax };
        return vec![Problem { path, rule, message }];
    }
    let mut problems = Vec::new();
    super::structure::check(&value, &mut problems);
    prose(&value, &mut problems);
    problems
}

/// What validation warns about in `bytes` without calling the bundle invalid: unknown fields,
/// with the field probably meant. Empty if `bytes` are not JSON (that is a problem already).
pub fn warnings(bytes: &[u8]) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        super::structure::unknown_fields(&value, &mut warnings);
    }
    warnings
}

/// `k` as a step of a JSON path: `.name`, or `["a name"]` when it needs quoting.
pub fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        format!(".{k}")
    } else {
        format!("[{}]", serde_json::to_string(k).unwrap())
    }
}

fn entries<'a>(v: &'a Value, field: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    v.get(field).and_then(Value::as_object).into_iter().flatten()
}

fn is_semver(s: &str, allow_short: bool) -> bool {
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let count_ok = if allow_short { (1..=3).contains(&numbers.len()) } else { numbers.len() == 3 };
    let numeric = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    let identifiers = |s: &str, allow_leading_zero: bool| {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (allow_leading_zero || !id.bytes().all(|b| b.is_ascii_digit()) || numeric(id))
        })
    };
    let (pre, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, Some(build)),
        None => (rest, None),
    };
    count_ok
        && numbers.iter().all(|n| numeric(n))
        && pre.strip_prefix('-').is_none_or(|p| identifiers(p, false))
        && (pre.is_empty() || pre.starts_with('-'))
        && build.is_none_or(|b| identifiers(b, true))
}

fn is_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && !encoded.is_empty()
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        && (algorithm != "sha256"
            || (encoded.len() == 64 && encoded.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())))
}

const OUTPUTS_DIR: &str = "/cnab/app/outputs";

fn under_outputs(path: &str) -> bool {
    path == OUTPUTS_DIR || path.starts_with(&format!("{OUTPUTS_DIR}/"))
}

fn prose(doc: &Value, problems: &mut Vec<Problem>) {
    let mut add = |path: String, rule: Rule, message: String| problems.push(Problem { path, rule, message });

    if doc.get("invocationImages").and_then(Value::as_array).is_some_and(|a| a.is_empty()) {
        add(
            "$.invocationImages".into(),
            Rule::InvocationImageRequired,
            "a bundle needs at least one invocation image".into(),
        );
    }
    if let Some(version) = doc.get("version").and_then(Value::as_str)
        && !is_semver(version.strip_prefix('v').unwrap_or(version), false)
    {
        add("$.version".into(), Rule::VersionSemver, format!("{version:?} is not a semantic version such as 1.2.3"));
    }
    if let Some(version) = doc.get("schemaVersion").and_then(Value::as_str) {
        let bare = version.strip_prefix('v').unwrap_or(version);
        if !is_semver(bare, true) {
            add(
                "$.schemaVersion".into(),
                Rule::SchemaVersionSemver,
                format!("{version:?} is not a schema version such as v1.2.0"),
            );
        } else if bare.split(['.', '-']).next() == Some("0") {
            add(
                "$.schemaVersion".into(),
                Rule::SchemaVersionSupported,
                format!(
                    "{version:?} is a pre-1.0 draft of CNAB, as early duffle and porter releases wrote; \
                     ferry reads CNAB Core 1.x: rebuild the bundle with a current porter or cnab-go"
                ),
            );
        } else if bare.split(['.', '-']).next() != Some("1") {
            add(
                "$.schemaVersion".into(),
                Rule::SchemaVersionSupported,
                format!("{version:?} is not a CNAB Core version ferry knows; it reads v1.0.0 to v1.2.0"),
            );
        }
    }
    if let Some(name) = doc.get("name").and_then(Value::as_str)
        && name.chars().any(char::is_control)
    {
        add(
            "$.name".into(),
            Rule::NameGraphic,
            "a bundle name may not hold control characters (newlines, tabs)".into(),
        );
    }

    let mut images: Vec<(String, &Value)> = doc
        .get("invocationImages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| (format!("$.invocationImages[{i}]"), v))
        .collect();
    images.extend(entries(doc, "images").map(|(k, v)| (format!("$.images{}", key(k)), v)));
    for (path, image) in images {
        if let Some(digest) = image.get("contentDigest").and_then(Value::as_str)
            && !is_digest(digest)
        {
            add(
                format!("{path}.contentDigest"),
                Rule::ContentDigestFormat,
                format!("{digest:?} is not a digest such as sha256:<64 hex digits>"),
            );
        }
    }

    let definitions = doc.get("definitions").and_then(Value::as_object);
    // Parameters and outputs both name their schema in `definition`.
    let missing_definition = |at: &str, entry: &Value| {
        let name = entry.get("definition").and_then(Value::as_str)?;
        (!definitions.is_some_and(|d| d.contains_key(name)))
            .then(|| (format!("{at}.definition"), format!("no definition named {name:?} in $.definitions")))
    };
    let mut param_envs = Vec::new();
    let mut param_paths: Vec<(String, String)> = Vec::new();
    for (name, param) in entries(doc, "parameters") {
        let at = format!("$.parameters{}", key(name));
        if let Some((path, message)) = missing_definition(&at, param) {
            add(path, Rule::DefinitionExists, message);
        }
        if let Some(destination) = param.get("destination").filter(|d| d.is_object()) {
            let env = destination.get("env").and_then(Value::as_str).filter(|s| !s.is_empty());
            let path = destination.get("path").and_then(Value::as_str).filter(|s| !s.is_empty());
            if env.is_none() && path.is_none() {
                add(format!("{at}.destination"), Rule::ParameterDestination, "a destination needs env or path".into());
            }
            if let Some(path) = path.filter(|p| under_outputs(p)) {
                add(
                    format!("{at}.destination.path"),
                    Rule::PathUnderOutputs,
                    format!("{path:?} is under {OUTPUTS_DIR}, which is reserved for outputs"),
                );
            }
            if let Some(env) = env {
                param_envs.push((env.to_owned(), format!("{at}.destination.env")));
            }
            if let Some(path) = path {
                param_paths.push((path.to_owned(), format!("{at}.destination.path")));
            }
        }
    }
    let mut cred_envs = Vec::new();
    for (name, cred) in entries(doc, "credentials") {
        let at = format!("$.credentials{}", key(name));
        let env = cred.get("env").and_then(Value::as_str).filter(|s| !s.is_empty());
        let path = cred.get("path").and_then(Value::as_str).filter(|s| !s.is_empty());
        if env.is_none() && path.is_none() {
            add(at.clone(), Rule::CredentialDestination, "a credential needs env or path".into());
        }
        if let Some(path) = path.filter(|p| under_outputs(p)) {
            add(
                format!("{at}.path"),
                Rule::PathUnderOutputs,
                format!("{path:?} is under {OUTPUTS_DIR}, which is reserved for outputs"),
            );
        }
        if let Some(env) = env {
            cred_envs.push((env.to_owned(), format!("{at}.env")));
        }
        if let Some(path) = path
            && let Some((_, other)) = param_paths.iter().find(|(p, _)| p == path)
        {
            add(format!("{at}.path"), Rule::PathConflict, format!("{path:?} is also the path of {other}"));
        }
    }
    for (env, at) in param_envs.iter().chain(&cred_envs) {
        if env.starts_with("CNAB_") {
            add(
                at.clone(),
                Rule::EnvConflict,
                format!("{env} uses the CNAB_ prefix, which is reserved for the runtime"),
            );
        }
    }
    for (env, at) in &param_envs {
        if let Some((_, other)) = cred_envs.iter().find(|(e, _)| e == env) {
            add(at.clone(), Rule::EnvConflict, format!("{env} is also the variable of credential {other}"));
        }
    }

    let mut output_paths: Vec<(&str, String)> = Vec::new();
    for (name, output) in entries(doc, "outputs") {
        let at = format!("$.outputs{}", key(name));
        if let Some((path, message)) = missing_definition(&at, output) {
            add(path, Rule::DefinitionExists, message);
        }
        if let Some(path) = output.get("path").and_then(Value::as_str) {
            if let Some((_, first)) = output_paths.iter().find(|(p, _)| *p == path) {
                add(format!("{at}.path"), Rule::OutputPathDistinct, format!("{path:?} is also the path of {first}"));
            }
            output_paths.push((path, at));
        }
    }

    for (name, _) in entries(doc, "actions") {
        if ["install", "upgrade", "uninstall"].contains(&name.as_str()) {
            add(
                format!("$.actions{}", key(name)),
                Rule::BuiltinActionName,
                format!("{name:?} is a built-in action and cannot be redefined"),
            );
        }
    }

    if let Some(list) = doc.get("requiredExtensions").and_then(Value::as_array) {
        for (i, item) in list.iter().enumerate() {
            if item.as_str().is_none_or(str::is_empty) {
                add(
                    format!("$.requiredExtensions[{i}]"),
                    Rule::RequiredExtensionNames,
                    "an extension name is a non-empty string".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        for ok in ["1.0.0", "0.1.2-rc.1+build.5", "10.20.30"] {
            assert!(is_semver(ok, false), "{ok}");
        }
        for bad in ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "latest", "1.0.0 beta"] {
            assert!(!is_semver(bad, false), "{bad}");
        }
        assert!(is_semver("1", true) && is_semver("1.2.0-WD", true));
    }
}
