//! The docker client's credentials file, `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`), in Docker's format: `auths.{server}.auth` is
//! base64(`user:password`); `credHelpers.{server}` or `credsStore` name a
//! `docker-credential-NAME` program that keeps them instead (`get`, `store`, `erase`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The key Docker keeps Docker Hub's credentials under.
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

/// The config.json key for a registry domain (`docker.io` is Docker Hub's old URL).
pub fn key_for(domain: &str) -> String {
    if domain == polis_image::reference::DEFAULT_DOMAIN {
        HUB_KEY.to_string()
    } else {
        domain.to_string()
    }
}

/// `https://host:5000/v2/` → `host:5000`; empty or Docker Hub's names → [`HUB_KEY`].
pub fn server_key(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or_default();
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB_KEY.to_string(),
        h => h.to_string(),
    }
}

/// The docker client's config directory: `$DOCKER_CONFIG`, else `~/.docker`.
fn config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The credentials file and its JSON (`{}` when it does not exist yet).
pub struct ConfigFile {
    pub path: PathBuf,
    json: Map<String, Value>,
}

impl ConfigFile {
    pub fn load() -> Result<ConfigFile> {
        let Some(dir) = config_dir() else {
            bail!("neither DOCKER_CONFIG nor HOME is set: no place for config.json");
        };
        let path = dir.join("config.json");
        let json = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Ok(ConfigFile { path, json })
    }

    /// The credential helper for `key`: `credHelpers.{key}`, else `credsStore`.
    fn helper(&self, key: &str) -> Option<String> {
        let named = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        named(self.json.get("credHelpers").and_then(|h| h.get(key)))
            .or_else(|| named(self.json.get("credsStore")))
    }

    /// The user name and password kept for `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<(String, String)>> {
        if let Some(helper) = self.helper(key) {
            return helper_get(&helper, key);
        }
        let Some(saved) = self
            .json
            .get("auths")
            .and_then(|a| a.get(key))
            .and_then(|a| a.get("auth"))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let path = self.path.display();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(saved)
            .with_context(|| format!("{path}: auths.{key}.auth is not base64"))?;
        let decoded = String::from_utf8_lossy(&decoded);
        let Some((user, password)) = decoded.split_once(':') else {
            bail!("{path}: auths.{key}.auth is not user:password");
        };
        Ok(Some((user.to_string(), password.to_string())))
    }

    /// Keeps `user`/`password` for `key` (through the helper if one is configured).
    pub fn store(&mut self, key: &str, user: &str, password: &str) -> Result<()> {
        let entry = if let Some(helper) = self.helper(key) {
            helper_run(
                &helper,
                "store",
                &json!({ "ServerURL": key, "Username": user, "Secret": password }).to_string(),
            )?;
            // Docker leaves an empty entry so the server is still listed.
            json!({})
        } else {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            json!({ "auth": auth })
        };
        self.auths().insert(key.to_string(), entry);
        self.save()
    }

    /// Forgets the credentials of `key`; false if there were none.
    pub fn erase(&mut self, key: &str) -> Result<bool> {
        let helper = self.helper(key);
        let had_entry = self.auths().remove(key).is_some();
        let had_helper = match &helper {
            Some(h) => helper_run(h, "erase", key).is_ok(),
            None => false,
        };
        if had_entry {
            self.save()?;
        }
        Ok(had_entry || had_helper)
    }

    fn auths(&mut self) -> &mut Map<String, Value> {
        let v = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("made an object above")
    }

    /// Writes the file whole (temp file then rename), readable by its owner only.
    fn save(&self) -> Result<()> {
        let dir = self.path.parent().context("config.json has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let tmp = dir.join(".config.json.tmp");
        let text = serde_json::to_string_pretty(&self.json)?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("write {}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("write {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &self.path).with_context(|| format!("write {}", self.path.display()))
    }
}

/// Runs `docker-credential-HELPER ACTION` with `input` on stdin; its stdout.
fn helper_run(helper: &str, action: &str, input: &str) -> Result<String> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {program} {action}"))?;
    child
        .stdin
        .take()
        .context("helper stdin")?
        .write_all(input.as_bytes())
        .with_context(|| format!("write to {program} {action}"))?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("run {program} {action}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let why = if stdout.trim().is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        } else {
            stdout.trim().to_string()
        };
        bail!("{program} {action}: {why}");
    }
    Ok(stdout)
}

/// `get` through a helper; "credentials not found" is no credentials.
fn helper_get(helper: &str, key: &str) -> Result<Option<(String, String)>> {
    match helper_run(helper, "get", key) {
        Ok(out) => {
            let v: Value = serde_json::from_str(&out)
                .with_context(|| format!("docker-credential-{helper} get: not JSON"))?;
            let user = v["Username"].as_str().unwrap_or_default().to_string();
            let secret = v["Secret"].as_str().unwrap_or_default().to_string();
            Ok((!user.is_empty()).then_some((user, secret)))
        }
        Err(e) if e.to_string().contains("credentials not found") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys_as_docker_keeps_them() {
        assert_eq!(server_key(""), HUB_KEY);
        assert_eq!(server_key("https://index.docker.io/v1/"), HUB_KEY);
        assert_eq!(server_key("docker.io"), HUB_KEY);
        assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_key("https://reg.example:443/v2/"), "reg.example:443");
        assert_eq!(key_for("docker.io"), HUB_KEY);
    }
}
