//! From image config to runtime process: Docker's rules for Entrypoint and Cmd, Env
//! merging, the working directory, and users and groups resolved against the container's
//! own `/etc/passwd` and `/etc/group`.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Spec, User};

use crate::config::{ContainerConfig, ImageConfig};
use crate::error::{Error, Result};

/// PATH when neither the image nor the user sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MAX_SYMLINKS: usize = 40;

/// What `docker create`/`run` may override from the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    /// Arguments after the image name; `None` or empty keeps the image's Cmd (unless the
    /// entrypoint is overridden).
    pub cmd: Option<Vec<String>>,
    /// `--entrypoint`; `Some(vec![])` or `Some(vec![""])` resets it.
    pub entrypoint: Option<Vec<String>>,
    /// `-e`/`--env-file`, `KEY=value`; a bare `KEY` removes the image's KEY.
    pub env: Vec<String>,
    /// `-w`.
    pub working_dir: Option<String>,
    /// `-u`, `user[:group]` by name or number.
    pub user: Option<String>,
    /// `--hostname`; also exported as HOSTNAME.
    pub hostname: Option<String>,
    /// `-t`: a terminal, and TERM=xterm unless set.
    pub tty: bool,
}

/// A user resolved against the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Fills `spec.process` (args, env, cwd, user, terminal) and the hostname from the image
/// config and the overrides. `rootfs` is the container's root, read for user names.
pub fn apply_image_config(
    spec: &mut Spec,
    image: &ImageConfig,
    overrides: &ProcessOverrides,
    rootfs: &Path,
) -> Result<()> {
    let empty = ContainerConfig::default();
    let cc = image.config.as_ref().unwrap_or(&empty);
    let args = process_args(cc, overrides)?;
    let user_spec = overrides
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(cc.user.as_deref())
        .unwrap_or("");
    let user = resolve_user(user_spec, rootfs)?;
    let mut env = merge_env(cc.env.as_deref().unwrap_or(&[]), &overrides.env);
    let has = |env: &[String], k: &str| env.iter().any(|e| env_key(e) == k);
    let mut front = Vec::new();
    if !has(&env, "PATH") {
        front.push(format!("PATH={DEFAULT_PATH}"));
    }
    if let Some(h) = &overrides.hostname {
        if !has(&env, "HOSTNAME") {
            front.push(format!("HOSTNAME={h}"));
        }
    }
    if overrides.tty && !has(&env, "TERM") {
        front.push("TERM=xterm".to_string());
    }
    front.append(&mut env);
    let mut env = front;
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = overrides
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(cc.working_dir.as_deref().filter(|w| !w.is_empty()))
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(Error::metadata(
            "working directory",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    let mut u = User::default();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids(if user.additional_gids.is_empty() {
        None
    } else {
        Some(user.additional_gids.clone())
    });
    process.set_user(u);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_terminal(Some(overrides.tty));
    spec.set_process(Some(process));
    if let Some(h) = &overrides.hostname {
        spec.set_hostname(Some(h.clone()));
    }
    Ok(())
}

/// Docker's rules: an overridden entrypoint drops the image's Cmd; otherwise the image's
/// entrypoint stays and the user's arguments, if any, replace the image's Cmd.
pub fn process_args(image: &ContainerConfig, overrides: &ProcessOverrides) -> Result<Vec<String>> {
    let user_cmd = overrides.cmd.clone().unwrap_or_default();
    let (entrypoint, cmd) = match &overrides.entrypoint {
        Some(ep) => {
            let ep: Vec<String> = if ep.len() == 1 && ep[0].is_empty() {
                Vec::new()
            } else {
                ep.clone()
            };
            (ep, user_cmd)
        }
        None => {
            let cmd = if user_cmd.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                user_cmd
            };
            (image.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(args)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// The image's env with the overrides applied in order: `K=v` replaces or appends,
/// a bare `K` removes.
pub fn merge_env(image: &[String], overrides: &[String]) -> Vec<String> {
    let mut env: Vec<String> = image.to_vec();
    for o in overrides {
        let k = env_key(o);
        match o.contains('=') {
            true => match env.iter_mut().find(|e| env_key(e) == k) {
                Some(e) => *e = o.clone(),
                None => env.push(o.clone()),
            },
            false => env.retain(|e| env_key(e) != k),
        }
    }
    env
}

/// Resolves `user[:group]` (names or numbers; empty means root) against the rootfs's
/// `/etc/passwd` and `/etc/group`.
pub fn resolve_user(spec: &str, rootfs: &Path) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_scoped(rootfs, "etc/passwd")?;
    let groups = read_scoped(rootfs, "etc/group")?;
    let entry = passwd.as_deref().and_then(|p| {
        p.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 7)
            .find(|f| match user.parse::<u32>() {
                Ok(uid) => f[2].parse::<u32>() == Ok(uid),
                Err(_) => f[0] == user,
            })
            .map(|f| {
                (
                    f[0].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[5].to_string(),
                )
            })
    });
    let (name, uid, mut gid, home) = match (entry, user.parse::<u32>()) {
        (Some((name, uid, gid, home)), _) => (
            Some(name),
            uid.parse::<u32>().map_err(|_| bad_passwd(rootfs))?,
            gid.parse::<u32>().map_err(|_| bad_passwd(rootfs))?,
            home,
        ),
        (None, Ok(uid)) => (None, uid, 0, "/".to_string()),
        (None, Err(_)) => {
            return Err(Error::UserNotFound(format!(
                "user {user}: no matching entries in passwd file"
            )))
        }
    };
    let group_lines: Vec<Vec<&str>> = groups
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_lines
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::UserNotFound(format!("group {g}: no matching entries in group file"))
                })?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = &name {
        for f in &group_lines {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() {
            "/".to_string()
        } else {
            home
        },
    })
}

fn bad_passwd(rootfs: &Path) -> Error {
    Error::metadata(
        format!("{}/etc/passwd", rootfs.display()),
        "malformed entry",
    )
}

/// Reads `rel` inside `root`, following symlinks as if `root` were `/` (so a link in the
/// image cannot make us read a host file). A missing file is `None`.
fn read_scoped(root: &Path, rel: &str) -> Result<Option<String>> {
    let Some(path) = scoped_path(root, rel)? else {
        return Ok(None);
    };
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn scoped_path(root: &Path, rel: &str) -> Result<Option<PathBuf>> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::io(
                        "resolve",
                        full,
                        io::Error::other("too many levels of symbolic links"),
                    ));
                }
                let target = fs::read_link(&full).map_err(|e| Error::io("readlink", &full, e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let parts: Vec<String> = target
                    .components()
                    .filter_map(|p| match p {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".to_string()),
                        _ => None,
                    })
                    .collect();
                pending.extend(parts.into_iter().rev());
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", full, e)),
        }
    }
    Ok(Some(root.join(resolved)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn image(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            entrypoint: ep.map(v),
            cmd: cmd.map(v),
            ..Default::default()
        }
    }

    fn args(
        img: &ContainerConfig,
        ep: Option<&[&str]>,
        cmd: Option<&[&str]>,
    ) -> Result<Vec<String>> {
        process_args(
            img,
            &ProcessOverrides {
                entrypoint: ep.map(v),
                cmd: cmd.map(v),
                ..Default::default()
            },
        )
    }

    #[test]
    fn entrypoint_and_cmd_rules() {
        let img = image(Some(&["/entry", "-x"]), Some(&["default"]));
        assert_eq!(
            args(&img, None, None).unwrap(),
            v(&["/entry", "-x", "default"])
        );
        assert_eq!(
            args(&img, None, Some(&["mine"])).unwrap(),
            v(&["/entry", "-x", "mine"])
        );
        // An empty command keeps the image's.
        assert_eq!(
            args(&img, None, Some(&[])).unwrap(),
            v(&["/entry", "-x", "default"])
        );
        // Overriding the entrypoint drops the image's Cmd.
        assert_eq!(args(&img, Some(&["/other"]), None).unwrap(), v(&["/other"]));
        assert_eq!(
            args(&img, Some(&["/other"]), Some(&["a"])).unwrap(),
            v(&["/other", "a"])
        );
        // --entrypoint "" resets it; the user's args run, the image's Cmd does not.
        assert_eq!(
            args(&img, Some(&[""]), Some(&["echo", "hi"])).unwrap(),
            v(&["echo", "hi"])
        );
        assert!(matches!(
            args(&img, Some(&[""]), None),
            Err(Error::NoCommand)
        ));
        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(args(&cmd_only, None, None).unwrap(), v(&["sh"]));
        assert_eq!(
            args(&cmd_only, None, Some(&["ls", "-l"])).unwrap(),
            v(&["ls", "-l"])
        );
        assert!(matches!(
            args(&image(None, None), None, None),
            Err(Error::NoCommand)
        ));
    }

    #[test]
    fn env_merge() {
        let img = v(&["PATH=/bin", "A=1", "B=2"]);
        assert_eq!(
            merge_env(&img, &v(&["A=x", "C=3", "B"])),
            v(&["PATH=/bin", "A=x", "C=3"])
        );
    }

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nbob:x:1000:\naudio:x:29:bob,www\nvideo:x:44:bob\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn users_resolve_against_rootfs() {
        let t = rootfs();
        let r = |s: &str| resolve_user(s, t.path());
        let root = r("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let bob = r("bob").unwrap();
        assert_eq!((bob.uid, bob.gid), (1000, 1000));
        assert_eq!(bob.additional_gids, vec![29, 44]);
        assert_eq!(bob.home, "/home/bob");
        assert_eq!(r("1000").unwrap().home, "/home/bob");
        let x = r("4242:4343").unwrap();
        assert_eq!((x.uid, x.gid, x.home.as_str()), (4242, 4343, "/"));
        assert_eq!(r("4242").unwrap().gid, 0);
        let w = r("www:audio").unwrap();
        assert_eq!((w.uid, w.gid), (33, 29));
        assert_eq!(r("33:video").unwrap().gid, 44);
        assert!(matches!(r("nobody"), Err(Error::UserNotFound(_))));
        assert!(matches!(r("bob:nogroup"), Err(Error::UserNotFound(_))));
    }

    #[test]
    fn passwd_symlink_stays_inside_rootfs() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::create_dir_all(t.path().join("data")).unwrap();
        fs::write(t.path().join("data/pw"), "zed:x:7:8::/z:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/data/pw", t.path().join("etc/passwd")).unwrap();
        // Climbing above the root stops at the root: this is <rootfs>/data/gr, not a host file.
        fs::write(t.path().join("data/gr"), "zz:x:99:zed\n").unwrap();
        std::os::unix::fs::symlink("../../../../data/gr", t.path().join("etc/group")).unwrap();
        let z = resolve_user("zed", t.path()).unwrap();
        assert_eq!((z.uid, z.gid, z.additional_gids.clone()), (7, 8, vec![99]));
        std::os::unix::fs::symlink("loop", t.path().join("etc/loop")).unwrap();
        assert!(read_scoped(t.path(), "etc/loop").is_err());
    }

    #[test]
    fn spec_is_filled() {
        let t = rootfs();
        let cfg = ImageConfig {
            config: Some(ContainerConfig {
                env: Some(v(&["FOO=bar"])),
                cmd: Some(v(&["sh"])),
                working_dir: Some("/srv".to_string()),
                user: Some("bob".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut spec = Spec::default();
        let o = ProcessOverrides {
            env: v(&["X=1"]),
            hostname: Some("box".to_string()),
            tty: true,
            ..Default::default()
        };
        apply_image_config(&mut spec, &cfg, &o, t.path()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &v(&["sh"]));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &v(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box",
                "TERM=xterm",
                "FOO=bar",
                "X=1",
                "HOME=/home/bob"
            ])
        );
        assert_eq!(p.cwd(), &PathBuf::from("/srv"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![29, 44]);
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("box"));
        let o = ProcessOverrides {
            user: Some("0".to_string()),
            working_dir: Some("/tmp".to_string()),
            ..Default::default()
        };
        apply_image_config(&mut spec, &cfg, &o, t.path()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.cwd().to_str()), (0, Some("/tmp")));
    }
}
