//! Tests of the placement engine: each check, each strategy, their order, and refusal counts.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::super::{Free, HostPort, Protocol, Refusal};
use super::*;
use crate::placement::Check;

fn instance(id: &str, memory_mib: u64, attributes: &[(&str, &str)]) -> Candidate {
    Candidate {
        instance_id: id.into(),
        ec2_instance_id: format!("i-{id}"),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        agent_version: "0.1.0".into(),
        registered_at: "2026-12-06T10:00:00Z".into(),
        running_tasks_count: 0,
        free: Free {
            cpu: 4096,
            memory_mib,
            taken_ports: Default::default(),
            awsvpc_addresses: None,
        },
        groups: Vec::new(),
    }
}

fn web() -> Requirements {
    Requirements {
        cpu: 256,
        memory_mib: 512,
        group: "family:web".into(),
        ..Default::default()
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn run(
    c: &mut [Candidate],
    req: &Requirements,
    constraints: &[Constraint],
    strategies: &[Strategy],
    count: u32,
) -> Result<Vec<String>, Refusal> {
    place(c, req, constraints, strategies, count, &mut rng())
}

fn zones() -> Vec<Candidate> {
    vec![
        instance("a1", 4096, &[("zone", "a"), ("stack", "blue")]),
        instance("a2", 2048, &[("zone", "a"), ("stack", "green")]),
        instance("b1", 8192, &[("zone", "b"), ("stack", "blue")]),
        instance("b2", 1024, &[("zone", "b"), ("stack", "green")]),
    ]
}

fn tally(ids: &[String]) -> BTreeMap<&str, usize> {
    let mut t = BTreeMap::new();
    for id in ids {
        *t.entry(id.as_str()).or_default() += 1;
    }
    t
}

#[test]
fn binpack_on_memory_is_the_default_and_packs() {
    let mut c = zones();
    let placed = run(&mut c, &web(), &[], crate::placement::DEFAULT_STRATEGIES, 2).unwrap();
    assert_eq!(placed, ["b2", "b2"]);
    let mut c = zones();
    c[1].free.cpu = 100;
    let placed = run(&mut c, &web(), &[], &[Strategy::Binpack(Resource::Cpu)], 1).unwrap();
    // All have 4096 CPU but a2 (too little): ties broken by instance ID.
    assert_eq!(placed, ["a1"]);
}

#[test]
fn spread_over_an_attribute_splits_evenly() {
    let mut c = zones();
    let spread = [Strategy::Spread(SpreadField::Attribute("zone".into()))];
    let placed = run(&mut c, &web(), &[], &spread, 6).unwrap();
    let in_a = placed.iter().filter(|i| i.starts_with('a')).count();
    assert_eq!(in_a, 3, "{placed:?}");
    // Tasks already there count: zone a holds two, so the next two go to b.
    let mut c = zones();
    c[0].groups = vec!["family:web".into(), "family:web".into()];
    c[2].groups = vec!["family:other".into()];
    let placed = run(&mut c, &web(), &[], &spread, 2).unwrap();
    assert!(placed.iter().all(|i| i.starts_with('b')), "{placed:?}");
}

#[test]
fn strategies_apply_in_order() {
    // Spread over zones first, then binpack memory within the zone.
    let mut c = zones();
    let strategies = [
        Strategy::Spread(SpreadField::Attribute("zone".into())),
        Strategy::Binpack(Resource::Memory),
    ];
    let placed = run(&mut c, &web(), &[], &strategies, 4).unwrap();
    assert_eq!(tally(&placed), BTreeMap::from([("a2", 2), ("b2", 2)]));
    // Spread over instances: one each.
    let mut c = zones();
    let placed = run(
        &mut c,
        &web(),
        &[],
        &[Strategy::Spread(SpreadField::InstanceId)],
        4,
    )
    .unwrap();
    assert_eq!(tally(&placed).len(), 4);
}

#[test]
fn random_picks_among_the_instances_that_fit() {
    let mut c = zones();
    let member = Constraint::member_of("attribute:stack == blue").unwrap();
    let placed = run(&mut c, &web(), &[member], &[Strategy::Random], 20).unwrap();
    let t = tally(&placed);
    assert_eq!(t.keys().copied().collect::<Vec<_>>(), ["a1", "b1"], "{t:?}");
}

#[test]
fn distinct_instance_holds_across_the_request_and_the_tasks_there() {
    let mut c = zones();
    c[3].groups.push("family:web".into());
    let placed = run(&mut c, &web(), &[Constraint::DistinctInstance], &[], 3).unwrap();
    assert_eq!(tally(&placed).len(), 3);
    assert!(!placed.contains(&"b2".to_owned()));
    let mut c = zones();
    let refusal = run(&mut c, &web(), &[Constraint::DistinctInstance], &[], 5).unwrap_err();
    assert_eq!((refusal.placed, refusal.requested), (4, 5));
    assert_eq!(refusal.excluded_by(&Check::DistinctInstance), 4);
    // Another group is no obstacle.
    let mut c = zones();
    for i in &mut c {
        i.groups.push("service:api".into());
    }
    assert!(run(&mut c, &web(), &[Constraint::DistinctInstance], &[], 4).is_ok());
}

#[test]
fn member_of_with_and_or_not_holds() {
    let expression = "(attribute:zone == a and not attribute:stack == blue) or instanceId == b1";
    let member = Constraint::member_of(expression).unwrap();
    let mut c = zones();
    let placed = run(
        &mut c,
        &web(),
        &[member],
        &[Strategy::Spread(SpreadField::InstanceId)],
        4,
    )
    .unwrap();
    assert_eq!(tally(&placed), BTreeMap::from([("a2", 2), ("b1", 2)]));
    // ECS's names for what the agent reports, and ec2InstanceId.
    let mut c = vec![
        instance(
            "x",
            4096,
            &[
                ("berth.cpu-architecture", "amd64"),
                ("berth.os-type", "linux"),
            ],
        ),
        instance(
            "y",
            4096,
            &[
                ("berth.cpu-architecture", "arm64"),
                ("berth.os-type", "linux"),
            ],
        ),
    ];
    let ecs = Constraint::member_of(
        "attribute:ecs.cpu-architecture == x86_64 and attribute:ecs.os-type == linux \
         and attribute:ecs.os-family == LINUX and ec2InstanceId =~ i-*",
    )
    .unwrap();
    assert_eq!(run(&mut c, &web(), &[ecs], &[], 1).unwrap(), ["x"]);
}

#[test]
fn refusal_counts_each_exclusion_against_its_first_failed_check() {
    let mut c = zones();
    c.push(instance("c1", 256, &[("zone", "c"), ("stack", "blue")]));
    c.push(instance("c2", 4096, &[("zone", "c"), ("stack", "blue")]));
    c[5].free.taken_ports.insert(HostPort {
        protocol: Protocol::Tcp,
        port: 80,
    });
    c[2].groups.push("family:web".into());
    let req = Requirements {
        ports: vec![HostPort {
            protocol: Protocol::Tcp,
            port: 80,
        }],
        ..web()
    };
    let member = Constraint::member_of("attribute:stack == blue").unwrap();
    let refusal = run(
        &mut c,
        &req,
        &[member, Constraint::DistinctInstance],
        &[],
        2,
    )
    .unwrap_err();
    // a1 took the first task; then nothing is left.
    assert_eq!(
        (refusal.placed, refusal.requested, refusal.candidates),
        (1, 2, 6)
    );
    let counts: Vec<(String, usize)> = refusal
        .exclusions
        .iter()
        .map(|e| (e.check.to_string(), e.instances))
        .collect();
    assert_eq!(
        counts,
        [
            ("memberOf(attribute:stack == blue)".to_owned(), 2),
            ("distinctInstance".to_owned(), 2),
            ("host ports taken".to_owned(), 1),
            ("insufficient memory".to_owned(), 1),
        ]
    );
    assert_eq!(refusal.closest, Some(("c1".into(), Check::Memory)));
    assert_eq!(
        refusal.to_string(),
        "no container instance met all of its requirements: of 6 instances, \
         memberOf(attribute:stack == blue) excluded 2, distinctInstance excluded 2, host ports \
         taken excluded 1, insufficient memory excluded 1; the closest matching \
         container-instance c1 has insufficient memory available (1 of the 2 tasks fitted \
         before; none was started)"
    );
}

#[test]
fn cpu_awsvpc_and_platform_are_checked() {
    let mut c = vec![instance("a", 4096, &[("berth.cpu-architecture", "amd64")])];
    c[0].free.cpu = 128;
    let refusal = run(&mut c, &web(), &[], &[], 1).unwrap_err();
    assert_eq!(refusal.closest, Some(("a".into(), Check::Cpu)));
    assert!(
        refusal
            .to_string()
            .contains("has insufficient CPU units available")
    );

    let mut c = vec![instance("a", 4096, &[]), instance("b", 4096, &[])];
    c[0].free.awsvpc_addresses = Some(1);
    c[1].free.awsvpc_addresses = Some(0);
    let awsvpc = Requirements {
        awsvpc: true,
        ..web()
    };
    assert_eq!(run(&mut c, &awsvpc, &[], &[], 1).unwrap(), ["a"]);
    let refusal = run(&mut c, &awsvpc, &[], &[], 1).unwrap_err();
    assert_eq!(refusal.excluded_by(&Check::AwsvpcAddresses), 2);
    // An unknown limit is no limit.
    c[0].free.awsvpc_addresses = None;
    assert_eq!(run(&mut c, &awsvpc, &[], &[], 3).unwrap().len(), 3);

    let mut c = vec![
        instance(
            "x",
            4096,
            &[
                ("berth.cpu-architecture", "amd64"),
                ("berth.os-type", "linux"),
            ],
        ),
        instance(
            "y",
            4096,
            &[
                ("berth.cpu-architecture", "arm64"),
                ("berth.os-type", "linux"),
            ],
        ),
    ];
    let arm = Requirements {
        cpu_architecture: Some("arm64".into()),
        os_type: Some("linux".into()),
        ..web()
    };
    assert_eq!(run(&mut c, &arm, &[], &[], 1).unwrap(), ["y"]);
    c.pop();
    let refusal = run(&mut c, &arm, &[], &[], 1).unwrap_err();
    assert_eq!(refusal.excluded_by(&Check::Platform), 1);
}

#[test]
fn placing_takes_resources_and_joins_the_group() {
    let mut c = vec![instance("a", 1024, &[])];
    let req = Requirements {
        ports: vec![HostPort {
            protocol: Protocol::Udp,
            port: 53,
        }],
        ..web()
    };
    assert_eq!(run(&mut c, &req, &[], &[], 1).unwrap(), ["a"]);
    assert_eq!((c[0].free.cpu, c[0].free.memory_mib), (3840, 512));
    assert_eq!(c[0].groups, ["family:web"]);
    assert_eq!(c[0].running_tasks_count, 1);
    assert!(c[0].free.taken_ports.contains(&req.ports[0]));
    let by_group = Constraint::member_of("not task:group == family:web").unwrap();
    let refusal = run(&mut c, &web(), &[by_group], &[], 1).unwrap_err();
    assert_eq!(
        refusal.excluded_by(&Check::MemberOf("not task:group == family:web".into())),
        1
    );
    let none = run(&mut [], &web(), &[], &[], 1).unwrap_err();
    assert_eq!(
        none.to_string(),
        "no container instance met all of its requirements: there is no candidate instance"
    );
}
