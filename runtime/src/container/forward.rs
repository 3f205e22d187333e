//! Forwarding a container's log lines to a remote log driver (awslogs), beside its json-file
//! copy. The runtime knows nothing of the destination: the drain hands each entry to a
//! [`LogForward`], the agent takes them from the [`ForwardedLines`] and ships them.
//!
//! The queue between them is bounded in bytes. In blocking mode a full queue makes the drain
//! wait, so the FIFO fills and the container's writes stall (Docker's and ECS's `blocking`);
//! in non-blocking mode the entry is dropped and counted instead, so the container never
//! waits (`non-blocking` with `max-buffer-size`). An entry holds its share of the queue until
//! the shipper drops its [`QueueShare`] (delivered, or given up on), so undelivered entries
//! are what fills it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::logread::LogStream;

/// How a full queue is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// The drain waits for room: the container's writes stall while the destination is away.
    Blocking,
    /// The entry is dropped and counted: the container never waits.
    NonBlocking,
}

/// The drain's end of a forwarding queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogForward {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<ForwardedLine>,
}

/// What both ends share (the shipper's end holds no sender, so the queue ends with the drains).
#[derive(Debug)]
struct Shared {
    mode: ForwardMode,
    room: Arc<Semaphore>,
    /// The most bytes one entry may hold of the queue (the whole queue).
    capacity: u32,
    dropped: AtomicU64,
    /// Woken at each drop, so the shipper reports drops while it waits for anything else.
    drop_notify: Notify,
}

/// The count of a queue's dropped entries, apart from its receiving end.
#[derive(Debug, Clone)]
pub struct DropCount {
    shared: Arc<Shared>,
}

impl DropCount {
    /// Entries dropped so far.
    pub fn get(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Resolves after an entry is dropped (at once when one was dropped since the last call).
    pub async fn changed(&self) {
        self.shared.drop_notify.notified().await;
    }
}

impl PartialEq for LogForward {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for LogForward {}

/// One line taken from a container's output.
#[derive(Debug)]
pub struct ForwardedLine {
    pub stream: LogStream,
    /// The line's bytes, its newline included when it had one.
    pub bytes: Vec<u8>,
    /// When the drain read it.
    pub time: SystemTime,
    /// Its share of the queue, given back when dropped (once the shipper delivered the line
    /// or gave up on it).
    pub share: QueueShare,
}

/// Bytes of a forwarding queue held by undelivered lines; dropping it gives them back.
#[derive(Debug, Default)]
pub struct QueueShare(Option<OwnedSemaphorePermit>);

impl QueueShare {
    /// Bytes of the queue held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `other`'s bytes too (both are given back together).
    pub fn merge(&mut self, other: QueueShare) {
        let Some(theirs) = other.0 else { return };
        if let Some(mine) = self.0.as_mut() {
            mine.merge(theirs);
        } else {
            self.0 = Some(theirs);
        }
    }
}

/// The shipper's end of a forwarding queue. Dropping it closes the queue: entries sent
/// afterwards are dropped and counted, and a blocked drain wakes up.
#[derive(Debug)]
pub struct ForwardedLines {
    rx: mpsc::UnboundedReceiver<ForwardedLine>,
    shared: Arc<Shared>,
}

impl ForwardedLines {
    /// The next entry; None once every [`LogForward`] is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<ForwardedLine> {
        self.rx.recv().await
    }

    /// An entry already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<ForwardedLine> {
        self.rx.try_recv().ok()
    }

    /// Entries dropped so far (non-blocking mode with a full queue, or a closed queue).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The queue's drop count, to watch beside [`Self::recv`].
    pub fn drop_count(&self) -> DropCount {
        DropCount {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for ForwardedLines {
    fn drop(&mut self) {
        self.shared.room.close();
    }
}

/// A forwarding queue of `capacity` bytes (at least one entry's worth is always let through).
pub fn log_forward(mode: ForwardMode, capacity: u64) -> (LogForward, ForwardedLines) {
    // At most 1 GiB: far below the semaphore's limit, and more than any buffer a driver asks.
    let capacity = u32::try_from(capacity.clamp(1, 1 << 30)).unwrap_or(1 << 30);
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        mode,
        room: Arc::new(Semaphore::new(capacity as usize)),
        capacity,
        dropped: AtomicU64::new(0),
        drop_notify: Notify::new(),
    });
    let lines = ForwardedLines {
        rx,
        shared: shared.clone(),
    };
    (LogForward { shared, tx }, lines)
}

impl LogForward {
    /// The mode it was made with.
    pub fn mode(&self) -> ForwardMode {
        self.shared.mode
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues one entry: waits for room in blocking mode, drops it when there is none in
    /// non-blocking mode.
    pub async fn send(&self, stream: LogStream, bytes: &[u8], time: SystemTime) {
        let inner = &self.shared;
        let want = u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .clamp(1, inner.capacity);
        let held = match inner.mode {
            ForwardMode::Blocking => inner.room.clone().acquire_many_owned(want).await.ok(),
            ForwardMode::NonBlocking => inner.room.clone().try_acquire_many_owned(want).ok(),
        };
        let Some(held) = held else {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.drop_notify.notify_one();
            return;
        };
        let line = ForwardedLine {
            stream,
            bytes: bytes.to_vec(),
            time,
            share: QueueShare(Some(held)),
        };
        if self.tx.send(line).is_err() {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.drop_notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn non_blocking_drops_and_counts_when_full() {
        let (fwd, mut lines) = log_forward(ForwardMode::NonBlocking, 10);
        fwd.send(LogStream::Stdout, b"12345678\n", SystemTime::now())
            .await;
        fwd.send(LogStream::Stdout, b"abc\n", SystemTime::now())
            .await;
        assert_eq!(fwd.dropped(), 1);
        let drops = lines.drop_count();
        drops.changed().await;
        assert_eq!(drops.get(), 1);
        let first = lines.recv().await.unwrap();
        assert_eq!(first.bytes, b"12345678\n");
        assert_eq!(first.share.bytes(), 9);
        drop(first);
        fwd.send(LogStream::Stderr, b"abc\n", SystemTime::now())
            .await;
        let second = lines.recv().await.unwrap();
        assert_eq!(
            (second.stream, second.bytes.as_slice()),
            (LogStream::Stderr, &b"abc\n"[..])
        );
        assert_eq!(lines.dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn blocking_waits_for_delivery_and_wakes_when_closed() {
        let (fwd, mut lines) = log_forward(ForwardMode::Blocking, 8);
        fwd.send(LogStream::Stdout, b"1234567\n", SystemTime::now())
            .await;
        let sender = fwd.clone();
        let blocked = tokio::spawn(async move {
            sender
                .send(LogStream::Stdout, b"next\n", SystemTime::now())
                .await;
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !blocked.is_finished(),
            "a full queue must make the drain wait"
        );
        let mut first = lines.recv().await.unwrap();
        let mut held = QueueShare::default();
        held.merge(std::mem::take(&mut first.share));
        assert_eq!(held.bytes(), 8);
        drop(first);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !blocked.is_finished(),
            "the share moved, it was not given back"
        );
        drop(held);
        blocked.await.unwrap();
        assert_eq!(lines.recv().await.unwrap().bytes, b"next\n");

        // A line longer than the whole queue still goes through, alone.
        fwd.send(LogStream::Stdout, &[b'x'; 20], SystemTime::now())
            .await;
        let long = lines.recv().await.unwrap();
        assert_eq!(long.share.bytes(), 8);
        let sender = fwd.clone();
        let blocked = tokio::spawn(async move {
            sender
                .send(LogStream::Stdout, b"y\n", SystemTime::now())
                .await;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!blocked.is_finished());
        drop(lines);
        blocked.await.unwrap();
        drop(long);
        assert_eq!(fwd.dropped(), 1);
    }
}
