//! Tests of the cluster query language: parsing (and its column-precise errors) and evaluation.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::*;

#[derive(Default)]
struct Host {
    attributes: BTreeMap<&'static str, &'static str>,
    id: &'static str,
    groups: Vec<&'static str>,
    running: &'static str,
    version: &'static str,
}

impl Facts for Host {
    fn values(&self, subject: &Subject) -> Vec<Cow<'_, str>> {
        let values: Vec<&str> = match subject {
            Subject::Attribute(name) => self
                .attributes
                .get(name.as_str())
                .copied()
                .into_iter()
                .collect(),
            Subject::InstanceId | Subject::Ec2InstanceId => vec![self.id],
            Subject::TaskGroup => self.groups.clone(),
            Subject::RunningTasksCount => vec![self.running],
            Subject::AgentVersion => vec![self.version],
            Subject::AgentConnected => vec!["true"],
            Subject::RegisteredAt => vec!["2026-12-01T10:00:00Z"],
        };
        values.into_iter().map(Cow::Borrowed).collect()
    }
}

fn host(kind: &'static str, zone: &'static str) -> Host {
    Host {
        attributes: BTreeMap::from([("ecs.instance-type", kind), ("ecs.availability-zone", zone)]),
        id: "i-0abc",
        running: "3",
        version: "1.10.2",
        ..Default::default()
    }
}

fn holds(expression: &str, on: &Host) -> bool {
    Expression::parse(expression)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .matches(on)
}

fn error(expression: &str) -> (usize, String) {
    let e = Expression::parse(expression).expect_err(expression);
    (e.column, e.problem.to_string())
}

#[test]
fn the_documented_examples_hold() {
    let t2 = host("t2.small", "us-east-1a");
    let m5 = host("m5.large", "us-east-1c");
    assert!(holds("attribute:ecs.instance-type =~ t2.*", &t2));
    assert!(!holds("attribute:ecs.instance-type =~ t2.*", &m5));
    let zones = "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]";
    assert!(holds(zones, &t2));
    assert!(!holds(zones, &m5));
    assert!(holds(
        "attribute:ecs.availability-zone not_in [us-east-1a]",
        &m5
    ));
    assert!(holds(
        "attribute:ecs.availability-zone !in [us-east-1a]",
        &m5
    ));
    assert!(holds("ec2InstanceId == i-0abc", &t2));
    assert!(holds("ec2InstanceId in ['i-0abc', \"i-0def\"]", &t2));
    assert!(holds("attribute:ecs.instance-type =~ *.small", &t2));
    assert!(holds("attribute:ecs.instance-type matches t*.s*l", &t2));
    assert!(!holds("attribute:ecs.instance-type =~ t2", &t2));
}

#[test]
fn and_or_not_and_parentheses_combine() {
    let t2 = host("t2.small", "us-east-1a");
    let e = "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1a";
    assert!(!holds(e, &t2));
    assert!(holds(
        "attribute:ecs.instance-type =~ t2.* && not attribute:ecs.availability-zone == us-east-1b",
        &t2
    ));
    // `and` binds tighter than `or`.
    assert!(holds(
        "ec2InstanceId == x and ec2InstanceId == y or runningTasksCount == 3",
        &t2
    ));
    assert!(!holds(
        "ec2InstanceId == x and (ec2InstanceId == y or runningTasksCount == 3)",
        &t2
    ));
    assert!(holds("!(ec2InstanceId == x) || ec2InstanceId == y", &t2));
    assert!(holds("not not ec2InstanceId == i-0abc", &t2));
    assert!(holds(
        "NOT ec2InstanceId == x AND runningTasksCount == 3",
        &t2
    ));
}

#[test]
fn comparisons_order_numbers_and_versions() {
    let t2 = host("t2.small", "us-east-1a");
    assert!(holds("runningTasksCount > 2", &t2));
    assert!(holds(
        "runningTasksCount >= 3 and runningTasksCount <= 3",
        &t2
    ));
    assert!(!holds("runningTasksCount < 3", &t2));
    // 3 < 10 as numbers, though "3" > "10" as text.
    assert!(holds("runningTasksCount less_than 10", &t2));
    assert!(holds("agentVersion >= 1.9.0", &t2));
    assert!(holds("agentVersion greater_than v1.10.1", &t2));
    assert!(holds("registeredAt < 2027-01-01", &t2));
}

#[test]
fn exists_and_task_groups() {
    let mut h = host("t2.small", "us-east-1a");
    assert!(holds("attribute:ecs.instance-type exists", &h));
    assert!(holds("attribute:stack !exists", &h));
    assert!(holds("attribute:stack not_exists", &h));
    assert!(!holds("task:group == service:web", &h));
    assert!(holds("task:group != service:web", &h));
    h.groups = vec!["family:db", "service:web"];
    assert!(holds("task:group == service:web", &h));
    assert!(holds("not(task:group in [service:web])", &Host::default()));
    assert!(!holds("task:group != service:web", &h));
}

#[test]
fn bad_expressions_name_the_column() {
    assert_eq!(error("").0, 1);
    assert_eq!(error("   ").1, "the expression is empty");
    assert_eq!(
        error("attribute:ecs.instance-type =="),
        (31, "expected a value after `==`, found the end".into())
    );
    assert_eq!(
        error("instanceType == t2.micro"),
        (1, "unknown subject `instanceType`".into())
    );
    let (column, why) = error("ec2InstanceId is i-1");
    assert_eq!(column, 15);
    assert!(why.starts_with("expected an operator"), "{why}");
    assert_eq!(
        error("attribute:zone in us-east-1a"),
        (
            19,
            "expected `[` and a list of values after `in`, found `us-east-1a`".into()
        )
    );
    assert_eq!(
        error("attribute:zone in [a b]"),
        (22, "expected `,` or `]` in the list, found `b`".into())
    );
    assert_eq!(
        error("(ec2InstanceId == a or ec2InstanceId == b"),
        (42, "expected `)`, found the end".into())
    );
    assert_eq!(
        error("ec2InstanceId == a ec2InstanceId == b"),
        (
            20,
            "expected `and`, `or` or the end, found `ec2InstanceId`".into()
        )
    );
    assert_eq!(
        error("ec2InstanceId == 'a"),
        (18, "unterminated quoted value".into())
    );
    assert_eq!(error("ec2InstanceId == a & b").0, 20);
    assert_eq!(
        error("ec2InstanceId == and"),
        (18, "expected a value after `==`, found `and`".into())
    );
    assert_eq!(error("and ec2InstanceId == a").0, 1);
    assert_eq!(error("attribute: exists").1, "unknown subject `attribute:`");
    let deep = format!("{}ec2InstanceId == a{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(error(&deep).1, "parentheses and `not` nest deeper than 32");
    let long = format!("ec2InstanceId == {}", "a".repeat(MAX_EXPRESSION_LEN));
    assert_eq!(
        error(&long).1,
        "the expression is longer than 2000 characters"
    );
    // Columns count characters, not bytes.
    assert_eq!(error("attribute:zöne == a )").0, 21);
}

#[test]
fn wildcards() {
    assert!(wildcard("*", ""));
    assert!(wildcard("a*", "a"));
    assert!(wildcard("*a*a", "aa"));
    assert!(!wildcard("*aa*a", "aa"));
    assert!(wildcard("t2.*", "t2.micro"));
    assert!(!wildcard("t2.*", "t3.micro"));
    assert!(wildcard("exact", "exact"));
    assert!(!wildcard("exact", "exactly"));
}
