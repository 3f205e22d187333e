//! `make bench`: the placement decision for one task among 1,000 simulated instances, with a
//! memberOf constraint (and/or/not over attributes), distinctInstance, and spread over an
//! availability zone then binpack on memory, as `berthctl run-task` would ask. Prints the p50
//! and p99 of one decision in µs; asserts nothing but that a placement was made.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use berth_scheduler::placement::{
    Candidate, Constraint, Free, Requirements, Resource, SpreadField, Strategy, place,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const INSTANCES: usize = 1_000;
const DECISIONS: usize = 2_000;
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 4] = ["t2.micro", "t3.large", "m5.large", "c5.xlarge"];

fn instances() -> Vec<Candidate> {
    (0..INSTANCES)
        .map(|i| {
            let attributes = BTreeMap::from([
                ("berth.os-type".to_owned(), "linux".to_owned()),
                ("berth.cpu-architecture".to_owned(), "amd64".to_owned()),
                (
                    "ecs.availability-zone".to_owned(),
                    ZONES[i % ZONES.len()].to_owned(),
                ),
                (
                    "ecs.instance-type".to_owned(),
                    TYPES[i % TYPES.len()].to_owned(),
                ),
                (
                    "stack".to_owned(),
                    if i % 5 == 0 { "red" } else { "blue" }.to_owned(),
                ),
            ]);
            // Some instances already run tasks of the group, some of others.
            let groups = (0..i % 4)
                .map(|g| {
                    if g == 0 && i % 7 == 0 {
                        "family:web".to_owned()
                    } else {
                        format!("family:other{g}")
                    }
                })
                .collect::<Vec<_>>();
            Candidate {
                instance_id: format!("{i:08x}-0000-4000-8000-000000000000"),
                ec2_instance_id: format!("i-{i:017x}"),
                attributes,
                agent_version: "0.1.0".to_owned(),
                registered_at: "2026-12-06T10:00:00Z".to_owned(),
                running_tasks_count: u32::try_from(groups.len()).unwrap_or_default(),
                free: Free {
                    cpu: 4096 - 256 * (i as u64 % 8),
                    memory_mib: 16_384 - 512 * (i as u64 % 16),
                    taken_ports: Default::default(),
                    awsvpc_addresses: None,
                },
                groups,
            }
        })
        .collect()
}

fn main() {
    let constraints = [
        Constraint::member_of(
            "(attribute:ecs.instance-type =~ t3.* or attribute:ecs.instance-type =~ m5.*) \
             and not attribute:stack == red \
             and attribute:ecs.availability-zone in [us-east-1a, us-east-1b, us-east-1c]",
        )
        .expect("the benchmark's expression parses"),
        Constraint::DistinctInstance,
    ];
    let strategies = [
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
        Strategy::Binpack(Resource::Memory),
    ];
    let req = Requirements {
        cpu: 256,
        memory_mib: 512,
        group: "family:web".to_owned(),
        ..Default::default()
    };
    let base = instances();
    let mut rng = StdRng::seed_from_u64(1);
    let mut micros = Vec::with_capacity(DECISIONS);
    for _ in 0..DECISIONS {
        let mut candidates = base.clone();
        let start = Instant::now();
        let placed = place(
            black_box(&mut candidates),
            &req,
            &constraints,
            &strategies,
            1,
            &mut rng,
        );
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(
            placed.is_ok(),
            "the benchmark's task did not place: {placed:?}"
        );
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    println!(
        "placement: one task among {INSTANCES} instances (memberOf and/or/not, distinctInstance, \
         spread over zone then binpack memory), {DECISIONS} decisions: p50 {:.1} µs, p99 {:.1} µs",
        at(0.50),
        at(0.99)
    );
}
