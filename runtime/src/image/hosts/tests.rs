//! hosts.toml and certs.d parsing, on files as containerd's documentation and real hosts
//! write them.

use std::path::Path;

use super::*;

const FILE: &str = "/etc/berth/certs.d/docker.io/hosts.toml";

fn parse(text: &str) -> Result<Hosts, HostsError> {
    parse_hosts_toml(Path::new(FILE), text, "https://registry-1.docker.io")
}

#[test]
fn a_docker_hub_pull_through_mirror_then_the_upstream() {
    // containerd's docs/hosts.md: a mirror for Docker Hub.
    let hosts = parse(
        r#"
server = "https://registry-1.docker.io"

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]

[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"
"#,
    )
    .unwrap();
    let names: Vec<(&str, &str, bool)> = hosts
        .endpoints
        .iter()
        .map(|e| (e.host.as_str(), e.base.as_str(), e.mirror))
        .collect();
    assert_eq!(
        names,
        [
            (
                "public-mirror.example.com",
                "https://public-mirror.example.com/v2",
                true
            ),
            (
                "docker-mirror.internal",
                "https://docker-mirror.internal/v2",
                true
            ),
            (
                "registry-1.docker.io",
                "https://registry-1.docker.io/v2",
                false
            ),
        ]
    );
    assert_eq!(
        hosts.endpoints[0].capabilities,
        Capabilities {
            pull: true,
            resolve: false
        }
    );
    // Relative paths are the host directory's.
    assert_eq!(
        hosts.endpoints[1].tls.ca,
        [Path::new("/etc/berth/certs.d/docker.io/docker-mirror.crt")]
    );
    // Tags resolve at the hosts that may resolve, content comes from all of them.
    let resolvers: Vec<&str> = hosts.able(true).map(|e| e.host.as_str()).collect();
    assert_eq!(
        resolvers,
        ["docker-mirror.internal", "registry-1.docker.io"]
    );
    assert_eq!(hosts.able(false).count(), 3);
}

#[test]
fn a_harbor_proxy_cache_with_override_path_headers_and_client_certificates() {
    let hosts = parse(
        r#"
server = "https://docker.io"

[host."https://harbor.corp.example/v2/proxy-docker.io"]
  capabilities = ["pull", "resolve"]
  override_path = true
  skip_verify = true
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"], "/etc/certs/both.pem"]
  [host."https://harbor.corp.example/v2/proxy-docker.io".header]
    x-custom-1 = "custom header"
    x-custom-2 = ["value 1", "value 2"]
"#,
    )
    .unwrap();
    let mirror = &hosts.endpoints[0];
    assert_eq!(
        mirror.base,
        "https://harbor.corp.example/v2/proxy-docker.io"
    );
    assert!(mirror.tls.skip_verify);
    assert_eq!(
        mirror.tls.client,
        [
            (
                PathBuf::from("/etc/certs/client.cert"),
                PathBuf::from("/etc/certs/client.key")
            ),
            (
                PathBuf::from("/etc/certs/both.pem"),
                PathBuf::from("/etc/certs/both.pem")
            ),
        ]
    );
    assert_eq!(
        mirror.headers,
        [
            ("x-custom-1".to_owned(), "custom header".to_owned()),
            ("x-custom-2".to_owned(), "value 1".to_owned()),
            ("x-custom-2".to_owned(), "value 2".to_owned()),
        ]
    );
    // skip_verify is the mirror's alone.
    assert!(!hosts.endpoints[1].tls.skip_verify);
    assert_eq!(hosts.endpoints[1].base, "https://docker.io/v2");
}

#[test]
fn paths_without_override_get_v2_appended_once() {
    let hosts = parse(
        r#"
[host."http://127.0.0.1:5001"]
[host."https://mirror.example/prefix"]
[host."https://mirror.example/already/v2"]
[host."mirror-without-scheme.example:8443"]
"#,
    )
    .unwrap();
    let bases: Vec<&str> = hosts.endpoints.iter().map(|e| e.base.as_str()).collect();
    assert_eq!(
        bases,
        [
            "http://127.0.0.1:5001/v2",
            "https://mirror.example/prefix/v2",
            "https://mirror.example/already/v2",
            "https://mirror-without-scheme.example:8443/v2",
            // No server: the default upstream.
            "https://registry-1.docker.io/v2",
        ]
    );
}

#[test]
fn top_level_keys_secure_the_upstream() {
    // containerd's docs: a registry with its own CA and client certificate, no mirror.
    let hosts = parse(
        r#"
server = "https://registry.example.com:5000"
ca = ["/etc/certs/ca.crt", "extra.pem"]
client = "/etc/certs/client.pem"
capabilities = ["pull", "resolve"]
"#,
    )
    .unwrap();
    let [upstream] = hosts.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    assert_eq!(upstream.host, "registry.example.com:5000");
    assert!(!upstream.mirror);
    assert_eq!(
        upstream.tls.ca,
        [
            PathBuf::from("/etc/certs/ca.crt"),
            PathBuf::from("/etc/berth/certs.d/docker.io/extra.pem")
        ]
    );
    assert_eq!(upstream.tls.client.len(), 1);
}

#[test]
fn bad_files_name_the_file_and_the_key() {
    let cases = [
        ("server = 5", "server must be a URL string"),
        ("serve = \"https://x\"", "unknown key \"serve\""),
        (
            "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fetch\"]",
            "host.\"https://m\": capabilities has \"fetch\"",
        ),
        (
            "[host.\"https://m\"]\nskip_verify = \"yes\"",
            "host.\"https://m\": skip_verify must be true or false",
        ),
        (
            "[host.\"https://m\"]\nca = 3",
            "host.\"https://m\": ca must be a path or a list of paths",
        ),
        (
            "[host.\"https://m\"]\nclient = [[\"a\"]]",
            "host.\"https://m\": client must be a path",
        ),
        (
            "[host.\"https://m\"]\nmirror = true",
            "host.\"https://m\": mirror is unknown",
        ),
        ("[host.\"ftp://m\"]", "must be an http:// or https:// URL"),
        (
            "[host.\"https://m\".header]\n\"bad header\" = \"v\"",
            "is no HTTP header name",
        ),
        ("server = \"https://x\"\nserver = \"y\"", "duplicate key"),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.path, Path::new(FILE), "{text}");
        assert!(err.reason.contains(want), "{text}: {}", err.reason);
        assert!(
            err.to_string()
                .starts_with(&format!("bad registry host configuration {FILE}: "))
        );
    }
}

#[test]
fn a_certs_dir_gives_docker_files_to_the_upstream() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("127.0.0.1:5443");
    std::fs::create_dir(&dir).unwrap();
    for name in ["ca.crt", "other.crt", "client.cert", "client.key", "README"] {
        std::fs::write(dir.join(name), "x").unwrap();
    }
    let hosts = load(Some(root.path()), "127.0.0.1:5443", &[]).unwrap();
    let [upstream] = hosts.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    assert_eq!(upstream.base, "https://127.0.0.1:5443/v2");
    assert_eq!(upstream.tls.ca, [dir.join("ca.crt"), dir.join("other.crt")]);
    assert_eq!(
        upstream.tls.client,
        [(dir.join("client.cert"), dir.join("client.key"))]
    );

    // With a hosts.toml, its mirror comes first and the upstream keeps Docker's files.
    std::fs::write(
        dir.join("hosts.toml"),
        "[host.\"http://127.0.0.1:5001\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
    )
    .unwrap();
    let hosts = load(Some(root.path()), "127.0.0.1:5443", &[]).unwrap();
    assert_eq!(hosts.endpoints.len(), 2);
    assert!(hosts.endpoints[0].tls.ca.is_empty());
    assert_eq!(hosts.endpoints[1].tls.ca.len(), 2);

    // A key without its certificate is named.
    std::fs::remove_file(dir.join("client.cert")).unwrap();
    let err = load(Some(root.path()), "127.0.0.1:5443", &[]).unwrap_err();
    assert_eq!(err.path, dir.join("client.key"));

    // Other registries: the upstream alone, plain HTTP only when listed as insecure.
    let hosts = load(
        Some(root.path()),
        "127.0.0.1:6000",
        &["127.0.0.1:6000".to_owned()],
    )
    .unwrap();
    assert_eq!(hosts.endpoints[0].base, "http://127.0.0.1:6000/v2");
    let hosts = load(Some(&root.path().join("missing")), "docker.io", &[]).unwrap();
    assert_eq!(hosts.endpoints[0].base, "https://registry-1.docker.io/v2");
}

#[test]
fn the_default_directory_serves_registries_without_their_own() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("_default")).unwrap();
    std::fs::write(
        root.path().join("_default/hosts.toml"),
        "[host.\"https://mirror.corp\"]\ncapabilities = [\"pull\"]\n",
    )
    .unwrap();
    let hosts = load(Some(root.path()), "quay.io", &[]).unwrap();
    let bases: Vec<&str> = hosts.endpoints.iter().map(|e| e.base.as_str()).collect();
    assert_eq!(bases, ["https://mirror.corp/v2", "https://quay.io/v2"]);
}
