//! How containers name and refer to each other, shared by the rules of every area: the name
//! rule, each container's index by name, and cycles among references (`dependsOn`, `links`,
//! `volumesFrom`).

use std::collections::HashMap;

use berth_proto::v1 as proto;

use super::error::Problem;
use super::fields::MAX_NAME_LEN;

/// Each container's index by name (the first of a duplicated name, which is refused anyway).
pub(super) fn container_indexes(def: &proto::TaskDefinition) -> HashMap<&str, usize> {
    def.containers
        .iter()
        .enumerate()
        .rev()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect()
}

/// The first cycle of a graph between containers (`what`: dependsOn, volumesFrom), found by
/// depth-first search from each container in definition order, reported at the edge that
/// closes it ("a → b → a").
pub(super) fn find_cycle(
    def: &proto::TaskDefinition,
    edges: &[Vec<(usize, String)>],
    what: &str,
) -> Option<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[Vec<(usize, String)>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, String)> {
        marks[node] = Mark::OnPath;
        path.push(node);
        for (next, json_path) in &edges[node] {
            match marks[*next] {
                Mark::OnPath => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(*next);
                    return Some((cycle, json_path.clone()));
                }
                Mark::New => {
                    if let Some(found) = visit(*next, edges, marks, path) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] == Mark::New {
            let mut path = Vec::new();
            if let Some((cycle, json_path)) = visit(start, edges, &mut marks, &mut path) {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&n| def.containers[n].name.as_str())
                    .collect();
                return Some(Problem::at(
                    &json_path,
                    format!("{what} forms a cycle: {}", names.join(" → ")),
                ));
            }
        }
    }
    None
}

/// Why `name` is not a valid family or container name, if it is not.
pub(super) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let length = name.chars().count();
    if length > MAX_NAME_LEN {
        return Some(format!(
            "is {length} characters long; the maximum is {MAX_NAME_LEN}"
        ));
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))?;
    Some(format!(
        "`{name}` contains `{bad}`: use only letters, digits, hyphens and underscores"
    ))
}
