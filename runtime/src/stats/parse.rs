//! The kernel's cgroup file formats shared by v1 and v2: single values, `max`-or-number
//! limits and flat-keyed `KEY VALUE` files, parsed without allocating. The kernel writes
//! them in ASCII, so they are split on ASCII whitespace (much cheaper than Unicode's).

use crate::cgroup::CgroupError;

/// v1 reports "no limit" as the largest page-aligned counter (9223372036854771712 with 4 KiB
/// pages); anything from 2^62 up is taken as unlimited.
const V1_UNLIMITED_FROM: u64 = 1 << 62;

pub(super) fn error(file: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Parse {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// A file holding one unsigned number (`memory.current`, `cpuacct.usage`).
pub(super) fn single(file: &str, text: &str) -> Result<u64, CgroupError> {
    let value = text.trim_ascii();
    value
        .parse()
        .map_err(|_| error(file, format!("{value:?} is not a counter")))
}

/// A limit: `max` (v2, and v1's pids.max) or a number; v1's huge "unlimited" numbers are None.
pub(super) fn limit(file: &str, text: &str) -> Result<Option<u64>, CgroupError> {
    if text.trim_ascii() == "max" {
        return Ok(None);
    }
    let value = single(file, text)?;
    Ok((value < V1_UNLIMITED_FROM).then_some(value))
}

/// The values of `keys` in a flat-keyed file (`KEY VALUE` lines: memory.stat, cpu.stat,
/// memory.events), each None when the kernel does not report it (older kernels lack some).
/// Every line must have the format; the values of other keys are not parsed.
pub(super) fn flat_keyed<const N: usize>(
    file: &str,
    text: &str,
    keys: [&str; N],
) -> Result<[Option<u64>; N], CgroupError> {
    let mut values = [None; N];
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else {
            continue;
        };
        let (Some(value), None) = (fields.next(), fields.next()) else {
            return Err(error(
                file,
                format!("line {} is not \"KEY VALUE\": {line:?}", index + 1),
            ));
        };
        let Some(slot) = keys.iter().position(|k| *k == key) else {
            continue;
        };
        values[slot] = Some(
            value
                .parse()
                .map_err(|_| error(file, format!("{key:?} value {value:?} is not a counter")))?,
        );
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_both_versions() {
        assert_eq!(limit("memory.max", "max\n").expect("max"), None);
        assert_eq!(
            limit("memory.max", "268435456\n").expect("number"),
            Some(268_435_456)
        );
        assert_eq!(
            limit("memory.limit_in_bytes", "9223372036854771712\n").expect("v1 unlimited"),
            None
        );
        let err = limit("pids.max", "lots").expect_err("garbage");
        assert_eq!(
            err.to_string(),
            "cannot parse pids.max: \"lots\" is not a counter"
        );
    }

    #[test]
    fn flat_keyed_files() {
        let keys = ["usage_usec", "nr_periods"];
        let values =
            flat_keyed("cpu.stat", "usage_usec 10\nuser_usec 7\n\n", keys).expect("parses");
        assert_eq!(values, [Some(10), None]);
        let err = flat_keyed("cpu.stat", "usage_usec 10 11\n", keys).expect_err("three fields");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = flat_keyed("cpu.stat", "usage_usec -1\n", keys).expect_err("negative");
        assert!(err.to_string().contains("not a counter"), "{err}");
    }
}
