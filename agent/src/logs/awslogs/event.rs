//! Log events as CloudWatch takes them, and how a container's lines become events: one a
//! line, or, with a start pattern (awslogs-multiline-pattern or awslogs-datetime-format), one
//! from each line that matches it up to the next, as Docker's awslogs driver joins them.

use std::time::{Duration, Instant, SystemTime};

use berth_runtime::{ForwardedLine, QueueShare};
use regex::Regex;

/// What CloudWatch counts for each event beside its message's bytes.
pub(crate) const EVENT_OVERHEAD: usize = 26;
/// The longest event CloudWatch takes, overhead included (256 KiB).
pub(crate) const MAX_EVENT_BYTES: usize = 256 * 1024;
/// A multi-line event left open this long without a new line is sent as it is (Docker's
/// awslogs flushes on the same period).
pub(crate) const MULTILINE_FLUSH_AFTER: Duration = Duration::from_secs(5);

/// One event: its time in milliseconds since the epoch and its message, with the queue share
/// of the lines it holds (given back once it is delivered or given up on).
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) timestamp_ms: i64,
    pub(crate) message: String,
    pub(crate) share: QueueShare,
}

impl Event {
    /// What the event counts against a batch's byte limit.
    pub(crate) fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A line's text without its newline; invalid UTF-8 is replaced.
fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Turns lines into events.
#[derive(Debug)]
pub(crate) struct Joiner {
    start: Option<Regex>,
    pending: Option<(Event, Instant)>,
}

impl Joiner {
    pub(crate) fn new(start: Option<Regex>) -> Self {
        Self {
            start,
            pending: None,
        }
    }

    /// Takes one line; the events it completes go to `out`. Empty lines are no events
    /// (CloudWatch refuses empty messages) unless they continue a multi-line event.
    pub(crate) fn push(&mut self, line: ForwardedLine, now: Instant, out: &mut Vec<Event>) {
        let mut message = text(&line.bytes);
        let max = MAX_EVENT_BYTES - EVENT_OVERHEAD;
        let Some(start) = &self.start else {
            if !message.is_empty() {
                truncate(&mut message, max);
                out.push(Event {
                    timestamp_ms: millis(line.time),
                    message,
                    share: line.share,
                });
            }
            return;
        };
        let starts = start.is_match(&message);
        match &mut self.pending {
            Some((event, last)) if !starts && event.message.len() + 1 + message.len() <= max => {
                event.message.push('\n');
                event.message.push_str(&message);
                event.share.merge(line.share);
                *last = now;
            }
            _ => {
                self.flush(out);
                if message.is_empty() && !starts {
                    return;
                }
                truncate(&mut message, max);
                self.pending = Some((
                    Event {
                        timestamp_ms: millis(line.time),
                        message,
                        share: line.share,
                    },
                    now,
                ));
            }
        }
    }

    /// Sends the open multi-line event if no line came for [`MULTILINE_FLUSH_AFTER`].
    pub(crate) fn flush_idle(&mut self, now: Instant, out: &mut Vec<Event>) {
        if let Some((_, last)) = &self.pending
            && now.duration_since(*last) >= MULTILINE_FLUSH_AFTER
        {
            self.flush(out);
        }
    }

    /// Sends the open multi-line event, if any.
    pub(crate) fn flush(&mut self, out: &mut Vec<Event>) {
        if let Some((event, _)) = self.pending.take() {
            out.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{ForwardMode, LogStream, log_forward};

    /// Lines with their queue shares, as the drain makes them.
    async fn lines(texts: &[&str]) -> Vec<ForwardedLine> {
        let (fwd, mut rx) = log_forward(ForwardMode::NonBlocking, 1 << 20);
        let mut out = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1000 + i as u64);
            fwd.send(LogStream::Stdout, t.as_bytes(), at).await;
            out.push(rx.recv().await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn every_line_is_an_event_without_a_pattern() {
        let mut j = Joiner::new(None);
        let mut out = Vec::new();
        let now = Instant::now();
        for l in lines(&["one\n", "\n", "two"]).await {
            j.push(l, now, &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .map(|e| (e.timestamp_ms, e.message.as_str()))
            .collect();
        assert_eq!(got, [(1000, "one"), (1002, "two")]);
        assert_eq!(out[0].share.bytes(), 4);
    }

    #[tokio::test]
    async fn a_pattern_joins_lines_until_the_next_start() {
        let mut j = Joiner::new(Some(Regex::new("^INFO").unwrap()));
        let mut out = Vec::new();
        let now = Instant::now();
        let input = lines(&[
            "  orphan\n",
            "INFO a\n",
            "  at x\n",
            "\n",
            "  at y\n",
            "INFO b\n",
        ])
        .await;
        for l in input {
            j.push(l, now, &mut out);
        }
        let got: Vec<_> = out.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got, ["  orphan", "INFO a\n  at x\n\n  at y"]);
        assert_eq!(out[1].timestamp_ms, 1001);
        assert_eq!(out[1].share.bytes(), "INFO a\n  at x\n\n  at y\n".len());
        // The last one waits for the next start, or for a pause.
        j.flush_idle(now + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 2);
        j.flush_idle(now + MULTILINE_FLUSH_AFTER, &mut out);
        assert_eq!(out[2].message, "INFO b");
    }

    #[tokio::test]
    async fn a_multi_line_event_is_cut_at_the_size_limit() {
        let mut j = Joiner::new(Some(Regex::new("^S").unwrap()));
        let mut out = Vec::new();
        let now = Instant::now();
        let chunk = format!("{}\n", "x".repeat(16 * 1024 - 1));
        let mut texts = vec!["S\n".to_owned()];
        texts.extend(std::iter::repeat_n(chunk, 20));
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for l in lines(&refs).await {
            j.push(l, now, &mut out);
        }
        j.flush(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.size() <= MAX_EVENT_BYTES));
    }
}
