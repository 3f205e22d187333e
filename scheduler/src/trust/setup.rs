//! The scheduler's trust at start: the CA (created or given), the server certificate's names,
//! and at first start the admin's berthctl config, `<data dir>/berthctl.toml` (0600: endpoint,
//! CA and an admin API token), as kubeadm writes admin.conf.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::pki::write_private;
use super::{ClusterCa, PkiError, Role};
use crate::store::{Store, StoreError};

/// The admin's berthctl config inside the data directory.
pub const ADMIN_CONFIG_FILE: &str = "berthctl.toml";

/// Why the admin's config could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The names and addresses the server certificate covers: the listen address (or, for an
/// unspecified one, the loopback addresses and the host's name), `localhost`, and `extra`.
pub fn server_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if listen.ip().is_unspecified() {
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            if !host.is_empty() {
                names.push(host.to_owned());
            }
        }
    } else {
        names.push(listen.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    names.dedup();
    names
}

/// The URL a client on this host reaches the scheduler at.
pub fn local_endpoint(listen: SocketAddr, tls: bool) -> String {
    let ip = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, listen.port()))
}

/// At first start (no API token yet), creates an admin token and writes the berthctl config
/// with it, the endpoint and the CA; returns the file when it wrote one. With `--insecure`
/// (no CA), the config holds the endpoint alone and no token is made.
pub fn write_admin_config(
    data_dir: &Path,
    store: &Store,
    endpoint: &str,
    ca: Option<&ClusterCa>,
) -> Result<Option<PathBuf>, SetupError> {
    let path = data_dir.join(ADMIN_CONFIG_FILE);
    let mut text = format!(
        "# berthctl's config for this scheduler's admin (berthctl --config {})\nendpoint = {}\n",
        path.display(),
        toml_string(endpoint)
    );
    match ca {
        None => {
            if path.exists() {
                return Ok(None);
            }
        }
        Some(ca) => {
            if store.has_api_tokens()? && path.exists() {
                return Ok(None);
            }
            let (token, info) =
                store.create_api_token(Role::Admin, None, None, SystemTime::now())?;
            text.push_str(&format!(
                "ca = {}\n# admin API token {}\ntoken = {}\n",
                toml_string(ca.cert_pem()),
                info.id,
                toml_string(&token)
            ));
        }
    }
    write_private(&path, text.as_bytes(), 0o600)?;
    Ok(Some(path))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_config_is_written_once_and_holds_a_working_admin_token() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ca = ClusterCa::create(SystemTime::now()).unwrap();
        let path = write_admin_config(dir.path(), &store, "https://127.0.0.1:7700", Some(&ca))
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let value: toml::Table = text.parse().unwrap();
        assert_eq!(value["endpoint"].as_str(), Some("https://127.0.0.1:7700"));
        assert_eq!(value["ca"].as_str(), Some(ca.cert_pem()));
        let token = value["token"].as_str().unwrap();
        let caller = store.authenticate(token, SystemTime::now()).unwrap();
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.cluster, None);
        assert_eq!(
            write_admin_config(dir.path(), &store, "https://x", Some(&ca)).unwrap(),
            None
        );
    }

    #[test]
    fn server_names_cover_the_listen_address_and_extras() {
        let names = server_names("10.0.0.5:7700".parse().unwrap(), &["berth.example".into()]);
        for n in ["localhost", "127.0.0.1", "10.0.0.5", "berth.example"] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert_eq!(
            local_endpoint("0.0.0.0:7700".parse().unwrap(), true),
            "https://127.0.0.1:7700"
        );
    }
}
