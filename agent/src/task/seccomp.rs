//! ECS `dockerSecurityOptions` `seccomp=<path>`: a Docker-format seccomp profile read from the
//! host when a task starts (like an environment file), so a bad or missing file stops the task
//! before anything is pulled, with a reason naming the file and what is wrong in it.

use std::path::Path;

use berth_runtime::SeccompProfile;

use super::error::InputError;

/// The profile's largest size: Docker's default profile is about 20 KiB.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Reads and checks the profile at `path` on the host.
pub(crate) async fn load(path: &str) -> Result<SeccompProfile, InputError> {
    let path = Path::new(path);
    let unreadable = |error| InputError::SeccompUnreadable {
        path: path.to_path_buf(),
        error,
    };
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if !meta.is_file() {
        return Err(InputError::SeccompNotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(InputError::SeccompTooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: MAX_PROFILE_BYTES,
        });
    }
    let text = tokio::fs::read_to_string(path).await.map_err(unreadable)?;
    SeccompProfile::parse(&text).map_err(|error| InputError::SeccompInvalid {
        path: path.to_path_buf(),
        error,
    })
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
        let err = load(&bad.to_string_lossy()).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "seccomp profile {} is not usable: syscalls[0].action: `DENY` is not a seccomp action",
                bad.display()
            )),
            "{err}"
        );

        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\n  \"defaultAction\": \n").unwrap();
        let err = load(&broken.to_string_lossy())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "seccomp profile {} is not usable: line 3 column",
                broken.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("missing.json");
        let err = load(&missing.to_string_lossy())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read seccomp profile {} on the host: No such file",
                missing.display()
            )),
            "{err}"
        );
        let err = load(&dir.path().to_string_lossy())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a file"), "{err}");

        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; MAX_PROFILE_BYTES as usize + 1]).unwrap();
        assert_eq!(
            load(&huge.to_string_lossy()).await.unwrap_err().to_string(),
            format!(
                "seccomp profile {} is 1048577 bytes, more than the 1048576 a profile may have",
                huge.display()
            )
        );
    }
}
