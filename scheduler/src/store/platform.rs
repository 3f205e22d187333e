//! A task definition's `runtimePlatform` against the platform each instance's agent reported at
//! registration (`berth.cpu-architecture`, `berth.os-type`): placement keeps only the
//! candidates that match, and names every mismatch when none does.

use berth_proto::v1 as pb;

use super::placement::Capacity;
use super::records::InstanceRecord;
use crate::taskdef::{CPU_ARCHITECTURES, OS_FAMILIES};

/// The attribute in which an agent reports its CPU architecture (Go's names: amd64, arm64).
const ARCHITECTURE_ATTRIBUTE: &str = "berth.cpu-architecture";
/// The attribute in which an agent reports its operating system (linux).
const OS_ATTRIBUTE: &str = "berth.os-type";

/// Why one instance does not have the platform a task asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub(crate) instance_id: String,
    /// What it lacks, e.g. "reports cpu architecture amd64, not ARM64".
    pub(crate) why: String,
}

/// Keeps the candidates whose instance has the platform `def` asks for; the others, each with
/// why, are returned when none is left.
pub(crate) fn retain_matching(
    candidates: &mut Vec<Capacity>,
    instances: &[InstanceRecord],
    def: &pb::TaskDefinition,
) -> Result<(), Vec<Mismatch>> {
    let Some(platform) = &def.runtime_platform else {
        return Ok(());
    };
    let mut mismatches = Vec::new();
    candidates.retain(|c| {
        let attributes = instances
            .iter()
            .find(|i| i.instance.container_instance_id == c.instance_id)
            .map(|i| &i.instance.attributes);
        let reported = |name: &str| attributes.and_then(|a| a.get(name)).map(String::as_str);
        match why_not(
            platform,
            reported(ARCHITECTURE_ATTRIBUTE),
            reported(OS_ATTRIBUTE),
        ) {
            None => true,
            Some(why) => {
                mismatches.push(Mismatch {
                    instance_id: c.instance_id.clone(),
                    why,
                });
                false
            }
        }
    });
    if candidates.is_empty() && !mismatches.is_empty() {
        Err(mismatches)
    } else {
        Ok(())
    }
}

/// Why an instance reporting `architecture` and `os` cannot run a task of `platform`.
fn why_not(
    platform: &pb::RuntimePlatform,
    architecture: Option<&str>,
    os: Option<&str>,
) -> Option<String> {
    let check = |wanted: &str, table: &[(&str, &str)], reported: Option<&str>, what: &str| {
        if wanted.is_empty() {
            return None;
        }
        let needed = table
            .iter()
            .find(|(ecs, _)| *ecs == wanted)
            .map(|(_, b)| *b);
        match reported {
            None => Some(format!("reports no {what}, and {wanted} is asked for")),
            Some(have) if Some(have) != needed => {
                Some(format!("reports {what} {have}, not {wanted}"))
            }
            Some(_) => None,
        }
    };
    let reasons: Vec<String> = [
        check(
            &platform.cpu_architecture,
            CPU_ARCHITECTURES,
            architecture,
            "cpu architecture",
        ),
        check(
            &platform.operating_system_family,
            OS_FAMILIES,
            os,
            "operating system",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!reasons.is_empty()).then(|| reasons.join(" and "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn instance(id: &str, arch: Option<&str>) -> InstanceRecord {
        let mut attributes = std::collections::HashMap::new();
        if let Some(arch) = arch {
            attributes.insert(ARCHITECTURE_ATTRIBUTE.to_owned(), arch.to_owned());
        }
        attributes.insert(OS_ATTRIBUTE.to_owned(), "linux".to_owned());
        InstanceRecord {
            instance: pb::ContainerInstance {
                container_instance_id: id.to_owned(),
                attributes: attributes.into_iter().collect(),
                ..Default::default()
            },
            capabilities: Vec::new(),
        }
    }

    fn capacity(id: &str) -> Capacity {
        Capacity {
            instance_id: id.to_owned(),
            cpu: 1024,
            memory_mib: 1024,
            ports: BTreeSet::new(),
        }
    }

    fn def(arch: &str, os: &str) -> pb::TaskDefinition {
        pb::TaskDefinition {
            runtime_platform: Some(pb::RuntimePlatform {
                cpu_architecture: arch.to_owned(),
                operating_system_family: os.to_owned(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_instances_of_the_platform_asked_for_stay_candidates() {
        let instances = [
            instance("x", Some("amd64")),
            instance("a", Some("arm64")),
            instance("old", None),
        ];
        let mut candidates = vec![capacity("x"), capacity("a"), capacity("old")];
        retain_matching(&mut candidates, &instances, &def("ARM64", "LINUX")).unwrap();
        assert_eq!(candidates, [capacity("a")]);

        let mut all = vec![capacity("x"), capacity("a")];
        retain_matching(&mut all, &instances, &pb::TaskDefinition::default()).unwrap();
        assert_eq!(all.len(), 2, "no runtimePlatform: any instance");
        retain_matching(&mut all, &instances, &def("", "LINUX")).unwrap();
        assert_eq!(all.len(), 2, "LINUX alone: any architecture");
    }

    #[test]
    fn each_mismatch_is_named_when_no_instance_matches() {
        let instances = [instance("x", Some("amd64")), instance("old", None)];
        let mut candidates = vec![capacity("x"), capacity("old")];
        let mismatches =
            retain_matching(&mut candidates, &instances, &def("ARM64", "LINUX")).unwrap_err();
        assert_eq!(
            mismatches,
            [
                Mismatch {
                    instance_id: "x".into(),
                    why: "reports cpu architecture amd64, not ARM64".into()
                },
                Mismatch {
                    instance_id: "old".into(),
                    why: "reports no cpu architecture, and ARM64 is asked for".into()
                },
            ]
        );
    }
}
