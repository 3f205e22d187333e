//! Image pull behaviours, by the names of the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`: the
//! agent's `image_pull_behavior` key and a task definition's `berth.imagePullBehavior` take
//! the same four values, so the scheduler refuses what the agent would not know.

use std::fmt;
use std::str::FromStr;

/// When a task's start asks the registry for an image, and what it does when the registry
/// fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PullBehavior {
    /// Pull; if the registry fails and the image is cached, start from the cache and say so.
    #[default]
    Default,
    /// Pull; if the registry fails, the task fails.
    Always,
    /// Pull only when the image is not cached.
    Once,
    /// Use the cached image when there is one; pull otherwise.
    PreferCached,
}

impl PullBehavior {
    /// Every behaviour, in the order of the ECS agent's documentation.
    pub const ALL: [PullBehavior; 4] = [
        PullBehavior::Default,
        PullBehavior::Always,
        PullBehavior::Once,
        PullBehavior::PreferCached,
    ];

    /// The name in configuration and task definitions: `default`, `always`, `once`,
    /// `prefer-cached`.
    pub fn name(self) -> &'static str {
        match self {
            PullBehavior::Default => "default",
            PullBehavior::Always => "always",
            PullBehavior::Once => "once",
            PullBehavior::PreferCached => "prefer-cached",
        }
    }

    /// The accepted names, for error messages: `default, always, once or prefer-cached`.
    pub fn expected() -> &'static str {
        "one of default, always, once or prefer-cached"
    }
}

impl fmt::Display for PullBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a pull behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPullBehavior(pub String);

impl fmt::Display for UnknownPullBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an image pull behavior: use {}",
            self.0,
            PullBehavior::expected()
        )
    }
}

impl std::error::Error for UnknownPullBehavior {}

impl FromStr for PullBehavior {
    type Err = UnknownPullBehavior;

    /// The exact, lower-case names; ECS's spelling only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PullBehavior::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownPullBehavior(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for b in PullBehavior::ALL {
            assert_eq!(b.name().parse::<PullBehavior>(), Ok(b));
        }
        assert_eq!(PullBehavior::default(), PullBehavior::Default);
    }

    #[test]
    fn other_spellings_are_refused_with_the_choices() {
        for bad in ["Always", "prefer_cached", "", "never"] {
            let err = bad.parse::<PullBehavior>().expect_err(bad);
            assert!(err.to_string().contains("prefer-cached"), "{err}");
        }
    }
}
