//! Single flight: concurrent requests for the same key share one execution and its outcome.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Runs at most one future per key at a time; later callers await the first one's result.
/// The work runs in its own tokio task, so a caller that gives up does not cancel it for the
/// others.
#[derive(Debug)]
pub(crate) struct SingleFlight<K, V: Clone> {
    inflight: Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>>,
}

impl<K, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Returns the outcome of the in-flight work for `key`, starting `make()` if there is none.
    /// `joined` tells whether this caller joined work already in flight. `on_panic` builds the
    /// value returned if the work panics or is aborted.
    pub(crate) async fn run<F, Fut>(&self, key: K, make: F, on_panic: fn(&K) -> V) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (shared, joined) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = map.get(&key) {
                // What `make` holds (a download turn, say) goes now, not when the work joined
                // ends.
                drop(make);
                (existing.clone(), true)
            } else {
                let handle = tokio::spawn(make());
                let map_ref = Arc::clone(&self.inflight);
                let key_owned = key.clone();
                let fut: BoxFuture<'static, V> = async move {
                    let value = match handle.await {
                        Ok(v) => v,
                        Err(_) => on_panic(&key_owned),
                    };
                    map_ref
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key_owned);
                    value
                }
                .boxed();
                let shared = fut.shared();
                map.insert(key.clone(), shared.clone());
                (shared, false)
            }
        };
        (shared.await, joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_run() {
        let sf: Arc<SingleFlight<String, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let sf = Arc::clone(&sf);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                sf.run(
                    "img".to_owned(),
                    move || async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    },
                    |_| 0,
                )
                .await
            }));
        }
        let mut joined = 0;
        for t in tasks {
            let (v, j) = t.await.unwrap();
            assert_eq!(v, 1);
            joined += usize::from(j);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 4);
        // Once finished, the next call runs again.
        let (v, j) = sf.run("img".to_owned(), || async { 7 }, |_| 0).await;
        assert_eq!((v, j), (7, false));
    }

    #[tokio::test]
    async fn a_panicking_run_reports_the_fallback() {
        let sf: SingleFlight<u8, &'static str> = SingleFlight::default();
        let (v, _) = sf.run(1, || async { panic!("boom") }, |_| "panicked").await;
        assert_eq!(v, "panicked");
    }
}
