//! Image reference parsing: oci-spec's `Reference::try_from`, step for step, with one
//! difference that costs nothing a registry accepts: its grammar (Docker's) is matched with
//! ASCII word characters, as Go's `\w` in Docker's own regexp is. oci-spec compiles that regexp
//! with Unicode's `\w`, whose class repeated 128 times for a tag (`[\w][\w.-]{0,127}`) made an
//! automaton of about 8 MiB that the agent built at its first pull and kept for good (with a
//! further cache per thread that parsed a reference): most of the agent's heap at rest. Here
//! it is a few hundred KiB. A tag with a non-ASCII letter, which no registry (nor Docker, nor
//! containerd) takes, is now refused as an invalid reference before a pull asks for it.

use std::sync::LazyLock;

use oci_client::{ParseError, Reference};
use regex::Regex;

/// Docker's `ReferenceRegexp` (distribution/reference), as oci-spec writes it, its `\w`s
/// ASCII: name (1), tag (2), digest (3).
const REFERENCE: &str = r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)(?::((?-u:\w)(?-u:[\w.-]){0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$";

const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL_REPOSITORIES: &str = "library";

/// Built at the first parse, kept for the process's life.
static REGEX: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(REFERENCE).ok());

/// Parses `s` as oci-spec's `Reference::try_from` does (same results, same errors), ASCII
/// word characters aside.
pub(super) fn parse(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let captures = REGEX
        .as_ref()
        .and_then(|re| re.captures(s))
        .ok_or(ParseError::ReferenceInvalidFormat)?;
    let name = captures.get(1).map_or("", |m| m.as_str());
    let tag = captures.get(2).map(|m| m.as_str().to_owned());
    let digest = captures.get(3).map(|m| m.as_str().to_owned());
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ParseError::NameTooLong);
    }
    // Digests are always hex-encoded: their hex part is twice the hash's size.
    if let Some(digest) = &digest {
        let expected = match digest.split_once(':') {
            None => return Err(ParseError::DigestInvalidFormat),
            Some(("sha256", _)) => 64,
            Some(("sha384", _)) => 96,
            Some(("sha512", _)) => 128,
            Some(_) => return Err(ParseError::DigestUnsupported),
        };
        if digest.split_once(':').map_or(0, |(_, hex)| hex.len()) != expected {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or_else(|| DEFAULT_TAG.to_owned()),
        ),
    })
}

/// The registry and the repository of a name, Docker Hub's defaults filled in.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains('.') || left.contains(':') || left == "localhost" => {
            (left.to_owned(), right.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB.to_owned();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPOSITORIES}/{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// oci-spec's own parse, for comparison (it builds its 8 MiB regexp once per test binary).
    fn theirs(s: &str) -> Result<Reference, ParseError> {
        Reference::try_from(s)
    }

    #[test]
    fn parses_as_oci_spec_does() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            "busybox".to_owned(),
            "busybox:1.36".to_owned(),
            "library/busybox".to_owned(),
            "docker.io/busybox".to_owned(),
            "index.docker.io/busybox:latest".to_owned(),
            "index.docker.io/team/app".to_owned(),
            "localhost/app".to_owned(),
            "localhost:5000/app:v1".to_owned(),
            "127.0.0.1:5000/app:1.3".to_owned(),
            "registry.local/a/b/c:tag_with.dots-and_underscores".to_owned(),
            "team/app".to_owned(),
            "my-registry.example.com:443/x__y/z-w.v:T".to_owned(),
            format!("app@{digest}"),
            format!("app:1@{digest}"),
            format!("registry.local/app:1@{digest}"),
            format!("app@sha384:{}", "b".repeat(96)),
            format!("app@sha512:{}", "c".repeat(128)),
            format!("app:{}", "t".repeat(128)),
            // Refused, each for its reason.
            String::new(),
            format!("app:{}", "t".repeat(129)),
            "registry.local/App:x".to_owned(),
            "app:bad tag".to_owned(),
            "app:".to_owned(),
            ":tag".to_owned(),
            "app@sha256:abc".to_owned(),
            format!("app@sha256:{}", "a".repeat(63)),
            format!("app@md5:{}", "a".repeat(32)),
            format!("app@sha256:{}", "g".repeat(64)),
            format!("{}/app", "a".repeat(300)),
            format!("registry.local/{}", "a".repeat(300)),
            "a/b//c".to_owned(),
            "-app".to_owned(),
        ];
        for case in &cases {
            assert_eq!(parse(case), theirs(case), "{case:?}");
        }
    }

    #[test]
    fn tags_are_ascii_as_in_docker() {
        assert!(
            theirs("app:é").is_ok(),
            "oci-spec takes Unicode word characters"
        );
        assert_eq!(parse("app:é"), Err(ParseError::ReferenceInvalidFormat));
    }
}
