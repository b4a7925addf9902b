//! Talking to a registry through `oci-client`, configured as Docker configures it: TLS
//! with the system roots plus the CAs (`*.crt`) of the registry's certs.d directory and
//! its client certificate (`*.cert` with its `*.key`); insecure registries (loopback,
//! `localhost`, and the configured names and CIDRs) tried over unverified TLS first,
//! then plain HTTP; docker.io pulled through its mirrors first; credentials, and the
//! registry's errors turned into Docker's messages.

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

/// One entry of `insecure-registries`: an address range or a registry name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insecure {
    /// `10.0.0.0/8`: every registry whose host is, or resolves to, an address in it.
    Cidr { net: IpAddr, prefix: u8 },
    /// `host` or `host:port`.
    Host(String),
}

impl Insecure {
    /// Parses an entry as Docker does: a CIDR, else a `host[:port]`; an `http://` or
    /// `https://` in front is dropped, any other scheme refused.
    pub fn parse(entry: &str) -> std::result::Result<Insecure, String> {
        let lower = entry.to_ascii_lowercase();
        let s = if lower.starts_with("http://") {
            &entry[7..]
        } else if lower.starts_with("https://") {
            &entry[8..]
        } else if entry.contains("://") {
            return Err(format!("insecure registry {entry} is invalid"));
        } else {
            entry
        };
        if let Some((addr, len)) = s.split_once('/') {
            let net: IpAddr = addr
                .parse()
                .map_err(|_| format!("insecure registry {entry} is not a valid CIDR"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let prefix = len
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("insecure registry {entry} is not a valid CIDR"))?;
            return Ok(Insecure::Cidr { net, prefix });
        }
        let (host, port) = split_host_port(s);
        let bad_port = port.is_some_and(|p| p.parse::<u16>().is_err());
        if host.is_empty() || bad_port || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!("insecure registry {entry} is not valid"));
        }
        Ok(Insecure::Host(s.to_string()))
    }

    /// True when `ip` is in this range.
    fn contains(&self, ip: IpAddr) -> bool {
        let Insecure::Cidr { net, prefix } = self else {
            return false;
        };
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        };
        let ((n, width), (a, a_width)) = (bits(*net), bits(ip));
        if width != a_width {
            return false;
        }
        let shift = width - u32::from(*prefix);
        shift >= width || (n >> shift) == (a >> shift)
    }
}

impl std::fmt::Display for Insecure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Insecure::Cidr { net, prefix } => write!(f, "{net}/{prefix}"),
            Insecure::Host(h) => f.write_str(h),
        }
    }
}

/// A docker.io mirror as Docker keeps it: `scheme://host[:port]/`. Only http and https,
/// and nothing after the host (a path, query or fragment is refused).
pub fn parse_mirror(mirror: &str) -> std::result::Result<String, String> {
    let url = reqwest::Url::parse(mirror)
        .map_err(|e| format!("invalid mirror: {mirror:?} is not a valid URI: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid mirror: unsupported scheme {:?} in {mirror:?}",
            url.scheme()
        ));
    }
    if (url.path() != "/" && !url.path().is_empty())
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "invalid mirror: path, query, or fragment at end of the URI {mirror:?}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid mirror: does not support userinfo: {mirror:?}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid mirror: no host in {mirror:?}"));
    }
    // The host as written (`mirror:443` stays so: it names its certs.d directory).
    let authority = mirror
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    Ok(format!("{}://{authority}/", url.scheme()))
}

/// The daemon's registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Docker's certs.d layout: `DIR/HOST[:PORT]/*.crt` are extra CA roots for that
    /// registry, `*.cert` with the `*.key` of the same name its client certificate.
    pub certs_dir: PathBuf,
    /// Registries reached without TLS verification, or over HTTP.
    pub insecure: Vec<Insecure>,
    /// Mirrors of docker.io (`scheme://host[:port]/`), tried in order before it.
    pub mirrors: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            certs_dir: PathBuf::from("/etc/polis/certs.d"),
            insecure: Vec::new(),
            mirrors: Vec::new(),
        }
    }
}

impl RegistryConfig {
    /// The settings from the daemon's `insecure-registries` and `registry-mirrors`.
    pub fn new(certs_dir: PathBuf, insecure: &[String], mirrors: &[String]) -> Result<Self> {
        Ok(RegistryConfig {
            certs_dir,
            insecure: insecure
                .iter()
                .map(|i| Insecure::parse(i).map_err(Error::Registry))
                .collect::<Result<_>>()?,
            mirrors: mirrors
                .iter()
                .map(|m| parse_mirror(m).map_err(Error::Registry))
                .collect::<Result<_>>()?,
        })
    }
}

/// The settings in force, set once by the daemon at start.
static CONFIG: OnceLock<RegistryConfig> = OnceLock::new();

/// Sets the registry settings for this process (the first call wins).
pub fn configure(config: RegistryConfig) {
    let _ = CONFIG.set(config);
}

/// The registry settings in force.
pub fn settings() -> &'static RegistryConfig {
    CONFIG.get_or_init(RegistryConfig::default)
}

/// `host` and `port` of `host[:port]` or `[v6][:port]`.
fn split_host_port(domain: &str) -> (&str, Option<&str>) {
    if let Some(rest) = domain.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':'));
    }
    match domain.rsplit_once(':') {
        // More than one ':' is a bare IPv6 address, without a port.
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (domain, None),
    }
}

/// True for a registry reached without TLS verification, as Docker decides it: loopback,
/// a configured name, or a host that is (or resolves to) an address in a configured CIDR.
async fn insecure(config: &RegistryConfig, domain: &str) -> bool {
    if is_insecure(domain) {
        return true;
    }
    let (host, _) = split_host_port(domain);
    let named = config.insecure.iter().any(|i| match i {
        Insecure::Host(h) => h == domain || h == host,
        Insecure::Cidr { .. } => false,
    });
    if named {
        return true;
    }
    if !config
        .insecure
        .iter()
        .any(|i| matches!(i, Insecure::Cidr { .. }))
    {
        return false;
    }
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A name that does not resolve is secure (Docker's rule).
        Err(_) => tokio::net::lookup_host((host, 0))
            .await
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    addrs
        .iter()
        .any(|ip| config.insecure.iter().any(|i| i.contains(*ip)))
}

/// What certs.d holds for one registry.
#[derive(Default)]
struct HostCerts {
    /// PEM CA certificates (`*.crt`).
    roots: Vec<Vec<u8>>,
    /// The client certificate and its key (`*.cert` + `*.key`), PEM, concatenated.
    identity: Option<Vec<u8>>,
}

/// Reads `certs_dir/host` as Docker reads certs.d: `*.crt` are CA roots, each `*.cert`
/// needs the `*.key` of the same name (and each key its certificate). Docker offers
/// every pair; rustls takes one identity, so the first pair (by name) is used.
fn host_certs(certs_dir: &Path, host: &str) -> Result<HostCerts> {
    let dir = certs_dir.join(host);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HostCerts::default()),
        Err(e) => return Err(Error::Registry(format!("read {}: {e}", dir.display()))),
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::Registry(format!("read {}: {e}", p.display())))
    };
    let mut certs = HostCerts::default();
    for p in &paths {
        match p.extension().and_then(|x| x.to_str()) {
            Some("crt") => certs.roots.push(read(p)?),
            Some("cert") => {
                let key = p.with_extension("key");
                if !key.is_file() {
                    return Err(Error::Registry(format!(
                        "missing key {} for client certificate {}. CA certificates must use \
                         the extension .crt",
                        key.display(),
                        p.display()
                    )));
                }
                if certs.identity.is_none() {
                    let mut pem = read(p)?;
                    pem.push(b'\n');
                    pem.extend(read(&key)?);
                    // Checked here, so a bad pair is named rather than found at connect.
                    reqwest::Identity::from_pem(&pem).map_err(|e| {
                        Error::Registry(format!(
                            "client certificate {} with key {}: {}",
                            p.display(),
                            key.display(),
                            with_causes(&e)
                        ))
                    })?;
                    certs.identity = Some(pem);
                }
            }
            Some("key") => {
                let cert = p.with_extension("cert");
                if !cert.is_file() {
                    return Err(Error::Registry(format!(
                        "missing client certificate {} for key {}",
                        cert.display(),
                        p.display()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(certs)
}

/// How one registry (or docker.io mirror) is reached.
pub(crate) struct Endpoint {
    /// The `host[:port]` requests go to.
    pub(crate) host: String,
    /// A mirror of docker.io: its failures fall back to the next endpoint.
    pub(crate) mirror: bool,
    https: bool,
    /// Certificates are checked (never for insecure registries, as Docker).
    verify: bool,
    certs: HostCerts,
}

impl Endpoint {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The endpoint as a URL, for messages.
    pub(crate) fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host)
    }

    fn identity(&self) -> Result<Option<reqwest::Identity>> {
        self.certs
            .identity
            .as_deref()
            .map(|pem| {
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| Error::Registry(format!("client certificate: {e}")))
            })
            .transpose()
    }

    /// A reqwest client speaking to this endpoint.
    fn http_client(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .danger_accept_invalid_certs(!self.verify);
        for pem in &self.certs.roots {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Registry(format!("CA certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        if let Some(id) = self.identity()? {
            b = b.identity(id);
        }
        b.build().map_err(|e| Error::Registry(e.to_string()))
    }

    /// An `oci-client` client for this endpoint; `monolithic`: each blob pushed in one
    /// streamed PUT.
    pub(crate) fn client(&self, monolithic: bool) -> Result<oci_client::Client> {
        let protocol = if self.https {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(vec![self.host.clone()])
        };
        // try_from, not new: `new` would fall back to a default client on a bad setting.
        oci_client::Client::try_from(ClientConfig {
            protocol,
            accept_invalid_certificates: !self.verify,
            extra_root_certificates: self
                .certs
                .roots
                .iter()
                .map(|data| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: data.clone(),
                })
                .collect(),
            client_identity: self.identity()?,
            // Index selection is ours (platform chosen by the caller).
            platform_resolver: None,
            use_monolithic_push: monolithic,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        })
        .map_err(|e| Error::Registry(format!("{}: {}", self.url(), with_causes(&e))))
    }
}

/// Where `host` is reached: over verified TLS, or for an insecure registry over TLS if it
/// answers TLS (unverified), else over plain HTTP.
async fn endpoint(host: &str) -> Result<Endpoint> {
    let config = settings();
    let certs = host_certs(&config.certs_dir, host)?;
    let tls = Endpoint {
        host: host.to_string(),
        mirror: false,
        https: true,
        verify: true,
        certs,
    };
    if !insecure(config, host).await {
        return Ok(tls);
    }
    let tls = Endpoint {
        verify: false,
        ..tls
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

/// A docker.io mirror (`scheme://host[:port]/`), reached with the scheme it names:
/// verified unless its host is insecure, with its own certs.d entry.
async fn mirror_endpoint(mirror: &str) -> Result<Endpoint> {
    let config = settings();
    let (scheme, rest) = mirror.split_once("://").unwrap_or(("https", mirror));
    let host = rest.trim_end_matches('/').to_string();
    Ok(Endpoint {
        mirror: true,
        https: scheme == "https",
        verify: !insecure(config, &host).await,
        certs: host_certs(&config.certs_dir, &host)?,
        host,
    })
}

/// Where a pull of a repository of `domain` goes, in order: for docker.io its mirrors
/// (whose failures are not fatal), then the registry itself.
pub(crate) async fn pull_endpoints(domain: &str) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    if domain == DEFAULT_DOMAIN {
        for m in &settings().mirrors {
            out.push(mirror_endpoint(m).await?);
        }
    }
    out.push(endpoint(registry_host(domain)).await?);
    Ok(out)
}

/// True for registries Docker reaches over plain HTTP without configuration: loopback
/// addresses and `localhost`, with or without a port.
pub fn is_insecure(domain: &str) -> bool {
    let (host, _) = split_host_port(domain);
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

/// A client for pushing to `domain` (never a mirror): each blob goes up in one streamed
/// PUT.
pub(crate) async fn push_client(domain: &str) -> Result<oci_client::Client> {
    endpoint(registry_host(domain)).await?.client(true)
}

pub(crate) fn auth(creds: Option<&Credentials>) -> RegistryAuth {
    match creds {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// The `oci-client` reference for `r`, or for its repository at `digest`.
pub(crate) fn oci_reference(r: &Reference, digest: Option<&str>) -> oci_client::Reference {
    oci_reference_at(registry_host(r.domain()), r, digest)
}

/// The `oci-client` reference for `r` (or its repository at `digest`) on the registry or
/// mirror at `host`.
pub(crate) fn oci_reference_at(
    host: &str,
    r: &Reference,
    digest: Option<&str>,
) -> oci_client::Reference {
    let registry = host.to_string();
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
    if let Some(words) = tls_words(&s) {
        s.push_str(": ");
        s.push_str(words);
    }
    s
}

/// Whether `text` (an error with its causes) is a TLS certificate failure.
pub(crate) fn tls_refusal(text: &str) -> bool {
    tls_words(text).is_some()
}

/// Docker's words (Go's) for the TLS failures rustls names by its own identifiers, so
/// the usual advice about them applies.
fn tls_words(text: &str) -> Option<&'static str> {
    if text.contains("UnknownIssuer") {
        Some("x509: certificate signed by unknown authority")
    } else if text.contains("NotValidForName") {
        Some("x509: certificate is not valid for this host name")
    } else if text.contains("Expired") && text.contains("certificate") {
        Some("x509: certificate has expired or is not yet valid")
    } else if text.contains("CertificateRequired") {
        Some(
            "remote error: tls: certificate required (the registry asks for a client \
             certificate: certs.d/HOST:PORT/NAME.cert with NAME.key)",
        )
    } else if text.contains("alert") && text.contains("BadCertificate") {
        // What a TLS 1.2 server answers a client that sent no certificate, too.
        Some(
            "remote error: tls: bad certificate (the registry refused the client \
             certificate, or wants one: certs.d/HOST:PORT/NAME.cert with NAME.key)",
        )
    } else {
        None
    }
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
    fn insecure_entries_as_docker_reads_them() {
        let cidr = Insecure::parse("10.0.0.0/8").unwrap();
        assert_eq!(cidr.to_string(), "10.0.0.0/8");
        assert!(cidr.contains("10.123.0.1".parse().unwrap()));
        assert!(!cidr.contains("11.0.0.1".parse().unwrap()));
        assert!(!cidr.contains("::1".parse().unwrap()));
        let all = Insecure::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.7".parse().unwrap()));
        let v6 = Insecure::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert_eq!(
            Insecure::parse("http://reg:5000").unwrap(),
            Insecure::Host("reg:5000".into())
        );
        for bad in ["10.0.0.0/33", "x/8", "ftp://reg", "reg:port", "", "a b"] {
            assert!(Insecure::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn insecure_by_name_or_range() {
        let config = RegistryConfig::new(
            PathBuf::from("/nonexistent"),
            &["10.123.0.0/16".into(), "reg.example:5000".into()],
            &[],
        )
        .unwrap();
        assert!(insecure(&config, "10.123.0.1:5000").await);
        assert!(!insecure(&config, "10.124.0.1:5000").await);
        assert!(insecure(&config, "reg.example:5000").await);
        assert!(insecure(&config, "127.0.0.1:1").await);
        // (Names are resolved and their addresses matched the same way; not tried here,
        // where a lookup would leave the machine.)
        let lo = RegistryConfig::new(PathBuf::from("/x"), &["::1/128".into()], &[]).unwrap();
        assert!(insecure(&lo, "[::1]:5000").await);
    }

    #[test]
    fn mirrors_are_normalised_urls() {
        assert_eq!(
            parse_mirror("http://127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(parse_mirror("https://m/").unwrap(), "https://m/");
        for bad in [
            "m:5000",
            "ftp://m",
            "https://m/v2",
            "https://m/?a=1",
            "https://u:p@m",
        ] {
            assert!(parse_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg:5000");
        std::fs::create_dir_all(&host).unwrap();
        assert!(host_certs(dir.path(), "other:1")
            .unwrap()
            .identity
            .is_none());
        std::fs::write(host.join("client.cert"), "x").unwrap();
        let e = host_certs(dir.path(), "reg:5000")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing key"), "{e}");
        assert!(e.contains("client.key"), "{e}");
        assert!(e.contains("client.cert"), "{e}");
        std::fs::remove_file(host.join("client.cert")).unwrap();
        std::fs::write(host.join("lone.key"), "x").unwrap();
        let e = host_certs(dir.path(), "reg:5000")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing client certificate"), "{e}");
        assert!(e.contains("lone.cert"), "{e}");
    }

    #[test]
    fn rustls_failures_read_as_docker_words() {
        assert_eq!(
            tls_words("invalid peer certificate: UnknownIssuer"),
            Some("x509: certificate signed by unknown authority")
        );
        assert!(tls_words("received fatal alert: CertificateRequired")
            .unwrap()
            .contains("client certificate"));
        assert!(tls_words("received fatal alert: BadCertificate")
            .unwrap()
            .contains("client certificate"));
        assert_eq!(tls_words("connection refused"), None);
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
