//! ECS `dockerSecurityOptions` `seccomp=<path>`: a Docker-format seccomp profile read from the
//! host when a task starts (like an environment file), so a bad or missing file stops the task
//! before anything is pulled, with a reason naming the file and what is wrong in it.

use std::path::Path;

use berth_runtime::SeccompProfile;

/// The profile's largest size: Docker's default profile is about 20 KiB.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Reads and checks the profile at `path` on the host.
pub async fn load(path: &str) -> Result<SeccompProfile, String> {
    let path = Path::new(path);
    let meta = tokio::fs::metadata(path).await.map_err(|e| {
        format!(
            "cannot read seccomp profile {} on the host: {e}",
            path.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "seccomp profile {} is not a file: give the path of a Docker seccomp profile (JSON)",
            path.display()
        ));
    }
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(format!(
            "seccomp profile {} is {} bytes, more than the {MAX_PROFILE_BYTES} a profile may have",
            path.display(),
            meta.len()
        ));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        format!(
            "cannot read seccomp profile {} on the host: {e}",
            path.display()
        )
    })?;
    SeccompProfile::parse(&text)
        .map_err(|e| format!("seccomp profile {} is not usable: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_profile_is_read_and_every_problem_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        assert!(load(&good.to_string_lossy()).await.is_ok());

        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "DENY"}]}"#,
        )
        .unwrap();
        let err = load(&bad.to_string_lossy()).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "seccomp profile {} is not usable: syscalls[0].action: `DENY` is not a seccomp action",
                bad.display()
            )),
            "{err}"
        );

        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\n  \"defaultAction\": \n").unwrap();
        let err = load(&broken.to_string_lossy()).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "seccomp profile {} is not usable: line 3 column",
                broken.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("missing.json");
        let err = load(&missing.to_string_lossy()).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot read seccomp profile {} on the host: No such file",
                missing.display()
            )),
            "{err}"
        );
        let err = load(&dir.path().to_string_lossy()).await.unwrap_err();
        assert!(err.contains("is not a file"), "{err}");
    }
}
