//! Operator settings: driver limits from `~/.config/ferry/config.toml` and command-line flags,
//! and where ferry keeps its cache.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one driver operation may use. Every operation gets a fresh sandbox with these limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory summed over every memory of the driver's instance.
    pub memory: u64,
    /// Wall-clock time of one operation, time spent waiting in the host included.
    pub timeout: Duration,
    /// Bytes a driver may hand to the host in one call (a document, a log line).
    pub call_bytes: u64,
    /// Host handles (sources, destinations) a driver may hold at once.
    pub handles: u32,
    /// Bytes of a driver's stdout and of its stderr that are kept; the rest is dropped.
    pub output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            timeout: Duration::from_secs(60),
            call_bytes: 16 << 20,
            handles: 64,
            output: 64 << 10,
        }
    }
}

/// Limits set on the command line; each one that is set wins over the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub memory: Option<u64>,
    pub timeout: Option<Duration>,
    pub call_bytes: Option<u64>,
    pub handles: Option<u32>,
    pub output: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    drivers: DriverSection,
    #[serde(default)]
    installers: InstallerSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct InstallerSection {
    memory: Option<String>,
    timeout: Option<String>,
    output: Option<String>,
    #[serde(default)]
    allow_outbound: Vec<String>,
}

/// What one run of a WASI installer may use (docs/wasi-installers.md): more than a driver
/// operation, since an installer does a deployment's work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallerLimits {
    /// Linear memory summed over every memory of the installer's instance.
    pub memory: u64,
    /// Wall-clock time of the run.
    pub timeout: Duration,
    /// Bytes the installer may write to stdout and stderr together; they stream to the operator.
    pub output: u64,
    /// `HOST[:PORT]` the operator lets installers reach, when their bundle declares them too.
    pub allow_outbound: Vec<String>,
}

impl Default for InstallerLimits {
    fn default() -> Self {
        InstallerLimits {
            memory: 1 << 30,
            timeout: Duration::from_secs(30 * 60),
            output: 16 << 20,
            allow_outbound: Vec::new(),
        }
    }
}

/// Installer settings from the command line; each one that is set wins over the config file,
/// and outbound grants add to the file's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallerOverrides {
    pub memory: Option<u64>,
    pub timeout: Option<Duration>,
    pub output: Option<u64>,
    pub allow_outbound: Vec<String>,
}

impl InstallerLimits {
    /// The defaults, then the config file's `[installers]` at `path` if it exists, then `flags`.
    pub fn load(path: Option<&Path>, flags: &InstallerOverrides) -> Result<Self> {
        let mut limits = InstallerLimits::default();
        if let Some(path) = path.filter(|p| p.exists()) {
            let i = read_file(path)?.installers;
            let at = |key: &str| format!("{}: installers.{key}", path.display());
            if let Some(v) = i.memory {
                limits.memory = parse_size(&v).with_context(|| at("memory"))?;
            }
            if let Some(v) = i.timeout {
                limits.timeout = parse_duration(&v).with_context(|| at("timeout"))?;
            }
            if let Some(v) = i.output {
                limits.output = parse_size(&v).with_context(|| at("output"))?;
            }
            limits.allow_outbound = i.allow_outbound;
        }
        limits.memory = flags.memory.unwrap_or(limits.memory);
        limits.timeout = flags.timeout.unwrap_or(limits.timeout);
        limits.output = flags.output.unwrap_or(limits.output);
        limits.allow_outbound.extend(flags.allow_outbound.iter().cloned());
        Ok(limits)
    }
}

fn read_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", path.display()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DriverSection {
    memory: Option<String>,
    timeout: Option<String>,
    call_bytes: Option<String>,
    handles: Option<u32>,
    output: Option<String>,
}

impl Limits {
    /// The defaults, then the config file at `path` if it exists, then `flags`.
    pub fn load(path: Option<&Path>, flags: &LimitOverrides) -> Result<Self> {
        let mut limits = Limits::default();
        if let Some(path) = path.filter(|p| p.exists()) {
            limits.apply_file(path)?;
        }
        limits.memory = flags.memory.unwrap_or(limits.memory);
        limits.timeout = flags.timeout.unwrap_or(limits.timeout);
        limits.call_bytes = flags.call_bytes.unwrap_or(limits.call_bytes);
        limits.handles = flags.handles.unwrap_or(limits.handles);
        limits.output = flags.output.unwrap_or(limits.output);
        Ok(limits)
    }

    fn apply_file(&mut self, path: &Path) -> Result<()> {
        let d = read_file(path)?.drivers;
        let at = |key: &str| format!("{}: drivers.{key}", path.display());
        if let Some(v) = d.memory {
            self.memory = parse_size(&v).with_context(|| at("memory"))?;
        }
        if let Some(v) = d.timeout {
            self.timeout = parse_duration(&v).with_context(|| at("timeout"))?;
        }
        if let Some(v) = d.call_bytes {
            self.call_bytes = parse_size(&v).with_context(|| at("call-bytes"))?;
        }
        if let Some(v) = d.handles {
            self.handles = v;
        }
        if let Some(v) = d.output {
            self.output = parse_size(&v).with_context(|| at("output"))?;
        }
        Ok(())
    }
}

/// `1048576`, `512KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`, all powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().with_context(|| format!("{s:?} is not a size such as 256MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)"),
    };
    number.checked_mul(1 << shift).with_context(|| format!("{s:?} is too large"))
}

/// `500ms`, `60s`, `5m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().with_context(|| format!("{s:?} is not a duration such as 60s"))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        other => bail!("{s:?}: unknown unit {other:?} (use ms, s, m or h)"),
    })
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME/ferry/config.toml`, else `~/.config/ferry/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("ferry/config.toml"))
}

/// `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cache")))?;
    Some(base.join("ferry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1 G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[drivers]\nmemory = \"64MiB\"\ntimeout = \"5s\"\n").unwrap();
        let flags = LimitOverrides { timeout: Some(Duration::from_secs(9)), ..Default::default() };
        let limits = Limits::load(Some(&path), &flags).unwrap();
        assert_eq!(limits.memory, 64 << 20);
        assert_eq!(limits.timeout, Duration::from_secs(9));
        assert_eq!(limits.handles, Limits::default().handles);

        std::fs::write(&path, "[drivers]\nmemory = \"lots\"\n").unwrap();
        let err = format!("{:#}", Limits::load(Some(&path), &LimitOverrides::default()).unwrap_err());
        assert!(err.contains("drivers.memory") && err.contains("lots"), "{err}");
        std::fs::write(&path, "[installers]\ntimeout = \"a while\"\n").unwrap();
        let err = format!("{:#}", InstallerLimits::load(Some(&path), &InstallerOverrides::default()).unwrap_err());
        assert!(err.contains("installers.timeout") && err.contains("a while"), "{err}");
        std::fs::write(&path, "[installers]\nmemory = \"2GiB\"\nallow-outbound = [\"a.example:443\"]\n").unwrap();
        let flags = InstallerOverrides { allow_outbound: vec!["b.example".into()], ..Default::default() };
        let installers = InstallerLimits::load(Some(&path), &flags).unwrap();
        assert_eq!(installers.memory, 2 << 30);
        assert_eq!(installers.timeout, InstallerLimits::default().timeout);
        assert_eq!(installers.allow_outbound, ["a.example:443", "b.example"]);
        std::fs::write(&path, "[drivers]\nmemroy = \"1GiB\"\n").unwrap();
        let err = format!("{:#}", Limits::load(Some(&path), &LimitOverrides::default()).unwrap_err());
        assert!(err.contains("memroy"), "{err}");
    }
}
