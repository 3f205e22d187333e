//! Registry answers that must fit in memory (manifests, indexes, image configs) read under a
//! size cap: a declared length over the cap is refused before any byte of the body is read, and
//! the bytes are counted as they arrive, so a registry that lies about the length (or sends no
//! length) is stopped as soon as it passes the cap. At most the cap is ever held.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// The cap on a manifest, an index or an image config unless configured otherwise: 4 MiB, as
/// containerd's and Docker's clients cap manifests.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Why a capped read stopped.
#[derive(Debug)]
pub(crate) enum CappedError<E> {
    /// The answer is larger than the cap: `size` is the length it declared, or (when `counted`)
    /// the bytes received when the cap was passed, so the answer is at least that long.
    TooLarge { size: u64, counted: bool },
    /// The body itself failed.
    Body(E),
}

/// Reads `body` whole, refusing it when `declared` (its Content-Length) or the bytes it sends
/// pass `limit`. Never holds more than `limit` bytes (plus the last chunk received, which is
/// dropped at once when it passes the cap).
pub(crate) async fn read_capped<S, E>(
    declared: Option<u64>,
    body: S,
    limit: u64,
) -> Result<Bytes, CappedError<E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    if let Some(size) = declared.filter(|&size| size > limit) {
        return Err(CappedError::TooLarge {
            size,
            counted: false,
        });
    }
    // Reserve what the answer declares (already known to be within the cap), never more.
    let reserve = declared.and_then(|d| usize::try_from(d).ok()).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(reserve);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(CappedError::Body)?;
        let size = buf.len() as u64 + chunk.len() as u64;
        if size > limit {
            return Err(CappedError::TooLarge {
                size,
                counted: true,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A size as people read it: `104857600 bytes (100 MiB)`, or `at least ...` when only a lower
/// bound is known.
pub(crate) fn describe_size(size: u64, at_least: bool) -> String {
    let prefix = if at_least { "at least " } else { "" };
    format!("{prefix}{size} bytes ({})", mebibytes(size))
}

/// `4 MiB`, `0.5 MiB`, `100.2 MiB`.
pub(crate) fn mebibytes(size: u64) -> String {
    let mib = size as f64 / f64::from(1u32 << 20);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>> {
        let parts: Vec<Result<Bytes, String>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(parts)
    }

    #[tokio::test]
    async fn answers_within_the_cap_are_read_whole() {
        let got = read_capped(Some(6), chunks(&[b"abc", b"", b"def"]), 6)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcdef");
        let got = read_capped(None, chunks(&[b"abc", b"de"]), 6)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcde");
        let got = read_capped(Some(0), chunks(&[]), 0).await.unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let polled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&polled);
        let body = chunks(&[b"abcdefgh"]).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let err = read_capped(Some(100 << 20), body, 4 << 20)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CappedError::TooLarge {
                size: 104_857_600,
                counted: false
            }
        ));
        assert_eq!(polled.load(Ordering::SeqCst), 0, "the body was read");
    }

    #[tokio::test]
    async fn a_body_longer_than_it_declared_is_stopped_at_the_cap() {
        // The registry declares 4 bytes (within the cap of 6) and keeps sending: the read stops
        // at the chunk that passes the cap and pulls nothing after it.
        let polled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&polled);
        let body = futures::stream::repeat_with(|| Ok::<_, String>(Bytes::from_static(b"xxxx")))
            .inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        let err = read_capped(Some(4), body, 6).await.unwrap_err();
        assert!(matches!(
            err,
            CappedError::TooLarge {
                size: 8,
                counted: true
            }
        ));
        assert_eq!(polled.load(Ordering::SeqCst), 2);
        // Without any declared length, the same.
        let err = read_capped(None, chunks(&[b"abc", b"defg"]), 6)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CappedError::TooLarge {
                size: 7,
                counted: true
            }
        ));
    }

    #[tokio::test]
    async fn a_failing_body_is_its_own_error() {
        let body = futures::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err("connection reset".to_owned()),
        ]);
        let err = read_capped(None, body, 6).await.unwrap_err();
        assert!(matches!(err, CappedError::Body(e) if e == "connection reset"));
    }

    #[test]
    fn sizes_read_in_bytes_and_mebibytes() {
        assert_eq!(describe_size(4 << 20, false), "4194304 bytes (4 MiB)");
        assert_eq!(
            describe_size(104_857_601, true),
            "at least 104857601 bytes (100.0 MiB)"
        );
        assert_eq!(mebibytes(1 << 19), "0.5 MiB");
    }
}
