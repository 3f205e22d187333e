//! Cutting a deregistered instance's agent off at once: its session is closed by the session
//! registry; its metrics streams watch a per-instance token kept here, which deregistration
//! cancels. Later calls of that agent are refused by the revocation check (`guard.rs`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The per-instance tokens of open metrics streams.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    instances: Mutex<HashMap<String, CancellationToken>>,
}

impl Revocations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A token cancelled when `instance_id` is revoked (or `parent` is cancelled).
    pub(crate) fn watch(&self, instance_id: &str, parent: &CancellationToken) -> CancellationToken {
        self.lock()
            .entry(instance_id.to_owned())
            .or_insert_with(|| parent.child_token())
            .child_token()
    }

    /// Cancels every stream watching `instance_id`; true when there was one.
    pub(crate) fn revoke(&self, instance_id: &str) -> bool {
        match self.lock().remove(instance_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_one_instance_cancels_its_streams_only() {
        let parent = CancellationToken::new();
        let r = Revocations::default();
        let a1 = r.watch("a", &parent);
        let a2 = r.watch("a", &parent);
        let b = r.watch("b", &parent);
        assert!(r.revoke("a"));
        assert!(a1.is_cancelled() && a2.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(!r.revoke("a"), "nothing left to revoke");
        parent.cancel();
        assert!(b.is_cancelled());
    }
}
