//! The per-task records the store keeps beside the assignment and state, in their byte
//! forms: the resumes that began and never completed, and each container's endpoint ID.

use std::time::{Duration, SystemTime};

use super::StoreError;

/// The resumes of a task (after agent restarts) that began and never completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResumeRecord {
    /// When each began, oldest first (whole seconds).
    pub started: Vec<SystemTime>,
    /// The agent gave up resuming the task: it is not resumed again.
    pub given_up: bool,
}

impl ResumeRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + 8 * self.started.len());
        bytes.push(u8::from(self.given_up));
        for t in &self.started {
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            bytes.extend_from_slice(&secs.to_le_bytes());
        }
        bytes
    }

    pub(super) fn decode(task_id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            what: "resume record",
            key: task_id.to_owned(),
            reason: reason.to_owned(),
        };
        let (flag, times) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
        if *flag > 1 || times.len() % 8 != 0 {
            return Err(corrupt("not a flag byte followed by 8-byte times"));
        }
        let started = times
            .chunks_exact(8)
            .map(|c| {
                let mut secs = [0u8; 8];
                secs.copy_from_slice(c);
                SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from_le_bytes(secs))
            })
            .collect();
        Ok(Self {
            started,
            given_up: *flag == 1,
        })
    }
}

/// Each container's task endpoint ID, by container name: 128 random bits in hex, made when the
/// task is accepted and kept with it, so a container's metadata URL (in its environment, which
/// cannot change) stays valid across agent restarts.
pub(crate) type EndpointIds = std::collections::BTreeMap<String, String>;

/// A fresh endpoint ID: 128 bits from the operating system's generator, in hex.
pub(super) fn new_endpoint_id() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn encode_endpoint_ids(ids: &EndpointIds) -> Vec<u8> {
    ids.iter()
        .map(|(name, id)| format!("{name}\t{id}\n"))
        .collect::<String>()
        .into_bytes()
}

pub(super) fn decode_endpoint_ids(task_id: &str, bytes: &[u8]) -> Result<EndpointIds, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        what: "endpoint ids",
        key: task_id.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not utf-8"))?;
    text.lines()
        .map(|line| {
            line.split_once('\t')
                .map(|(name, id)| (name.to_owned(), id.to_owned()))
                .ok_or_else(|| corrupt("a line without a tab"))
        })
        .collect()
}
