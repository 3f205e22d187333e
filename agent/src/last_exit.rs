//! How the agent's previous run ended, so that the resume crash-loop guard counts only the
//! resumes a crash of the agent itself cut short, never those an outside kill did (an operator's
//! `kill -9`, `systemctl stop`, a reboot, a power loss).
//!
//! systemd knows how each run of the unit ended; it tells `ExecStopPost=` in `SERVICE_RESULT`,
//! `EXIT_CODE` and `EXIT_STATUS`, and names the run in `INVOCATION_ID`, which the agent's own
//! process sees too. The unit runs `berth-agent record-exit` there, which writes these to
//! [`FILE`] in the data dir. The next run reads it: an ending of the run that began a resume
//! still in progress decides whether that resume counts. Without systemd (no `INVOCATION_ID`),
//! a run gets a random ID that no record names, so no resume ever counts.

use std::path::{Path, PathBuf};

/// The file `record-exit` writes in the data dir.
pub const FILE: &str = "last-exit";

/// The ID of this run of the agent: systemd's `INVOCATION_ID`, or a random one.
pub(crate) fn run_id() -> String {
    match std::env::var("INVOCATION_ID") {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!("standalone-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// Why `record-exit` could not keep the ending.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "INVOCATION_ID is not set: run record-exit from the unit's ExecStopPost=, where systemd \
         sets it with SERVICE_RESULT, EXIT_CODE and EXIT_STATUS"
    )]
    NoInvocation,
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How one run of the agent ended, as systemd told `ExecStopPost=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ending {
    /// The run's `INVOCATION_ID`.
    pub invocation: String,
    /// `SERVICE_RESULT`: success, exit-code, signal, core-dump, watchdog, oom-kill, timeout, …
    pub service_result: String,
    /// `EXIT_CODE`: exited, killed or dumped.
    pub exit_code: String,
    /// `EXIT_STATUS`: the exit status, or the signal's name (TERM, KILL, SEGV, …).
    pub exit_status: String,
}

/// Signals a process receives when it fails by itself: a fault, an abort (a double panic, a
/// stack overflow, an allocation failure), a bad syscall under seccomp.
const CRASH_SIGNALS: &[&str] = &["SEGV", "BUS", "ILL", "FPE", "ABRT", "SYS", "TRAP"];

impl Ending {
    /// The ending systemd describes in `env` (ExecStopPost's environment); None without an
    /// `INVOCATION_ID`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let invocation = env("INVOCATION_ID").filter(|v| !v.trim().is_empty())?;
        let get = |key| env(key).unwrap_or_default().trim().to_owned();
        Some(Self {
            invocation: invocation.trim().to_owned(),
            service_result: get("SERVICE_RESULT"),
            exit_code: get("EXIT_CODE"),
            exit_status: get("EXIT_STATUS"),
        })
    }

    /// `key=value` lines.
    pub fn render(&self) -> String {
        format!(
            "invocation={}\nservice_result={}\nexit_code={}\nexit_status={}\n",
            self.invocation, self.service_result, self.exit_code, self.exit_status
        )
    }

    /// Reads [`Self::render`]'s form; unknown keys are skipped (a later agent may add some).
    /// None when the run is not named.
    pub fn parse(text: &str) -> Option<Self> {
        let mut ending = Self::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            let value = value.trim().to_owned();
            match key.trim() {
                "invocation" => ending.invocation = value,
                "service_result" => ending.service_result = value,
                "exit_code" => ending.exit_code = value,
                "exit_status" => ending.exit_status = value,
                _ => {}
            }
        }
        (!ending.invocation.is_empty()).then_some(ending)
    }

    /// What the run died of when it failed by itself (a crash, an OOM kill, a wedge the
    /// watchdog ended, an exit with an error); None when it was stopped or killed from
    /// outside, or exited cleanly.
    pub fn crash(&self) -> Option<String> {
        let signal = self
            .exit_status
            .strip_prefix("SIG")
            .unwrap_or(&self.exit_status);
        match (self.service_result.as_str(), self.exit_code.as_str()) {
            ("oom-kill", _) => Some("killed by the kernel's OOM killer".to_owned()),
            ("watchdog", _) => Some("ended by systemd's watchdog (it stopped answering)".into()),
            (_, "dumped") => Some(format!("dumped core on SIG{signal}")),
            (_, "killed") if CRASH_SIGNALS.contains(&signal) => {
                Some(format!("killed by SIG{signal}"))
            }
            (_, "exited") if signal != "0" => Some(format!("exited with status {signal}")),
            _ => None,
        }
    }
}

/// `berth-agent record-exit`: writes the ending systemd describes in this process's
/// environment to [`FILE`] in `data_dir`, replacing the previous one. Returns the file.
pub fn record(
    data_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, RecordError> {
    let ending = Ending::from_env(env).ok_or(RecordError::NoInvocation)?;
    let path = data_dir.join(FILE);
    let write = |path: &Path| -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(data_dir)?;
        let partial = data_dir.join(format!("{FILE}.partial"));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(ending.render().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    };
    write(&path).map_err(|source| RecordError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The ending `record-exit` last kept in `data_dir`; None when there is none (or it cannot be
/// read, which is logged: then no resume counts).
pub(crate) fn read(data_dir: &Path) -> Option<Ending> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let ending = Ending::parse(&text);
            if ending.is_none() {
                tracing::warn!(path = %path.display(), "the agent's last exit record names no run; ignored");
            }
            ending
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read how the agent's last run ended");
            None
        }
    }
}

/// What the engine knows of runs: its own, and how the previous one ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Runs {
    /// This run ([`run_id`]).
    pub current: String,
    /// The last ending recorded, if any.
    pub last_ending: Option<Ending>,
}

impl Runs {
    /// This process's run, and the ending recorded in `data_dir`.
    pub(crate) fn of_this_process(data_dir: &Path) -> Self {
        Self {
            current: run_id(),
            last_ending: read(data_dir),
        }
    }

    /// What `run` died of, when the recorded ending is that run's and it was a crash.
    pub(crate) fn crash_of(&self, run: &str) -> Option<String> {
        self.last_ending
            .as_ref()
            .filter(|e| e.invocation == run)
            .and_then(Ending::crash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(result: &str, code: &str, status: &str) -> Ending {
        Ending {
            invocation: "run-1".into(),
            service_result: result.into(),
            exit_code: code.into(),
            exit_status: status.into(),
        }
    }

    #[test]
    fn crashes_are_told_from_stops_and_outside_kills() {
        for (result, code, status) in [
            ("success", "exited", "0"),
            // systemctl stop, an operator's kill, systemd's final kill after the stop timeout.
            ("success", "killed", "TERM"),
            ("signal", "killed", "KILL"),
            ("signal", "killed", "INT"),
            ("timeout", "killed", "KILL"),
            // No record of the ending at all (systemd had nothing to say).
            ("", "", ""),
        ] {
            assert_eq!(
                ending(result, code, status).crash(),
                None,
                "{result} {code} {status}"
            );
        }
        for (result, code, status, said) in [
            ("core-dump", "dumped", "SEGV", "dumped core on SIGSEGV"),
            ("signal", "killed", "ABRT", "killed by SIGABRT"),
            ("signal", "killed", "SIGBUS", "killed by SIGBUS"),
            (
                "oom-kill",
                "killed",
                "KILL",
                "killed by the kernel's OOM killer",
            ),
            ("watchdog", "dumped", "ABRT", "ended by systemd's watchdog"),
            ("exit-code", "exited", "101", "exited with status 101"),
        ] {
            let crash = ending(result, code, status).crash().unwrap_or_default();
            assert!(crash.starts_with(said), "{result} {code} {status}: {crash}");
        }
    }

    #[test]
    fn an_ending_is_recorded_and_read_back_for_its_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let env = |key: &str| {
            match key {
                "INVOCATION_ID" => Some("abc123\n"),
                "SERVICE_RESULT" => Some("core-dump"),
                "EXIT_CODE" => Some("dumped"),
                "EXIT_STATUS" => Some("SEGV"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let path = record(dir.path(), env).unwrap();
        assert_eq!(path, dir.path().join(FILE));
        let runs = Runs::of_this_process(dir.path());
        assert_eq!(
            runs.crash_of("abc123").as_deref(),
            Some("dumped core on SIGSEGV")
        );
        assert_eq!(runs.crash_of("another run"), None);
        // A later ending replaces it.
        let stopped = |key: &str| match key {
            "INVOCATION_ID" => Some("def456".to_owned()),
            "EXIT_CODE" => Some("killed".to_owned()),
            "EXIT_STATUS" => Some("TERM".to_owned()),
            _ => None,
        };
        record(dir.path(), stopped).unwrap();
        let runs = Runs::of_this_process(dir.path());
        assert_eq!(runs.crash_of("abc123"), None);
        assert_eq!(runs.crash_of("def456"), None);
        assert!(matches!(
            record(dir.path(), |_| None),
            Err(RecordError::NoInvocation)
        ));
    }

    #[test]
    fn a_damaged_record_counts_nothing() {
        assert_eq!(Ending::parse(""), None);
        assert_eq!(Ending::parse("exit_code=dumped\nexit_status=SEGV\n"), None);
        let parsed =
            Ending::parse("invocation=r\nlater_key=x\nexit_code=exited\nexit_status=1").unwrap();
        assert_eq!(parsed.crash().as_deref(), Some("exited with status 1"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"\xff\xfe").unwrap();
        assert!(Runs::of_this_process(dir.path()).last_ending.is_none());
    }

    #[test]
    fn a_run_outside_systemd_gets_an_id_no_record_names() {
        let id = run_id();
        assert!(!id.is_empty());
        if std::env::var_os("INVOCATION_ID").is_none() {
            assert!(id.starts_with("standalone-"), "{id}");
            assert_ne!(id, run_id());
        }
    }
}
