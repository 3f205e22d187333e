//! The agent's configuration file as packages install it: every key of the key table, commented
//! out at its default, with its meaning, environment variable and flag
//! (`berth-agent print-default-config`).

use super::keys::Key;

/// The width comments are wrapped to.
const WIDTH: usize = 98;

const HEADER: &str = "\
# Berth agent configuration (/etc/berth/agent.toml).
#
# Every key is listed below, commented out at its default: uncomment a line to change it.
# Each key can also be set by a BERTH_* environment variable (for the service, in
# /etc/default/berth-agent) or a command-line flag; a flag wins over the environment, which wins
# over this file. `berth-agent check-config` prints every effective value and where it came from.
#
# To join a cluster the agent needs at least scheduler_endpoint; with TLS, also join_token and
# scheduler_ca_pin (`berthctl create-join-token` prints both), or tls_ca_file, tls_cert_file and
# tls_key_file. On a machine image, give them in the instance's user data (a berth: section) or
# EC2 tags (berth:<key>): berth-agent-first-boot.service writes them once to first-boot.toml
# beside this file, read over it (see the README). The package enables berth-agent but starts
# it only once one of these is set.
";

/// The file: a header, then one commented block a key in the key table's order. A key without a
/// default is shown as `#key =` with no value.
pub fn default_config_toml() -> String {
    let mut out = String::from(HEADER);
    for key in Key::ALL {
        let doc = key.doc();
        out.push('\n');
        wrap_comment(&mut out, doc.meaning);
        let default = if doc.default == "(none)" {
            "unset by default; "
        } else {
            ""
        };
        wrap_comment(
            &mut out,
            &format!("({default}environment: {}, flag: {})", doc.env, doc.flag),
        );
        if doc.default == "(none)" {
            out.push_str(&format!("#{} =\n", doc.key));
        } else {
            out.push_str(&format!("#{} = {}\n", doc.key, doc.default));
        }
    }
    out
}

/// Appends `text` as `# ` lines of at most [`WIDTH`] columns (a longer word stays whole).
fn wrap_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, Overrides, load};

    #[test]
    fn every_key_appears_once_commented_out() {
        let text = default_config_toml();
        for key in Key::ALL {
            let prefix = format!("#{} =", key.name());
            let lines = text.lines().filter(|l| l.starts_with(&prefix)).count();
            assert_eq!(
                lines,
                1,
                "{} appears {lines} times as a key line",
                key.name()
            );
            assert!(
                text.contains(key.env()),
                "{} has no environment variable",
                key.name()
            );
        }
        let active: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert!(active.is_empty(), "lines that set a value: {active:?}");
        assert!(text.lines().all(|l| l.len() <= WIDTH), "a line is too long");
    }

    #[test]
    fn as_installed_it_loads_to_the_defaults() {
        let text = default_config_toml();
        let loaded = load(None, false, Some(&text), &[], &Overrides::default())
            .expect("the commented file loads");
        assert_eq!(loaded.config, AgentConfig::default());
    }

    #[test]
    fn every_written_default_is_the_real_default() {
        // Uncommenting every line that has a value must not change the configuration: the
        // documented defaults are the ones the agent applies.
        let text = default_config_toml();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let set = uncommented.lines().count();
        let unset = Key::ALL
            .into_iter()
            .filter(|k| k.doc().default == "(none)")
            .count();
        assert_eq!(set + unset, Key::ALL.len(), "{uncommented}");
        let loaded = load(None, false, Some(&uncommented), &[], &Overrides::default())
            .unwrap_or_else(|e| panic!("uncommented defaults do not load: {e}\n{uncommented}"));
        assert_eq!(loaded.config, AgentConfig::default());
    }

    #[test]
    fn comments_wrap_at_the_width() {
        let mut out = String::new();
        wrap_comment(&mut out, &"word ".repeat(40));
        assert!(out.lines().count() > 1);
        assert!(out.lines().all(|l| l.starts_with("# ") && l.len() <= WIDTH));
    }
}
