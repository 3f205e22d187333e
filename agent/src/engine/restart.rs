//! Container restarts (ECS `restartPolicy`) as pure logic: whether a container that exited is
//! restarted in place, and after what delay. The driver passes how long the run lasted; nothing
//! here touches a runtime or a clock.
//!
//! ECS's rules, applied as written: a policy that is not enabled never restarts; an exit code in
//! `ignoredExitCodes` ends the container for good; and "a container can be restarted only once
//! every restartAttemptPeriod seconds. If a container isn't able to run for this time period
//! and exits early, it will not be restarted" — so a run shorter than the period ends the
//! container for good, and the essential-container rule applies to it as to any exit.
//!
//! On top of ECS, a container that keeps crashing backs off as the kubelet does: the restart
//! waits `base` (10 s), doubling with each consecutive restart up to `max` (5 min). The streak
//! resets, as the kubelet's does, once a run lasted at least twice `max` (10 min) without a
//! crash. ECS's period already bounds a crash loop to one restart a period; the backoff spaces
//! out containers that crash just after the period, again and again.

use std::time::Duration;

use berth_proto::v1::ContainerDefinition;

/// A container's restart policy, as the driver applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Policy {
    ignored_exit_codes: Vec<u32>,
    attempt_period: Duration,
}

impl Policy {
    /// The policy of a container, or None when it is never restarted.
    pub(super) fn of(def: &ContainerDefinition) -> Option<Self> {
        let p = def.restart_policy.as_ref().filter(|p| p.enabled)?;
        Some(Self {
            ignored_exit_codes: p.ignored_exit_codes.clone(),
            attempt_period: Duration::from_secs(u64::from(p.restart_attempt_period_seconds)),
        })
    }
}

/// The kubelet-style backoff between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff {
    /// The delay before the first restart of a streak.
    pub(super) base: Duration,
    /// The longest delay.
    pub(super) max: Duration,
}

impl Backoff {
    /// The delay before the restart numbered `streak` (0 for the first of a streak).
    pub(super) fn delay(self, streak: u32) -> Duration {
        crate::backoff::exponential(self.base, self.max, streak)
    }

    /// A run at least this long ends a streak of crashes (the kubelet's rule: twice the max).
    fn reset_after(self) -> Duration {
        self.max.saturating_mul(2)
    }
}

/// Why a container that exited is not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoRestart {
    /// Its exit code is one of the policy's ignored exit codes.
    IgnoredExitCode,
    /// It ran for less than the policy's restartAttemptPeriod.
    RanTooShort,
}

/// What to do with a container that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Restart it after `delay`; `streak` is the streak to keep for its next exit.
    Restart { delay: Duration, streak: u32 },
    /// It has ended for good.
    Exit(NoRestart),
}

/// Decides about a container with `policy` whose run of `ran_for` ended with `exit_code`,
/// after `streak` consecutive restarts.
pub(super) fn decide(
    policy: &Policy,
    backoff: Backoff,
    exit_code: u32,
    ran_for: Duration,
    streak: u32,
) -> Decision {
    if policy.ignored_exit_codes.contains(&exit_code) {
        return Decision::Exit(NoRestart::IgnoredExitCode);
    }
    if ran_for < policy.attempt_period {
        return Decision::Exit(NoRestart::RanTooShort);
    }
    let streak = if ran_for >= backoff.reset_after() {
        0
    } else {
        streak
    };
    Decision::Restart {
        delay: backoff.delay(streak),
        streak: streak.saturating_add(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::RestartPolicy;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    fn policy(ignored: &[u32], period: u64) -> Policy {
        Policy::of(&ContainerDefinition {
            restart_policy: Some(RestartPolicy {
                enabled: true,
                ignored_exit_codes: ignored.to_vec(),
                restart_attempt_period_seconds: period as u32,
            }),
            ..Default::default()
        })
        .unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn absent_or_disabled_policies_never_restart() {
        assert_eq!(Policy::of(&ContainerDefinition::default()), None);
        let disabled = ContainerDefinition {
            restart_policy: Some(RestartPolicy {
                enabled: false,
                ignored_exit_codes: vec![],
                restart_attempt_period_seconds: 60,
            }),
            ..Default::default()
        };
        assert_eq!(Policy::of(&disabled), None);
    }

    #[test]
    fn ignored_exit_codes_end_the_container() {
        let p = policy(&[0, 3], 60);
        for code in [0, 3] {
            assert_eq!(
                decide(&p, BACKOFF, code, secs(600), 0),
                Decision::Exit(NoRestart::IgnoredExitCode)
            );
        }
        assert!(matches!(
            decide(&p, BACKOFF, 1, secs(600), 0),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn a_run_shorter_than_the_attempt_period_is_not_restarted() {
        let p = policy(&[], 60);
        assert_eq!(
            decide(&p, BACKOFF, 1, secs(59), 0),
            Decision::Exit(NoRestart::RanTooShort)
        );
        assert_eq!(
            decide(&p, BACKOFF, 1, secs(60), 0),
            Decision::Restart {
                delay: secs(10),
                streak: 1
            }
        );
    }

    #[test]
    fn the_backoff_doubles_from_10s_to_5min() {
        let p = policy(&[], 60);
        let mut streak = 0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            match decide(&p, BACKOFF, 1, secs(61), streak) {
                Decision::Restart { delay, streak: s } => {
                    delays.push(delay.as_secs());
                    streak = s;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(BACKOFF.delay(u32::MAX), secs(300));
    }

    #[test]
    fn a_run_of_twice_the_max_resets_the_streak() {
        let p = policy(&[], 60);
        assert_eq!(
            decide(&p, BACKOFF, 1, secs(599), 5),
            Decision::Restart {
                delay: secs(300),
                streak: 6
            }
        );
        assert_eq!(
            decide(&p, BACKOFF, 1, secs(600), 5),
            Decision::Restart {
                delay: secs(10),
                streak: 1
            }
        );
    }
}
