//! A driver's task secrets: from the engine's book when the assignment brought them, else from
//! the secret source (the scheduler), asked again with backoff until it answers or the task is
//! stopped: a task never starts without the secrets it names. What Berth's store does not hold
//! (ARNs, and names it lacks) is then fetched from AWS once and kept in the book; a failure
//! there fails the task with a reason that names the secret and AWS's error code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{TaskDefinition, TaskSecrets};

use super::Driver;
use super::prepare::{PrepareError, Stalled};
use crate::runtime::ContainerRuntime;
use crate::secrets::{ContainerSecrets, SecretSource, for_container, needs_secrets, resolve_aws};

/// The first and the longest wait between two asks for a task's secrets.
const FETCH_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

impl<R: ContainerRuntime> Driver<R> {
    /// What each container (by name) gets from the task's secrets; empty when it names none.
    pub(super) async fn task_secrets(
        &mut self,
        def: &TaskDefinition,
    ) -> Result<HashMap<String, ContainerSecrets>, Stalled> {
        if !needs_secrets(def) {
            return Ok(HashMap::new());
        }
        let task_id = self.task_id().to_owned();
        let mut secrets = match self.secrets.get(&task_id) {
            Some(secrets) => secrets,
            None => {
                tracing::info!(
                    "the task's secrets are not known here (the agent restarted); asking the scheduler"
                );
                let source = Arc::clone(&self.config.secret_source);
                let fetched = self.interruptible(fetch(source, task_id.clone())).await?;
                self.secrets.put(&task_id, fetched.into())
            }
        };
        let source = Arc::clone(&self.config.aws_secrets);
        let fetched = self
            .interruptible(resolve_aws(def, &secrets, source.as_ref()))
            .await?
            .map_err(PrepareError::Secrets)?;
        if let Some(resolved) = fetched {
            secrets = self.secrets.put(&task_id, resolved);
        }
        def.containers
            .iter()
            .map(|c| for_container(c, &secrets).map(|s| (c.name.clone(), s)))
            .collect::<Result<_, _>>()
            .map_err(|e| PrepareError::Secrets(e).into())
    }
}

/// Asks `source` until it answers.
async fn fetch(source: Arc<dyn SecretSource>, task_id: String) -> TaskSecrets {
    let mut backoff = crate::backoff::Backoff::new(FETCH_BACKOFF.0, FETCH_BACKOFF.1).jittered(0.2);
    loop {
        match source.fetch(&task_id).await {
            Ok(secrets) => return secrets,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot get the task's secrets from the scheduler yet; the task waits for them");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
