//! Talking to a registry through `oci-client`: plain HTTP for 127.0.0.0/8, `::1` and
//! `localhost` as Docker does (every other registry over TLS), credentials, and the
//! registry's errors turned into Docker's messages.

use std::net::IpAddr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::error::{Error, Result};
use crate::reference::{Reference, DEFAULT_DOMAIN};

/// The host the registry `docker.io` is reached at.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// A user name and password for a registry (HTTP basic auth).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Credentials({:?})", self.username)
    }
}

/// True for registries Docker reaches over plain HTTP without configuration: loopback
/// addresses and `localhost`, with or without a port.
pub fn is_insecure(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host a registry domain is contacted at (`docker.io` is served elsewhere).
pub fn registry_host(domain: &str) -> &str {
    if domain == DEFAULT_DOMAIN {
        DOCKER_HUB_HOST
    } else {
        domain
    }
}

fn scheme(domain: &str) -> &'static str {
    if is_insecure(domain) {
        "http"
    } else {
        "https"
    }
}

/// A client for the registry of `domain`.
pub(crate) fn client(domain: &str) -> oci_client::Client {
    let host = registry_host(domain);
    let protocol = if is_insecure(host) {
        ClientProtocol::HttpsExcept(vec![host.to_string()])
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        // Index selection is ours (platform chosen by the caller).
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

pub(crate) fn auth(creds: Option<&Credentials>) -> RegistryAuth {
    match creds {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// The `oci-client` reference for `r`, or for its repository at `digest`.
pub(crate) fn oci_reference(r: &Reference, digest: Option<&str>) -> oci_client::Reference {
    let registry = registry_host(r.domain()).to_string();
    let repo = r.path().to_string();
    match (digest, r.digest(), r.tag()) {
        (Some(d), _, _) => oci_client::Reference::with_digest(registry, repo, d.to_string()),
        (None, Some(d), _) => oci_client::Reference::with_digest(registry, repo, d.to_string()),
        (None, None, tag) => oci_client::Reference::with_tag(
            registry,
            repo,
            tag.unwrap_or(crate::reference::DEFAULT_TAG).to_string(),
        ),
    }
}

/// A registry error on `what` (a reference as shown to the user), in Docker's words.
pub(crate) fn registry_error(what: &str, e: OciDistributionError) -> Error {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let detail = envelope
                .errors
                .iter()
                .map(|err| format!("{}: {}", code_text(&err.code), err.message))
                .collect::<Vec<_>>()
                .join("; ");
            let unknown = envelope.errors.iter().any(|err| {
                matches!(
                    err.code,
                    OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                )
            });
            let unauthorized = envelope
                .errors
                .iter()
                .any(|err| matches!(err.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            if unknown {
                Error::ManifestUnknown(format!("manifest for {what} not found: {detail}"))
            } else if unauthorized {
                Error::Unauthorized(format!("pull access denied for {what}: {detail}"))
            } else {
                Error::Registry(format!("{what}: {detail}"))
            }
        }
        OciDistributionError::UnauthorizedError { url } => Error::Unauthorized(format!(
            "pull access denied for {what}: unauthorized: authentication required (GET {url}); \
             log in with valid credentials first"
        )),
        OciDistributionError::AuthenticationFailure(reason) => Error::Unauthorized(format!(
            "pull access denied for {what}: authentication failed: {reason}"
        )),
        OciDistributionError::DigestError(d) => Error::DigestMismatch {
            what: what.to_string(),
            expected: String::new(),
            actual: d.to_string(),
        },
        other => Error::Registry(format!("{what}: {}", with_causes(&other))),
    }
}

/// An error with its chain of causes (reqwest hides "connection refused" in a source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// `MANIFEST_UNKNOWN` → `manifest unknown`, as Docker prints registry error codes.
fn code_text(code: &OciErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.to_lowercase().replace('_', " ")))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// `docker login`: checks `creds` against the registry's `/v2/` endpoint with basic auth.
pub async fn login(server: &str, creds: &Credentials) -> Result<()> {
    let host = registry_host(server.trim_end_matches('/'));
    let url = format!("{}://{host}/v2/", scheme(host));
    let failed = |why: String| Error::Unauthorized(format!("login attempt to {url} failed: {why}"));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Registry(format!("{url}: {e}")))?;
    let res = client
        .get(&url)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(|e| Error::Registry(format!("login attempt to {url}: {}", with_causes(&e))))?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(BearerChallenge::parse);
    let Some(challenge) = challenge else {
        return Err(failed(format!("status: {status}")));
    };
    // Token auth: the credentials buy a token from the realm, which `/v2/` must accept.
    let token = fetch_token(&client, &challenge, creds)
        .await
        .map_err(failed)?;
    let res = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| Error::Registry(format!("login attempt to {url}: {}", with_causes(&e))))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(failed(format!(
            "the registry refused the token from {}: status: {}",
            challenge.realm,
            res.status()
        )))
    }
}

/// A `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl BearerChallenge {
    /// The challenge in `header`, if it is a Bearer one with a realm.
    fn parse(header: &str) -> Option<BearerChallenge> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service, mut scope) = (None, None, None);
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            // Quoted values may hold commas (`scope="repository:a:pull,push"`).
            let (value, after) = match after.strip_prefix('"') {
                Some(q) => {
                    let end = q.find('"')?;
                    (q[..end].to_string(), &q[end + 1..])
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (after[..end].trim().to_string(), &after[end..])
                }
            };
            match key.as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                "scope" => scope = Some(value),
                _ => {}
            }
            rest = after.trim_start().trim_start_matches(',').trim_start();
        }
        Some(BearerChallenge {
            realm: realm?,
            service,
            scope,
        })
    }
}

/// Asks the token server of `challenge` for a token with basic `creds`, as Docker does.
async fn fetch_token(
    client: &reqwest::Client,
    challenge: &BearerChallenge,
    creds: &Credentials,
) -> std::result::Result<String, String> {
    let mut url = reqwest::Url::parse(&challenge.realm)
        .map_err(|e| format!("token realm {:?}: {e}", challenge.realm))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &challenge.service {
            q.append_pair("service", s);
        }
        if let Some(s) = &challenge.scope {
            q.append_pair("scope", s);
        }
    }
    let res = client
        .get(url.clone())
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(|e| format!("token request to {url}: {}", with_causes(&e)))?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!("token request to {url}: status: {status}"));
    }
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|e| format!("token response from {url}: {}", with_causes(&e)))?;
    let body: TokenResponse =
        serde_json::from_slice(&bytes).map_err(|e| format!("token response from {url}: {e}"))?;
    body.token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("token response from {url}: no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure() {
        for d in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:80",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_insecure(d), "{d}");
        }
        for d in [
            "docker.io",
            "registry-1.docker.io",
            "10.0.0.1:5000",
            "example.com:443",
        ] {
            assert!(!is_insecure(d), "{d}");
        }
    }

    #[test]
    fn bearer_challenges_parse() {
        let c = BearerChallenge::parse(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "http://127.0.0.1:1/token");
        assert_eq!(c.service.as_deref(), Some("reg"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert!(BearerChallenge::parse(r#"Basic realm="x""#).is_none());
        assert!(BearerChallenge::parse(r#"Bearer service="x""#).is_none());
    }

    #[test]
    fn error_codes_read_as_docker_prints_them() {
        assert_eq!(
            code_text(&OciErrorCode::ManifestUnknown),
            "manifest unknown"
        );
        assert_eq!(code_text(&OciErrorCode::BlobUnknown), "blob unknown");
    }
}
