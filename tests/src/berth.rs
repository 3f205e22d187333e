//! Berth's own binaries under test: a `berth-scheduler` and `berth-agent` started as real
//! processes (killed on drop), and `berthctl` run as a command with its output parsed.
//!
//! A scheduler serves TLS unless a test asks for `--insecure`; berthctl then uses the admin
//! config the scheduler writes (`<data dir>/berthctl.toml`), and an agent joins with a join
//! token and the CA pin, both passed in its environment (never on a command line).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{log_tail, poll_every};

/// Where cargo put the workspace's binaries (`target/<profile>/`), found from this test's own
/// executable (`target/<profile>/deps/<suite>-<hash>`).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the test executable")?;
    let deps = exe.parent().context("test executable has no parent")?;
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().context("deps has no parent")?.to_path_buf()
    } else {
        deps.to_path_buf()
    };
    Ok(dir)
}

/// The path of one of Berth's binaries; an error says how to build it when it is missing.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build the binaries first: cargo build --workspace --bins",
            path.display()
        );
    }
    Ok(path)
}

/// A child process whose output goes to a log file, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Daemon> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone().context("clone log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(Daemon {
            name: name.to_owned(),
            child: Mutex::new(Some(child)),
            log,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (reaping it if so). A reaped child is forgotten: its pid
    /// may be another process's by now, so nothing signals it again.
    pub fn has_exited(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(child) = guard.as_mut() else {
            return true;
        };
        match child.try_wait() {
            Ok(Some(_)) => {
                *guard = None;
                true
            }
            Ok(None) => false,
            Err(_) => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Sends a signal and waits (up to `within`) for the process to exit.
    pub fn signal_and_wait(
        &self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(child) = guard.as_mut() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).context("pid")?);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + within;
        loop {
            if child.try_wait().context("wait")?.is_some() {
                *guard = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {within:?} after {signal}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the log contains `needle`, or fails with the log's tail.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> Result<()> {
        poll_every(within, Duration::from_millis(20), || {
            Ok(self.log().contains(needle).then_some(()))
        })
        .with_context(|| {
            format!(
                "{} never logged {needle:?}; log tail:\n{}",
                self.name,
                log_tail(&self.log, 30)
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    }
}

/// A running berth-scheduler.
#[derive(Debug)]
pub struct Scheduler {
    pub daemon: Daemon,
    pub endpoint: String,
    pub data_dir: PathBuf,
    /// The admin's berthctl config the scheduler wrote.
    pub ctl_config: PathBuf,
    /// Serving TLS (not `--insecure`).
    pub tls: bool,
    port: u16,
}

/// What an agent joins with: a join token and the CA pin (from `create-join-token`).
#[derive(Clone)]
pub struct JoinCredentials {
    pub token: String,
    pub ca_pin: String,
}

impl std::fmt::Debug for JoinCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinCredentials")
            .field("ca_pin", &self.ca_pin)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts one with TLS on a free port with its data under `dir`, waiting until it accepts
    /// connections. `port` reuses a previous instance's port (for restarts).
    pub fn start(dir: &Path, port: Option<u16>) -> Result<Scheduler> {
        Self::start_with(dir, port, false)
    }

    /// [`Scheduler::start`], serving plaintext without authentication when `insecure`.
    pub fn start_with(dir: &Path, port: Option<u16>, insecure: bool) -> Result<Scheduler> {
        Self::start_with_env(dir, port, insecure, &[])
    }

    /// [`Scheduler::start_with`], with more environment variables (the test hooks of a debug
    /// build, `BERTH_SCHEDULER_TEST_HOOKS`).
    pub fn start_with_env(
        dir: &Path,
        port: Option<u16>,
        insecure: bool,
        env: &[(&str, &str)],
    ) -> Result<Scheduler> {
        if let Some(port) = port {
            return Self::start_on(dir, port, insecure, env);
        }
        // Suites run trials in parallel: a port free when picked may be taken by another
        // trial's process before the scheduler binds it. Such a start fails with "cannot
        // listen", and is tried again on another port.
        let mut attempt = 1;
        loop {
            match Self::start_on(dir, crate::free_port()?, insecure, env) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("cannot listen") => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Starts one on `port` and waits until it has logged that it listens (a connect alone
    /// could reach another process holding the port).
    fn start_on(dir: &Path, port: u16, insecure: bool, env: &[(&str, &str)]) -> Result<Scheduler> {
        let data_dir = dir.join("scheduler-data");
        std::fs::create_dir_all(&data_dir)?;
        let log = dir.join("scheduler.log");
        let listening = "scheduler listening";
        let before = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(listening)
            .count();
        let mut cmd = Command::new(bin("berth-scheduler")?);
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data_dir)
            .args(["--heartbeat-interval", "1s"])
            // The phase marks too (one debug event each), for the e2e bench's profile.
            .env("RUST_LOG", "info,berth::phase=debug")
            .envs(env.iter().copied());
        if insecure {
            cmd.arg("--insecure");
        }
        let daemon = Daemon::spawn("berth-scheduler", cmd, log)?;
        let started = poll_every(Duration::from_secs(20), Duration::from_millis(10), || {
            if daemon.has_exited() {
                return Ok(Some(false));
            }
            Ok((daemon.log().matches(listening).count() > before
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
            .then_some(true))
        });
        if !matches!(started, Ok(true)) {
            bail!(
                "berth-scheduler did not listen on {port}; log:\n{}",
                log_tail(daemon.log_path(), 30)
            );
        }
        let scheme = if insecure { "http" } else { "https" };
        Ok(Scheduler {
            daemon,
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            ctl_config: data_dir.join("berthctl.toml"),
            data_dir,
            tls: !insecure,
            port,
        })
    }

    /// A new join token for `cluster` (any number of uses) and the CA pin.
    pub fn join_token(&self, cluster: &str) -> Result<JoinCredentials> {
        let args = ["-o", "json", "create-join-token"];
        let out = berthctl(&self.ctl_config, cluster, &args)?.success(&args)?;
        let v = out.json()?;
        Ok(JoinCredentials {
            token: v["token"].as_str().context("no token")?.to_owned(),
            ca_pin: v["caPin"].as_str().context("no caPin")?.to_owned(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub cluster: String,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub containerd_socket: PathBuf,
    pub namespace: String,
    pub insecure_registries: Vec<String>,
    /// Seconds, as BERTH_TASK_CLEANUP_WAIT takes it.
    pub cleanup_wait: String,
    /// The namespace holding the agent's bridge, nftables table and task namespaces, and where
    /// those go (see `netlab::AgentNetns`).
    pub host_netns: PathBuf,
    pub netns_dir: PathBuf,
    pub extra_args: Vec<String>,
    /// How the agent joins a TLS scheduler (passed in its environment).
    pub join: Option<JoinCredentials>,
}

/// A running berth-agent.
#[derive(Debug)]
pub struct Agent {
    pub daemon: Daemon,
    /// Its introspection endpoint (`metrics_listen`), on a free loopback port of its own.
    pub metrics: std::net::SocketAddr,
}

impl Agent {
    pub fn start(opts: &AgentOptions, log: PathBuf) -> Result<Agent> {
        Agent::start_with_env(opts, log, &[])
    }

    /// [`Agent::start`] with more environment variables (NOTIFY_SOCKET, WATCHDOG_USEC, …).
    pub fn start_with_env(
        opts: &AgentOptions,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Result<Agent> {
        let mut cmd = Command::new(bin("berth-agent")?);
        // An empty file of its own, so a /etc/berth/agent.toml on the machine never leaks in.
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("create {}", opts.data_dir.display()))?;
        let config = opts.data_dir.join("agent.toml");
        std::fs::write(&config, "# all settings come from the environment\n")
            .context("write agent.toml")?;
        cmd.arg("--config").arg(&config);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,berth_agent=debug,berth_runtime=debug")
            .env("BERTH_CLUSTER", &opts.cluster)
            .env("BERTH_SCHEDULER_ENDPOINT", &opts.endpoint)
            .env("BERTH_DATA_DIR", &opts.data_dir)
            .env("BERTH_CONTAINERD_ADDRESS", &opts.containerd_socket)
            .env("BERTH_CONTAINERD_NAMESPACE", &opts.namespace)
            .env(
                "BERTH_INSECURE_REGISTRIES",
                opts.insecure_registries.join(","),
            )
            .env("BERTH_HEARTBEAT_INTERVAL", "1s")
            .env("BERTH_TASK_CLEANUP_WAIT", &opts.cleanup_wait)
            .env("BERTH_NETWORK_HOST_NETNS", &opts.host_netns)
            .env("BERTH_NETWORK_NETNS_DIR", &opts.netns_dir);
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
        cmd.env("BERTH_METRICS_LISTEN", metrics.to_string());
        if let Some(join) = &opts.join {
            cmd.env("BERTH_JOIN_TOKEN", &join.token)
                .env("BERTH_SCHEDULER_CA_PIN", &join.ca_pin);
        }
        cmd.args(&opts.extra_args);
        cmd.envs(env.iter().copied());
        let daemon = Daemon::spawn("berth-agent", cmd, log)?;
        Ok(Agent { daemon, metrics })
    }
}

/// The output of one berthctl run.
#[derive(Debug)]
pub struct CtlOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("berthctl printed no JSON: {self:?}"))
    }

    /// This output when berthctl exited 0; otherwise an error naming `args`, with its stderr.
    pub fn success(self, args: &[&str]) -> Result<CtlOutput> {
        if self.status != 0 {
            bail!(
                "berthctl {args:?} failed ({}): {}",
                self.status,
                self.stderr.trim()
            );
        }
        Ok(self)
    }

    /// The task IDs `run-task` printed, one a line.
    pub fn task_ids(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// The value of a detail of a described task's ENI attachment (ECS shape: name/value pairs).
pub fn attachment_detail(task: &serde_json::Value, name: &str) -> Option<String> {
    task["attachments"]
        .get(0)?
        .get("details")?
        .as_array()?
        .iter()
        .find(|d| d["name"] == name)?
        .get("value")?
        .as_str()
        .map(str::to_owned)
}

/// Runs berthctl with the config file `config` (a scheduler's `ctl_config`) on `cluster`,
/// never failing on a non-zero exit: the caller checks `status`.
pub fn berthctl(config: &Path, cluster: &str, args: &[&str]) -> Result<CtlOutput> {
    let out = ctl_command(config)?
        .args(["--cluster", cluster])
        .args(args)
        .output()
        .context("run berthctl")?;
    Ok(CtlOutput {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A berthctl command that reads `config` and nothing of the caller's environment, its stdin
/// empty (never the suite's own, which CI may share with the output it keeps).
pub fn ctl_command(config: &Path) -> Result<Command> {
    let mut cmd = Command::new(bin("berthctl")?);
    cmd.stdin(Stdio::null());
    for var in [
        "BERTH_ENDPOINT",
        "BERTH_CLUSTER",
        "BERTH_CA_FILE",
        "BERTH_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("BERTH_CONFIG", config);
    Ok(cmd)
}
