//! The container's own mounts as Docker's API asks for them: `-v` (HostConfig.Binds),
//! `--mount` (HostConfig.Mounts: bind and tmpfs), `--tmpfs` (HostConfig.Tmpfs) and the
//! size of /dev/shm. Checked with Docker's rules and in its words, turned into the OCI
//! spec's mounts, and listed for inspect. Volumes (`-v NAME:/p`, `-v /p`, `--mount
//! type=volume`) are parsed here and made bind mounts of their data once the engine has
//! found or created them (`crate::volume_use`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::hostconfig::{HostConfig, MountSpec, TmpfsOptions};

/// Docker's default size of /dev/shm (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// One entry of inspect's "Mounts", as Docker shapes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name (volumes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    /// A volume's driver (volumes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Bind {
        source: PathBuf,
        read_only: bool,
        /// Read-only all the way down, submounts too (Docker's default since API 1.44).
        recursive_ro: bool,
        non_recursive: bool,
        propagation: String,
        /// `-v` (and `--mount` with CreateMountpoint) makes a missing source directory.
        create_source: bool,
    },
    Tmpfs {
        options: Vec<String>,
    },
    Volume(VolumeRequest),
}

/// A volume a container asks for, by `-v` or `--mount`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeRequest {
    /// None: an anonymous volume, made for the container.
    pub name: Option<String>,
    pub read_only: bool,
    /// Not filled with the image's content at first mount.
    pub nocopy: bool,
    /// What inspect shows as Mode.
    pub mode: String,
    /// `volume-driver`, `volume-opt` and `volume-label` of `--mount`.
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One mount the container asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMount {
    pub destination: String,
    kind: Kind,
    /// What inspect lists (`--tmpfs` mounts are not listed, as with Docker).
    point: Option<MountPoint>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// Docker's wording for a mount it cannot take.
fn mount_config(kind: &str, why: impl std::fmt::Display) -> Error {
    invalid(format!("invalid mount config for type \"{kind}\": {why}"))
}

/// Go's `path.Clean`: what Docker compares and shows.
fn clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A mount target: set, not the root, absolute.
fn check_target(target: &str) -> std::result::Result<(), String> {
    if target.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if clean(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    check_absolute(target)
}

fn check_absolute(path: &str) -> std::result::Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "invalid mount path: '{path}' mount path must be absolute"
        ))
    }
}

/// The modes `-v` takes after the second colon: at most one of each kind.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let (mut rw, mut label, mut propagation, mut copy) = (0, 0, 0, 0);
    for o in mode.split(',') {
        match o {
            "rw" | "ro" => rw += 1,
            "z" | "Z" => label += 1,
            "nocopy" => copy += 1,
            p if PROPAGATIONS.contains(&p) => propagation += 1,
            _ => return false,
        }
    }
    rw <= 1 && label <= 1 && propagation <= 1 && copy <= 1
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// A volume mount of `-v` or `--mount`, its destination checked.
fn volume_mount(destination: &str, request: VolumeRequest) -> UserMount {
    UserMount {
        destination: clean(destination),
        kind: Kind::Volume(request),
        // Listed from the container's record, which has the volume's name.
        point: None,
    }
}

/// One `-v SRC:DST[:MODE]` entry (`-v DST`: an anonymous volume).
fn parse_bind(raw: &str) -> Result<UserMount> {
    let spec_err = || invalid(format!("invalid volume specification: '{raw}'"));
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(spec_err());
    }
    let (source, target, mode) = match arr.as_slice() {
        [target] => {
            check_target(target).map_err(|e| {
                invalid(format!(
                    "invalid volume specification: '{raw}': {}",
                    mount_config("volume", e)
                ))
            })?;
            return Ok(volume_mount(target, VolumeRequest::default()));
        }
        [_, mode] if valid_mode(mode) => return Err(spec_err()),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(spec_err()),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let wrap = |e: Error| invalid(format!("invalid volume specification: '{raw}': {e}"));
    let opts: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    if !source.starts_with('/') {
        if !crate::volumes::valid_name(source) {
            return Err(crate::volumes::invalid_name(source));
        }
        check_target(target).map_err(|e| wrap(mount_config("volume", e)))?;
        if opts.iter().any(|o| PROPAGATIONS.contains(o)) {
            return Err(wrap(mount_config(
                "volume",
                "field BindOptions must not be specified",
            )));
        }
        return Ok(volume_mount(
            target,
            VolumeRequest {
                name: Some(source.to_string()),
                read_only: opts.contains(&"ro"),
                nocopy: opts.contains(&"nocopy"),
                mode: if mode.is_empty() { "z" } else { mode }.to_string(),
                ..Default::default()
            },
        ));
    }
    if opts.contains(&"nocopy") {
        return Err(wrap(mount_config(
            "bind",
            "field VolumeOptions must not be specified",
        )));
    }
    check_target(target).map_err(|e| wrap(mount_config("bind", e)))?;
    if opts.iter().any(|o| matches!(*o, "z" | "Z")) && selinux_enabled() {
        // Without SELinux Docker ignores the label modes; with it they relabel, which
        // this daemon does not do.
        return Err(wrap(invalid(
            "SELinux relabeling (z, Z) is not supported by this daemon yet",
        )));
    }
    let read_only = opts.contains(&"ro");
    let propagation = opts
        .iter()
        .find(|o| PROPAGATIONS.contains(o))
        .map_or("rprivate", |p| *p)
        .to_string();
    let (source, destination) = (clean(source), clean(target));
    Ok(UserMount {
        point: Some(MountPoint {
            kind: "bind".into(),
            name: None,
            driver: None,
            source: source.clone(),
            destination: destination.clone(),
            mode: mode.to_string(),
            rw: !read_only,
            propagation: propagation.clone(),
        }),
        destination,
        kind: Kind::Bind {
            source: source.into(),
            read_only,
            recursive_ro: read_only,
            non_recursive: false,
            propagation,
            create_source: true,
        },
    })
}

/// One `--mount` entry (HostConfig.Mounts); `check_source`: a bind's source must exist.
fn parse_mount(m: &MountSpec, check_source: bool) -> Result<UserMount> {
    let kind = m.kind.as_str();
    let err = |why: &str| mount_config(kind, why);
    // Options for another type than the mount's are refused, as by Docker.
    for (present, field, owner) in [
        (m.bind_options.is_some(), "BindOptions", "bind"),
        (m.volume_options.is_some(), "VolumeOptions", "volume"),
        (m.tmpfs_options.is_some(), "TmpfsOptions", "tmpfs"),
    ] {
        if present && kind != owner {
            return Err(err(&format!("field {field} must not be specified")));
        }
    }
    check_target(&m.target).map_err(|e| err(&e))?;
    let destination = clean(&m.target);
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(err("field Source must not be empty"));
            }
            let opts = m.bind_options.clone().unwrap_or_default();
            if !opts.propagation.is_empty() && !PROPAGATIONS.contains(&opts.propagation.as_str()) {
                return Err(err(&format!(
                    "invalid propagation mode: {}",
                    opts.propagation
                )));
            }
            check_absolute(&m.source).map_err(|e| err(&e))?;
            if check_source && !opts.create_mountpoint && !Path::new(&m.source).exists() {
                return Err(err(&format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
            if !m.read_only && opts.read_only_non_recursive {
                return Err(invalid(
                    "options conflict: Writable && ReadOnlyNonRecursive",
                ));
            }
            if !m.read_only && opts.read_only_force_recursive {
                return Err(invalid(
                    "options conflict: Writable && ReadOnlyForceRecursive",
                ));
            }
            if opts.read_only_non_recursive && opts.read_only_force_recursive {
                return Err(invalid(
                    "options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive",
                ));
            }
            let propagation = if opts.propagation.is_empty() {
                "rprivate".to_string()
            } else {
                opts.propagation.clone()
            };
            let source = clean(&m.source);
            Ok(UserMount {
                point: Some(MountPoint {
                    kind: "bind".into(),
                    name: None,
                    driver: None,
                    source: source.clone(),
                    destination: destination.clone(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: propagation.clone(),
                }),
                destination,
                kind: Kind::Bind {
                    source: source.into(),
                    read_only: m.read_only,
                    recursive_ro: m.read_only
                        && !opts.read_only_non_recursive
                        && !opts.non_recursive,
                    non_recursive: opts.non_recursive,
                    propagation,
                    create_source: opts.create_mountpoint,
                },
            })
        }
        "tmpfs" => {
            if !m.source.is_empty() {
                return Err(err("field Source must not be specified"));
            }
            let data = tmpfs_data(m.tmpfs_options.as_ref(), m.read_only);
            let options = tmpfs_options(&data)?;
            Ok(UserMount {
                point: Some(MountPoint {
                    kind: "tmpfs".into(),
                    name: None,
                    driver: None,
                    source: String::new(),
                    destination: destination.clone(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                }),
                destination,
                kind: Kind::Tmpfs { options },
            })
        }
        "volume" => {
            if !m.source.is_empty() && !crate::volumes::valid_name(&m.source) {
                return Err(crate::volumes::invalid_name(&m.source));
            }
            if m.source.is_empty() && m.read_only {
                return Err(err(
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            let opts = m.volume_options.clone().unwrap_or_default();
            let driver = opts.driver_config.clone().unwrap_or_default();
            Ok(volume_mount(
                &m.target,
                VolumeRequest {
                    name: (!m.source.is_empty()).then(|| m.source.clone()),
                    read_only: m.read_only,
                    nocopy: opts.no_copy,
                    mode: String::new(),
                    driver: driver.name,
                    options: driver.options.unwrap_or_default(),
                    labels: opts.labels.unwrap_or_default(),
                },
            ))
        }
        _ => Err(err("mount type unknown")),
    }
}

/// `--mount type=tmpfs` options as the `--tmpfs` option string Docker makes of them.
fn tmpfs_data(opts: Option<&TmpfsOptions>, read_only: bool) -> String {
    let mut raw = Vec::new();
    if read_only {
        raw.push("ro".to_string());
    }
    if let Some(o) = opts {
        if o.mode != 0 {
            raw.push(format!("mode={:o}", o.mode));
        }
        if o.size_bytes != 0 {
            let (mut size, mut suffix) = (o.size_bytes, "");
            for (s, d) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
                if size % d == 0 {
                    size /= d;
                    suffix = s;
                    break;
                }
            }
            raw.push(format!("size={size}{suffix}"));
        }
        for o in o.options.iter().flatten() {
            match o.as_slice() {
                [flag] => raw.push(flag.clone()),
                [k, v] => raw.push(format!("{k}={v}")),
                _ => raw.push(o.join("=")),
            }
        }
    }
    raw.join(",")
}

/// Which setting a tmpfs flag option sets, so a later one can replace an earlier one.
fn flag_key(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable" => "propagation",
        _ => return None,
    })
}

/// The data options tmpfs takes.
const TMPFS_DATA: [&str; 7] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// A tmpfs's options: Docker's defaults (noexec, nosuid, nodev, rprivate) then the
/// given ones, the last of each kind winning (Docker's MergeTmpfsOptions).
fn tmpfs_options(data: &str) -> Result<Vec<String>> {
    let mut all = vec!["noexec", "nosuid", "nodev", "rprivate"];
    all.extend(data.split(',').filter(|o| !o.is_empty()));
    let mut flags = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut out = VecDeque::new();
    for option in all.into_iter().rev() {
        if option == "defaults" {
            continue;
        }
        if let Some(key) = flag_key(option) {
            if flags.insert(key) {
                out.push_front(option.to_string());
            }
            continue;
        }
        let Some((key, _)) = option
            .split_once('=')
            .filter(|(k, _)| TMPFS_DATA.contains(k))
        else {
            let parts: Vec<String> = option.splitn(2, '=').map(|p| format!("{p:?}")).collect();
            return Err(invalid(format!(
                "invalid tmpfs option [{}]",
                parts.join(" ")
            )));
        };
        if keys.insert(key) {
            out.push_front(option.to_string());
        }
    }
    Ok(out.into())
}

/// Every mount the container asked for, checked as Docker checks them (sources of
/// `--mount` binds must exist), in the order they are mounted: parents first.
pub fn parse(host: &HostConfig) -> Result<Vec<UserMount>> {
    let mut out: Vec<UserMount> = Vec::new();
    let mut add = |m: UserMount| {
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
        }
        out.push(m);
        Ok(())
    };
    for (dest, data) in host.tmpfs.iter().flatten() {
        check_target(dest).map_err(invalid)?;
        add(UserMount {
            destination: clean(dest),
            kind: Kind::Tmpfs {
                options: tmpfs_options(data)?,
            },
            point: None,
        })?;
    }
    for raw in host.binds.iter().flatten() {
        add(parse_bind(raw)?)?;
    }
    for m in host.mounts.iter().flatten() {
        add(parse_mount(m, true)?)?;
    }
    // Parents before children: a mount under another one must come after it.
    out.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    Ok(out)
}

/// The mounts inspect lists, by destination: those asked for and the container's
/// volumes (`root`: the daemon's root, where volumes live).
pub fn mount_points(spec: &crate::containers::ContainerSpec, root: &Path) -> Vec<MountPoint> {
    let store = crate::volumes::Volumes::new(root);
    let mut points: Vec<MountPoint> = parse_lenient(&spec.host)
        .into_iter()
        .filter_map(|m| m.point)
        .collect();
    points.extend(spec.volume_mounts.iter().map(|v| MountPoint {
        kind: "volume".into(),
        name: Some(v.name.clone()),
        source: store.mountpoint(&v.name).to_string_lossy().into_owned(),
        destination: v.destination.clone(),
        driver: Some("local".into()),
        mode: v.mode.clone(),
        rw: !v.read_only,
        propagation: String::new(),
    }));
    points.sort_by(|a, b| a.destination.cmp(&b.destination));
    points
}

/// The volumes `mounts` ask for, by destination.
pub fn volume_requests(mounts: &[UserMount]) -> Vec<(String, VolumeRequest)> {
    mounts
        .iter()
        .filter_map(|m| match &m.kind {
            Kind::Volume(r) => Some((m.destination.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

/// Whether something is mounted at `destination` (a bind, a tmpfs or a volume).
pub fn mounted_at(mounts: &[UserMount], destination: &str) -> bool {
    let d = clean(destination);
    mounts.iter().any(|m| m.destination == d)
}

/// `mounts` with each volume made a bind mount of its data, the container's other
/// volumes (its image's, `Config.Volumes`) added: what the runtime mounts.
pub fn resolve_volumes(
    mounts: Vec<UserMount>,
    volumes: &[crate::volume_use::VolumeMount],
    root: &Path,
) -> Result<Vec<UserMount>> {
    let store = crate::volumes::Volumes::new(root);
    let bind = |v: &crate::volume_use::VolumeMount| UserMount {
        destination: v.destination.clone(),
        kind: Kind::Bind {
            source: store.mountpoint(&v.name),
            read_only: v.read_only,
            recursive_ro: false,
            non_recursive: false,
            propagation: "rprivate".into(),
            create_source: false,
        },
        point: None,
    };
    let mut out = Vec::new();
    for m in mounts {
        if !matches!(m.kind, Kind::Volume(_)) {
            out.push(m);
            continue;
        }
        let v = volumes
            .iter()
            .find(|v| v.destination == m.destination)
            .ok_or_else(|| invalid(format!("no volume recorded for {}", m.destination)))?;
        out.push(bind(v));
    }
    for v in volumes {
        if !out.iter().any(|m| m.destination == v.destination) {
            out.push(bind(v));
        }
    }
    out.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    Ok(out)
}

/// As `parse`, for a record already accepted: a `--mount` source removed since is no
/// reason to list nothing.
pub(crate) fn parse_lenient(host: &HostConfig) -> Vec<UserMount> {
    let mut out = Vec::new();
    for raw in host.binds.iter().flatten() {
        out.extend(parse_bind(raw).ok());
    }
    for m in host.mounts.iter().flatten() {
        out.extend(parse_mount(m, false).ok());
    }
    out
}

/// Make the missing source directories `-v` (and CreateMountpoint) ask for, as Docker
/// does on every start.
pub fn create_sources(mounts: &[UserMount]) -> Result<()> {
    for m in mounts {
        if let Kind::Bind {
            source,
            create_source: true,
            ..
        } = &m.kind
        {
            if !source.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(source)
                    .map_err(|e| Error::io("create bind source", source, e))?;
            }
        }
    }
    Ok(())
}

/// The mount a path lives on, with mountinfo's optional fields ("shared:1 master:2").
fn source_mount(path: &Path) -> Result<(String, String)> {
    let real = std::fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut best: Option<(String, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .unwrap_or(fields.len());
        let optional = fields.get(6..sep).unwrap_or_default().join(" ");
        if real.starts_with(mp) && best.as_ref().is_none_or(|(b, _)| mp.len() >= b.len()) {
            best = Some((mp.to_string(), optional));
        }
    }
    best.ok_or_else(|| invalid(format!("no mount found for {}", real.display())))
}

/// A shared bind needs a shared source mount, a slave one a shared or slave source
/// mount (Docker's ensureShared / ensureSharedOrSlave); the container's root follows.
fn check_propagation(source: &Path, propagation: &str, spec: &mut Spec) -> Result<()> {
    let root = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    let wanted = match propagation {
        "shared" | "rshared" => {
            let (mp, opts) = source_mount(source)?;
            if !opts.split(' ').any(|o| o.starts_with("shared:")) {
                return Err(invalid(format!(
                    "path {} is mounted on {mp} but it is not a shared mount",
                    source.display()
                )));
            }
            (!matches!(root.as_str(), "shared" | "rshared")).then_some("shared")
        }
        "slave" | "rslave" => {
            let (mp, opts) = source_mount(source)?;
            if !opts
                .split(' ')
                .any(|o| o.starts_with("shared:") || o.starts_with("master:"))
            {
                return Err(invalid(format!(
                    "path {} is mounted on {mp} but it is not a shared or slave mount",
                    source.display()
                )));
            }
            (!matches!(root.as_str(), "shared" | "rshared" | "slave" | "rslave"))
                .then_some("rslave")
        }
        _ => None,
    };
    if let (Some(p), Some(linux)) = (wanted, spec.linux_mut()) {
        linux.set_rootfs_propagation(Some(p.to_string()));
    }
    Ok(())
}

fn oci_mount(destination: &str, typ: &str, source: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options));
    m
}

/// Put the container's mounts into `spec`: each replaces a default mount at the same
/// place (a mount on /dev replaces those under it too), /dev/shm gets its size, and
/// `extra` (mounts the engine adds, such as /etc/hosts) follow where nothing was asked.
pub fn apply(
    mounts: &[UserMount],
    shm_size: i64,
    extra: Vec<Mount>,
    spec: &mut Spec,
) -> Result<()> {
    let taken: BTreeSet<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
    let user_dev = taken.contains("/dev");
    let mut all: Vec<Mount> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            let d = m.destination().to_string_lossy();
            !(taken.contains(d.as_ref()) || user_dev && d.starts_with("/dev/"))
        })
        .collect();
    for m in &mut all {
        if m.destination() == Path::new("/dev/shm") {
            let mut options: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("size="))
                .collect();
            options.push(format!("size={shm_size}"));
            m.set_options(Some(options));
        }
    }
    for m in mounts {
        match &m.kind {
            Kind::Bind {
                source,
                read_only,
                recursive_ro,
                non_recursive,
                propagation,
                ..
            } => {
                check_propagation(source, propagation, spec)?;
                let mut options = vec![if *non_recursive { "bind" } else { "rbind" }.to_string()];
                if *read_only {
                    options.push("ro".into());
                }
                if *recursive_ro {
                    options.push("rro".into());
                }
                options.push(propagation.clone());
                all.push(oci_mount(
                    &m.destination,
                    "bind",
                    &source.to_string_lossy(),
                    options,
                ));
            }
            Kind::Tmpfs { options } => {
                all.push(oci_mount(&m.destination, "tmpfs", "tmpfs", options.clone()));
            }
            Kind::Volume(_) => {
                return Err(invalid(format!(
                    "volume at {} has no data directory",
                    m.destination
                )))
            }
        }
    }
    all.extend(
        extra
            .into_iter()
            .filter(|m| !taken.contains(m.destination().to_string_lossy().as_ref())),
    );
    spec.set_mounts(Some(all));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(binds: &[&str]) -> HostConfig {
        HostConfig {
            binds: Some(binds.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn err(h: &HostConfig) -> String {
        parse(h).unwrap_err().to_string()
    }

    #[test]
    fn binds_parse_as_docker() {
        let m = parse(&host(&["/tmp/a/../b:/data//x:ro,rslave"])).unwrap();
        assert_eq!(m[0].destination, "/data/x");
        let p = m[0].point.clone().unwrap();
        assert_eq!(
            (
                p.source.as_str(),
                p.mode.as_str(),
                p.rw,
                p.propagation.as_str()
            ),
            ("/tmp/b", "ro,rslave", false, "rslave")
        );
        let m = parse(&host(&["/tmp:/d"])).unwrap();
        let p = m[0].point.clone().unwrap();
        assert_eq!(
            (p.mode.as_str(), p.rw, p.propagation.as_str()),
            ("", true, "rprivate")
        );
    }

    #[test]
    fn bad_binds_are_refused_in_dockers_words() {
        assert_eq!(
            err(&host(&["/tmp:rw"])),
            "invalid volume specification: '/tmp:rw'"
        );
        assert_eq!(err(&host(&["/tmp:/d:rx"])), "invalid mode: rx");
        assert_eq!(err(&host(&["/tmp:/d:ro,rw"])), "invalid mode: ro,rw");
        assert_eq!(
            err(&host(&["/tmp:/d:nocopy"])),
            "invalid volume specification: '/tmp:/d:nocopy': invalid mount config for type \"bind\": field VolumeOptions must not be specified"
        );
        assert_eq!(
            err(&host(&["/tmp:d"])),
            "invalid volume specification: '/tmp:d': invalid mount config for type \"bind\": invalid mount path: 'd' mount path must be absolute"
        );
        assert_eq!(
            err(&host(&["/tmp:/"])),
            "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            err(&host(&["/a:/d", "/b:/d/"])),
            "Duplicate mount point: /d"
        );
        assert!(err(&host(&["da/ta:/d"])).contains("includes invalid characters"));
        assert_eq!(
            err(&host(&["data:/d:rshared"])),
            "invalid volume specification: 'data:/d:rshared': invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
    }

    #[test]
    fn volumes_parse_as_docker() {
        let m = parse(&host(&["data:/d/:ro,nocopy", "/anon", "other:/o"])).unwrap();
        let reqs = volume_requests(&m);
        assert_eq!(reqs.len(), 3);
        let find = |d: &str| reqs.iter().find(|(dest, _)| dest == d).unwrap().1.clone();
        let data = find("/d");
        assert_eq!(data.name.as_deref(), Some("data"));
        assert!(data.read_only && data.nocopy);
        assert_eq!(data.mode, "ro,nocopy");
        assert_eq!(find("/anon").name, None);
        assert_eq!(find("/o").mode, "z");
        assert!(mounted_at(&m, "/d"));
        let used = vec![crate::volume_use::VolumeMount {
            name: "data".into(),
            destination: "/d".into(),
            read_only: true,
            ..Default::default()
        }];
        let one = parse(&host(&["data:/d:ro"])).unwrap();
        let r = resolve_volumes(one, &used, Path::new("/var/lib/polis")).unwrap();
        let Kind::Bind {
            source, read_only, ..
        } = &r[0].kind
        else {
            panic!()
        };
        assert_eq!(source, Path::new("/var/lib/polis/volumes/data/_data"));
        assert!(*read_only);
    }

    #[test]
    fn label_modes_are_ignored_without_selinux() {
        if selinux_enabled() {
            return;
        }
        assert!(parse(&host(&["/tmp:/d:Z"])).is_ok());
    }

    #[test]
    fn mounts_follow_dockers_rules() {
        let mount = |kind: &str, source: &str, target: &str| MountSpec {
            kind: kind.into(),
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let h = |m: MountSpec| HostConfig {
            mounts: Some(vec![m]),
            ..Default::default()
        };
        assert_eq!(
            err(&h(mount("bind", "/nonexistent-polis", "/x"))),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-polis"
        );
        assert_eq!(
            err(&h(mount("tmpfs", "/tmp", "/x"))),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            err(&h(mount("bogus", "", "/x"))),
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        let mut v = mount("volume", "vol", "/x");
        v.volume_options = Some(crate::hostconfig::VolumeOptions {
            no_copy: true,
            labels: Some([("a".to_string(), "b".to_string())].into()),
            driver_config: Some(crate::hostconfig::VolumeDriver {
                name: "local".into(),
                options: Some([("type".to_string(), "tmpfs".to_string())].into()),
            }),
        });
        let r = volume_requests(&parse(&h(v)).unwrap())[0].1.clone();
        assert!(r.nocopy);
        assert_eq!(
            (r.driver.as_str(), r.options["type"].as_str()),
            ("local", "tmpfs")
        );
        let mut anon_ro = mount("volume", "", "/x");
        anon_ro.read_only = true;
        assert_eq!(
            err(&h(anon_ro)),
            "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"
        );
        let mut t = mount("tmpfs", "", "/t");
        t.tmpfs_options = Some(TmpfsOptions {
            size_bytes: 3 << 20,
            mode: 0o1770,
            options: Some(vec![vec!["exec".into()]]),
        });
        let m = parse(&h(t)).unwrap();
        assert_eq!(
            m[0].kind,
            Kind::Tmpfs {
                options: vec![
                    "nosuid".into(),
                    "nodev".into(),
                    "rprivate".into(),
                    "mode=1770".into(),
                    "size=3m".into(),
                    "exec".into()
                ]
            }
        );
        let mut b = mount("bind", "/tmp", "/b");
        b.read_only = true;
        let m = parse(&h(b)).unwrap();
        let Kind::Bind { recursive_ro, .. } = m[0].kind else {
            panic!()
        };
        assert!(recursive_ro);
    }

    #[test]
    fn tmpfs_options_merge_as_docker() {
        assert_eq!(
            tmpfs_options("exec,size=1m,mode=700").unwrap(),
            vec!["nosuid", "nodev", "rprivate", "exec", "size=1m", "mode=700"]
        );
        assert_eq!(
            tmpfs_options("size=1m,size=2m,shared").unwrap(),
            vec!["noexec", "nosuid", "nodev", "size=2m", "shared"]
        );
        assert_eq!(
            tmpfs_options("bogus").unwrap_err().to_string(),
            "invalid tmpfs option [\"bogus\"]"
        );
        assert_eq!(
            tmpfs_options("uidx=1").unwrap_err().to_string(),
            "invalid tmpfs option [\"uidx\" \"1\"]"
        );
    }

    #[test]
    fn spec_mounts_replace_defaults_and_size_shm() {
        let mut spec = polis_runtime::spec::example(false);
        let h = HostConfig {
            tmpfs: Some([("/dev/mqueue".to_string(), String::new())].into()),
            binds: Some(vec!["/tmp:/a/b".into(), "/tmp:/a:ro".into()]),
            ..Default::default()
        };
        let m = parse(&h).unwrap();
        apply(&m, 128 << 20, Vec::new(), &mut spec).unwrap();
        let mounts = spec.mounts().clone().unwrap();
        let find = |d: &str| {
            mounts
                .iter()
                .filter(|m| m.destination() == Path::new(d))
                .collect::<Vec<_>>()
        };
        assert_eq!(find("/dev/mqueue").len(), 1);
        assert_eq!(find("/dev/mqueue")[0].typ().as_deref(), Some("tmpfs"));
        assert!(find("/dev/shm")[0]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=134217728".to_string()));
        let a = mounts
            .iter()
            .position(|m| m.destination() == Path::new("/a"));
        let ab = mounts
            .iter()
            .position(|m| m.destination() == Path::new("/a/b"));
        assert!(a < ab, "parents first");
        assert_eq!(
            find("/a")[0].options().clone().unwrap(),
            vec!["rbind", "ro", "rro", "rprivate"]
        );
    }
}
