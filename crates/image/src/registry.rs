//! Talking to a registry through `oci-client`: TLS with the system roots plus the CAs of
//! the registry's certs.d directory; insecure registries (127.0.0.0/8, `::1`, `localhost`
//! and those configured) tried over unverified TLS first, then plain HTTP, as Docker
//! does; credentials, and the registry's errors turned into Docker's messages.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// The daemon's registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Docker's certs.d layout: `DIR/HOST[:PORT]/*.crt` are extra CA roots for that registry.
    pub certs_dir: PathBuf,
    /// Registries (`host` or `host:port`) reached without TLS verification, or over HTTP.
    pub insecure: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            certs_dir: PathBuf::from("/etc/polis/certs.d"),
            insecure: Vec::new(),
        }
    }
}

/// The settings in force, set once by the daemon at start.
static CONFIG: OnceLock<RegistryConfig> = OnceLock::new();

/// Sets the registry settings for this process (the first call wins).
pub fn configure(config: RegistryConfig) {
    let _ = CONFIG.set(config);
}

fn config() -> &'static RegistryConfig {
    CONFIG.get_or_init(RegistryConfig::default)
}

/// True for a registry reached without TLS verification: loopback or configured.
fn insecure(host: &str) -> bool {
    is_insecure(host)
        || config()
            .insecure
            .iter()
            .any(|i| i == host || host.rsplit_once(':').is_some_and(|(h, _)| h == i.as_str()))
}

/// The PEM CA certificates (`*.crt`) of `host` in `certs_dir`, as Docker reads certs.d.
fn extra_roots(certs_dir: &Path, host: &str) -> Result<Vec<Vec<u8>>> {
    let dir = certs_dir.join(host);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Registry(format!("read {}: {e}", dir.display()))),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            std::fs::read(p).map_err(|e| Error::Registry(format!("read {}: {e}", p.display())))
        })
        .collect()
}

/// How one registry is reached.
#[derive(Debug)]
struct Endpoint {
    https: bool,
    /// Certificates are checked (never for insecure registries, as Docker).
    verify: bool,
    roots: Vec<Vec<u8>>,
}

impl Endpoint {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// A reqwest client speaking to this endpoint.
    fn http_client(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .danger_accept_invalid_certs(!self.verify);
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Registry(format!("CA certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| Error::Registry(e.to_string()))
    }
}

/// Where `host` is reached: over verified TLS, or for an insecure registry over TLS if it
/// answers TLS (unverified), else over plain HTTP.
async fn endpoint(host: &str) -> Result<Endpoint> {
    let roots = extra_roots(&config().certs_dir, host)?;
    if !insecure(host) {
        return Ok(Endpoint {
            https: true,
            verify: true,
            roots,
        });
    }
    let tls = Endpoint {
        https: true,
        verify: false,
        roots,
    };
    let probe = tls
        .http_client()?
        .get(format!("https://{host}/v2/"))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    if probe.is_ok() {
        return Ok(tls);
    }
    Ok(Endpoint {
        https: false,
        ..tls
    })
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

/// A client for the registry of `domain`.
pub(crate) async fn client(domain: &str) -> Result<oci_client::Client> {
    client_with(domain, false).await
}

/// A client for pushing to `domain`: each blob goes up in one streamed PUT.
pub(crate) async fn push_client(domain: &str) -> Result<oci_client::Client> {
    client_with(domain, true).await
}

async fn client_with(domain: &str, monolithic: bool) -> Result<oci_client::Client> {
    let host = registry_host(domain);
    let endpoint = endpoint(host).await?;
    let protocol = if endpoint.https {
        ClientProtocol::Https
    } else {
        ClientProtocol::HttpsExcept(vec![host.to_string()])
    };
    Ok(oci_client::Client::new(ClientConfig {
        protocol,
        accept_invalid_certificates: !endpoint.verify,
        extra_root_certificates: endpoint
            .roots
            .into_iter()
            .map(|data| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data,
            })
            .collect(),
        // Index selection is ours (platform chosen by the caller).
        platform_resolver: None,
        use_monolithic_push: monolithic,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    }))
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
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
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
    let endpoint = endpoint(host).await?;
    let url = format!("{}://{host}/v2/", endpoint.scheme());
    let failed = |why: String| Error::Unauthorized(format!("login attempt to {url} failed: {why}"));
    let client = endpoint.http_client()?;
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
