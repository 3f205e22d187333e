//! Task placement: BINPACK on memory, a pure function over the free capacity of candidates.
//!
//! It lives beside the store because placement and reservation happen in one write
//! transaction: the capacity it sees cannot change before the tasks are written.

/// Free capacity of one connected ACTIVE instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub(crate) instance_id: String,
    pub(crate) cpu: u64,
    pub(crate) memory_mib: u64,
}

/// The index of the instance with the least free memory that still fits `cpu` and
/// `memory_mib` (ties: least free CPU, then instance ID), or `None` when none fits.
pub(crate) fn binpack(candidates: &[Capacity], cpu: u64, memory_mib: u64) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.cpu >= cpu && c.memory_mib >= memory_mib)
        .min_by(|(_, a), (_, b)| {
            (a.memory_mib, a.cpu, &a.instance_id).cmp(&(b.memory_mib, b.cpu, &b.instance_id))
        })
        .map(|(i, _)| i)
}

/// The candidate with the most free memory (ties: most CPU), for the "no room" message.
pub(crate) fn largest(candidates: &[Capacity]) -> Option<&Capacity> {
    candidates
        .iter()
        .max_by(|a, b| (a.memory_mib, a.cpu).cmp(&(b.memory_mib, b.cpu)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(id: &str, cpu: u64, memory_mib: u64) -> Capacity {
        Capacity {
            instance_id: id.into(),
            cpu,
            memory_mib,
        }
    }

    #[test]
    fn picks_the_fullest_instance_that_fits() {
        let c = [
            cap("a", 4096, 8192),
            cap("b", 4096, 1024),
            cap("c", 4096, 2048),
        ];
        assert_eq!(binpack(&c, 256, 512), Some(1));
        assert_eq!(binpack(&c, 256, 1500), Some(2));
        assert_eq!(binpack(&c, 256, 4096), Some(0));
        assert_eq!(binpack(&c, 256, 9000), None);
    }

    #[test]
    fn cpu_must_fit_too() {
        let c = [cap("a", 128, 1024), cap("b", 2048, 4096)];
        assert_eq!(binpack(&c, 256, 512), Some(1));
        assert_eq!(largest(&c), Some(&c[1]));
        assert_eq!(binpack(&[], 0, 0), None);
    }
}
