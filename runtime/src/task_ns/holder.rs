//! The namespace holder's own code, run as `berth-agent task-holder`: it moves itself into its
//! cgroup, leaves the agent's session, says it is ready, and then only reaps children until
//! it is killed.
//!
//! As PID 1 of a PID namespace it inherits every process the containers orphan, so it reaps
//! them (they would stay zombies otherwise). It installs no signal handler: the kernel then
//! drops every signal sent to a namespace's init from inside the namespace, so no container
//! can end it; SIGKILL from the agent (outside) always does. SIGCHLD is blocked and taken with
//! `sigwait`, so it sleeps while there is nothing to reap.

use std::io::{self, Write};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

/// The holder's process name (its `comm`).
const HOLDER_NAME: &std::ffi::CStr = c"berth-ns-holder";

/// The line a holder writes on its stdout once it is in its cgroup.
pub const HOLDER_READY: &str = "berth-task-holder ready";

/// The holder's main: joins the cgroups whose `cgroup.procs` files are given (its own PID as
/// its namespace sees it would not do, so it writes `0`, the writer), starts a session of its
/// own, prints [`HOLDER_READY`], then reaps children forever. Returns only on an error.
pub fn hold_namespaces(cgroup_procs: &[PathBuf]) -> io::Error {
    for file in cgroup_procs {
        if let Err(e) = std::fs::write(file, "0") {
            return io::Error::new(e.kind(), format!("cannot join {}: {e}", file.display()));
        }
    }
    // A session of its own: no terminal's hangup reaches it. Failing means it leads one.
    let _ = nix::unistd::setsid();
    // Its name in ps, and in /proc/1/comm of the task's containers. Only cosmetic.
    let _ = nix::sys::prctl::set_name(HOLDER_NAME);
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigchld), None) {
        return io::Error::other(format!("cannot block SIGCHLD: {e}"));
    }
    let mut stdout = io::stdout();
    if let Err(e) = writeln!(stdout, "{HOLDER_READY}").and_then(|()| stdout.flush()) {
        return e;
    }
    loop {
        reap_all();
        if let Err(e) = sigchld.wait() {
            return io::Error::other(format!("cannot wait for SIGCHLD: {e}"));
        }
    }
}

/// Reaps every child that has exited, without blocking.
fn reap_all() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
