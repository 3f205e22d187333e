//! The naming rule for task IDs and container names that become cgroup directory names.

use super::error::CgroupError;

/// Longest name a cgroup directory (and so a task ID or container name) may have.
pub(crate) const MAX_ID_LEN: usize = 255;

/// Checks that `id` can be used as one cgroup directory name: 1 to 255 characters of
/// `[A-Za-z0-9_.-]`, not starting with `.` (so never `.` or `..`).
///
/// `kind` names what is checked in the error ("task id", "container name").
pub(crate) fn validate_id(kind: &'static str, id: &str) -> Result<(), CgroupError> {
    let rule = if id.is_empty() {
        Some("must not be empty")
    } else if id.len() > MAX_ID_LEN {
        Some("must be at most 255 characters long")
    } else if id == "." || id == ".." {
        Some("must not be \".\" or \"..\"")
    } else if id.starts_with('.') {
        Some("must not start with '.'")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("may contain only ASCII letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(CgroupError::InvalidId {
            kind,
            value: shorten(id),
            rule,
        }),
    }
}

/// Keeps error messages readable when someone sends a megabyte-long "name".
fn shorten(id: &str) -> String {
    const KEEP: usize = 64;
    if id.chars().count() <= MAX_ID_LEN {
        return id.to_owned();
    }
    let head: String = id.chars().take(KEEP).collect();
    format!("{head}... ({} bytes)", id.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(id: &str) -> String {
        match validate_id("task id", id) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_valid_ids() {
        for id in ["a", "task-1", "A_b.c-9", "x..y", &"z".repeat(255)] {
            assert!(validate_id("task id", id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_invalid_ids_with_value_and_rule() {
        assert_eq!(rule_of(""), "invalid task id \"\": must not be empty");
        assert_eq!(
            rule_of("."),
            "invalid task id \".\": must not be \".\" or \"..\""
        );
        assert_eq!(
            rule_of(".."),
            "invalid task id \"..\": must not be \".\" or \"..\""
        );
        assert_eq!(
            rule_of(".hidden"),
            "invalid task id \".hidden\": must not start with '.'"
        );
        assert_eq!(
            rule_of("a/b"),
            "invalid task id \"a/b\": may contain only ASCII letters, digits, '_', '.' and '-'"
        );
        assert_eq!(
            validate_id("container name", "é").map_err(|e| e.to_string()),
            Err(
                "invalid container name \"é\": may contain only ASCII letters, digits, \
                 '_', '.' and '-'"
                    .to_owned()
            )
        );
        for bad in ["a b", "a\0b", "a\nb", "*"] {
            assert!(validate_id("task id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_too_long_ids_and_shortens_them_in_the_error() {
        let long = "y".repeat(256);
        let msg = rule_of(&long);
        assert!(
            msg.ends_with(": must be at most 255 characters long"),
            "{msg}"
        );
        assert!(msg.contains("... (256 bytes)"), "{msg}");
        assert!(msg.len() < 200, "{msg}");
    }
}
