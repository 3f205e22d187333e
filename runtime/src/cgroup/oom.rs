//! Pure parsers for the kernel's OOM-kill counters (v1 memory.oom_control, v2 memory.events).

use super::error::CgroupError;

/// cgroup v1 file holding the OOM-kill counter.
pub(crate) const V1_OOM_FILE: &str = "memory.oom_control";
/// cgroup v2 file holding the OOM-kill counter.
pub(crate) const V2_OOM_FILE: &str = "memory.events";

/// The `oom_kill N` line of cgroup v1 memory.oom_control (kernel 4.13 and later):
/// `oom_kill_disable 0\nunder_oom 0\noom_kill 2\n`.
pub(crate) fn parse_v1_oom_control(text: &str) -> Result<u64, CgroupError> {
    flat_keyed(V1_OOM_FILE, text, "oom_kill")
}

/// The `oom_kill N` line of cgroup v2 memory.events:
/// `low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n`.
pub(crate) fn parse_v2_memory_events(text: &str) -> Result<u64, CgroupError> {
    flat_keyed(V2_OOM_FILE, text, "oom_kill")
}

/// The value of `key` in a flat-keyed cgroup file (`KEY VALUE` lines).
fn flat_keyed(file: &str, text: &str, key: &str) -> Result<u64, CgroupError> {
    let parse_error = |reason: String| CgroupError::Parse {
        file: file.to_owned(),
        reason,
    };
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let value = fields
            .next()
            .ok_or_else(|| parse_error(format!("no value after {key:?}")))?;
        if fields.next().is_some() {
            return Err(parse_error(format!("more than one value after {key:?}")));
        }
        return value
            .parse()
            .map_err(|_| parse_error(format!("{key:?} value {value:?} is not a counter")));
    }
    Err(parse_error(format!("no {key:?} line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_counter() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_v1_oom_control(text).expect("parses"), 3);
        assert_eq!(
            parse_v1_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 0").expect("parses"),
            0
        );
    }

    #[test]
    fn v2_counter_is_not_confused_with_oom_or_oom_group_kill() {
        let text = "low 0\nhigh 0\nmax 12\noom 4\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(parse_v2_memory_events(text).expect("parses"), 2);
        let text = "oom_group_kill 7\noom 4\noom_kill 18446744073709551615\n";
        assert_eq!(parse_v2_memory_events(text).expect("parses"), u64::MAX);
    }

    #[test]
    fn bad_content_is_an_error_naming_the_file() {
        // Kernels before 4.13 have no oom_kill line in memory.oom_control.
        let err = parse_v1_oom_control("oom_kill_disable 0\nunder_oom 0\n").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "cannot parse memory.oom_control: no \"oom_kill\" line"
        );
        let err = parse_v2_memory_events("oom_kill -1\n").expect_err("negative");
        assert_eq!(
            err.to_string(),
            "cannot parse memory.events: \"oom_kill\" value \"-1\" is not a counter"
        );
        let err = parse_v2_memory_events("oom_kill\n").expect_err("no value");
        assert_eq!(
            err.to_string(),
            "cannot parse memory.events: no value after \"oom_kill\""
        );
        let err = parse_v2_memory_events("oom_kill 1 2\n").expect_err("two values");
        assert!(err.to_string().contains("more than one value"), "{err}");
        assert!(parse_v2_memory_events("").is_err());
    }
}
