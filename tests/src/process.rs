//! Child-process plumbing shared by the harness: bounded waits, log tails, signals and /proc scans.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often bounded waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Calls `f` every 50 ms until it returns `Some`, or fails after `within`: see [`poll_every`].
pub fn poll<T>(within: Duration, f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    poll_every(within, POLL, f)
}

/// Calls `f` every `every` until it returns `Some`, or fails once `within` has passed. An error
/// from `f` counts as "not yet" (what is polled may not be there yet); the failure after the
/// deadline is the last such error, or a timeout.
pub fn poll_every<T>(
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(last_err.unwrap_or_else(|| anyhow::anyhow!("timed out after {within:?}")));
        }
        thread::sleep(every);
    }
}

/// Waits until a daemon just started serves: `probe` answers `Ok(())` once it does, or why it
/// does not yet. Fails at once when the daemon exits (`exited`), and after `within` otherwise;
/// both errors carry the tail of its `log`.
pub(crate) fn wait_ready(
    name: &str,
    log: &Path,
    within: Duration,
    exited: impl Fn() -> Option<ExitStatus>,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = exited() {
            bail!(
                "{name} exited during startup ({status}); log {}:\n{}",
                log.display(),
                log_tail(log, 30)
            );
        }
        let why = match probe() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            bail!(
                "{name} not ready within {within:?} ({why}); log {}:\n{}",
                log.display(),
                log_tail(log, 30)
            );
        }
        thread::sleep(POLL);
    }
}

/// The last `lines` lines of a log file, or a note saying why it could not be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot read {}: {e}>", path.display()),
    };
    // Read at most the last 64 KiB: enough for any tail we print.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return format!("<cannot seek {}>", path.display());
    }
    let mut buf = Vec::new();
    if let Err(e) = file.read_to_end(&mut buf) {
        return format!("<cannot read {}: {e}>", path.display());
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// Runs `cmd` to completion with a deadline, capturing stdout and stderr.
///
/// The child is killed when the deadline passes. Returns stdout on success; the error carries
/// the command line, the exit status and stderr.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {shown}"))?;
    let out = child.stdout.take().map(reader_thread);
    let err = child.stderr.take().map(reader_thread);
    let status = wait_deadline(&mut child, timeout);
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.map(join_reader).unwrap_or_default();
            bail!(
                "{shown} did not finish within {timeout:?}; stderr: {}",
                stderr.trim()
            );
        }
    };
    let stdout = out.map(join_reader).unwrap_or_default();
    let stderr = err.map(join_reader).unwrap_or_default();
    if !status.success() {
        bail!("{shown} failed ({status}): {}", stderr.trim());
    }
    Ok(stdout)
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join_reader(h: thread::JoinHandle<String>) -> String {
    h.join().unwrap_or_default()
}

/// Waits for `child` to exit, at most `timeout`. `None` when it is still running.
pub(crate) fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // The child was already reaped elsewhere: nothing left to wait for.
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and reap. Safe to call on an exited child.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if wait_deadline(child, grace).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A process seen in /proc.
#[derive(Debug, Clone)]
pub(crate) struct ProcInfo {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) cmdline: Vec<String>,
}

/// Every process in /proc that could be read. Processes that vanish mid-scan are skipped.
pub(crate) fn processes() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(ppid) = parse_ppid(&stat) else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ProcInfo { pid, ppid, cmdline });
    }
    out
}

/// The parent pid from a /proc/<pid>/stat line; the command name may contain spaces and parens.
fn parse_ppid(stat: &str) -> Option<i32> {
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// SIGKILLs `roots` and all their descendants (children first), as seen in one /proc scan.
pub(crate) fn kill_trees(roots: &[i32]) {
    if roots.is_empty() {
        return;
    }
    let procs = processes();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut order = Vec::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if order.contains(&pid) {
            continue;
        }
        order.push(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    // Descendants first so a shim cannot react to its children dying.
    for pid in order.iter().rev() {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

/// A process's command line and parent, as `/proc` shows them now, for messages about it.
pub(crate) fn describe_pid(pid: i32) -> String {
    let proc = Path::new("/proc").join(pid.to_string());
    let cmdline = fs::read(proc.join("cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if cmdline.is_empty() {
        return "gone by now".to_owned();
    }
    let parent = fs::read_to_string(proc.join("stat"))
        .ok()
        .and_then(|stat| parse_ppid(&stat))
        .map(|ppid| format!(", parent {ppid}"))
        .unwrap_or_default();
    format!("`{cmdline}`{parent}")
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A command that dies with the calling thread when `setpriv` is available (parent-death
/// signal), so a harness killed with SIGKILL does not leave daemons behind.
pub(crate) fn daemon_command(program: &Path) -> Command {
    let setpriv = Path::new("/usr/bin/setpriv");
    if setpriv.exists() {
        let mut cmd = Command::new(setpriv);
        cmd.arg("--pdeathsig").arg("KILL").arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_with_parens_in_name() {
        assert_eq!(parse_ppid("12 (a) b) S 7 12 12 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
    }
}
