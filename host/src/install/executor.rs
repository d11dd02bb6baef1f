//! What one run of an invocation image is given and what comes back, whatever runs it: a
//! container engine (`engine.rs`) or ferry's own WASI sandbox (`wasi/`).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything the run tool gets, decided before anything runs.
pub struct Run {
    /// Names the run (the container's name is made from it): the claim's id.
    pub id: String,
    /// The image to run: by ID (the config digest) for a container engine, so that what runs is
    /// what was checked; the component's digest for the WASI executor, which holds it.
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// Absolute path in the invocation image → content.
    pub files: Vec<(String, Vec<u8>)>,
    /// A directory of relocated images placed at /cnab/app/artifacts.
    pub artifacts: Option<PathBuf>,
    /// Output name → its path, for the outputs that apply to the action.
    pub outputs: BTreeMap<String, String>,
    /// The most bytes one output may hold.
    pub output_cap: u64,
    /// The run tool's stdout goes to ferry's stderr: ferry's stdout carries a JSON report.
    pub stdout_to_stderr: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i64),
    /// The engine went away before giving an exit status.
    Lost(String),
    /// The executor stopped it (a limit, a trap), for this reason.
    Stopped(String),
    /// The operator interrupted it.
    Canceled,
}

pub struct Finished {
    pub exit: Exit,
    /// Output name → value, for the outputs the run wrote.
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// What the executor saw that explains a failure (a connection the sandbox refused).
    pub remarks: Vec<String>,
}
