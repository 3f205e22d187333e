//! Berth under systemd: the unit files pass `systemd-analyze verify`, and the real agent
//! speaks sd_notify to a test NOTIFY_SOCKET: "waiting for containerd" while containerd does
//! not answer, READY=1 before it has joined, a STATUS line naming its instance and cluster,
//! watchdog pings while it runs, and STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::{Agent, bin};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::Env;

/// The repository's unit files.
fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

pub(super) fn units_pass_systemd_analyze_verify(w: &World) -> Result<()> {
    let dir = w.scratch_dir("units")?;
    let mut units = Vec::new();
    for (unit, binary) in [
        ("berth-agent.service", "berth-agent"),
        ("berth-agent-first-boot.service", "berth-agent"),
        ("berth-scheduler.service", "berth-scheduler"),
    ] {
        let text = std::fs::read_to_string(unit_dir().join(unit))
            .with_context(|| format!("read systemd/{unit}"))?;
        let installed = format!("/usr/bin/{binary}");
        ensure!(text.contains(&installed), "{unit} does not run {installed}");
        // verify checks that ExecStart= is executable: point it at this build's binary.
        let built = bin(binary)?;
        let copy = dir.join(unit);
        std::fs::write(
            &copy,
            text.replace(&installed, &built.display().to_string()),
        )?;
        units.push(copy);
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        // Man pages are installed by the package, not on a build machine.
        .arg("--man=no")
        .args(&units)
        .output()
        .context("run systemd-analyze verify (Debian package systemd)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("berth-")).collect();
    ensure!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify refused the units ({}):\n{stderr}",
        out.status
    );
    Ok(())
}

/// The datagrams a daemon sent to its NOTIFY_SOCKET.
pub(super) struct NotifySocket {
    socket: UnixDatagram,
    pub(super) path: PathBuf,
    pub(super) seen: Vec<String>,
}

impl NotifySocket {
    pub(super) fn bind(path: PathBuf) -> Result<NotifySocket> {
        let socket =
            UnixDatagram::bind(&path).with_context(|| format!("bind {}", path.display()))?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(NotifySocket {
            socket,
            path,
            seen: Vec::new(),
        })
    }

    /// Reads what arrived; the messages are kept in order.
    pub(super) fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits until a message has a line for which `want` holds; its index among the messages.
    pub(super) fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().position(|m| m.lines().any(&want)) {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("no {what} within {within:?}; got {:?}", self.seen);
            }
            self.drain();
        }
    }

    pub(super) fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

pub(super) fn agent_speaks_sd_notify(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    let cluster = env.cluster.clone();
    env.ok(&["create-cluster", &cluster])?;

    // No containerd: the agent says what it waits for, and is not ready.
    let mut notify = NotifySocket::bind(env.dir.join("notify-waiting.sock"))?;
    let mut opts = env.opts.clone();
    let missing = env.dir.join("no-containerd.sock");
    opts.containerd_socket = missing.clone();
    opts.data_dir = env.dir.join("waiting-data");
    let socket = notify.path.display().to_string();
    let waiting = Agent::start_with_env(
        &opts,
        env.dir.join("agent-waiting.log"),
        &[("NOTIFY_SOCKET", &socket)],
    )?;
    let expected = format!("STATUS=waiting for containerd at {}", missing.display());
    notify.wait_for("waiting status", Duration::from_secs(20), |l| l == expected)?;
    ensure!(
        notify.count("READY=1") == 0,
        "ready without containerd: {:?}",
        notify.seen
    );
    waiting
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(10))?;
    drop(waiting);

    // The real thing: READY=1, then the registered status, and pings (every second for a 2 s
    // watchdog).
    let mut notify = NotifySocket::bind(env.dir.join("notify.sock"))?;
    let socket = notify.path.display().to_string();
    let mut opts = env.opts.clone();
    if env.scheduler.tls {
        opts.join = Some(env.scheduler.join_token(&cluster)?);
    }
    let agent = Agent::start_with_env(
        &opts,
        env.dir.join("agent-notify.log"),
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")],
    )?;
    let ready = notify.wait_for("READY=1", Duration::from_secs(30), |l| l == "READY=1")?;
    let instance = env.wait_instance_connected()?;
    let id = instance["containerInstanceId"]
        .as_str()
        .context("instance without an ID")?
        .to_owned();
    let registered = format!("STATUS=registered as {id} in {cluster}; 0 tasks running");
    let status = notify.wait_for("registered status", Duration::from_secs(20), |l| {
        l == registered
    })?;
    ensure!(
        ready < status,
        "READY=1 came after the registered status: {:?}",
        notify.seen
    );
    poll(Duration::from_secs(20), || {
        notify.drain();
        Ok((notify.count("WATCHDOG=1") >= 3).then_some(()))
    })
    .with_context(|| format!("fewer than 3 watchdog pings: {:?}", notify.seen))?;
    agent
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
