//! The per-task records the store keeps beside the assignment and state, in their byte
//! forms: the resumes an agent crash cut short and the one in progress, and each container's
//! endpoint ID.

use std::time::{Duration, SystemTime};

use super::StoreError;

/// The resumes of a task (after agent restarts) that an agent crash cut short, and the one in
/// progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResumeRecord {
    /// When each resume that a crash of the agent cut short began, oldest first (whole
    /// seconds). Only these count against the task.
    pub crashed: Vec<SystemTime>,
    /// The resume begun and not completed yet, by the run that began it. Whether it counts is
    /// decided at the next start, from how that run ended.
    pub in_progress: Option<InProgress>,
    /// The agent gave up resuming the task: it is not resumed again.
    pub given_up: bool,
}

/// A resume begun by one run of the agent and not completed (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InProgress {
    /// The run that began it ([`crate::last_exit::RunId`]).
    pub run: String,
    /// When it began (whole seconds).
    pub since: SystemTime,
}

/// Flag bits of a resume record's first byte. A record without [`IN_PROGRESS`] has the layout
/// of the records of earlier agents (flag byte, then 8-byte times), whose times, of unknown
/// cause, are taken as crashes.
const GIVEN_UP: u8 = 1;
const IN_PROGRESS: u8 = 2;

fn secs(t: SystemTime) -> [u8; 8] {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_le_bytes()
}

fn time(bytes: &[u8]) -> SystemTime {
    let mut secs = [0u8; 8];
    secs.copy_from_slice(bytes);
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from_le_bytes(secs))
}

impl ResumeRecord {
    /// Flag byte; with [`IN_PROGRESS`]: the number of crash times (u32 little endian), the
    /// crash times, the in-progress resume's start and its run (UTF-8, the rest); otherwise
    /// the crash times (u64 little endian seconds each).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + 4 + 8 * (self.crashed.len() + 1) + 40);
        let mut flags = 0;
        if self.given_up {
            flags |= GIVEN_UP;
        }
        if self.in_progress.is_some() {
            flags |= IN_PROGRESS;
        }
        bytes.push(flags);
        if self.in_progress.is_some() {
            let n = u32::try_from(self.crashed.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        for t in &self.crashed {
            bytes.extend_from_slice(&secs(*t));
        }
        if let Some(p) = &self.in_progress {
            bytes.extend_from_slice(&secs(p.since));
            bytes.extend_from_slice(p.run.as_bytes());
        }
        bytes
    }

    pub(super) fn decode(task_id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            what: "resume record",
            key: task_id.to_owned(),
            reason: reason.to_owned(),
        };
        let (flags, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
        if flags & !(GIVEN_UP | IN_PROGRESS) != 0 {
            return Err(corrupt("unknown flags"));
        }
        let given_up = flags & GIVEN_UP != 0;
        if flags & IN_PROGRESS == 0 {
            if rest.len() % 8 != 0 {
                return Err(corrupt("not a flag byte followed by 8-byte times"));
            }
            return Ok(Self {
                crashed: rest.chunks_exact(8).map(time).collect(),
                in_progress: None,
                given_up,
            });
        }
        let (n, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("no crash count"))?;
        let n = u32::from_le_bytes(*n) as usize;
        let times = n
            .checked_add(1)
            .and_then(|k| k.checked_mul(8))
            .filter(|len| *len <= rest.len())
            .ok_or_else(|| corrupt("shorter than its crash count says"))?;
        let (times, run) = rest.split_at(times);
        let mut times: Vec<SystemTime> = times.chunks_exact(8).map(time).collect();
        let since = times.pop().ok_or_else(|| corrupt("no in-progress time"))?;
        let run = std::str::from_utf8(run).map_err(|_| corrupt("a run id that is not utf-8"))?;
        Ok(Self {
            crashed: times,
            in_progress: Some(InProgress {
                run: run.to_owned(),
                since,
            }),
            given_up,
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
