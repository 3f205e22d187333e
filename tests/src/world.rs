//! The suite runner: one `World` (tokio runtime, private containerd and registry, temp dir) per
//! suite process, libtest-mimic trials that share it, and a teardown that always runs.

use std::env;
use std::fmt;
use std::future::Future;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use tempfile::TempDir;
use tokio::runtime::{Handle, Runtime};

use crate::containerd::PrivateContainerd;
use crate::prereq::{Policy, Prereq};
use crate::registry::PrivateRegistry;
use crate::trace::trace_init;

/// Set to keep the suite's temp dir (logs, containerd root) after the run.
pub const KEEP_ENV: &str = "BERTH_E2E_KEEP";
/// Set to choose where the suite's temp dir is created (default: the system temp dir).
pub const TMPDIR_ENV: &str = "BERTH_E2E_TMPDIR";
/// How often the watchdog looks at the suite's containerd and registry.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How much of a failed trial's error the closing summary repeats.
const FAILURE_HEAD_LINES: usize = 6;
const FAILURE_HEAD_CHARS: usize = 1500;

#[derive(Debug)]
struct Services {
    containerd: PrivateContainerd,
    registry: PrivateRegistry,
}

/// Why a world has no services.
#[derive(Debug, Clone)]
struct Unavailable {
    reason: String,
    /// Fail every trial (CI, or prerequisites met but startup failed) rather than skip.
    fail: bool,
}

/// What every trial of a suite shares. Created by [`run_suite`].
pub struct World {
    name: String,
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
    dir: PathBuf,
    tempdir: Mutex<Option<TempDir>>,
    services: Option<Services>,
    unavailable: Option<Unavailable>,
    counter: AtomicU64,
    /// Each failed trial's name and the head of its error, printed again after teardown so
    /// that the last lines of a long run's output say why it failed.
    failures: Mutex<Vec<(String, String)>>,
    /// Set when teardown begins: the services stop on purpose from then on.
    tearing_down: AtomicBool,
    /// Which shared service died while trials ran, and how (the watchdog's finding).
    broken: Mutex<Option<String>>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("services", &self.services)
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

impl World {
    /// Creates the runtime and temp dir and, when the prerequisites are met, starts containerd
    /// and the registry. Only fails when the runtime or temp dir cannot be created; a missing
    /// prerequisite or a daemon that does not start makes an unavailable world instead.
    fn start(name: &str, start_services: bool) -> Result<World> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("{name}-rt"))
            .build()
            .context("build tokio runtime")?;
        let prefix = format!("berth-e2e-{name}-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        let tempdir = match env::var_os(TMPDIR_ENV) {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("create suite temp dir")?;
        let dir = tempdir.path().to_owned();
        let mut world = World {
            name: name.to_owned(),
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            dir,
            tempdir: Mutex::new(Some(tempdir)),
            services: None,
            unavailable: None,
            counter: AtomicU64::new(0),
            failures: Mutex::default(),
            tearing_down: AtomicBool::new(false),
            broken: Mutex::default(),
        };
        if !start_services {
            world.unavailable = Some(Unavailable {
                reason: "not started (listing only)".into(),
                fail: false,
            });
            return Ok(world);
        }
        if let Err(why) = Prereq::check() {
            world.unavailable = Some(Unavailable {
                reason: why,
                fail: Policy::from_env() == Policy::Fail,
            });
            return Ok(world);
        }
        match Self::start_services(&world.dir) {
            Ok(s) => world.services = Some(s),
            Err(e) => {
                world.unavailable = Some(Unavailable {
                    reason: format!("{e:#}"),
                    fail: true,
                })
            }
        }
        Ok(world)
    }

    fn start_services(dir: &Path) -> Result<Services> {
        let containerd = PrivateContainerd::start(&dir.join("containerd"))
            .context("start private containerd")?;
        let registry =
            PrivateRegistry::start(&dir.join("registry")).context("start private registry")?;
        Ok(Services {
            containerd,
            registry,
        })
    }

    #[track_caller]
    fn services(&self) -> &Services {
        match (&self.services, &self.unavailable) {
            (Some(s), _) => s,
            (None, Some(u)) => panic!(
                "world `{}` is unavailable ({}); build trials, do not run work, in the run_suite closure",
                self.name, u.reason
            ),
            (None, None) => panic!("world `{}` was torn down", self.name),
        }
    }

    /// Runs `fut` to completion on the shared multi-threaded runtime. May be called from many
    /// trial threads at once; must not be called from inside the runtime.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }

    /// The shared runtime's handle (to spawn background tasks).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The private containerd.
    #[track_caller]
    pub fn containerd(&self) -> &PrivateContainerd {
        &self.services().containerd
    }

    /// The private registry.
    #[track_caller]
    pub fn registry(&self) -> &PrivateRegistry {
        &self.services().registry
    }

    /// Shorthand for `self.containerd().ctr(args)`.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        self.containerd().ctr(args)
    }

    /// The suite's temp dir (removed at the end unless `BERTH_E2E_KEEP` is set).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The suite name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `prefix-PID-N`, unique on this machine while this process runs. Use it for containerd
    /// namespaces and container IDs: runc's state (`/run/containerd/runc/<ns>/<id>` unless a
    /// runc root is given) and the default cgroup path (`/<ns>/<id>`) are host-global, shared
    /// by every containerd on the machine, including other suites running at the same time.
    pub fn unique(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A new, empty directory under the suite's temp dir.
    pub fn scratch_dir(&self, prefix: &str) -> Result<PathBuf> {
        let dir = self.dir.join("scratch").join(self.unique(prefix));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    /// A trial that runs `body` with this world; an `Err` fails it with the whole error chain.
    pub fn trial<F>(self: &Arc<Self>, name: impl Into<String>, body: F) -> Trial
    where
        F: FnOnce(&World) -> Result<()> + Send + 'static,
    {
        let name = name.into();
        let world = Arc::clone(self);
        Trial::test(name.clone(), move || {
            body(&world).map_err(|e| world.failed(&name, &e))
        })
    }

    /// A trial whose body is async; it runs under [`block_on`](Self::block_on).
    pub fn async_trial<F, Fut>(self: &Arc<Self>, name: impl Into<String>, body: F) -> Trial
    where
        F: FnOnce(Arc<World>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>>,
    {
        let name = name.into();
        let world = Arc::clone(self);
        Trial::test(name.clone(), move || {
            let w = Arc::clone(&world);
            world.block_on(body(w)).map_err(|e| world.failed(&name, &e))
        })
    }

    /// The failure of trial `name`: its whole error chain for libtest's report; the head of
    /// it (the first lines, before any log tail the error carries) kept for the summary.
    fn failed(&self, name: &str, e: &anyhow::Error) -> Failed {
        let whole = format!("{e:#}");
        let mut head: String = whole
            .lines()
            .take(FAILURE_HEAD_LINES)
            .collect::<Vec<_>>()
            .join("\n");
        if head.len() > FAILURE_HEAD_CHARS {
            let cut = (0..=FAILURE_HEAD_CHARS)
                .rev()
                .find(|&i| head.is_char_boundary(i))
                .unwrap_or(0);
            head.truncate(cut);
            head.push_str(" …");
        }
        if let Some(broken) = self
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            head.push_str(&format!("\n(while {broken})"));
        }
        // Now as well as in the closing summary: a run that ends abruptly keeps the reason.
        eprintln!("---- {name} failed: {}", head.replace('\n', "\n  "));
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_owned(), head));
        Failed::from(whole)
    }

    /// Prints the head of every failed trial's error: the last thing a suite prints.
    fn print_failures(&self) {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.is_empty() {
            return;
        }
        eprintln!(
            "---- {}: why the failed trials failed (heads) ----",
            self.name
        );
        for (name, head) in failures.iter() {
            eprintln!("{name}:\n  {}", head.replace('\n', "\n  "));
        }
    }

    /// Stops containerd (after removing every task and container), the registry, and removes
    /// the temp dir. Idempotent; also run on drop.
    pub fn teardown(&self) {
        self.tearing_down.store(true, Ordering::SeqCst);
        if let Some(s) = &self.services {
            s.containerd.shutdown();
            s.registry.shutdown();
        }
        let taken = self
            .tempdir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tempdir) = taken {
            if env::var_os(KEEP_ENV).is_some() {
                let kept = tempdir.keep();
                eprintln!("{}: kept {} ({KEEP_ENV} is set)", self.name, kept.display());
            } else {
                // What a trial's agent left mounted (a task's volume bind when the agent was
                // killed with the task running) is named and detached, so that the temp dir
                // goes and the host keeps nothing of the suite.
                for left in crate::containerd::mounts_under(&self.dir) {
                    eprintln!(
                        "{}: still mounted at teardown: {}",
                        self.name,
                        left.display()
                    );
                }
                crate::containerd::unmount_under(&self.dir);
                if let Err(e) = tempdir.close() {
                    eprintln!(
                        "{}: could not remove {}: {e}",
                        self.name,
                        self.dir.display()
                    );
                }
            }
        }
    }

    fn print_logs(&self) {
        if let Some(s) = &self.services {
            eprintln!(
                "---- containerd log tail ({}) ----\n{}",
                s.containerd.log_path().display(),
                s.containerd.log_tail(40)
            );
            eprintln!(
                "---- registry log tail ({}) ----\n{}",
                s.registry.log_path().display(),
                s.registry.log_tail(20)
            );
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.teardown();
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rt) = rt {
            // Blocking shutdown is not allowed inside a runtime; there, detach instead.
            if Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

/// Runs a suite: starts the [`World`], asks `trials` for the trials, runs them with
/// libtest-mimic (honouring the usual test-binary flags), always tears down, and returns the
/// exit code.
///
/// When prerequisites are missing every trial is reported ignored with a loud `SKIPPED`
/// message, or failed when `CI=true`. When they are met but containerd or the registry does
/// not start, every trial fails with the reason. The `trials` closure should only build
/// trials: the world may be unavailable while it runs.
pub fn run_suite(name: &str, trials: impl FnOnce(&Arc<World>) -> Vec<Trial>) -> ExitCode {
    keep_output_blocking("when the suite started");
    trace_init();
    let args = Arguments::from_args();
    let world = match World::start(name, !args.list) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("{name}: cannot set up the suite: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    install_signal_teardown(&world);
    watch_services(&world);
    let list = match catch_unwind(AssertUnwindSafe(|| trials(&world))) {
        Ok(list) => list,
        Err(_) => {
            eprintln!("{name}: building the trials panicked");
            world.teardown();
            return ExitCode::FAILURE;
        }
    };
    let list = match (&world.unavailable, args.list) {
        (Some(u), false) => replace_unavailable(name, list, u),
        _ => list,
    };
    let conclusion = libtest_mimic::run(&args, list);
    if conclusion.has_failed() {
        world.print_logs();
    }
    world.teardown();
    world.print_failures();
    drop(world);
    conclusion.exit_code()
}

fn replace_unavailable(suite: &str, list: Vec<Trial>, u: &Unavailable) -> Vec<Trial> {
    let bar = "=".repeat(78);
    if u.fail {
        eprintln!(
            "{bar}\nFAILED: {suite}: end-to-end prerequisites not met or services did not start:\n  {}\n{bar}",
            u.reason
        );
    } else {
        eprintln!(
            "{bar}\nSKIPPED: {}\n  suite `{suite}`: all {} trials are ignored (set CI=true to make this a failure)\n{bar}",
            u.reason,
            list.len()
        );
    }
    list.into_iter()
        .map(|t| {
            let (name, kind, ignored) = (
                t.name().to_owned(),
                t.kind().to_owned(),
                t.has_ignored_flag(),
            );
            let reason = u.reason.clone();
            let replacement = if u.fail {
                Trial::test(name, move || {
                    Err(Failed::from(format!("end-to-end prerequisites: {reason}")))
                })
            } else {
                Trial::ignorable_test(name, move || {
                    Ok(Completion::ignored_with(format!("SKIPPED: {reason}")))
                })
            };
            replacement.with_kind(kind).with_ignored_flag(ignored)
        })
        .collect()
}

/// On SIGINT, SIGTERM or SIGHUP: say which signal came from which process, tear down (kill
/// containers, containerd, registry), repeat why the failed trials failed and exit 128 + the
/// signal's number.
fn install_signal_teardown(world: &Arc<World>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;

    let mut signals = match SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!(
                "{}: no teardown on signals (cannot register: {e})",
                world.name
            );
            return;
        }
    };
    let weak: Weak<World> = Arc::downgrade(world);
    let spawned = std::thread::Builder::new()
        .name("signal-teardown".into())
        .spawn(move || {
            let Some(origin) = signals.forever().next() else {
                return;
            };
            let name = signal_hook::low_level::signal_name(origin.signal).unwrap_or("a signal");
            let sender = match origin.process {
                Some(p) => format!(
                    "pid {} (uid {}, {})",
                    p.pid,
                    p.uid,
                    crate::process::describe_pid(p.pid)
                ),
                None => format!("the kernel ({:?})", origin.cause),
            };
            eprintln!("berth-tests: {name} from {sender}: tearing down");
            if let Some(w) = weak.upgrade() {
                w.teardown();
                w.print_failures();
            }
            std::process::exit(128 + origin.signal);
        });
    if let Err(e) = spawned {
        eprintln!("{}: no teardown on signals: {e}", world.name);
    }
}

/// Clears O_NONBLOCK on stdout and stderr when a process that shares them (whoever runs the
/// suite and reads its output, or anything that inherited them) has set it, and says so
/// (`when`): libtest and `print!` take a full pipe's EAGAIN as fatal, so a trial that prints
/// would fail, and the run die mid-line, whenever the reader falls behind.
fn keep_output_blocking(when: &str) {
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    for (name, fd) in [("stdout", stdout.as_fd()), ("stderr", stderr.as_fd())] {
        if let Ok(true) = clear_nonblocking(fd) {
            eprintln!("berth-tests: the suite's {name} was non-blocking {when}; made blocking");
        }
    }
}

/// Clears O_NONBLOCK on `fd`'s open file description; true when it was set.
fn clear_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<bool> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};

    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        return Ok(false);
    }
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(true)
}

/// Watches the suite's containerd and registry while the trials run. One that exits before
/// teardown is reported at once (with its status and log tail), and every failure after it
/// names it, so that a run where all trials fail for that one reason says so.
fn watch_services(world: &Arc<World>) {
    let weak: Weak<World> = Arc::downgrade(world);
    let spawned = std::thread::Builder::new()
        .name("service-watchdog".into())
        .spawn(move || {
            let mut reported = false;
            loop {
                std::thread::sleep(WATCH_EVERY);
                keep_output_blocking("while the trials ran");
                let Some(w) = weak.upgrade() else { return };
                if reported || w.tearing_down.load(Ordering::SeqCst) {
                    continue;
                }
                let Some(s) = &w.services else { continue };
                let died = if let Some(status) = s.containerd.exited() {
                    let tail = s.containerd.log_tail(40);
                    Some(("containerd", status, s.containerd.log_path(), tail))
                } else {
                    s.registry.exited().map(|status| {
                        let tail = s.registry.log_tail(20);
                        ("registry", status, s.registry.log_path(), tail)
                    })
                };
                let Some((what, status, log, tail)) = died else {
                    continue;
                };
                if w.tearing_down.load(Ordering::SeqCst) {
                    continue;
                }
                reported = true;
                eprintln!(
                    "---- {}: the suite's {what} exited ({status}) while trials ran; the trials after this fail ----\n---- {what} log tail ({}) ----\n{tail}",
                    w.name,
                    log.display()
                );
                *w.broken.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("the suite's {what} had exited ({status})"));
            }
        });
    if let Err(e) = spawned {
        eprintln!("{}: no watchdog on the suite's services: {e}", world.name);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use nix::fcntl::{FcntlArg, OFlag, fcntl};

    use super::clear_nonblocking;

    #[test]
    fn a_non_blocking_pipe_is_made_blocking_and_a_blocking_one_left_alone() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        assert_eq!(clear_nonblocking(write.as_fd()), Ok(false));
        fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("set O_NONBLOCK");
        // Full, a non-blocking pipe refuses the next write: what would kill the suite.
        let mut file = std::fs::File::from(write.try_clone().expect("dup"));
        let chunk = [0u8; 4096];
        let refused = loop {
            match file.write(&chunk) {
                Ok(n) => assert!(n > 0, "a pipe took nothing without refusing"),
                Err(e) => break e.kind(),
            }
        };
        assert_eq!(refused, std::io::ErrorKind::WouldBlock);
        assert_eq!(clear_nonblocking(write.as_fd()), Ok(true));
        let flags = OFlag::from_bits_truncate(fcntl(&write, FcntlArg::F_GETFL).expect("get"));
        assert!(!flags.contains(OFlag::O_NONBLOCK));
        drop(read);
    }
}
