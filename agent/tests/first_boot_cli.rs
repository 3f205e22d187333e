//! `berth-agent first-boot` as the unit runs it: exit 0 and the first-boot file (0600) for good
//! user data, exit 64 with the line named for broken user data, and nothing to do the second
//! time.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/user-data");

fn first_boot(config: &Path, user_data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .arg("--config")
        .arg(config)
        .arg("first-boot")
        .arg("--user-data")
        .arg(user_data)
        .arg("--no-imds")
        .env_clear()
        .output()
        .expect("run berth-agent first-boot")
}

#[test]
fn good_user_data_is_written_once_and_broken_user_data_names_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "# as packaged: every key commented\n").expect("write");
    let written = dir.path().join("first-boot.toml");

    for (sample, line) in [
        ("bad-yaml.yaml", 4),
        ("wrong-type.yaml", 5),
        ("unknown-key.yaml", 5),
        ("missing-field.yaml", 3),
        ("bad-value.yaml", 5),
    ] {
        let out = first_boot(&config, &Path::new(SAMPLES).join(sample));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{sample}: {stderr}");
        let expected =
            format!("berth-agent first-boot: user data {SAMPLES}/{sample}, line {line}: ");
        assert!(stderr.starts_with(&expected), "{sample}: {stderr}");
        assert!(!written.exists(), "{sample}: written anyway");
    }

    let out = first_boot(&config, &Path::new(SAMPLES).join("good.yaml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "join_token from user data {SAMPLES}/good.yaml, line 13"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("0123456789abcdef"),
        "the token is printed: {stdout}"
    );
    let mode = std::fs::metadata(&written)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&written).expect("read");
    assert!(
        text.contains("scheduler_endpoint = \"https://scheduler.internal:7700\""),
        "{text}"
    );

    // The agent's own check reads it over agent.toml.
    let check = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_clear()
        .output()
        .expect("run check-config");
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    let cluster = shown
        .lines()
        .find(|l| l.starts_with("cluster "))
        .expect("cluster line");
    assert!(
        cluster.contains("\"prod\"") && cluster.contains(&written.display().to_string()),
        "{cluster}"
    );

    // A later boot: nothing to do, even with broken user data.
    let out = first_boot(&config, &Path::new(SAMPLES).join("bad-yaml.yaml"));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
}
