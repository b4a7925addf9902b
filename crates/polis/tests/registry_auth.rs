//! Registry authentication beyond basic auth: Debian's `docker-registry` on 127.0.0.1 set
//! up for token auth, with a small token server in this test (a thread on 127.0.0.1) that
//! checks basic credentials and hands out RS256 JWTs signed by a key whose self-signed
//! certificate (made with openssl) is the registry's root bundle. `docker login`,
//! `docker pull` and `polis pull` go through the WWW-Authenticate Bearer challenge flow.
//! A registry serving TLS with a certificate from a test CA (kept in the daemon's certs.d)
//! is reached over HTTPS.

mod common;

use base64::Engine;
use common::daemon::{import_busybox, Daemon, DOCKER};
use common::registry::Registry;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const SERVICE: &str = "polis-test-registry";
const ISSUER: &str = "polis-test-issuer";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

/// An RSA key and its self-signed certificate, made by openssl in `dir`.
struct SigningKey {
    key_pem: Vec<u8>,
    cert_path: PathBuf,
    cert_der_b64: String,
}

fn signing_key(dir: &Path) -> SigningKey {
    let key = dir.join("token.key");
    let cert = dir.join("token.crt");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=polis-test-token-issuer", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl req: {out:?}");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(der.status.success(), "openssl x509: {der:?}");
    SigningKey {
        key_pem: std::fs::read(&key).unwrap(),
        cert_path: cert,
        cert_der_b64: base64::engine::general_purpose::STANDARD.encode(der.stdout),
    }
}

/// `%3A` → `:` (and `+` → space), for the token server's query.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The token server: `GET /token?service=S&scope=repository:NAME:ACTIONS` with basic auth
/// for USER:PASSWORD answers `{"token": JWT}` granting the scope; anything else is 401.
/// Counts the tokens it issued.
struct TokenServer {
    port: u16,
    issued: Arc<AtomicUsize>,
}

impl TokenServer {
    fn start(key: &SigningKey) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(&key.key_pem).unwrap();
        let x5c = key.cert_der_b64.clone();
        // The thread ends with the test process; its listener dies with it.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve_token(stream, &encoding, &x5c, &count);
            }
        });
        TokenServer { port, issued }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn serve_token(
    stream: TcpStream,
    key: &jsonwebtoken::EncodingKey,
    x5c: &str,
    issued: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                let expected =
                    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
                authorized = value.trim() == format!("Basic {expected}");
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut service = String::new();
    let mut access = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "service" => service = v,
            "scope" => {
                // repository:NAME:ACTIONS (NAME may hold no ':' in these tests).
                let parts: Vec<&str> = v.splitn(3, ':').collect();
                if let [kind, name, actions] = parts[..] {
                    access.push(serde_json::json!({
                        "type": kind,
                        "name": name,
                        "actions": actions.split(',').collect::<Vec<_>>(),
                    }));
                }
            }
            _ => {}
        }
    }
    let mut out = stream;
    if path != "/token" || service != SERVICE || !authorized {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        return write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = issued.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("polis-test-{n}"),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5c = Some(vec![x5c.to_string()]);
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let body = serde_json::json!({ "token": token, "expires_in": 300 }).to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The docker CLI against `d`, with its own config dir (for `docker login`).
fn docker(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    run(Command::new(DOCKER).current_dir(&d.dir), d, args)
}

/// The polis client CLI against `d`, with the same config dir as `docker`.
fn polis(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    run(&mut Command::new(env!("CARGO_BIN_EXE_polis")), d, args)
}

fn run(cmd: &mut Command, d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = cmd
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = docker(d, args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out
}

/// The daemons' certs.d (POLIS_CERTS_DIR), the same for every test of this process.
fn certs_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polis-certs-d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("POLIS_CERTS_DIR", &dir);
    dir
}

/// `openssl` with `args`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

#[test]
fn tls_registry_with_a_ca_in_certs_d() {
    let certs = certs_dir();
    let d = Daemon::start("registry-tls");
    let dir = d.dir.join("registry-tls");
    std::fs::create_dir_all(&dir).unwrap();
    // A test CA, and the registry's certificate for 127.0.0.1 signed by it.
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=polis test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    // Loopback only: tests never listen on, or send to, the host's own interfaces.
    let reg = Registry::start_with(
        &dir,
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        ),
        "",
    );
    let host = reg.host();
    let ca_dir = certs.join(&host);
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(dir.join("ca.crt"), ca_dir.join("ca.crt")).unwrap();

    import_busybox(&d);
    let archive = d.dir.join("busybox.tar");
    ok(
        &d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-cert-dir"])
        .arg(&ca_dir)
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{host}/secure:1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let name = format!("{host}/secure:1");
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "tls"]), "tls\n");
    ok(&d, &["rmi", &name]);
    let (code, out, err) = polis(&d, &["pull", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}

#[test]
fn token_auth_login_and_pull() {
    certs_dir();
    let d = Daemon::start("registry-token");
    let dir = d.dir.join("registry-token");
    std::fs::create_dir_all(&dir).unwrap();
    let key = signing_key(&dir);
    let tokens = TokenServer::start(&key);
    let reg = Registry::start_with(
        &dir,
        "",
        &format!(
            "  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            tokens.realm(),
            key.cert_path.display()
        ),
    );
    import_busybox(&d);
    let archive = d.dir.join("busybox.tar");
    ok(
        &d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    let host = reg.host();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{host}/private:1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let pushed = tokens.issued.load(Ordering::SeqCst);
    assert!(pushed > 0, "skopeo pushed without a token");
    let name = format!("{host}/private:1");

    // No credentials: the token server refuses, and so does the pull.
    let (code, out, err) = docker(&d, &["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    assert!(err.contains(&name), "{err}");

    // Wrong password: the token server says 401, and login fails saying so.
    let (code, out, err) = docker(&d, &["login", "-u", USER, "-p", "wrong", &host]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("401"), "{err}");
    assert_eq!(tokens.issued.load(Ordering::SeqCst), pushed);

    let (code, out, err) = docker(&d, &["login", "-u", USER, "-p", PASSWORD, &host]);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    assert!(out.contains("Login Succeeded"), "{out}");
    assert!(tokens.issued.load(Ordering::SeqCst) > pushed);

    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "hi"]), "hi\n");

    // The polis CLI sends the saved credentials, which buy a token too.
    ok(&d, &["rmi", &name]);
    let before = tokens.issued.load(Ordering::SeqCst);
    let (code, out, err) = polis(&d, &["pull", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert!(tokens.issued.load(Ordering::SeqCst) > before);

    // polis logout / login keep config.json as docker does.
    let config_path = d.dir.join("docker-config/config.json");
    let config = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap()
    };
    let (code, out, err) = polis(&d, &["logout", &host]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    assert!(config()["auths"].get(&host).is_none(), "{}", config());
    let (code, out, _) = polis(&d, &["logout", &host]);
    assert_eq!((code, out), (0, format!("Not logged in to {host}\n")));
    let (code, out, err) = polis(&d, &["login", "-u", USER, "-p", "wrong", &host]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("401"), "{err}");
    assert!(config()["auths"].get(&host).is_none(), "{}", config());
    let (code, out, err) = polis_stdin(
        &d,
        &["login", "-u", USER, "--password-stdin", &host],
        &format!("{PASSWORD}\n"),
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "Login Succeeded\n");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(config()["auths"][&host]["auth"], auth.as_str());

    // A credential helper (credsStore) is asked when pulling.
    std::fs::write(&config_path, r#"{"credsStore":"polistest"}"#).unwrap();
    let bin = d.dir.join("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-polistest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\nif [ \"$1\" = get ] && [ \"$server\" = {host} ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
             exit 0\nfi\necho credentials not found\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(&d, &["rmi", &name]);
    let (code, out, err) = polis(&d, &["pull", &name]);
    assert_ne!(code, 0, "without the helper on PATH: {out}{err}");
    assert!(err.contains("docker-credential-polistest"), "{err}");
    let (code, out, err) = polis_stdin(&d, &["pull", &name], "", Some(&bin));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}

/// `polis` with `input` on stdin and `bin` first on PATH.
fn polis_stdin(
    d: &Daemon,
    args: &[&str],
    input: &str,
    bin: Option<&Path>,
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_polis"));
    if let Some(b) = bin {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", b.display()));
    }
    let mut child = cmd
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
