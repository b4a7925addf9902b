//! `import`: a root filesystem tar (plain or gzip) becomes a one-layer image, and the
//! Dockerfile-style `--change` instructions that may come with it.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};

use crate::config::{rfc3339_now, ContainerConfig, HistoryEntry, ImageConfig, RootFs};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::reference::Reference;
use crate::store::{ImageId, ImageRecord, ImageStore, LayerRecord};

pub(crate) const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Compression of a tar stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

pub(crate) fn detect_compression(head: &[u8], what: &str) -> Result<Compression> {
    let unsupported = |name: &str| {
        Err(Error::archive(format!(
            "{what}: {name} compression is not supported (use gzip, zstd or no compression)"
        )))
    };
    match head {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [b'B', b'Z', b'h', ..] => unsupported("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => unsupported("xz"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
        _ => Ok(Compression::None),
    }
}

/// Wraps `reader` so that it yields uncompressed bytes.
pub(crate) fn decompressed<'a, R: BufRead + 'a>(
    mut reader: R,
    what: &str,
) -> Result<Box<dyn Read + 'a>> {
    let head = reader
        .fill_buf()
        .map_err(|e| Error::io("read", what, e))?
        .to_vec();
    Ok(match detect_compression(&head, what)? {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| Error::archive(format!("{what}: zstd: {e}")))?,
        ),
        Compression::None => Box::new(reader),
    })
}

/// Copies what is read into a writer.
struct TeeReader<R, W> {
    reader: R,
    writer: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Reads a whole tar stream, checking every member header, and refuses names that could
/// leave the root (`..` components). Returns the number of bytes read.
pub(crate) fn check_tar_stream(reader: &mut dyn Read, what: &str) -> Result<()> {
    let mut archive = tar::Archive::new(&mut *reader);
    let entries = archive
        .entries()
        .map_err(|e| Error::archive(format!("{what}: not a tar stream: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::archive(format!("{what}: bad tar member: {e}")))?;
        let path = entry.path_bytes().into_owned();
        if has_parent_component(&path) {
            return Err(Error::archive(format!(
                "{what}: member {:?} escapes the root",
                String::from_utf8_lossy(&path)
            )));
        }
    }
    // Trailing padding after the end-of-archive blocks.
    io::copy(reader, &mut io::sink()).map_err(|e| Error::io("read", what, e))?;
    Ok(())
}

pub(crate) fn has_parent_component(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|c| c == b"..")
}

impl ImageStore {
    /// `docker import`: stores the tar (plain or gzip) read from `reader` as the only layer
    /// of a new image, applies `changes` (`CMD ["sh"]`, `ENV A=b`, …) to its config, and
    /// tags it with `reference` if given. `message` becomes the history comment.
    pub fn import(
        &self,
        reader: &mut dyn Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<ImageId> {
        let refs = match reference {
            Some(r) => {
                let parsed = Reference::parse(r)?;
                if parsed.digest().is_some() {
                    return Err(Error::InvalidReference(format!(
                        "{r:?}: an imported image cannot be given a digest reference"
                    )));
                }
                vec![parsed]
            }
            None => Vec::new(),
        };
        let mut container_config = ContainerConfig::default();
        apply_changes(&mut container_config, changes)?;
        let lease = self.lease();
        let result = self.import_inner(reader, &refs, container_config, message, &lease);
        // Blobs of a failed import go; those of a successful one are referenced and stay.
        lease.release()?;
        result
    }

    fn import_inner(
        &self,
        reader: &mut dyn Read,
        refs: &[Reference],
        container_config: ContainerConfig,
        message: Option<&str>,
        lease: &Lease<'_>,
    ) -> Result<ImageId> {
        let mut blob = self.content.writer()?;
        {
            let mut tar_stream = decompressed(BufReader::new(reader), "import stream")?;
            let mut tee = TeeReader {
                reader: &mut tar_stream,
                writer: &mut blob,
            };
            check_tar_stream(&mut tee, "import stream")?;
        }
        let layer = lease.commit(blob, None)?;
        let now = rfc3339_now();
        let config = ImageConfig {
            created: Some(now.clone()),
            author: None,
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            variant: None,
            config: Some(container_config),
            rootfs: RootFs {
                fs_type: "layers".to_string(),
                diff_ids: vec![layer.digest.to_string()],
            },
            history: vec![HistoryEntry {
                created: Some(now.clone()),
                created_by: None,
                author: None,
                comment: Some(message.unwrap_or("Imported from -").to_string()),
                empty_layer: false,
            }],
        };
        let layer_rec = LayerRecord {
            digest: layer.digest.clone(),
            media_type: MEDIA_LAYER_TAR.to_string(),
            size: layer.size,
            diff_id: layer.digest.clone(),
            uncompressed_size: layer.size,
        };
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| Error::metadata("image config", e))?;
        self.store_image(&config_bytes, vec![layer_rec], Some(now), refs, lease)
    }

    /// Stores config and a fresh OCI manifest for layers already in the content store, then
    /// indexes the image.
    pub(crate) fn store_image(
        &self,
        config_bytes: &[u8],
        layers: Vec<LayerRecord>,
        created_at: Option<String>,
        refs: &[Reference],
        lease: &Lease<'_>,
    ) -> Result<ImageId> {
        let cfg = lease.ingest_bytes(config_bytes)?;
        let manifest = build_manifest(&cfg.digest, cfg.size, &layers)?;
        let m = lease.ingest_bytes(&manifest)?;
        let rec = ImageRecord {
            id: cfg.digest.clone(),
            manifest_digest: m.digest,
            manifest_media_type: MEDIA_MANIFEST.to_string(),
            size: layers.iter().map(|l| l.uncompressed_size).sum(),
            layers,
            created: created_at,
        };
        self.commit_image(&rec, refs)?;
        Ok(rec.id)
    }
}

/// An OCI image manifest for a config and layers.
pub(crate) fn build_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[LayerRecord],
) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| Error::metadata("manifest", e);
    let oci_digest =
        |d: &Digest| -> Result<oci_spec::image::Digest> { d.as_str().parse().map_err(|e| bad(&e)) };
    let config_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(oci_digest(config)?)
        .size(config_size)
        .build()
        .map_err(|e| bad(&e))?;
    let mut layer_descs = Vec::new();
    for l in layers {
        layer_descs.push(
            DescriptorBuilder::default()
                .media_type(MediaType::from(l.media_type.as_str()))
                .digest(oci_digest(&l.digest)?)
                .size(l.size)
                .build()
                .map_err(|e| bad(&e))?,
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(|e| bad(&e))?;
    serde_json::to_vec(&manifest).map_err(|e| bad(&e))
}

/// Applies Dockerfile instructions allowed by `docker import --change`.
pub fn apply_changes(cfg: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        let change = change.trim();
        let (keyword, rest) = change
            .split_once(|c: char| c.is_whitespace())
            .map(|(k, r)| (k, r.trim()))
            .unwrap_or((change, ""));
        let bad = |why: &str| Error::metadata(format!("change {change:?}"), why);
        match keyword.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(command_form(rest)),
            "ENTRYPOINT" => cfg.entrypoint = Some(command_form(rest)),
            "SHELL" => {
                cfg.shell = Some(json_array(rest).ok_or_else(|| bad("SHELL needs a JSON array"))?)
            }
            "ENV" => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest).ok_or_else(|| bad("ENV needs KEY=value"))? {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in key_values(rest).ok_or_else(|| bad("LABEL needs key=value"))? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
                let list = json_array(rest)
                    .unwrap_or_else(|| rest.split_whitespace().map(str::to_string).collect());
                for v in list {
                    vols.insert(v, serde_json::json!({}));
                }
            }
            "USER" => cfg.user = Some(rest.to_string()),
            "WORKDIR" => cfg.working_dir = Some(rest.to_string()),
            "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
            "ONBUILD" => cfg.on_build.get_or_insert_with(Vec::new).push(rest.to_string()),
            "HEALTHCHECK" => cfg.healthcheck = Some(healthcheck(rest).map_err(|e| bad(&e))?),
            _ => {
                return Err(bad(
                    "only CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME and WORKDIR are allowed",
                ))
            }
        }
    }
    Ok(())
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD command` (exec or shell form) or `HEALTHCHECK NONE`, as the image
/// config's `Healthcheck` (durations in nanoseconds).
fn healthcheck(rest: &str) -> std::result::Result<serde_json::Value, String> {
    let mut h = serde_json::Map::new();
    let mut rest = rest.trim_start();
    while let Some(flag) = rest.strip_prefix("--") {
        let (word, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("HEALTHCHECK flag --{word} needs a value"))?;
        let field = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("HEALTHCHECK --retries: invalid number {value:?}"))?;
                if n < 0 {
                    return Err("--retries cannot be negative".into());
                }
                h.insert("Retries".into(), serde_json::json!(n));
                rest = after.trim_start();
                continue;
            }
            _ => return Err(format!("Unknown flag: {name}")),
        };
        let ns = duration_ns(value)
            .ok_or_else(|| format!("HEALTHCHECK --{name}: time: invalid duration {value:?}"))?;
        if ns != 0 && ns < 1_000_000 {
            return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
        }
        h.insert(field.into(), serde_json::json!(ns));
        rest = after.trim_start();
    }
    let (kind, command) = rest
        .split_once(char::is_whitespace)
        .map(|(k, c)| (k, c.trim()))
        .unwrap_or((rest, ""));
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" if command.is_empty() && h.is_empty() => vec!["NONE".to_string()],
        "NONE" => return Err("HEALTHCHECK NONE takes no arguments".into()),
        "CMD" if !command.is_empty() => match json_array(command) {
            Some(args) => std::iter::once("CMD".to_string()).chain(args).collect(),
            None => vec!["CMD-SHELL".to_string(), command.to_string()],
        },
        "CMD" => return Err("Missing command after HEALTHCHECK CMD".into()),
        other => return Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
    };
    h.insert("Test".into(), serde_json::json!(test));
    Ok(serde_json::Value::Object(h))
}

/// A Go duration (`1m30s`, `200ms`) in nanoseconds.
fn duration_ns(s: &str) -> Option<i64> {
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * unit;
        rest = &rest[u_end..];
    }
    Some(total.round() as i64)
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        serde_json::from_str(s).ok()
    } else {
        None
    }
}

/// Exec form (`["a","b"]`) or shell form (`a b` → `/bin/sh -c "a b"`).
fn command_form(s: &str) -> Vec<String> {
    json_array(s).unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()])
}

/// `K=V K2="v 2"` or the legacy `K some value`.
fn key_values(s: &str) -> Option<Vec<(String, String)>> {
    let first = s.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let mut val = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                }
                (_, c) => val.push(c),
            }
        }
        if key.is_empty() {
            return None;
        }
        out.push((key, val));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_changes_apply() {
        let mut c = ContainerConfig::default();
        apply_changes(
            &mut c,
            &[r#"HEALTHCHECK --interval=1s --retries=2 CMD ["cat", "/x"]"#.to_string()],
        )
        .unwrap();
        assert_eq!(
            c.healthcheck.clone().unwrap(),
            serde_json::json!({"Test": ["CMD", "cat", "/x"], "Interval": 1_000_000_000i64, "Retries": 2})
        );
        apply_changes(&mut c, &["HEALTHCHECK CMD exit 1".to_string()]).unwrap();
        assert_eq!(
            c.healthcheck.clone().unwrap()["Test"],
            serde_json::json!(["CMD-SHELL", "exit 1"])
        );
        apply_changes(&mut c, &["HEALTHCHECK NONE".to_string()]).unwrap();
        assert_eq!(
            c.healthcheck.clone().unwrap()["Test"],
            serde_json::json!(["NONE"])
        );
        for bad in [
            "HEALTHCHECK --interval=1us CMD true",
            "HEALTHCHECK --bogus=1 CMD true",
            "HEALTHCHECK RUN x",
        ] {
            assert!(apply_changes(&mut c, &[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_apply() {
        let mut c = ContainerConfig::default();
        apply_changes(
            &mut c,
            &[
                r#"CMD ["/bin/sh"]"#.to_string(),
                "ENTRYPOINT echo hi".to_string(),
                r#"ENV A=1 B="two words""#.to_string(),
                "ENV A 3".to_string(),
                "EXPOSE 80 53/udp".to_string(),
                "WORKDIR /srv".to_string(),
                "USER nobody".to_string(),
                "LABEL x=y".to_string(),
                "VOLUME /data".to_string(),
                "STOPSIGNAL SIGINT".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh"]);
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), vec!["B=two words", "A=3"]);
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.labels.unwrap()["x"], "y");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert!(apply_changes(&mut ContainerConfig::default(), &["RUN true".to_string()]).is_err());
    }
}
