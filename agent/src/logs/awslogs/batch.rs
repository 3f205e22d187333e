//! Cutting events into PutLogEvents batches within CloudWatch's limits: at most 10,000 events
//! and 1,048,576 bytes (each event's message plus 26), spanning at most 24 hours, in
//! timestamp order.

use super::event::Event;

/// Most events in one PutLogEvents call.
pub(crate) const MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one PutLogEvents call, each event counted with its overhead.
pub(crate) const MAX_BATCH_BYTES: usize = 1_048_576;
/// Longest time between the first and the last event of one call.
pub(crate) const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// Events waiting to be sent, kept in the order they came.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    events: Vec<Event>,
    bytes: usize,
}

impl Pending {
    pub(crate) fn push(&mut self, event: Event) {
        self.bytes += event.size();
        self.events.push(event);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether a full batch is waiting (sending now fills a call).
    pub(crate) fn has_full_batch(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES
    }

    /// Takes the next batch: the oldest events, in timestamp order (a stable sort, so lines
    /// read within one millisecond keep their order), as many as the limits allow.
    pub(crate) fn next_batch(&mut self) -> Vec<Event> {
        self.events.sort_by_key(|e| e.timestamp_ms);
        let mut bytes = 0;
        let mut take = 0;
        let first = self.events.first().map_or(0, |e| e.timestamp_ms);
        for e in &self.events {
            if take == MAX_BATCH_EVENTS
                || bytes + e.size() > MAX_BATCH_BYTES
                || e.timestamp_ms - first > MAX_BATCH_SPAN_MS
            {
                break;
            }
            bytes += e.size();
            take += 1;
        }
        self.bytes -= bytes;
        self.events.drain(..take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::QueueShare;

    fn event(timestamp_ms: i64, len: usize) -> Event {
        Event {
            timestamp_ms,
            message: "x".repeat(len),
            share: QueueShare::default(),
        }
    }

    fn drain(p: &mut Pending) -> Vec<Vec<Event>> {
        let mut out = Vec::new();
        while !p.is_empty() {
            out.push(p.next_batch());
        }
        out
    }

    #[test]
    fn batches_hold_at_most_ten_thousand_events() {
        let mut p = Pending::default();
        for i in 0..25_000 {
            p.push(event(i, 1));
        }
        assert!(p.has_full_batch());
        let sizes: Vec<usize> = drain(&mut p).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10_000, 10_000, 5_000]);
    }

    #[test]
    fn batches_hold_at_most_a_mebibyte_counting_the_overhead() {
        let mut p = Pending::default();
        // 1000 + 26 bytes each: 1022 fit in 1,048,576 (1,048,572), the next does not.
        for i in 0..1022 {
            p.push(event(i, 1000));
        }
        assert!(!p.has_full_batch());
        p.push(event(2000, 1000));
        p.push(event(2001, 1000));
        assert!(p.has_full_batch());
        let batches = drain(&mut p);
        assert_eq!(batches[0].len(), 1022);
        let bytes: usize = batches[0].iter().map(Event::size).sum();
        assert!(bytes <= MAX_BATCH_BYTES);
        assert_eq!(batches[1].len(), 2);
    }

    #[test]
    fn batches_are_in_timestamp_order_and_span_at_most_a_day() {
        let mut p = Pending::default();
        p.push(event(5, 1));
        p.push(event(MAX_BATCH_SPAN_MS + 10, 2));
        p.push(event(3, 3));
        p.push(event(5, 4));
        let batches = drain(&mut p);
        let got: Vec<Vec<(i64, usize)>> = batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|e| (e.timestamp_ms, e.message.len()))
                    .collect()
            })
            .collect();
        assert_eq!(
            got,
            [
                vec![(3, 3), (5, 1), (5, 4)],
                vec![(MAX_BATCH_SPAN_MS + 10, 2)]
            ]
        );
    }
}
