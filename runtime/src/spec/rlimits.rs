//! Process resource limits: containerd's default `RLIMIT_NOFILE` 1024/1024, overridden and
//! extended by the container's ulimits (Docker/ECS names such as `nofile`).

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use super::SpecError;
use crate::model::Ulimit;

/// The ulimit names Docker and ECS accept, with the rlimit each one sets.
const ULIMITS: [(&str, PosixRlimitType); 15] = [
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
];

/// containerd's default open-files limit, soft and hard.
const DEFAULT_NOFILE: u64 = 1024;

/// `PosixRlimit` has no setters, only a builder, whose `build` cannot fail once every field
/// is given; its error is still carried rather than unwrapped.
fn rlimit(
    typ: PosixRlimitType,
    soft: u64,
    hard: u64,
    container: &str,
) -> Result<PosixRlimit, SpecError> {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| SpecError::Oci {
            container: container.to_owned(),
            reason: e.to_string(),
        })
}

/// The rlimits for `process.rlimits`: `RLIMIT_NOFILE` 1024/1024 first, then each ulimit in
/// order, replacing an earlier limit of the same type in place (a repeated name: the last one
/// wins, as with Docker's `--ulimit`). Names are case-sensitive, as in Docker; `u64::MAX`
/// is "unlimited".
pub(super) fn rlimits(ulimits: &[Ulimit], container: &str) -> Result<Vec<PosixRlimit>, SpecError> {
    let mut limits = vec![rlimit(
        PosixRlimitType::RlimitNofile,
        DEFAULT_NOFILE,
        DEFAULT_NOFILE,
        container,
    )?];
    for ulimit in ulimits {
        let typ = ULIMITS
            .iter()
            .find(|(name, _)| *name == ulimit.name)
            .map(|(_, typ)| *typ)
            .ok_or_else(|| SpecError::UnknownUlimit {
                container: container.to_owned(),
                name: ulimit.name.clone(),
                valid: ULIMITS.map(|(name, _)| name).join(", "),
            })?;
        if ulimit.soft > ulimit.hard {
            return Err(SpecError::UlimitSoftAboveHard {
                container: container.to_owned(),
                name: ulimit.name.clone(),
                soft: ulimit.soft,
                hard: ulimit.hard,
            });
        }
        let limit = rlimit(typ, ulimit.soft, ulimit.hard, container)?;
        match limits.iter_mut().find(|l| l.typ() == typ) {
            Some(existing) => *existing = limit,
            None => limits.push(limit),
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulimit(name: &str, soft: u64, hard: u64) -> Ulimit {
        Ulimit {
            name: name.into(),
            soft,
            hard,
        }
    }

    fn triples(limits: &[PosixRlimit]) -> Vec<(PosixRlimitType, u64, u64)> {
        limits
            .iter()
            .map(|l| (l.typ(), l.soft(), l.hard()))
            .collect()
    }

    #[test]
    fn default_is_nofile_1024() {
        let limits = rlimits(&[], "web").expect("rlimits");
        assert_eq!(
            triples(&limits),
            [(PosixRlimitType::RlimitNofile, 1024, 1024)]
        );
    }

    #[test]
    fn ulimits_override_in_place_and_append() {
        let limits = rlimits(
            &[
                ulimit("core", 0, u64::MAX),
                ulimit("nofile", 4096, 65536),
                ulimit("nproc", 10, 20),
                ulimit("nproc", 30, 40),
            ],
            "web",
        )
        .expect("rlimits");
        assert_eq!(
            triples(&limits),
            [
                (PosixRlimitType::RlimitNofile, 4096, 65536),
                (PosixRlimitType::RlimitCore, 0, u64::MAX),
                (PosixRlimitType::RlimitNproc, 30, 40),
            ]
        );
    }

    #[test]
    fn every_docker_name_maps_to_its_rlimit() {
        for (name, typ) in ULIMITS {
            let limits = rlimits(&[ulimit(name, 1, 2)], "web").expect("rlimits");
            let found = limits.iter().find(|l| l.typ() == typ).expect("present");
            assert_eq!((found.soft(), found.hard()), (1, 2), "{name}");
            let json = serde_json::to_string(found).expect("json");
            assert!(
                json.contains(&format!("\"RLIMIT_{}\"", name.to_uppercase())),
                "{json}"
            );
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        for bad in ["as", "NOFILE", ""] {
            let err = rlimits(&[ulimit(bad, 1, 1)], "web").expect_err("unknown");
            let msg = err.to_string();
            assert!(matches!(&err, SpecError::UnknownUlimit { name, .. } if name == bad));
            assert!(
                msg.contains(
                    "core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, \
                              nproc, rss, rtprio, rttime, sigpending, stack"
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn soft_above_hard_is_an_error() {
        assert_eq!(
            rlimits(&[ulimit("nofile", 2048, 1024)], "web"),
            Err(SpecError::UlimitSoftAboveHard {
                container: "web".into(),
                name: "nofile".into(),
                soft: 2048,
                hard: 1024
            })
        );
    }
}
