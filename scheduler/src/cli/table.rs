//! berthctl's tables for people, beside its JSON (`json`): one renderer a kind of object, on
//! comfy-table, which measures and cuts cells by their display width (so wide characters line
//! up). No borders, two spaces between columns, one line a row; a table wider than the
//! terminal has its widest columns cut with "…" first, never below a few characters.

use berth_proto::v1 as proto;
use comfy_table::{ColumnConstraint, ContentArrangement, Row, Width};

use super::json;
use super::names::{
    desired_status_name, health_status_name, stop_code_name, stop_reason, task_status_name,
};
use super::time::rfc3339_seconds;

/// The space between columns.
const GAP: u16 = 2;
/// The width assumed when `COLUMNS` does not say.
const DEFAULT_WIDTH: usize = 120;
/// No column is cut below this (or below its natural width, when that is smaller).
const MIN_COLUMN: u16 = 6;

/// The terminal width: `COLUMNS` when it is a positive number, else 120.
pub(super) fn terminal_width() -> usize {
    width_from(std::env::var("COLUMNS").ok().as_deref())
}

fn width_from(columns: Option<&str>) -> usize {
    columns
        .and_then(|c| c.trim().parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

/// A table: a header row and rows of cells.
#[derive(Debug)]
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table at most `width` columns wide (unless even the narrowest columns are wider),
    /// one line a row, each ending with a newline. Newlines and tabs in cells become spaces.
    pub(super) fn render(&self, width: usize) -> String {
        let line = |cells: &[String]| {
            let mut row = Row::from(cells.iter().map(|c| c.replace(['\n', '\r', '\t'], " ")));
            row.max_height(1);
            row
        };
        let mut grid = comfy_table::Table::new();
        grid.load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(u16::try_from(width).unwrap_or(u16::MAX))
            .set_truncation_indicator("…")
            // Cells (IDs, lists, reasons) are cut where the width ends, not at a space.
            .set_delimiter('\0')
            .set_header(line(&self.headers));
        for cells in &self.rows {
            grid.add_row(line(cells));
        }
        let widths = fit(&grid.column_max_content_widths(), width);
        let last = widths.len().saturating_sub(1);
        for (i, column) in grid.column_iter_mut().enumerate() {
            let gap = if i == last { 0 } else { GAP };
            column.set_padding((0, gap));
            // comfy-table's widths count the padding in.
            let width = widths.get(i).copied().unwrap_or(0).saturating_add(gap);
            column.set_constraint(ColumnConstraint::Absolute(Width::Fixed(width)));
        }
        grid.lines()
            .map(|line| format!("{}\n", line.trim_end()))
            .collect()
    }
}

/// The width of each column (by display width, without the gaps) for a table at most `width`
/// wide: the columns' natural widths, the widest cut by one until they fit, but none below its
/// floor (its natural width, at most [`MIN_COLUMN`]), so short cells (statuses) stay whole.
fn fit(natural: &[u16], width: usize) -> Vec<u16> {
    let mut widths = natural.to_vec();
    let floors: Vec<u16> = widths.iter().map(|w| (*w).min(MIN_COLUMN)).collect();
    let gaps = usize::from(GAP) * widths.len().saturating_sub(1);
    let available = width.saturating_sub(gaps);
    while widths.iter().map(|w| usize::from(*w)).sum::<usize>() > available {
        // Cut the widest column that can still be cut (the leftmost of equals).
        let Some((i, _)) = widths
            .iter()
            .enumerate()
            .filter(|(i, w)| **w > floors[*i])
            .max_by_key(|(i, w)| (**w, usize::MAX - i))
        else {
            break;
        };
        widths[i] -= 1;
    }
    widths
}

/// One column of names (clusters, task definitions).
pub(super) fn names_table(header: &str, names: &[String]) -> String {
    let mut table = Table::new(&[header]);
    for name in names {
        table.row(vec![name.clone()]);
    }
    table.render(terminal_width())
}

/// The columns of a task table.
const TASK_COLUMNS: [&str; 9] = [
    "TASK ID",
    "DEFINITION",
    "LAST",
    "DESIRED",
    "HEALTH",
    "INSTANCE",
    "NETWORK",
    "STARTED",
    "STOP CODE/REASON",
];

pub(super) fn tasks_table(tasks: &[proto::Task]) -> String {
    let mut table = Table::new(&TASK_COLUMNS);
    for t in tasks {
        table.row(task_row(t));
    }
    table.render(terminal_width())
}

/// A task's cells, in [`TASK_COLUMNS`]' order.
fn task_row(t: &proto::Task) -> Vec<String> {
    let stop = match stop_code_name(t.stop_code) {
        Some(_) => stop_reason(t),
        None => t.stopped_reason.clone(),
    };
    vec![
        t.task_id.clone(),
        t.task_definition.clone(),
        task_status_name(t.last_status),
        desired_status_name(t.desired_status),
        health_status_name(t.health_status),
        t.container_instance_id.clone(),
        task_network(t),
        t.started_at
            .as_ref()
            .map(rfc3339_seconds)
            .unwrap_or_default(),
        stop,
    ]
}

/// Where a task is reachable, compactly: its bound host ports ("0.0.0.0:49153->80/tcp"), else
/// its address (its own interface's in awsvpc mode, else its first container's on the bridge).
fn task_network(t: &proto::Task) -> String {
    let ports: Vec<String> = t
        .containers
        .iter()
        .flat_map(|c| &c.network_bindings)
        .map(|b| {
            let ip = if b.bind_ip.is_empty() {
                "0.0.0.0"
            } else {
                &b.bind_ip
            };
            format!("{ip}:{}->{}/{}", b.host_port, b.container_port, b.protocol)
        })
        .collect();
    if !ports.is_empty() {
        return ports.join(", ");
    }
    let address = json::task_address(t);
    if !address.is_empty() {
        return address.to_owned();
    }
    t.containers
        .iter()
        .map(|c| c.private_ipv4_address.as_str())
        .find(|a| !a.is_empty())
        .unwrap_or("")
        .to_owned()
}

pub(super) fn instances_table(instances: &[proto::ContainerInstance]) -> String {
    let mut table = Table::new(&[
        "INSTANCE ID",
        "STATUS",
        "AGENT",
        "CPU FREE/TOTAL",
        "MEMORY FREE/TOTAL",
        "CPU USED/RESERVED",
        "MEMORY USED/RESERVED",
        "RUNNING",
        "PENDING",
        "VERSION",
    ]);
    for i in instances {
        let (registered, remaining) = (
            i.registered_resources.clone().unwrap_or_default(),
            i.remaining_resources.clone().unwrap_or_default(),
        );
        table.row(vec![
            i.container_instance_id.clone(),
            i.status.clone(),
            if i.agent_connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_owned(),
            format!("{}/{}", remaining.cpu, registered.cpu),
            format!("{}/{} MiB", remaining.memory_mib, registered.memory_mib),
            format!(
                "{}/{}",
                i.measured
                    .map_or_else(|| "-".to_owned(), |m| m.tasks_cpu.to_string()),
                registered.cpu.saturating_sub(remaining.cpu)
            ),
            format!(
                "{}/{} MiB",
                i.measured
                    .map_or_else(|| "-".to_owned(), |m| m.tasks_memory_mib.to_string()),
                registered.memory_mib.saturating_sub(remaining.memory_mib)
            ),
            i.running_tasks_count.to_string(),
            i.pending_tasks_count.to_string(),
            i.version_info
                .as_ref()
                .map(|v| v.agent_version.clone())
                .unwrap_or_default(),
        ]);
    }
    table.render(terminal_width())
}

pub(super) fn clusters_table(clusters: &[proto::Cluster]) -> String {
    let mut table = Table::new(&["NAME", "STATUS", "INSTANCES", "RUNNING", "PENDING"]);
    for c in clusters {
        table.row(vec![
            c.name.clone(),
            c.status.clone(),
            c.registered_container_instances_count.to_string(),
            c.running_tasks_count.to_string(),
            c.pending_tasks_count.to_string(),
        ]);
    }
    table.render(terminal_width())
}

pub(super) fn task_definition_tables(d: &proto::TaskDefinition) -> String {
    let size = |n: u64, unit: &str| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{n}{unit}")
        }
    };
    let mut summary = Table::new(&["TASK DEFINITION", "CPU", "MEMORY", "NETWORK", "REGISTERED"]);
    summary.row(vec![
        format!("{}:{}", d.family, d.revision),
        size(u64::from(d.cpu), ""),
        size(d.memory_mib, " MiB"),
        d.network_mode.clone(),
        d.registered_at
            .as_ref()
            .map(rfc3339_seconds)
            .unwrap_or_default(),
    ]);
    let mut containers = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CPU",
        "MEMORY",
        "RESERVATION",
        "ESSENTIAL",
        "PORTS",
    ]);
    for c in &d.containers {
        containers.row(vec![
            c.name.clone(),
            c.image.clone(),
            size(u64::from(c.cpu), ""),
            size(c.memory_mib, " MiB"),
            size(c.memory_reservation_mib, " MiB"),
            if c.essential { "yes" } else { "no" }.to_owned(),
            c.port_mappings
                .iter()
                .map(|m| match m.host_port {
                    // A dynamic host port, chosen by the agent when the task starts.
                    0 => format!("{}/{}", m.container_port, m.protocol),
                    host => format!("{host}->{}/{}", m.container_port, m.protocol),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    let width = terminal_width();
    format!("{}\n{}", summary.render(width), containers.render(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_width_cutting_with_an_ellipsis() {
        let mut table = Table::new(&["ID", "REASON"]);
        table.row(vec!["t1".into(), "short".into()]);
        table.row(vec![
            "t2".into(),
            "a rather long reason that will not fit".into(),
        ]);
        assert_eq!(
            table.render(80),
            "ID  REASON\nt1  short\nt2  a rather long reason that will not fit\n"
        );
        assert_eq!(
            table.render(20),
            "ID  REASON\nt1  short\nt2  a rather long r…\n"
        );
        // Too narrow for anything: columns keep their floors.
        let narrow = table.render(1);
        assert!(
            narrow.starts_with("ID  REASON\nt1  short\nt2  a rat"),
            "{narrow}"
        );
        assert!(narrow.lines().all(|l| l.chars().count() <= 10), "{narrow}");
    }

    #[test]
    fn cuts_the_widest_column_first() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["0123456789".into(), "abcdefghijklmnopqrst".into()]);
        assert_eq!(
            table.render(24),
            "A           B\n0123456789  abcdefghijk…\n"
        );
        assert_eq!(table.render(20), "A          B\n01234567…  abcdefgh…\n");
        assert_eq!(fit(&[10, 20], 24), [10, 12]);
        assert_eq!(fit(&[10, 20], 20), [9, 9]);
        assert_eq!(fit(&[2, 3, 40], 10), [2, 3, 6]);
    }

    #[test]
    fn measures_display_width() {
        let mut table = Table::new(&["NAME", "NOTE"]);
        table.row(vec!["日本語".into(), "wide".into()]);
        table.row(vec!["abc".into(), "narrow".into()]);
        let text = table.render(80);
        let lines: Vec<&str> = text.lines().collect();
        // Each of the three characters is two columns wide: the second column lines up.
        assert_eq!(lines[1], "日本語  wide");
        assert_eq!(lines[2], "abc     narrow");
        let mut long = Table::new(&["A", "B"]);
        long.row(vec!["0123456789".into(), "ääääääääääääääääääää".into()]);
        let cut = long.render(24);
        assert!(cut.lines().all(|l| l.chars().count() <= 24), "{cut}");
        assert!(
            cut.lines().nth(1).is_some_and(|l| l.ends_with('…')),
            "{cut}"
        );
    }

    #[test]
    fn rows_are_one_line_and_padded_to_the_headers() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.row(vec!["x\ny".into()]);
        table.row(vec!["1".into(), "2".into(), "3".into(), "dropped".into()]);
        assert_eq!(table.render(80), "A    B  C\nx y\n1    2  3\n");
    }

    #[test]
    fn a_full_task_row_fits_the_terminal() {
        let t = proto::Task {
            task_id: "0f8b7c2e-3d4a-4b5c-9e6f-7a8b9c0d1e2f".into(),
            task_definition: "web-frontend:12".into(),
            container_instance_id: "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d".into(),
            last_status: proto::TaskStatus::Stopped as i32,
            desired_status: proto::DesiredStatus::Stopped as i32,
            health_status: proto::HealthStatus::Healthy as i32,
            stop_code: proto::StopCode::EssentialContainerExited as i32,
            stopped_reason: "Essential container in task exited: app exited with code 137".into(),
            ..Default::default()
        };
        let mut table = Table::new(&TASK_COLUMNS);
        table.row(task_row(&t));
        for width in [80, 120] {
            let text = table.render(width);
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines.iter().all(|l| l.chars().count() <= width), "{text}");
            assert!(
                lines[0].starts_with("TASK ID") && lines[0].contains("HEALTH"),
                "{text}"
            );
            // Short cells are never cut; long ones keep their start.
            assert!(lines[1].contains("  STOPPED  STOPPED  HEALTHY  "), "{text}");
            assert!(lines[1].starts_with("0f8b7c"), "{text}");
        }
    }

    #[test]
    fn width_from_columns() {
        assert_eq!(width_from(Some("80")), 80);
        assert_eq!(width_from(Some("0")), 120);
        assert_eq!(width_from(Some("wide")), 120);
        assert_eq!(width_from(None), 120);
    }

    #[test]
    fn tasks_table_columns() {
        let t = proto::Task {
            task_id: "t-1".into(),
            task_definition: "web:3".into(),
            container_instance_id: "i-1".into(),
            last_status: proto::TaskStatus::Stopped as i32,
            desired_status: proto::DesiredStatus::Stopped as i32,
            started_at: Some(prost_types::Timestamp {
                seconds: 1_795_778_400,
                nanos: 0,
            }),
            stop_code: proto::StopCode::UserInitiated as i32,
            stopped_reason: "done".into(),
            ..Default::default()
        };
        let text = tasks_table(&[t]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TASK ID  DEFINITION  LAST     DESIRED  HEALTH   INSTANCE  NETWORK  STARTED               STOP CODE/REASON"
        );
        assert_eq!(
            lines[1],
            "t-1      web:3       STOPPED  STOPPED  UNKNOWN  i-1                2026-11-27T11:20:00Z  UserInitiated: done"
        );
    }

    #[test]
    fn the_network_column_shows_ports_else_the_address() {
        let binding = |host_port, container_port, protocol: &str| proto::NetworkBinding {
            bind_ip: "0.0.0.0".into(),
            container_port,
            host_port,
            protocol: protocol.into(),
        };
        let bridge = proto::Task {
            containers: vec![
                proto::ContainerState {
                    network_bindings: vec![binding(49153, 80, "tcp"), binding(5353, 53, "udp")],
                    private_ipv4_address: "172.17.0.2".into(),
                    ..Default::default()
                },
                proto::ContainerState {
                    network_bindings: vec![proto::NetworkBinding {
                        bind_ip: String::new(),
                        ..binding(8080, 8080, "tcp")
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            task_network(&bridge),
            "0.0.0.0:49153->80/tcp, 0.0.0.0:5353->53/udp, 0.0.0.0:8080->8080/tcp"
        );
        let awsvpc = proto::Task {
            attachments: vec![proto::NetworkAttachment {
                private_ipv4_address: "10.1.0.5".into(),
                ..Default::default()
            }],
            containers: vec![proto::ContainerState::default()],
            ..Default::default()
        };
        assert_eq!(task_network(&awsvpc), "10.1.0.5");
        let no_ports = proto::Task {
            containers: vec![
                proto::ContainerState::default(),
                proto::ContainerState {
                    private_ipv4_address: "172.17.0.3".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(task_network(&no_ports), "172.17.0.3");
        assert_eq!(task_network(&proto::Task::default()), "");
    }

    #[test]
    fn the_definition_table_shows_port_mappings() {
        let def = crate::taskdef::parse(
            r#"{"family":"web","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
                "portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":9000},
                                {"containerPort":53,"protocol":"udp"}]}]}"#,
        )
        .unwrap();
        let text = task_definition_tables(&def);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].ends_with("PORTS"), "{text}");
        assert!(
            lines[4].ends_with("8080->80/tcp, 9000/tcp, 53/udp"),
            "{text}"
        );
    }
}
