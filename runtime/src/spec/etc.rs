//! A container's own `/etc/hosts` and `/etc/resolv.conf` (ECS `extraHosts`, `dnsServers`,
//! `dnsSearchDomains`): their text, written by the container lifecycle and bind-mounted over
//! the image's files, and the bind mounts themselves.

use std::path::Path;

use oci_spec::runtime::Mount;

use crate::model::ContainerSpec;

/// Whether the container gets its own `/etc/hosts` (only when it asks for extra hosts; else the
/// image's file is left alone).
pub(crate) fn wants_hosts(spec: &ContainerSpec) -> bool {
    !spec.extra_hosts.is_empty()
}

/// Whether the container gets its own `/etc/resolv.conf`.
pub(crate) fn wants_resolv_conf(spec: &ContainerSpec) -> bool {
    !spec.dns_servers.is_empty() || !spec.dns_search_domains.is_empty()
}

/// Docker's `/etc/hosts`: loopback names, the container's host name on 127.0.1.1 when it has
/// one, then the extra entries in definition order.
pub(crate) fn hosts(spec: &ContainerSpec) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if let Some(hostname) = &spec.hostname {
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for entry in &spec.extra_hosts {
        text.push_str(&format!("{}\t{}\n", entry.ip_address, entry.hostname));
    }
    text
}

/// The host's resolv.conf with the definition's name servers and search domains in place of
/// the host's (each only when given); options and comments are kept, as Docker does.
pub(crate) fn resolv_conf(host: &str, spec: &ContainerSpec) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in host.lines() {
        let keyword = line.split_whitespace().next().unwrap_or_default();
        let replaced = match keyword {
            "nameserver" => !spec.dns_servers.is_empty(),
            "search" | "domain" => !spec.dns_search_domains.is_empty(),
            _ => false,
        };
        if !replaced {
            lines.push(line.to_owned());
        }
    }
    for server in &spec.dns_servers {
        lines.push(format!("nameserver {server}"));
    }
    if !spec.dns_search_domains.is_empty() {
        lines.push(format!("search {}", spec.dns_search_domains.join(" ")));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A writable bind mount of one file of the container's own (`rbind,rprivate`, as Docker's).
pub(crate) fn bind_file(source: &Path, destination: &str) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(destination.into());
    mount.set_typ(Some("bind".to_owned()));
    mount.set_source(Some(source.to_path_buf()));
    mount.set_options(Some(vec!["rbind".to_owned(), "rprivate".to_owned()]));
    mount
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostEntry;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            hostname: Some("web-1".into()),
            extra_hosts: vec![
                HostEntry {
                    hostname: "db.local".into(),
                    ip_address: "10.0.0.5".into(),
                },
                HostEntry {
                    hostname: "v6".into(),
                    ip_address: "fd00::5".into(),
                },
            ],
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn hosts_has_loopback_hostname_and_extra_entries() {
        let text = hosts(&spec());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "127.0.0.1\tlocalhost");
        assert_eq!(
            &lines[lines.len() - 3..],
            ["127.0.1.1\tweb-1", "10.0.0.5\tdb.local", "fd00::5\tv6"]
        );
        assert!(wants_hosts(&spec()));
        assert!(!wants_hosts(&ContainerSpec::default()));
    }

    #[test]
    fn resolv_conf_replaces_only_what_is_given() {
        let host = "# host file\nnameserver 192.0.2.1\nsearch corp.example\noptions ndots:2\n";
        let mut s = spec();
        assert!(!wants_resolv_conf(&s));
        s.dns_servers = vec!["10.0.0.2".into(), "10.0.0.3".into()];
        assert_eq!(
            resolv_conf(host, &s),
            "# host file\nsearch corp.example\noptions ndots:2\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
        );
        s.dns_servers.clear();
        s.dns_search_domains = vec!["a.example".into(), "b.example".into()];
        assert!(wants_resolv_conf(&s));
        assert_eq!(
            resolv_conf(host, &s),
            "# host file\nnameserver 192.0.2.1\noptions ndots:2\nsearch a.example b.example\n"
        );
    }

    #[test]
    fn bind_mount_of_a_file() {
        let m = bind_file(Path::new("/state/x/hosts"), "/etc/hosts");
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            serde_json::json!({"destination": "/etc/hosts", "type": "bind",
                               "source": "/state/x/hosts", "options": ["rbind", "rprivate"]})
        );
    }
}
