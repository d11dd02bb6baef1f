//! CNAB claims (400-claims.md): the immutable record of one action on an installation, written
//! before the action runs, and the results that say how it ended.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The claims version ferry implements, given to the invocation image as `CNAB_CLAIMS_VERSION`.
pub const CLAIMS_VERSION: &str = "CNAB-Claims-1.0.0";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub id: String,
    pub installation: String,
    pub revision: String,
    pub action: String,
    /// The whole bundle.json, as the action used it.
    pub bundle: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_reference: Option<String>,
    pub created: String,
    /// The resolved values, defaults included; never credentials (400 §Credentials).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResult {
    pub id: String,
    pub claim_id: String,
    pub created: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Output name → its digest; the values themselves are kept apart from the result.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, OutputRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputRecord {
    pub content_digest: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Pending, Status::Running, Status::Succeeded, Status::Failed, Status::Canceled, Status::Unknown]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Pending and running are temporary: the action has not ended (or its ferry was lost).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Running)
    }
}

/// A new ULID (400 §ULIDs): sortable by creation time, unique without coordination. Monotonic
/// within the process, so that two results written in the same millisecond keep their order.
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    generator.generate().unwrap_or_else(|_| ulid::Ulid::generate()).to_string()
}

/// Now, in the ISO-8601 extended form the claim schema asks for.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Whether `action` gets a new revision: the built-in actions, and custom actions that modify
/// the installation (103 §The CNAB Revision Variable). An action the bundle does not declare
/// modifies, since nothing says it does not.
pub fn modifies(bundle: &crate::bundle::BundleDoc, action: &str) -> bool {
    match action {
        "install" | "upgrade" | "uninstall" => true,
        custom => bundle.actions.as_ref().and_then(|a| a.get(custom)).and_then(|a| a.modifies).unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_time() {
        let first = new_id();
        let second = new_id();
        assert_eq!(first.len(), 26);
        assert!(first < second);
    }

    #[test]
    fn a_result_serializes_as_the_schema_names_it() {
        let result = ClaimResult {
            id: new_id(),
            claim_id: new_id(),
            created: now(),
            status: Status::Canceled,
            message: None,
            outputs: BTreeMap::from([("url".into(), OutputRecord { content_digest: "sha256:00".into() })]),
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["status"], "canceled");
        assert_eq!(json["outputs"]["url"]["contentDigest"], "sha256:00");
        assert!(json["claimId"].is_string());
        assert!(json["created"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Status::parse("canceled"), Some(Status::Canceled));
    }
}
