//! The gRPC contract between berth-agent and a scheduler (package `berth.v1`): the
//! `AgentService` the agent dials (Register, Session, StreamMetrics), the `ControlService` that
//! berthctl and other clients use, and the shared task, container and instance types. The
//! `.proto` files in `berth/v1/` are the source of truth; this crate only generates code.

#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

/// Generated code for package `berth.v1`.
pub mod v1 {
    tonic::include_proto!("berth.v1");
}

/// A secret's value never reaches a log or an error through `Debug`: its length stands in.
impl std::fmt::Debug for v1::SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("value", &Redacted(self.value.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::CreateSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSecretRequest")
            .field("cluster", &self.cluster)
            .field("name", &self.name)
            .field("value", &Redacted(self.value.len()))
            .field("overwrite", &self.overwrite)
            .finish()
    }
}

/// What `Debug` shows of a secret value: `<redacted N bytes>`.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn debug_of_a_secret_value_hides_the_value() {
        let value = v1::SecretValue {
            name: "db".into(),
            value: b"hunter2-very-secret".to_vec(),
        };
        let shown = format!(
            "{value:?} {:?}",
            v1::TaskAssignment {
                secrets: Some(v1::TaskSecrets {
                    values: vec![value.clone()],
                    missing: vec![],
                }),
                ..Default::default()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted 19 bytes>"), "{shown}");
        let request = v1::CreateSecretRequest {
            name: "db".into(),
            value: b"hunter2".to_vec(),
            ..Default::default()
        };
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
