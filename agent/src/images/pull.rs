//! Which pull a task's start does for one image, by its pull behaviour (ECS's
//! `ECS_IMAGE_PULL_BEHAVIOR` values), whether the image is cached, whether this agent pulled
//! it before and whether the reference names a digest. Pure: the driver acts on the [`Plan`].

use berth_policy::PullBehavior;

/// What to do for one image of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Start from the cached image; the registry is not asked.
    UseCached,
    /// Ask the registry. With `fallback`, a failure starts from the cached image (there is
    /// one) and the task's containers say so; without, the failure stops the task.
    Pull { fallback: bool },
}

/// Whether `reference` names its image by digest (`repo@sha256:…`): then what it names can
/// never change, and a cached copy is never resolved at the registry again.
pub(crate) fn by_digest(reference: &str) -> bool {
    reference.contains('@')
}

/// The plan for one image:
///
/// | behaviour | cached | plan |
/// | --- | --- | --- |
/// | any | yes, by digest | use the cache |
/// | `default` | yes | pull, the cache if the registry fails |
/// | `default` | no | pull |
/// | `always` | either | pull |
/// | `once` | yes, pulled by this agent | use the cache |
/// | `once` | otherwise | pull |
/// | `prefer-cached` | yes | use the cache |
/// | `prefer-cached` | no | pull |
///
/// `pulled_before`: this agent has pulled the reference before (its store says so), which is
/// what `once` asks, as ECS's "pulled by a previous task on the same container instance".
pub(crate) fn plan(
    behavior: PullBehavior,
    reference: &str,
    cached: bool,
    pulled_before: bool,
) -> Plan {
    if cached && by_digest(reference) {
        return Plan::UseCached;
    }
    match behavior {
        PullBehavior::Default => Plan::Pull { fallback: cached },
        PullBehavior::Always => Plan::Pull { fallback: false },
        PullBehavior::Once if cached && pulled_before => Plan::UseCached,
        PullBehavior::PreferCached if cached => Plan::UseCached,
        PullBehavior::Once | PullBehavior::PreferCached => Plan::Pull { fallback: false },
    }
}

/// The behaviour of a task: its definition's `berth.imagePullBehavior` when set, the agent's
/// otherwise. A name this agent does not know (a newer scheduler's) falls back to the
/// agent's, with a warning.
pub(crate) fn for_task(defined: &str, agent: PullBehavior) -> PullBehavior {
    if defined.is_empty() {
        return agent;
    }
    defined.parse().unwrap_or_else(|error| {
        tracing::warn!(%error, fallback = %agent, "task definition's image pull behavior is unknown to this agent");
        agent
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "127.0.0.1:5000/app:1";
    const DIGEST: &str = "127.0.0.1:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn the_decision_table() {
        use PullBehavior::*;
        let pull = |fallback| Plan::Pull { fallback };
        // (behaviour, reference, cached, pulled before) → plan
        let table = [
            (Default, TAG, false, false, pull(false)),
            (Default, TAG, true, false, pull(true)),
            (Default, TAG, true, true, pull(true)),
            (Always, TAG, false, false, pull(false)),
            (Always, TAG, true, true, pull(false)),
            (Once, TAG, false, false, pull(false)),
            (Once, TAG, false, true, pull(false)),
            (Once, TAG, true, false, pull(false)),
            (Once, TAG, true, true, Plan::UseCached),
            (PreferCached, TAG, false, false, pull(false)),
            (PreferCached, TAG, true, false, Plan::UseCached),
            (PreferCached, TAG, true, true, Plan::UseCached),
        ];
        for (behavior, reference, cached, before, want) in table {
            assert_eq!(
                plan(behavior, reference, cached, before),
                want,
                "{behavior} cached={cached} pulled_before={before}"
            );
        }
    }

    #[test]
    fn a_cached_digest_is_never_resolved_again() {
        for behavior in PullBehavior::ALL {
            assert_eq!(plan(behavior, DIGEST, true, false), Plan::UseCached);
            assert!(matches!(
                plan(behavior, DIGEST, false, false),
                Plan::Pull { fallback: false }
            ));
        }
        assert!(by_digest(DIGEST));
        assert!(!by_digest(TAG));
    }

    #[test]
    fn a_definition_overrides_the_agent() {
        assert_eq!(
            for_task("", PullBehavior::Once),
            PullBehavior::Once,
            "unset: the agent's"
        );
        assert_eq!(for_task("always", PullBehavior::Once), PullBehavior::Always);
        assert_eq!(
            for_task("sometimes", PullBehavior::PreferCached),
            PullBehavior::PreferCached,
            "unknown: the agent's"
        );
    }
}
