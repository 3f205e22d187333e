//! The metrics text both daemons serve: prometheus-client writes OpenMetrics, and a scraper
//! that does not ask for it (or `promtool check metrics`) gets Prometheus' text format 0.0.4.

/// OpenMetrics text as Prometheus' text format 0.0.4, for scrapers (and `promtool check
/// metrics`) that do not ask for OpenMetrics: a counter's HELP and TYPE name its samples'
/// `_total` name, and the `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line == "# EOF" || line.starts_with("# UNIT ") {
            i += 1;
            continue;
        }
        if let (Some(help), Some(next)) = (line.strip_prefix("# HELP "), lines.get(i + 1)) {
            let name = help.split(' ').next().unwrap_or_default();
            if *next == format!("# TYPE {name} counter") {
                let text = &help[name.len()..];
                out.push_str(&format!(
                    "# HELP {name}_total{text}\n# TYPE {name}_total counter\n"
                ));
                i += 2;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_lines_go() {
        let openmetrics = "# HELP calls Calls made.\n# TYPE calls counter\n# UNIT calls calls\ncalls_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP calls_total Calls made.\n# TYPE calls_total counter\ncalls_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}
