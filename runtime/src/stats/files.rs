//! How the sampler reads kernel files cheaply: a cgroup's files are opened once and read with
//! `pread` from offset 0 at every pass (cgroupfs regenerates a file's content when it is read
//! from offset 0), into one reused buffer, within a budget of open files; the syscalls it
//! makes are counted.
//!
//! A cgroup file kept open survives its cgroup's removal: reading it then fails with ENODEV,
//! which is how a pass learns that a container is gone. Its open file does not keep the cgroup
//! alive. `/proc/<pid>/net/dev` is kept open too (opening it costs seven times what reading
//! it does): it reads the network namespace the process was in when it was opened, even after
//! the process exits, and holds that namespace alive, so the sampler keeps it only with the
//! handle of a cgroup still in the pass (see `read.rs`).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;

use crate::cgroup::CgroupError;

/// How many bytes the read buffer starts with: every cgroup file Berth reads fits (v1's
/// `memory.stat` is about 1.5 KiB), and it grows for whatever does not.
const INITIAL_BUFFER: usize = 16 * 1024;

/// Open files the sampler keeps at most: a quarter of the soft `RLIMIT_NOFILE` (the rest is
/// the agent's sockets and log pipes), and never more than this. Each open cgroup file also
/// holds about a page of kernel memory (its seq_file buffer), charged to the agent's cgroup:
/// 8,192 files (400 containers with their tasks) are about 32 MiB. Beyond the budget a file
/// is opened and closed at each read instead.
const MAX_OPEN_FILES: usize = 8 * 1024;

/// The syscalls the sampler made, cumulative: what one pass costs is the difference between
/// two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Files opened (kept open or opened for one read).
    pub opens: u64,
    /// `read` and `pread` calls.
    pub reads: u64,
}

/// Why a read produced no text.
#[derive(Debug)]
pub(super) enum Stop {
    /// The cgroup or process is gone (removed, or exited): ENOENT, ENODEV or ESRCH.
    Gone,
    Failed(CgroupError),
}

impl From<CgroupError> for Stop {
    fn from(error: CgroupError) -> Self {
        Stop::Failed(error)
    }
}

/// One file of a cgroup, as the sampler holds it between passes.
#[derive(Debug)]
pub(super) enum Source {
    /// Kept open; read with `pread` from offset 0.
    Open(OpenFile),
    /// Over the budget of open files: opened and closed at each read.
    Path(PathBuf),
    /// Not there when the cgroup was opened: its controller is not mounted (v1) or not
    /// enabled (v2), so that part of the sample stays empty.
    Absent,
}

/// An open file counted against the budget until it is closed.
#[derive(Debug)]
pub(super) struct OpenFile {
    file: File,
    path: PathBuf,
    open: Arc<AtomicUsize>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The reused buffer, the budget of open files and the syscall counters.
#[derive(Debug)]
pub(super) struct Reader {
    buf: Vec<u8>,
    open: Arc<AtomicUsize>,
    budget: usize,
    counts: IoCounts,
}

impl Reader {
    /// A reader whose budget of open files comes from the process's soft `RLIMIT_NOFILE`.
    pub(super) fn new() -> Self {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
            .unwrap_or(1024);
        Reader::with_budget((soft / 4).min(MAX_OPEN_FILES))
    }

    pub(super) fn with_budget(budget: usize) -> Self {
        Reader {
            buf: vec![0; INITIAL_BUFFER],
            open: Arc::new(AtomicUsize::new(0)),
            budget,
            counts: IoCounts::default(),
        }
    }

    pub(super) fn counts(&self) -> IoCounts {
        self.counts
    }

    /// Files kept open now.
    #[cfg(test)]
    pub(super) fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens a file to keep: Absent when it does not exist, its path alone when the budget is
    /// spent.
    pub(super) fn open(&mut self, path: PathBuf) -> Result<Source, CgroupError> {
        if self.open.load(Ordering::Relaxed) >= self.budget {
            return Ok(if path.exists() {
                Source::Path(path)
            } else {
                Source::Absent
            });
        }
        self.counts.opens += 1;
        match File::open(&path) {
            Ok(file) => {
                self.open.fetch_add(1, Ordering::Relaxed);
                Ok(Source::Open(OpenFile {
                    file,
                    path,
                    open: Arc::clone(&self.open),
                }))
            }
            Err(error) if gone(&error) => Ok(Source::Absent),
            Err(source) => Err(io_error("open", &path, source)),
        }
    }

    /// Reads a cgroup file and parses its text; None when it is Absent.
    pub(super) fn parse<T>(
        &mut self,
        source: &Source,
        parse: impl FnOnce(&str) -> Result<T, CgroupError>,
    ) -> Result<Option<T>, Stop> {
        let len = match source {
            Source::Absent => return Ok(None),
            Source::Open(open) => self.pread(&open.file, &open.path)?,
            Source::Path(path) => self.read_path(path)?,
        };
        Ok(Some(parse(text(&self.buf[..len], source_path(source))?)?))
    }

    /// Reads a file of many records (`/proc/<pid>/net/dev`) to its end and parses its text;
    /// None when it is Absent.
    pub(super) fn parse_records<T>(
        &mut self,
        source: &Source,
        parse: impl FnOnce(&str) -> Result<T, CgroupError>,
    ) -> Result<Option<T>, Stop> {
        let len = match source {
            Source::Absent => return Ok(None),
            Source::Open(open) => self.pread_to_end(&open.file, &open.path)?,
            Source::Path(path) => self.read_path(path)?,
        };
        Ok(Some(parse(text(&self.buf[..len], source_path(source))?)?))
    }

    /// Opens, reads and closes a file (a statically known value, `cgroup.procs`, `/proc`).
    pub(super) fn parse_path<T>(
        &mut self,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<T, CgroupError>,
    ) -> Result<T, Stop> {
        let len = self.read_path(path)?;
        Ok(parse(text(&self.buf[..len], path)?)?)
    }

    /// One `pread` from offset 0 holds the whole file when it fits the buffer: every cgroup
    /// file the sampler keeps open is one record of cgroupfs, which the kernel renders whole
    /// into a large enough buffer, so a short read is its end. A full buffer grows and the
    /// read goes on.
    fn pread(&mut self, file: &File, path: &Path) -> Result<usize, Stop> {
        let mut len = 0;
        loop {
            self.counts.reads += 1;
            let n = file
                .read_at(&mut self.buf[len..], len as u64)
                .map_err(|error| classify("read", path, error))?;
            len += n;
            if n == 0 || len < self.buf.len() {
                return Ok(len);
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }

    /// `pread`s from offset 0 until the end: a file of many records (a seq_file) may return
    /// less than asked (one kernel page of records) before its end, so only an empty read ends
    /// it.
    fn pread_to_end(&mut self, file: &File, path: &Path) -> Result<usize, Stop> {
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            self.counts.reads += 1;
            let n = file
                .read_at(&mut self.buf[len..], len as u64)
                .map_err(|error| classify("read", path, error))?;
            if n == 0 {
                return Ok(len);
            }
            len += n;
        }
    }

    /// Reads a whole file through a fresh descriptor, to its end (`/proc`'s multi-record
    /// files may return less than asked before their end).
    fn read_path(&mut self, path: &Path) -> Result<usize, Stop> {
        self.counts.opens += 1;
        let mut file = File::open(path).map_err(|error| classify("open", path, error))?;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            self.counts.reads += 1;
            let n = file
                .read(&mut self.buf[len..])
                .map_err(|error| classify("read", path, error))?;
            if n == 0 {
                return Ok(len);
            }
            len += n;
        }
    }
}

fn source_path(source: &Source) -> &Path {
    match source {
        Source::Open(open) => &open.path,
        Source::Path(path) => path,
        Source::Absent => Path::new(""),
    }
}

fn text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, CgroupError> {
    std::str::from_utf8(bytes).map_err(|_| CgroupError::Parse {
        file: path.display().to_string(),
        reason: "not UTF-8 text".to_owned(),
    })
}

fn classify(op: &'static str, path: &Path, error: io::Error) -> Stop {
    if gone(&error) {
        Stop::Gone
    } else {
        Stop::Failed(io_error(op, path, error))
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// ENOENT, ENODEV (a cgroup being removed, or a file kept open of a removed cgroup) or ESRCH
/// (a process that exited).
pub(super) fn gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || matches!(
            error.raw_os_error(),
            Some(code) if code == Errno::ENODEV as i32 || code == Errno::ESRCH as i32
        )
}
