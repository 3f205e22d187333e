//! berth-scheduler under systemd's notify protocol, as the agent's: the real scheduler, given a
//! test NOTIFY_SOCKET and a 2 s watchdog, sends READY=1 with the address it serves on once it
//! listens, a STATUS line counting clusters and instances that follows the store, watchdog
//! pings while it runs, and STOPPING=1 on SIGTERM. (A wedged store withholding the pings is a
//! unit test on paused time, in the scheduler's `service` module; the restart that follows
//! under a real systemd is in tests/systemd/nspawn.sh.)

use std::time::Duration;

use anyhow::{Result, ensure};
use berth_tests::berth::{Scheduler, berthctl};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::systemd::NotifySocket;

pub(super) fn scheduler_speaks_sd_notify(w: &World) -> Result<()> {
    let dir = w.scratch_dir("scheduler-notify")?;
    let mut notify = NotifySocket::bind(dir.join("notify.sock"))?;
    let socket = notify.path.display().to_string();
    let scheduler = Scheduler::start_with_env(
        &dir,
        None,
        false,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")],
    )?;
    let serving = format!("serving on 127.0.0.1:{}", scheduler.port());
    let ready_line = format!("STATUS={serving}");
    let ready = notify.wait_for("READY=1", Duration::from_secs(20), |l| l == "READY=1")?;
    ensure!(
        notify.seen[ready].lines().any(|l| l == ready_line),
        "READY=1 without '{ready_line}': {:?}",
        notify.seen
    );

    // The STATUS line follows the store: one more cluster shows.
    let census =
        |clusters: usize| format!("STATUS={serving}; {clusters} clusters, 0 container instances");
    let before = notify.wait_for("a census STATUS line", Duration::from_secs(20), |l| {
        l.starts_with(&format!("STATUS={serving}; "))
    })?;
    let clusters: usize = notify.seen[before]
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STATUS={serving}; ")))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no cluster count in {:?}", notify.seen[before]))?;
    let cluster = w.unique("c");
    berthctl(
        &scheduler.ctl_config,
        &cluster,
        &["create-cluster", &cluster],
    )?
    .success(&["create-cluster"])?;
    let grown = census(clusters + 1);
    let after = notify.wait_for(
        "the census after create-cluster",
        Duration::from_secs(20),
        |l| l == grown,
    )?;
    ensure!(
        before < after && ready < before,
        "out of order: {:?}",
        notify.seen
    );

    // Pings every second for a 2 s watchdog.
    poll(Duration::from_secs(20), || {
        notify.drain();
        Ok((notify.count("WATCHDOG=1") >= 3).then_some(()))
    })
    .map_err(|e| e.context(format!("fewer than 3 watchdog pings: {:?}", notify.seen)))?;

    scheduler
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(20))?;
    notify.drain();
    ensure!(
        notify.count("STOPPING=1") == 1,
        "no STOPPING=1: {:?}",
        notify.seen
    );
    Ok(())
}
