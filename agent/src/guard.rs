//! Keeps tasks away from the scheduler, wherever it runs: the host of `scheduler_endpoint`
//! resolved to IPv4 addresses (with the endpoint's port) becomes Berth's `blocked` set before
//! any task network exists, and a name is resolved again every [`REFRESH`], so the rule follows
//! the scheduler when its address changes. A loopback host means the scheduler runs here: its
//! port is then closed to tasks on every address of the host.

use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// How often a scheduler named by a host name is resolved again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// The scheduler's host and port, from its endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchedulerTarget {
    host: String,
    port: u16,
}

impl SchedulerTarget {
    /// The host and port of `endpoint` (`http[s]://host[:port][/]`, already checked by the
    /// configuration); the scheme's port when none is written.
    pub(crate) fn from_endpoint(endpoint: &str) -> Option<SchedulerTarget> {
        let uri: hyper::Uri = endpoint.parse().ok()?;
        let default = match uri.scheme_str()? {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        Some(SchedulerTarget {
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(default),
        })
    }

    /// Whether the host is an address, which never needs resolving again.
    fn is_literal(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

/// Resolves a scheduler's host (the seam unit tests replace).
#[async_trait]
pub(crate) trait Resolve: Send + Sync + Debug {
    async fn resolve(&self, target: &SchedulerTarget) -> std::io::Result<Vec<SocketAddrV4>>;
}

/// The system's resolver, as the session's connections use it.
#[derive(Debug)]
pub(crate) struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, target: &SchedulerTarget) -> std::io::Result<Vec<SocketAddrV4>> {
        let found = tokio::net::lookup_host((target.host.as_str(), target.port)).await?;
        let mut v4: Vec<SocketAddrV4> = found
            .filter_map(|a| match a {
                SocketAddr::V4(a) => Some(a),
                // Tasks have IPv4 only: an IPv6 scheduler is out of their reach anyway.
                SocketAddr::V6(_) => None,
            })
            .collect();
        v4.sort_unstable();
        v4.dedup();
        Ok(v4)
    }
}

/// Where the blocked destinations are applied (Berth's nftables table).
#[async_trait]
pub(crate) trait Block: Send + Sync + Debug {
    async fn block(&self, destinations: &[SocketAddrV4])
    -> Result<(), berth_runtime::NetworkError>;
}

#[async_trait]
impl Block for berth_runtime::Network {
    async fn block(
        &self,
        destinations: &[SocketAddrV4],
    ) -> Result<(), berth_runtime::NetworkError> {
        self.block_destinations(destinations).await
    }
}

/// The scheduler's addresses now; empty (with a warning) when its name does not resolve, in
/// which case [`keep_current`] tries again.
pub(crate) async fn initial(target: &SchedulerTarget, resolver: &dyn Resolve) -> Vec<SocketAddrV4> {
    match resolver.resolve(target).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(scheduler.host = %target.host, %error, "cannot resolve the scheduler's host to keep tasks from it; trying again");
            Vec::new()
        }
    }
}

/// Resolves a named scheduler every [`REFRESH`] and applies a changed answer, until `cancel`.
/// `current` is what is applied now. A literal address never changes: it returns at once.
pub(crate) async fn keep_current(
    target: SchedulerTarget,
    mut current: Vec<SocketAddrV4>,
    resolver: Arc<dyn Resolve>,
    blocker: Arc<dyn Block>,
    cancel: CancellationToken,
) {
    if target.is_literal() {
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
        let found = match resolver.resolve(&target).await {
            Ok(found) if !found.is_empty() => found,
            // Keep the last known addresses rather than open the way while DNS is down.
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(scheduler.host = %target.host, %error, "cannot resolve the scheduler's host; keeping its last addresses blocked");
                continue;
            }
        };
        if found == current {
            continue;
        }
        match blocker.block(&found).await {
            Ok(()) => {
                tracing::info!(scheduler.host = %target.host, addresses = ?found, "tasks are kept from the scheduler's new addresses");
                current = found;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot update the scheduler's addresses in the task firewall; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn targets_from_endpoints() {
        let t = |e: &str| SchedulerTarget::from_endpoint(e).map(|t| (t.host, t.port));
        assert_eq!(t("http://127.0.0.1:7700"), Some(("127.0.0.1".into(), 7700)));
        assert_eq!(
            t("https://sched.example/"),
            Some(("sched.example".into(), 443))
        );
        assert_eq!(
            t("http://sched.example"),
            Some(("sched.example".into(), 80))
        );
        assert_eq!(t("https://[::1]:7700"), Some(("::1".into(), 7700)));
        assert_eq!(t("nope"), None);
        assert!(
            SchedulerTarget::from_endpoint("http://10.0.0.5:1")
                .unwrap()
                .is_literal()
        );
        assert!(
            !SchedulerTarget::from_endpoint("http://s.example:1")
                .unwrap()
                .is_literal()
        );
    }

    #[derive(Debug, Default)]
    struct Script {
        answers: Mutex<VecDeque<std::io::Result<Vec<SocketAddrV4>>>>,
        applied: Mutex<Vec<Vec<SocketAddrV4>>>,
    }

    #[async_trait]
    impl Resolve for Script {
        async fn resolve(&self, _: &SchedulerTarget) -> std::io::Result<Vec<SocketAddrV4>> {
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Err(std::io::Error::other("no more answers")))
        }
    }

    #[async_trait]
    impl Block for Script {
        async fn block(&self, d: &[SocketAddrV4]) -> Result<(), berth_runtime::NetworkError> {
            self.applied.lock().unwrap().push(d.to_vec());
            Ok(())
        }
    }

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_named_scheduler_is_followed_to_its_new_address() {
        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([
            Ok(vec![addr("10.0.0.5:7700")]),
            Err(std::io::Error::other("dns down")),
            Ok(vec![]),
            Ok(vec![addr("10.0.0.6:7700")]),
        ]);
        let target = SchedulerTarget::from_endpoint("https://sched.example:7700").unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(keep_current(
            target,
            vec![addr("10.0.0.5:7700")],
            script.clone(),
            script.clone(),
            cancel.clone(),
        ));
        for _ in 0..4 {
            tokio::time::sleep(REFRESH).await;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            *script.applied.lock().unwrap(),
            [vec![addr("10.0.0.6:7700")]],
            "unchanged, failed and empty answers change nothing"
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_literal_address_is_never_resolved_again() {
        let script = Arc::new(Script::default());
        let target = SchedulerTarget::from_endpoint("http://127.0.0.1:7700").unwrap();
        keep_current(
            target.clone(),
            vec![],
            script.clone(),
            script.clone(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            initial(&target, &SystemResolver).await,
            [addr("127.0.0.1:7700")]
        );
    }
}
