//! One series of a window: a ring of points at least `window / POINTS` apart, so a series
//! holds at most `POINTS` whatever the agents' interval, plus the two newest samples, from
//! which rates are derived at the agents' own resolution.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{CgroupMetrics, StatsPoint, StatsRates};

/// The most points a series keeps over its window (five seconds apart at one hour).
pub(crate) const POINTS: usize = 720;

/// A reading of a task or a container: its cgroup and (a task) its network's totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UsagePoint {
    pub at: SystemTime,
    pub stats: CgroupMetrics,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A point of a series.
pub(crate) trait Timed: Clone {
    fn at(&self) -> SystemTime;
}

impl Timed for UsagePoint {
    fn at(&self) -> SystemTime {
        self.at
    }
}

/// A bounded window of points and the two newest samples.
#[derive(Debug, Clone)]
pub(crate) struct Series<P> {
    points: VecDeque<P>,
    latest: Option<P>,
    previous: Option<P>,
    window: Duration,
    resolution: Duration,
}

impl<P: Timed> Series<P> {
    pub(crate) fn new(window: Duration) -> Self {
        Series {
            points: VecDeque::new(),
            latest: None,
            previous: None,
            window,
            resolution: window / POINTS as u32,
        }
    }

    /// Adds a sample; one no newer than the latest (a resent or reordered batch) is ignored.
    pub(crate) fn push(&mut self, point: P) {
        if self.latest.as_ref().is_some_and(|l| point.at() <= l.at()) {
            return;
        }
        let spaced = self.points.back().is_none_or(|back| {
            point
                .at()
                .duration_since(back.at())
                .is_ok_and(|gap| gap >= self.resolution)
        });
        if spaced {
            self.points.push_back(point.clone());
        }
        let oldest = point.at().checked_sub(self.window);
        while self.points.len() > POINTS
            || oldest.is_some_and(|oldest| self.points.front().is_some_and(|p| p.at() < oldest))
        {
            self.points.pop_front();
        }
        self.previous = self.latest.replace(point);
    }

    pub(crate) fn latest(&self) -> Option<&P> {
        self.latest.as_ref()
    }

    pub(crate) fn previous(&self) -> Option<&P> {
        self.previous.as_ref()
    }

    /// The window's points, oldest first.
    pub(crate) fn points(&self) -> impl Iterator<Item = &P> {
        self.points.iter()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

/// Seconds from `a` to `b`; None unless `b` is later.
fn seconds_between(a: SystemTime, b: SystemTime) -> Option<f64> {
    let secs = b.duration_since(a).ok()?.as_secs_f64();
    (secs > 0.0).then_some(secs)
}

/// A counter's increase per second; a counter that went back (a restarted container) reads 0.
fn per_second(before: u64, after: u64, secs: f64) -> f64 {
    after.saturating_sub(before) as f64 / secs
}

/// Rates from `before` to `after`; zeros when they are not in time order.
pub(crate) fn rates(before: &UsagePoint, after: &UsagePoint) -> StatsRates {
    let Some(secs) = seconds_between(before.at, after.at) else {
        return StatsRates::default();
    };
    let (b, a) = (&before.stats, &after.stats);
    StatsRates {
        cpu_percent: per_second(b.cpu_usage_ns, a.cpu_usage_ns, secs) / 1e9 * 100.0,
        rx_bytes_per_second: per_second(before.rx_bytes, after.rx_bytes, secs),
        tx_bytes_per_second: per_second(before.tx_bytes, after.tx_bytes, secs),
        blkio_read_bytes_per_second: per_second(b.blkio_read_bytes, a.blkio_read_bytes, secs),
        blkio_write_bytes_per_second: per_second(b.blkio_write_bytes, a.blkio_write_bytes, secs),
        interval_seconds: secs,
    }
}

/// The latest rates of a series (zeros until it has two samples).
pub(crate) fn latest_rates(series: &Series<UsagePoint>) -> StatsRates {
    match (series.previous(), series.latest()) {
        (Some(before), Some(after)) => rates(before, after),
        _ => StatsRates::default(),
    }
}

/// The window as points with rates, each against the point before it (so the first point is
/// left out).
pub(crate) fn history(series: &Series<UsagePoint>) -> Vec<StatsPoint> {
    let points: Vec<&UsagePoint> = series.points().collect();
    points
        .windows(2)
        .map(|pair| {
            let rates = rates(pair[0], pair[1]);
            StatsPoint {
                at: Some(prost_types::Timestamp::from(pair[1].at)),
                cpu_percent: rates.cpu_percent,
                memory_usage_bytes: pair[1].stats.memory_usage_bytes,
                memory_working_set_bytes: pair[1].stats.memory_working_set_bytes,
                rx_bytes_per_second: rates.rx_bytes_per_second,
                tx_bytes_per_second: rates.tx_bytes_per_second,
            }
        })
        .collect()
}
