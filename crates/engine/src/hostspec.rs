//! The host side of a container (Docker's HostConfig) into its runtime spec: mounts,
//! /dev/shm, devices, sysctls, rlimits, cgroup limits and the network mode. `prepare`
//! checks everything before create makes anything; `apply` edits the spec.

use oci_spec::runtime::Spec;

use crate::containers::{ContainerSpec, Layout};
use crate::error::{Error, Result};
use crate::hostconfig::HostConfig;
use crate::networking::Joined;
use crate::resources::{self, Resources};
use crate::{devices, limits, mounts, netmode};
use std::net::IpAddr;

/// Docker's defaults filled in (so inspect shows them) and every option checked, in
/// Docker's words.
pub fn prepare(spec: &mut ContainerSpec) -> Result<()> {
    let h = &mut spec.host;
    if h.shm_size < 0 {
        return Err(Error::InvalidInput(
            "SHM size can not be less than 0".into(),
        ));
    }
    if h.shm_size == 0 {
        h.shm_size = mounts::DEFAULT_SHM_SIZE;
    }
    let mut r = Resources::of(h);
    resources::normalize(&mut r);
    resources::verify(&r, false)?;
    r.store(h);
    mounts::parse(h)?;
    devices::check(h)?;
    limits::check(h)?;
    netmode::prepare(spec)
}

/// What Docker would warn about in this HostConfig.
pub fn warnings(host: &HostConfig) -> Vec<String> {
    let mut out = resources::verify(&Resources::of(host), false).unwrap_or_default();
    let publishes =
        host.publish_all_ports || host.port_bindings.as_ref().is_some_and(|b| !b.is_empty());
    if host.network_mode == "host" && publishes {
        out.push("Published ports are discarded when using host network mode".into());
    }
    out
}

/// Put the host settings into the container's runtime spec (the container's
/// directory exists: host-network files go there).
pub fn apply(
    layout: &Layout,
    id: &str,
    spec: &ContainerSpec,
    joined: &Joined,
    host_gateway: Option<IpAddr>,
    oci: &mut Spec,
) -> Result<()> {
    let h = &spec.host;
    let user_mounts =
        mounts::resolve_volumes(mounts::parse(h)?, &spec.volume_mounts, &layout.root)?;
    mounts::create_sources(&user_mounts)?;
    let extra = netmode::apply(layout, id, spec, joined, host_gateway, oci)?;
    mounts::apply(&user_mounts, h.shm_size, extra, oci)?;
    devices::apply(h, oci)?;
    limits::apply(h, oci)?;
    set_resources(h, oci);
    Ok(())
}

/// The cgroup limits in `oci` made those of `host` (device rules kept).
pub fn set_resources(host: &HostConfig, oci: &mut Spec) {
    if let Some(linux) = oci.linux_mut() {
        let mut r = linux.resources().clone().unwrap_or_default();
        resources::linux_resources(&Resources::of(host), &mut r);
        linux.set_resources(Some(r));
    }
}

/// Before every start: what Docker re-makes each time (missing `-v` sources).
pub fn before_start(spec: &ContainerSpec) -> Result<()> {
    mounts::create_sources(&mounts::parse_lenient(&spec.host))
}
