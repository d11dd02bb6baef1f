//! Credential values, from the sources porter's credential sets have: `env:VAR`, `file:PATH`,
//! `value:TEXT`, `command:CMD`. A value goes to the invocation image and nowhere else: not to a
//! claim, a log, an error message or the terminal.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The largest credential ferry reads from a file or a command.
pub const MAX_CREDENTIAL: u64 = 1 << 20;
/// How long a `command:` source may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A credential's value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Where a credential's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Env(String),
    File(String),
    Value(Secret),
    Command(String),
}

impl CredentialSource {
    /// `KIND:REST`; the error never quotes what follows the kind, which may be the secret itself.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((kind, rest)) = text.split_once(':') else {
            bail!("a credential source is env:VAR, file:PATH, value:TEXT or command:CMD");
        };
        Ok(match kind {
            "env" => CredentialSource::Env(rest.to_owned()),
            "file" => CredentialSource::File(rest.to_owned()),
            "value" => CredentialSource::Value(Secret(rest.as_bytes().to_vec())),
            "command" => CredentialSource::Command(rest.to_owned()),
            _ => bail!("unknown credential source kind (env, file, value or command)"),
        })
    }

    /// The value, read now. Errors name the source but show nothing it produced.
    pub fn read(&self) -> Result<Secret> {
        match self {
            CredentialSource::Env(var) => match std::env::var_os(var) {
                Some(value) => Ok(Secret(value.into_encoded_bytes())),
                None => bail!("environment variable {var} is not set"),
            },
            CredentialSource::File(path) => {
                let path = expand_home(path);
                let file = std::fs::File::open(&path).with_context(|| format!("reading {path}"))?;
                let mut value = Vec::new();
                file.take(MAX_CREDENTIAL + 1).read_to_end(&mut value).with_context(|| format!("reading {path}"))?;
                if value.len() as u64 > MAX_CREDENTIAL {
                    bail!("{path} is larger than {MAX_CREDENTIAL} bytes");
                }
                Ok(Secret(value))
            }
            CredentialSource::Value(secret) => Ok(secret.clone()),
            CredentialSource::Command(command) => run(command),
        }
    }
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_owned(),
    }
}

/// Runs `sh -c COMMAND` and takes its standard output, with the trailing newline a shell command
/// prints removed. Its standard error goes to the operator's terminal, as porter does: it is the
/// command's own message. Its standard output is never shown, even when it fails.
fn run(command: &str) -> Result<Secret> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting sh for a command: credential")?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut value = Vec::new();
        stdout.take(MAX_CREDENTIAL + 1).read_to_end(&mut value).map(|_| value)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the command did not finish within {}s", COMMAND_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut value = reader.join().expect("reader thread").context("reading the command's output")?;
    if !status.success() {
        bail!("the command failed ({status}); its output is not shown");
    }
    if value.len() as u64 > MAX_CREDENTIAL {
        bail!("the command printed more than {MAX_CREDENTIAL} bytes");
    }
    if value.ends_with(b"\n") {
        value.pop();
    }
    Ok(Secret(value))
}

/// Reads every source, each error naming the credential.
pub fn read_all(sources: &BTreeMap<String, CredentialSource>) -> Result<BTreeMap<String, Secret>> {
    sources
        .iter()
        .map(|(name, source)| Ok((name.clone(), source.read().with_context(|| format!("credential {name:?}"))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gives_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file").unwrap();
        let read = |text: &str| CredentialSource::parse(text).unwrap().read().unwrap().expose().to_vec();
        assert_eq!(read(&format!("file:{}", file.display())), b"from-file");
        assert_eq!(read("value:s3cret:with:colons"), b"s3cret:with:colons");
        assert_eq!(read("command:printf 'line\\n'"), b"line");
        assert_eq!(read("env:PATH"), std::env::var("PATH").unwrap().as_bytes());
    }

    #[test]
    fn errors_show_nothing_a_source_produced() {
        let failing = CredentialSource::parse("command:echo hunter2; exit 3").unwrap();
        let error = format!("{:#}", failing.read().unwrap_err());
        assert!(error.contains("failed") && !error.contains("hunter2"), "{error}");
        let bad_kind = format!("{:#}", CredentialSource::parse("secret:hunter2").unwrap_err());
        assert!(!bad_kind.contains("hunter2"), "{bad_kind}");
        let value = CredentialSource::parse("value:hunter2").unwrap();
        assert!(!format!("{value:?}").contains("hunter2"));
        let unset = CredentialSource::parse("env:FERRY_TEST_SURELY_UNSET").unwrap();
        assert!(format!("{:#}", unset.read().unwrap_err()).contains("FERRY_TEST_SURELY_UNSET"));
    }
}
