//! The network flags of `run` and `create` parsed as the docker CLI parses them:
//! `-p` specs (go-connections' `nat` package), `--expose`, and the validators of
//! `--dns`, `--dns-search`, `--add-host` and `--mac-address`, with docker's messages.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

/// `ExposedPorts` and `PortBindings` keyed by "PORT/PROTO", as docker builds them.
#[derive(Debug, Default)]
pub struct Ports {
    pub exposed: BTreeMap<String, Value>,
    pub bindings: BTreeMap<String, Vec<Value>>,
}

/// Go's `strconv.ParseUint(s, 10, 16)`, with its error text.
pub fn parse_u16_text(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= u64::from(u16::MAX) => Ok(n),
        _ => Err(format!(
            "strconv.ParseUint: parsing {s:?}: value out of range"
        )),
    }
}

/// `nat.ParsePortRange`: "80" or "8000-8010" (only the first two parts of a dashed
/// spec count, as in docker).
pub fn parse_port_range(ports: &str) -> Result<(u64, u64), String> {
    if ports.is_empty() {
        return Err("empty string specified for ports".into());
    }
    if !ports.contains('-') {
        let n = parse_u16_text(ports)?;
        return Ok((n, n));
    }
    let mut parts = ports.split('-');
    let start = parse_u16_text(parts.next().unwrap_or_default())?;
    let end = parse_u16_text(parts.next().unwrap_or_default())?;
    if end < start {
        return Err(format!("invalid range specified for port: {ports}"));
    }
    Ok((start, end))
}

/// `nat.SplitProtoPort`: "80/udp" → ("udp", "80"); no protocol means tcp.
pub fn split_proto_port(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return (String::new(), String::new());
    }
    if parts.len() == 1 || parts[1].is_empty() {
        return ("tcp".into(), parts[0].into());
    }
    (parts[1].into(), parts[0].into())
}

/// Go's `net.SplitHostPort` for the host part only, with its errors.
fn split_host(hostport: &str) -> Result<String, String> {
    let err = |why: &str| Err(format!("address {hostport}: {why}"));
    let Some(last_colon) = hostport.rfind(':') else {
        return err("missing port in address");
    };
    let Some(end) = hostport.find(']') else {
        return err("missing ']' in address");
    };
    if end + 1 == hostport.len() {
        return err("missing port in address");
    }
    if end + 1 != last_colon {
        if hostport.as_bytes()[end + 1] == b':' {
            return err("too many colons in address");
        }
        return err("missing port in address");
    }
    if hostport[1..].contains('[') {
        return err("unexpected '[' in address");
    }
    if hostport[end + 1..].contains(']') {
        return err("unexpected ']' in address");
    }
    Ok(hostport[1..end].to_string())
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (or the long `target=…,published=…`
/// form), merged into `ports` as `nat.ParsePortSpecs` does.
pub fn add_publish(ports: &mut Ports, raw: &str) -> Result<(), String> {
    let standard = if raw.contains('=') {
        long_publish(raw)?
    } else {
        raw.to_string()
    };
    let raw = standard.as_str();
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    let (ip, host_port) = match n {
        1 => (String::new(), ""),
        2 => (String::new(), parts[0]),
        _ => (parts[..n - 2].join(":"), parts[n - 2]),
    };
    let (proto, container) = split_proto_port(container);
    let ip = if ip.starts_with('[') {
        split_host(&format!("{ip}:")).map_err(|e| format!("invalid IP address {ip}: {e}"))?
    } else {
        ip
    };
    if !ip.is_empty() && parse_go_ip(&ip).is_none() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) =
        parse_port_range(&container).map_err(|_| format!("invalid containerPort: {container}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        parse_port_range(host_port).map_err(|_| format!("invalid hostPort: {host_port}"))?
    };
    if !host_port.is_empty() && end - start != host_end - host_start && end != start {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host_port}"
        ));
    }
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let count = end - start + 1;
    for i in 0..count {
        let port = format!("{}/{proto}", start + i);
        let mut host = String::new();
        if !host_port.is_empty() {
            host = (host_start + i).to_string();
            // One container port and a host range: the daemon picks in the range.
            if count == 1 && host_start != host_end {
                host = format!("{host}-{host_end}");
            }
        }
        ports
            .exposed
            .entry(port.clone())
            .or_insert_with(|| json!({}));
        ports
            .bindings
            .entry(port)
            .or_default()
            .push(json!({ "HostIp": ip, "HostPort": host }));
    }
    Ok(())
}

/// The long form of `-p` (`published=8080,target=80,protocol=udp`) in the short one.
fn long_publish(raw: &str) -> Result<String, String> {
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([("protocol", "tcp")]);
    for param in raw.split(',') {
        match param.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k, v);
            }
            _ => {
                return Err(format!(
                    "invalid publish opts format (should be name=value but got '{param}')"
                ))
            }
        }
    }
    let get = |k: &str| params.get(k).copied().unwrap_or_default();
    Ok(format!(
        "{}:{}/{}",
        get("published"),
        get("target"),
        get("protocol")
    ))
}

/// `--expose PORT[/PROTO]` or `--expose START-END[/PROTO]`, added to `ports`.
pub fn add_expose(ports: &mut Ports, raw: &str) -> Result<(), String> {
    if raw.contains(':') {
        return Err(format!("invalid port format for --expose: {raw}"));
    }
    let (proto, port) = split_proto_port(raw);
    let (start, end) = parse_port_range(&port)
        .map_err(|e| format!("invalid range format for --expose: {raw}, error: {e}"))?;
    for p in start..=end {
        ports
            .exposed
            .entry(format!("{p}/{proto}"))
            .or_insert_with(|| json!({}));
    }
    Ok(())
}

/// Go's `net.ParseIP`: dotted IPv4 or any IPv6 form, no zone.
fn parse_go_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Go's `net.IP.String()`: an IPv4-mapped IPv6 address prints as IPv4.
fn go_ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `--dns`: an address, sent in its canonical form.
pub fn parse_dns(s: &str) -> Result<String, String> {
    parse_go_ip(s.trim())
        .map(go_ip_string)
        .ok_or_else(|| format!("IP address is not correctly formatted: {s}"))
}

/// `--dns-search`: a domain name, or "." for none.
pub fn parse_dns_search(s: &str) -> Result<String, String> {
    let val = s.trim_matches(' ');
    if val == "." {
        return Ok(val.to_string());
    }
    let bad = || format!("{val} is not a valid domain");
    if !val.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let name = val.strip_prefix(':').unwrap_or(val);
    let labels: Vec<&str> = name.split('.').collect();
    let (last, rest) = labels.split_last().ok_or_else(bad)?;
    let inner_ok = |l: &str, first_alpha: bool| {
        let b = l.as_bytes();
        let Some((&first, tail)) = b.split_first() else {
            return false;
        };
        let first_ok = if first_alpha {
            first.is_ascii_alphabetic()
        } else {
            first.is_ascii_alphanumeric()
        };
        first_ok
            && tail.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && tail.last().is_none_or(|c| c.is_ascii_alphanumeric())
    };
    if rest.iter().all(|l| inner_ok(l, false)) && inner_ok(last, true) && val.len() < 255 {
        Ok(val.to_string())
    } else {
        Err(bad())
    }
}

/// `--add-host NAME:IP` (or `NAME=IP`, `NAME:[IPv6]`, `NAME:host-gateway`), sent as
/// `NAME:IP`.
pub fn parse_extra_host(val: &str) -> Result<String, String> {
    let (k, v) = match val.split_once('=') {
        Some(kv) => kv,
        None => val.split_once(':').unwrap_or((val, "")),
    };
    let separated = val.contains('=') || val.contains(':');
    if !separated || k.is_empty() || k.contains(':') {
        return Err(format!("bad format for add-host: {val:?}"));
    }
    let mut v = v;
    if v != "host-gateway" {
        if v.len() > 2 && v.starts_with('[') && v.ends_with(']') {
            v = &v[1..v.len() - 1];
        }
        if parse_go_ip(v.trim()).is_none() {
            return Err(format!("invalid IP address in add-host: {v:?}"));
        }
    }
    Ok(format!("{k}:{v}"))
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets, as `xx:xx…`, `xx-xx…` or `xxxx.xxxx…`.
pub fn valid_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let octets = if s.len() > 2 && (s.as_bytes()[2] == b':' || s.as_bytes()[2] == b'-') {
        let sep = s.as_bytes()[2] as char;
        let parts: Vec<&str> = s.split(sep).collect();
        if !parts.iter().all(|p| hex(p, 2)) {
            return false;
        }
        parts.len()
    } else if s.len() > 4 && s.as_bytes()[4] == b'.' {
        let parts: Vec<&str> = s.split('.').collect();
        if !parts.iter().all(|p| hex(p, 4)) {
            return false;
        }
        parts.len() * 2
    } else {
        return false;
    };
    matches!(octets, 6 | 8 | 20)
}

/// `sortorder.NaturalLess`: digit runs compare as numbers ("abc2" < "abc12").
pub fn natural_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return da;
        }
        if !da {
            if a[i] != b[j] {
                return a[i] < b[j];
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz_a, nz_b) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if i - nz_a != j - nz_b {
            return i - nz_a < j - nz_b;
        }
        if a[nz_a..i] != b[nz_b..j] {
            return a[nz_a..i] < b[nz_b..j];
        }
        if nz_a != nz_b {
            return nz_a < nz_b;
        }
    }
    a.len() < b.len()
}

/// Go's `net.JoinHostPort`.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Result<Ports, String> {
        let mut p = Ports::default();
        add_publish(&mut p, spec)?;
        Ok(p)
    }

    #[test]
    fn publish_specs_as_docker_reads_them() {
        let p = one("127.0.0.1:9000-9001:90-91/UDP").unwrap();
        assert_eq!(
            p.bindings["91/udp"],
            vec![json!({"HostIp": "127.0.0.1", "HostPort": "9001"})]
        );
        let p = one("8000-8010:80").unwrap();
        assert_eq!(p.bindings["80/tcp"][0]["HostPort"], "8000-8010");
        let p = one("[::1]:70:70").unwrap();
        assert_eq!(p.bindings["70/tcp"][0]["HostIp"], "::1");
        let p = one("1.2.3.4::80").unwrap();
        assert_eq!(p.bindings["80/tcp"][0]["HostPort"], "");
        assert_eq!(
            one("80:70-71").unwrap_err(),
            "invalid ranges specified for container and host Ports: 70-71 and 80"
        );
        assert_eq!(
            one("[::1:80:80").unwrap_err(),
            "invalid IP address [::1: address [::1:: missing ']' in address"
        );
        assert_eq!(one("80:").unwrap_err(), "no port specified: 80:<empty>");
        assert_eq!(one("99999").unwrap_err(), "invalid containerPort: 99999");
        assert_eq!(one("+80").unwrap_err(), "invalid containerPort: +80");
        assert!(one("1-2-3").unwrap().exposed.contains_key("2/tcp"));
    }

    #[test]
    fn validators_and_sorting() {
        assert_eq!(parse_dns("::ffff:1.2.3.4").unwrap(), "1.2.3.4");
        assert!(parse_dns("1.2").is_err());
        assert!(parse_dns_search("ex.com").is_ok());
        assert!(parse_dns_search("-bad").is_err());
        assert!(parse_dns_search("1.2").is_err());
        assert_eq!(parse_extra_host("h=[::1]").unwrap(), "h:::1");
        assert_eq!(parse_extra_host("h:::1").unwrap(), "h:::1");
        assert!(parse_extra_host("h").is_err());
        assert!(valid_mac("02:42:ac:11:00:02"));
        assert!(valid_mac("0242.ac11.0002"));
        assert!(!valid_mac("02:42:ac:11:00"));
        assert!(natural_less("n2", "n10"));
        assert!(natural_less("80/tcp -> x", "443/tcp -> x"));
        assert!(!natural_less("b", "a"));
    }
}
