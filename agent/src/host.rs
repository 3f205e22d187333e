//! What this host is: its stable identity, the resources it offers to tasks (after the
//! operator's reservations) and its attributes.

use std::collections::BTreeMap;
use std::path::Path;

use berth_proto::v1::Resources;

/// The mode of the data dir: the agent's alone (it holds task definitions with their secrets,
/// container logs and task volumes).
pub(crate) const DATA_DIR_MODE: u32 = 0o700;
/// The mode of the agent's own files in it (the store, the identity).
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates the data dir if needed and makes it the agent's alone, whatever mode it had.
pub(crate) fn secure_data_dir(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data_dir)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
}

/// The host's identity, kept in the data dir so it survives restarts (and is unique per data
/// dir, so several agents on one test machine stay distinct).
pub(crate) fn identity(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("instance-identity");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            use std::os::unix::fs::PermissionsExt;
            // One written by an older agent may be readable by others.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
            return Ok(s.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = data_dir.join("instance-identity.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        file.write_all(format!("{id}\n").as_bytes())?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// CPU (ECS units, 1024 per core, and millicores), memory (MiB) and reserved ports offered to
/// tasks: the host's, less what the operator reserved.
pub(crate) fn resources(
    reserved_cpu: u64,
    reserved_memory_mib: u64,
    reserved_ports: &[u16],
) -> Result<Resources, String> {
    let mut sys =
        sysinfo::System::new().map_err(|e| format!("cannot read the host's memory: {e}"))?;
    sys.refresh_memory();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let memory_mib = sys.total_memory() / (1024 * 1024);
    Ok(Resources {
        cpu: (cores * 1024).saturating_sub(reserved_cpu),
        memory_mib: memory_mib.saturating_sub(reserved_memory_mib),
        cpu_millicores: (cores * 1000).saturating_sub(reserved_cpu * 1000 / 1024),
        cores: u32::try_from(cores).unwrap_or(u32::MAX),
        ports: reserved_ports.iter().map(|p| u32::from(*p)).collect(),
        udp_ports: Vec::new(),
    })
}

/// The attributes every agent reports, then the operator's (which may add but not replace).
pub(crate) fn attributes(
    cgroup_version: &str,
    containerd_version: &str,
    operator: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut out = BTreeMap::from([
        ("berth.os-type".to_owned(), std::env::consts::OS.to_owned()),
        ("berth.cpu-architecture".to_owned(), arch.to_owned()),
        (
            "berth.kernel-version".to_owned(),
            sysinfo::System::kernel_version().unwrap_or_default(),
        ),
        ("berth.cgroup-version".to_owned(), cgroup_version.to_owned()),
        (
            "berth.containerd-version".to_owned(),
            containerd_version.to_owned(),
        ),
        (
            "berth.agent-version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("berth.network.none".to_owned(), "true".to_owned()),
        ("berth.network.host".to_owned(), "true".to_owned()),
        ("berth.network.bridge".to_owned(), "true".to_owned()),
        ("berth.network.awsvpc".to_owned(), "true".to_owned()),
    ]);
    for (k, v) in operator {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = identity(dir.path()).unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(identity(dir.path()).unwrap(), a);
    }

    #[test]
    fn reservations_are_subtracted() {
        let r = resources(512, 256, &[22]).unwrap();
        assert_eq!(r.cpu, u64::from(r.cores) * 1024 - 512);
        assert_eq!(r.ports, [22]);
    }

    #[test]
    fn operator_attributes_cannot_replace_the_agents() {
        let op = BTreeMap::from([
            ("berth.os-type".to_owned(), "windows".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]);
        let a = attributes("v1", "1.6.20", &op);
        assert_eq!(a["berth.os-type"], "linux");
        assert_eq!(a["zone"], "a");
    }
}
