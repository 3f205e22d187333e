//! A task's resolv.conf, hosts and hostname files, written into its own directory (to be
//! bind-mounted read-only into its containers).

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::error::NetworkError;

/// DNS and host-name settings of a task (ECS `dnsServers`, `dnsSearchDomains`, `extraHosts`,
/// `hostname`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers, in order; none leaves resolv.conf without a `nameserver` line.
    pub servers: Vec<IpAddr>,
    pub search_domains: Vec<String>,
    /// Extra `/etc/hosts` entries: host name and address.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// The task's host name.
    pub hostname: String,
}

/// Where a task's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks every name; the first bad one is the error.
pub(crate) fn validate(dns: &DnsConfig) -> Result<(), NetworkError> {
    let bad = |what, value: &str, reason: &str| NetworkError::InvalidInput {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    const NAME_RULE: &str =
        "use dot-separated labels of letters, digits, '-' and '_', 63 characters at most each";
    if !valid_name(&dns.hostname) || dns.hostname.len() > 64 {
        return Err(bad("hostname", &dns.hostname, NAME_RULE));
    }
    for d in &dns.search_domains {
        if !valid_name(d) {
            return Err(bad("dns search domain", d, NAME_RULE));
        }
    }
    for (h, _) in &dns.extra_hosts {
        if !valid_name(h) {
            return Err(bad("extra host name", h, NAME_RULE));
        }
    }
    Ok(())
}

pub(crate) fn render_resolv_conf(dns: &DnsConfig) -> String {
    let mut s = String::new();
    for server in &dns.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.search_domains.is_empty() {
        s.push_str(&format!("search {}\n", dns.search_domains.join(" ")));
    }
    s
}

pub(crate) fn render_hosts(dns: &DnsConfig, address: Ipv4Addr) -> String {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{}\n",
        dns.hostname
    );
    for (name, ip) in &dns.extra_hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

/// Writes the three files into `dir` (created), each atomically (renamed into place).
pub(crate) fn write(
    dir: &Path,
    dns: &DnsConfig,
    address: Ipv4Addr,
) -> Result<TaskFiles, NetworkError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| NetworkError::Io { what, path, error }
    };
    fs::create_dir_all(dir).map_err(io("create the task's network files dir", dir))?;
    let files = TaskFiles {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    for (path, content) in [
        (&files.resolv_conf, render_resolv_conf(dns)),
        (&files.hosts, render_hosts(dns, address)),
        (&files.hostname, format!("{}\n", dns.hostname)),
    ] {
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        // No fsync: the files are rewritten by every setup, so a crash loses nothing.
        f.write_all(content.as_bytes()).map_err(io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into", path))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> DnsConfig {
        DnsConfig {
            servers: vec!["10.0.0.2".parse().unwrap(), "1.1.1.1".parse().unwrap()],
            search_domains: vec!["svc.local".to_owned(), "local".to_owned()],
            extra_hosts: vec![("db.internal".to_owned(), "10.1.2.3".parse().unwrap())],
            hostname: "web-1".to_owned(),
        }
    }

    #[test]
    fn renders_resolv_conf_and_hosts() {
        assert_eq!(
            render_resolv_conf(&dns()),
            "nameserver 10.0.0.2\nnameserver 1.1.1.1\nsearch svc.local local\n"
        );
        let hosts = render_hosts(&dns(), Ipv4Addr::new(10, 213, 0, 2));
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.213.0.2\tweb-1\n"));
        assert!(hosts.ends_with("10.1.2.3\tdb.internal\n"));
    }

    #[test]
    fn refuses_bad_names() {
        validate(&dns()).unwrap();
        for (mut d, what) in [
            (dns(), "hostname"),
            (dns(), "dns search domain"),
            (dns(), "extra host name"),
        ] {
            match what {
                "hostname" => d.hostname = "bad name".to_owned(),
                "dns search domain" => d.search_domains.push("a..b".to_owned()),
                _ => d
                    .extra_hosts
                    .push(("-x".to_owned(), "10.0.0.1".parse().unwrap())),
            }
            let e = validate(&d).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {what}")), "{e}");
        }
    }

    #[test]
    fn writes_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(&dir.path().join("t"), &dns(), Ipv4Addr::new(10, 213, 0, 2)).unwrap();
        assert_eq!(fs::read_to_string(&files.hostname).unwrap(), "web-1\n");
        assert!(
            fs::read_to_string(&files.resolv_conf)
                .unwrap()
                .contains("nameserver 10.0.0.2")
        );
        assert!(fs::read_to_string(&files.hosts).unwrap().contains("web-1"));
    }
}
