//! How requests to a registry are authorized: the `WWW-Authenticate` challenge its `/v2/`
//! answers, and for a Bearer challenge the token exchange at the realm the challenge names.
//!
//! ferry makes the exchange itself, not oci-client, because the registry chooses the realm and
//! may name any host: credentials go to a realm only over https, or to the registry itself when
//! the operator reaches it over plain http (--insecure-registry); any other realm is refused,
//! by name, before anything is sent. And a token answer is read only up to [`MAX_TOKEN_ANSWER`].

use super::{Registry, RegistryError, RegistryErrorKind};
use crate::transfer::{Pace, Stop};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use std::time::{Duration, Instant};

/// The most of a token answer that is read: real tokens are a few KiB.
pub const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// How long an authorization is used before it is obtained again: registries grant tokens for a
/// minute or more.
const REUSE: Duration = Duration::from_secs(30);

/// What ferry's requests to a registry carry.
#[derive(Clone, Debug)]
pub(super) enum Authorization {
    Anonymous,
    /// Credentials for the registry's own Basic (or other non-Bearer) challenge.
    Basic(String, String),
    Bearer(String),
}

impl Authorization {
    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Authorization::Anonymous => request,
            Authorization::Basic(user, password) => request.basic_auth(user, Some(password)),
            Authorization::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// What `GET /v2/` asked for.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    /// No challenge: requests go without credentials.
    None,
    /// Credentials straight to the registry.
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

fn parse_challenge(header: &str) -> Challenge {
    for challenge in http_auth::ChallengeParser::new(header).map_while(Result::ok) {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge.params.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                return Challenge::Bearer { realm, service: param("service") };
            }
        }
    }
    Challenge::Basic
}

/// Whether credentials for `registry` (`host[:port]`, reached over plain http when `insecure`)
/// may be sent to token realm `realm`: over https, or to the registry itself.
fn may_send_credentials(realm: &reqwest::Url, registry: &str, insecure: bool) -> bool {
    match realm.scheme() {
        "https" => true,
        "http" if insecure => reqwest::Url::parse(&format!("http://{registry}/")).is_ok_and(|own| {
            realm.host_str() == own.host_str() && realm.port_or_known_default() == own.port_or_known_default()
        }),
        _ => false,
    }
}

impl Registry {
    /// What requests for `operation` on `reference`'s repository carry, obtained with
    /// `credentials` (or reused for a while). For a push, oci-client, which makes the requests,
    /// is handed it too.
    pub(super) async fn authorization(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        credentials: &RegistryAuth,
        pace: &Pace,
    ) -> Result<Authorization, RegistryError> {
        let registry = reference.resolve_registry();
        let key = (registry.to_owned(), reference.repository().to_owned(), operation == RegistryOperation::Push);
        if let Some((at, authorization)) = self.authorizations.lock().unwrap().get(&key)
            && at.elapsed() < REUSE
        {
            return Ok(authorization.clone());
        }
        let authorization = self.obtain(reference, operation, credentials, pace).await?;
        if operation == RegistryOperation::Push {
            // A token costs oci-client no request. Basic credentials make it ask `/v2/` again,
            // and follow what it answers then: only a registry that answers this probe and the
            // next differently could steer them to a realm, and it is sent them anyway.
            let handed = match &authorization {
                Authorization::Anonymous => None,
                Authorization::Basic(user, password) => Some(RegistryAuth::Basic(user.clone(), password.clone())),
                Authorization::Bearer(token) => Some(RegistryAuth::Bearer(token.clone())),
            };
            if let Some(handed) = handed {
                self.oci(registry)?
                    .auth(reference, &handed, operation)
                    .await
                    .map_err(|e| RegistryError::from_oci(&format!("authenticating to {registry}"), registry, e))?;
            }
        }
        self.authorizations.lock().unwrap().insert(key, (Instant::now(), authorization.clone()));
        Ok(authorization)
    }

    async fn obtain(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        credentials: &RegistryAuth,
        pace: &Pace,
    ) -> Result<Authorization, RegistryError> {
        let registry = reference.resolve_registry();
        let what = format!("authenticating to {registry}");
        let probe = pace
            .send(self.http(registry)?.get(format!("{}/v2/", self.base_url(registry))))
            .await
            .map_err(|stop| RegistryError::from_stop(&what, registry, stop))?;
        // Only the header matters; the body is read only to tell an https server spoken to in
        // plain http (a 400 saying so).
        let challenge = match probe.headers().get(reqwest::header::WWW_AUTHENTICATE) {
            None => Challenge::None,
            Some(header) => parse_challenge(header.to_str().unwrap_or_default()),
        };
        if probe.status() == reqwest::StatusCode::BAD_REQUEST && self.is_insecure(registry) {
            let body = pace.bytes(probe, super::MAX_ERROR_ANSWER).await.unwrap_or_default();
            if String::from_utf8_lossy(&body).contains(super::network::HTTPS_SERVER_ANSWER) {
                return Err(RegistryError::new(
                    RegistryErrorKind::Unreachable,
                    format!("{what}: {}", super::network::speaks_https(registry)),
                ));
            }
        }
        Ok(match (challenge, credentials) {
            (Challenge::None, _) | (Challenge::Basic, RegistryAuth::Anonymous) => Authorization::Anonymous,
            (Challenge::Basic, RegistryAuth::Basic(user, password)) => {
                Authorization::Basic(user.clone(), password.clone())
            }
            (_, RegistryAuth::Bearer(token)) => Authorization::Bearer(token.clone()),
            (Challenge::Bearer { realm, service }, credentials) => {
                let token = self.exchange(reference, operation, credentials, &realm, service.as_deref(), pace).await;
                Authorization::Bearer(token.map_err(|e| RegistryError::new(e.kind, format!("{what}: {}", e.message)))?)
            }
        })
    }

    /// A token from `realm` for `operation` on `reference`'s repository.
    async fn exchange(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        credentials: &RegistryAuth,
        realm: &str,
        service: Option<&str>,
        pace: &Pace,
    ) -> Result<String, RegistryError> {
        let registry = reference.resolve_registry();
        let url = reqwest::Url::parse(realm)
            .map_err(|e| RegistryError::failed(format!("token realm {realm:?} is not a URL: {e}")))?;
        // The realm is reached with the registry's TLS policy, as podman and skopeo do.
        let mut request = self.http(registry)?.get(url.clone());
        if let RegistryAuth::Basic(user, password) = credentials {
            if !may_send_credentials(&url, registry, self.is_insecure(registry)) {
                // Not a refusal by the registry: no credentials were sent, nor will they be.
                return Err(RegistryError::new(
                    RegistryErrorKind::Unreachable,
                    format!(
                        "the registry asks for its credentials at token realm {realm}; refused: credentials go to a \
                         realm only over https, or to the registry itself when it is an --insecure-registry"
                    ),
                ));
            }
            request = request.basic_auth(user, Some(password));
        }
        let scope = match operation {
            RegistryOperation::Pull => format!("repository:{}:pull", reference.repository()),
            RegistryOperation::Push => format!("repository:{}:pull,push", reference.repository()),
        };
        let mut query = vec![("scope", scope.as_str())];
        query.extend(service.map(|service| ("service", service)));
        let host = url.host_str().unwrap_or(realm);
        let what = format!("token realm {realm}");
        let answer = self.answer(request.query(&query), pace, &what, host).await?;
        let body = pace.bytes(answer, MAX_TOKEN_ANSWER).await.map_err(|stop| match stop {
            Stop::TooLarge(max) => {
                RegistryError::failed(format!("{what} sent more than {max} bytes, the most a token answer may have"))
            }
            stop => RegistryError::from_stop(&what, host, stop),
        })?;
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::failed(format!("{what} answered something that is not a token: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| RegistryError::failed(format!("{what} answered no token")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#),
            Challenge::Bearer { realm: "https://auth.example/token".into(), service: Some("registry.example".into()) }
        );
        assert_eq!(parse_challenge(r#"Basic realm="registry""#), Challenge::Basic);
        assert_eq!(parse_challenge("Bearer service=\"no realm\""), Challenge::Basic);
    }

    #[test]
    fn credentials_go_to_https_realms_and_to_an_insecure_registry_itself() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(may_send_credentials(&url("https://auth.example/token"), "registry.example", false));
        assert!(!may_send_credentials(&url("http://auth.example/token"), "registry.example", false));
        assert!(!may_send_credentials(&url("http://registry.example/token"), "registry.example", false));
        assert!(may_send_credentials(&url("http://127.0.0.1:5000/token"), "127.0.0.1:5000", true));
        assert!(!may_send_credentials(&url("http://127.0.0.1:5001/token"), "127.0.0.1:5000", true));
        assert!(!may_send_credentials(&url("http://other:5000/token"), "127.0.0.1:5000", true));
        assert!(!may_send_credentials(&url("ftp://registry.example/token"), "registry.example", false));
    }
}
