//! containerd's content store: existence checks, streaming writes that containerd verifies
//! against the expected digest and size at commit, label updates and reads.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use futures::{Stream, StreamExt};
use prost_types::FieldMask;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::PullError;
use crate::containerd::{Containerd, ContainerdError, Lease};

/// Size of each write message sent to containerd.
const CHUNK: usize = 1 << 20;
/// How long a registry stream may stay silent before the download is abandoned.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Labels of a blob, if it is in the content store.
pub(crate) async fn info(
    client: &Containerd,
    digest: &str,
) -> Result<Option<HashMap<String, String>>, ContainerdError> {
    match client
        .content()
        .info(client.request(InfoRequest {
            digest: digest.to_owned(),
        }))
        .await
    {
        Ok(r) => Ok(Some(
            r.into_inner().info.map(|i| i.labels).unwrap_or_default(),
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(ContainerdError::new("content info", digest, &s)),
    }
}

/// Adds labels to a blob already in the store (other labels are left as they are).
pub(crate) async fn add_labels(
    client: &Containerd,
    lease: Option<&Lease>,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), ContainerdError> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    client
        .content()
        .update(client.request_with(
            UpdateRequest {
                info: Some(Info {
                    digest: digest.to_owned(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask { paths }),
            },
            lease,
            Some(crate::containerd::CALL_TIMEOUT),
        ))
        .await
        .map(|_| ())
        .map_err(|s| ContainerdError::new("content update", digest, &s))
}

/// Reads a whole (small) blob: manifests, indexes and configs.
pub(crate) async fn read_blob(
    client: &Containerd,
    digest: &str,
) -> Result<Vec<u8>, ContainerdError> {
    let mut stream = client
        .content()
        .read(client.request(ReadContentRequest {
            digest: digest.to_owned(),
            offset: 0,
            size: 0,
        }))
        .await
        .map_err(|s| ContainerdError::new("content read", digest, &s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| ContainerdError::new("content read", digest, &s))?;
        out.extend_from_slice(&msg.data);
    }
    Ok(out)
}

/// What the caller wants written.
pub(crate) struct BlobWrite<'a> {
    pub(crate) kind: &'static str,
    pub(crate) digest: &'a str,
    pub(crate) size: i64,
    pub(crate) labels: HashMap<String, String>,
}

/// The ingest reference for a blob: stable, so a second writer of the same blob in another
/// process is refused by containerd instead of writing it twice.
fn ingest_ref(digest: &str) -> String {
    format!("berth-{digest}")
}

/// Writes a blob from a byte stream. containerd hashes what it receives and refuses the commit
/// when digest or size differ, so nothing unverified is ever committed. `on_bytes` sees the
/// running total after each chunk. On any failure the ingest is aborted.
pub(crate) async fn write_blob<S>(
    client: &Containerd,
    lease: &Lease,
    blob: BlobWrite<'_>,
    source: S,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, PullError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
{
    let reference = ingest_ref(blob.digest);
    let result = write_inner(client, lease, &reference, &blob, source, on_bytes).await;
    if result.is_err() {
        abort(client, &reference).await;
    }
    result
}

async fn write_inner<S>(
    client: &Containerd,
    lease: &Lease,
    reference: &str,
    blob: &BlobWrite<'_>,
    mut source: S,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, PullError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
{
    let containerd_err = |op: &'static str, s: &tonic::Status| {
        PullError::from(ContainerdError::new(op, blob.digest, s))
    };
    let (tx, rx) = mpsc::channel::<WriteContentRequest>(4);
    let base = WriteContentRequest {
        r#ref: reference.to_owned(),
        total: blob.size,
        expected: blob.digest.to_owned(),
        ..Default::default()
    };
    // Stat first: it takes the ingest's lock and tells whether an earlier attempt left bytes.
    let _ = tx
        .send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            ..base.clone()
        })
        .await;
    let mut responses = client
        .content()
        .write(client.request_with(ReceiverStream::new(rx), Some(lease), None))
        .await
        .map_err(|s| containerd_err("content write", &s))?
        .into_inner();
    let stat = responses
        .message()
        .await
        .map_err(|s| containerd_err("content write", &s))?
        .ok_or_else(|| closed(blob.digest))?;
    if stat.offset != 0 {
        // A previous attempt died mid-way; start over rather than trust a partial ingest.
        drop(tx);
        drop(responses);
        abort(client, reference).await;
        return Box::pin(write_inner(
            client, lease, reference, blob, source, on_bytes,
        ))
        .await;
    }

    // Send chunks while a second future drains the acknowledgements, so neither side waits
    // for a round trip per chunk.
    let sender = async {
        let mut offset: i64 = 0;
        let mut buffer = BytesMut::with_capacity(CHUNK);
        loop {
            let next = tokio::time::timeout(IDLE_TIMEOUT, source.next())
                .await
                .map_err(|_| PullError::Timeout {
                    what: format!("download of {} {}", blob.kind, blob.digest),
                    seconds: IDLE_TIMEOUT.as_secs(),
                })?;
            let done = match next {
                Some(Ok(bytes)) => {
                    buffer.extend_from_slice(&bytes);
                    false
                }
                Some(Err(e)) => return Err(stream_error(blob, &e)),
                None => true,
            };
            if buffer.len() >= CHUNK || (done && !buffer.is_empty()) {
                let data = buffer.split().freeze();
                let len = data.len() as i64;
                if offset + len > blob.size {
                    return Err(PullError::DigestMismatch {
                        kind: blob.kind,
                        digest: blob.digest.to_owned(),
                        reason: format!(
                            "registry sent more than the {} bytes the manifest declares",
                            blob.size
                        ),
                    });
                }
                tx.send(WriteContentRequest {
                    action: WriteAction::Write as i32,
                    offset,
                    data: data.to_vec(),
                    ..base.clone()
                })
                .await
                .map_err(|_| closed(blob.digest))?;
                offset += len;
                on_bytes(offset as u64);
            }
            if done {
                break;
            }
        }
        tx.send(WriteContentRequest {
            action: WriteAction::Commit as i32,
            offset,
            labels: blob.labels.clone(),
            ..base.clone()
        })
        .await
        .map_err(|_| closed(blob.digest))?;
        drop(tx);
        Ok::<u64, PullError>(offset as u64)
    };
    let receiver = async {
        loop {
            match responses.message().await {
                Ok(Some(r)) if r.action == WriteAction::Commit as i32 => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => return Err(closed(blob.digest)),
                Err(s) => return Err(commit_error(blob, &s)),
            }
        }
    };
    let (written, ()) = futures::try_join!(sender, receiver)?;
    Ok(written)
}

/// Writes a blob held in memory (manifests, indexes, configs).
pub(crate) async fn write_bytes(
    client: &Containerd,
    lease: &Lease,
    blob: BlobWrite<'_>,
    bytes: Bytes,
) -> Result<(), PullError> {
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    match write_blob(client, lease, blob, stream, &mut |_| {}).await {
        Ok(_) => Ok(()),
        Err(PullError::Containerd(e)) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn abort(client: &Containerd, reference: &str) {
    if let Err(s) = client
        .content()
        .abort(client.request(AbortRequest {
            r#ref: reference.to_owned(),
        }))
        .await
        && s.code() != tonic::Code::NotFound
    {
        tracing::warn!(ingest = reference, error = %s.message(), "could not abort content ingest");
    }
}

fn closed(digest: &str) -> PullError {
    PullError::Containerd(ContainerdError::new(
        "content write",
        digest,
        &tonic::Status::unavailable("containerd closed the write stream"),
    ))
}

fn stream_error(blob: &BlobWrite<'_>, e: &std::io::Error) -> PullError {
    let text = super::registry::error_chain(e);
    if text.contains("Invalid digest") || text.contains("digest") && text.contains("Expected") {
        PullError::DigestMismatch {
            kind: blob.kind,
            digest: blob.digest.to_owned(),
            reason: text,
        }
    } else {
        PullError::Registry {
            registry: String::from("(blob stream)"),
            what: format!("{} {}", blob.kind, blob.digest),
            reason: text,
        }
    }
}

fn commit_error(blob: &BlobWrite<'_>, s: &tonic::Status) -> PullError {
    let msg = s.message();
    if s.code() == tonic::Code::AlreadyExists {
        return PullError::Containerd(ContainerdError::new("content commit", blob.digest, s));
    }
    if msg.contains("unexpected commit digest") || msg.contains("unexpected commit size") {
        return PullError::DigestMismatch {
            kind: blob.kind,
            digest: blob.digest.to_owned(),
            reason: format!("containerd refused the content: {msg}"),
        };
    }
    PullError::Containerd(ContainerdError::new("content write", blob.digest, s))
}
