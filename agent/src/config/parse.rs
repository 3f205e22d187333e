//! Pure parsers and validators for single configuration values: each takes text and returns
//! the typed value or `None`; the caller knows the key and says what was expected. Durations
//! are `berth_policy::parse_duration`'s, the grammar every Berth binary reads.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// A whole number of seconds (only ASCII digits).
pub(crate) fn seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Duration::from_secs)
}

/// The canonical spelling of a duration (`3h`, `1h30m`, `10s`, `0s`), which
/// `berth_policy::parse_duration`, the grammar of every duration the agent reads, reads back.
pub(crate) fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let parts = [
        (total_ms / 3_600_000, "h"),
        (total_ms / 60_000 % 60, "m"),
        (total_ms / 1_000 % 60, "s"),
        (total_ms % 1_000, "ms"),
    ];
    for (n, unit) in parts {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// An unsigned integer written with ASCII digits only.
pub(crate) fn unsigned(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(crate) fn boolean(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A port from 1 to 65535.
pub(crate) fn port(n: u64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// Comma-separated items, each trimmed; the empty string is the empty list.
pub(crate) fn comma_list(text: &str) -> Vec<&str> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    text.split(',').map(str::trim).collect()
}

/// 1 to 255 of `[A-Za-z0-9_-]`, as ECS cluster names.
pub(crate) fn is_cluster_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A join token as berthctl prints it: `<id>.<secret>`, 6 and 16 lowercase letters or digits.
pub(crate) fn is_join_token(s: &str) -> bool {
    let part = |p: &str, len: usize| {
        p.len() == len
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split_once('.')
        .is_some_and(|(id, secret)| part(id, 6) && part(secret, 16))
}

/// A CA pin: `sha256:` and 64 hex digits.
pub(crate) fn is_ca_pin(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ less the NUL) of letters, digits, `-`, `_`
/// and `.`, not `.` or `..`.
pub(crate) fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// containerd's identifier rule (`identifiers.Validate`): at most 76 characters, letters and
/// digits in runs separated by single `.`, `_` or `-`, starting and ending with a letter or digit.
pub(crate) fn is_containerd_namespace(s: &str) -> bool {
    let separator = |b: u8| matches!(b, b'.' | b'_' | b'-');
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 76
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || separator(*b))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !bytes.windows(2).any(|w| separator(w[0]) && separator(w[1]))
}

/// An attribute name as ECS accepts it: 1 to 128 of letters, digits, `_`, `-`, `.`, `/`, `\`.
pub(crate) fn is_attribute_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'\\'))
}

/// An attribute value as ECS accepts it: 1 to 128 of letters, digits, `_`, `-`, `.`, `@`, `/`,
/// `\`, `:` or spaces, without leading or trailing spaces.
pub(crate) fn is_attribute_value(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.trim() == s
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'.' | b'@' | b'/' | b'\\' | b':' | b' ')
        })
}

/// A registry as `host[:port]`: no scheme, no path, no spaces.
pub(crate) fn is_registry_host(s: &str) -> bool {
    !s.is_empty() && !s.contains("://") && !s.contains('/') && !s.chars().any(char::is_whitespace)
}

/// A parsed `http://` or `https://` URL with a host, an optional port and no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl Endpoint {
    /// Whether the host is `localhost` or a loopback address.
    pub(crate) fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Parses a scheduler endpoint; a single trailing `/` is allowed, any other path is not
/// (the scheduler is a gRPC origin).
pub(crate) fn endpoint(text: &str) -> Option<Endpoint> {
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return None;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_host {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(port_text(p)?),
    };
    Some(Endpoint { https, host, port })
}

fn port_text(text: &str) -> Option<u16> {
    unsigned(text).and_then(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_canonically_and_round_trip() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(3 * 3600), "3h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(100 * 3600 + 1), "100h1s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(berth_policy::parse_duration(text).ok(), Some(d));
        }
    }

    #[test]
    fn seconds_are_digits_only() {
        assert_eq!(seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(seconds("0"), Some(Duration::ZERO));
        for bad in [
            "",
            "30s",
            "-1",
            "+1",
            " 1",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_follow_their_rules() {
        assert!(is_cluster_name("prod-eu_1"));
        assert!(!is_cluster_name(""));
        assert!(!is_cluster_name("a b"));
        assert!(!is_cluster_name("a.b"));
        assert!(is_cluster_name(&"a".repeat(255)));
        assert!(!is_cluster_name(&"a".repeat(256)));

        assert!(is_containerd_namespace("berth"));
        assert!(is_containerd_namespace("k8s.io"));
        assert!(is_containerd_namespace("a-b_c.d9"));
        for bad in ["", "-a", "a-", "a..b", "a b", "a/b", ".a"] {
            assert!(!is_containerd_namespace(bad), "{bad:?}");
        }
        assert!(is_containerd_namespace(&"a".repeat(76)));
        assert!(!is_containerd_namespace(&"a".repeat(77)));

        assert!(is_attribute_name("ecs.os-type"));
        assert!(!is_attribute_name("a b"));
        assert!(is_attribute_value("linux x86: 64@zone/a"));
        assert!(!is_attribute_value(" padded"));
        assert!(!is_attribute_value(""));
        assert!(!is_attribute_value("a,b"));

        assert!(is_registry_host("127.0.0.1:5000"));
        assert!(is_registry_host("registry.local"));
        assert!(!is_registry_host("http://registry.local"));
        assert!(!is_registry_host("registry.local/path"));
        assert!(!is_registry_host(""));
    }

    #[test]
    fn endpoints_parse() {
        let e = endpoint("http://127.0.0.1:7700").expect("valid");
        assert_eq!(
            e,
            Endpoint {
                https: false,
                host: "127.0.0.1".into(),
                port: Some(7700)
            }
        );
        assert!(e.is_loopback());
        let e = endpoint("https://scheduler.example/").expect("valid");
        assert!(e.https);
        assert_eq!(e.port, None);
        assert!(!e.is_loopback());
        assert!(endpoint("http://localhost:1").expect("valid").is_loopback());
        assert!(endpoint("http://[::1]:7700").expect("valid").is_loopback());
        assert!(endpoint("http://127.1.2.3").expect("valid").is_loopback());
        assert!(
            !endpoint("http://[2001:db8::1]")
                .expect("valid")
                .is_loopback()
        );
        assert!(
            !endpoint("http://10.0.0.5:7700")
                .expect("valid")
                .is_loopback()
        );
        for bad in [
            "",
            "127.0.0.1:7700",
            "ftp://host",
            "http://",
            "http://:7700",
            "http://host:0",
            "http://host:70000",
            "http://host:port",
            "http://host/path",
            "http://user@host",
            "http://[::1",
            "http://[zz]:1",
            "http://ho st",
            "HTTP//host",
        ] {
            assert_eq!(endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lists_split_on_commas() {
        assert_eq!(comma_list(""), Vec::<&str>::new());
        assert_eq!(comma_list(" "), Vec::<&str>::new());
        assert_eq!(comma_list("a, b ,c"), vec!["a", "b", "c"]);
        assert_eq!(comma_list("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn ports_and_numbers() {
        assert_eq!(port(1), Some(1));
        assert_eq!(port(65535), Some(65535));
        assert_eq!(port(0), None);
        assert_eq!(port(65536), None);
        assert_eq!(unsigned("42"), Some(42));
        assert_eq!(unsigned("-1"), None);
        assert_eq!(unsigned("+1"), None);
        assert_eq!(boolean("true"), Some(true));
        assert_eq!(boolean("yes"), None);
    }
}
