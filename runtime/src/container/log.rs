//! Container output: stdout and stderr FIFOs that containerd's shim writes, drained into one
//! json-file style log per container (`{"log":"hello\n","stream":"stdout","time":"…"}` a
//! line), rotated by size. Lines longer than [`MAX_LINE`] are split into several entries, so a
//! container printing without newlines never grows the agent's memory.
//!
//! A container with a terminal has one output stream: the shim copies the terminal to the
//! stdout FIFO, and there is no stderr FIFO. A container whose stdin stays open gets a stdin
//! FIFO that the shim reads; this process holds it open (and writes nothing), so the
//! container's reads block instead of ending, until the container exits or this process does.

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::forward::LogForward;
use super::logread::LogStream;

/// Longest log entry; longer lines are split, as Docker's json-file driver does at 16 KiB.
const MAX_LINE: usize = 16 * 1024;

/// A container log's mode: the agent writes it, its group (an operator's log readers) reads
/// it, nobody else (a container's output may hold its secrets).
const LOG_FILE_MODE: u32 = 0o640;

/// Rotation settings for container log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Size at which the file is rotated.
    pub max_size: u64,
    /// How many files are kept, the current one included.
    pub max_files: u32,
}

/// The file in a container's FIFO directory that records its rotation, so that the drains
/// reopened after an agent restart or an in-place restart rotate as the first ones did.
const ROTATION_FILE: &str = "log-rotation";

impl LogRotation {
    /// The rotation recorded in a container's FIFO directory, if any and readable.
    pub(crate) fn load(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(ROTATION_FILE)).ok()?;
        let (size, files) = text.trim().split_once(' ')?;
        Some(Self {
            max_size: size.parse().ok()?,
            max_files: files.parse().ok()?,
        })
    }

    pub(crate) fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(
            dir.join(ROTATION_FILE),
            format!("{} {}\n", self.max_size, self.max_files),
        )
    }
}

impl Default for LogRotation {
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Which standard streams a container's process has besides stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stdio {
    /// Its stdin is a FIFO held open (ECS `interactive`); otherwise it reads `/dev/null`.
    pub(crate) stdin: bool,
    /// It has a terminal (ECS `pseudoTerminal`): all output comes on stdout, no stderr.
    pub(crate) terminal: bool,
}

impl Stdio {
    /// The value of the container label that records it (empty: neither).
    pub(crate) fn label(self) -> String {
        let mut parts = Vec::new();
        if self.stdin {
            parts.push("stdin");
        }
        if self.terminal {
            parts.push("terminal");
        }
        parts.join(",")
    }

    /// Reads [`Self::label`] back; unknown words are ignored.
    pub(crate) fn from_label(label: &str) -> Self {
        let has = |word: &str| label.split(',').any(|w| w.trim() == word);
        Self {
            stdin: has("stdin"),
            terminal: has("terminal"),
        }
    }
}

/// The FIFOs of one container and the task draining them.
#[derive(Debug)]
pub(crate) struct LogPipes {
    pub(crate) stdout: PathBuf,
    /// None with a terminal.
    pub(crate) stderr: Option<PathBuf>,
    /// The FIFO the shim copies to the container's stdin, when it stays open.
    pub(crate) stdin: Option<PathBuf>,
    /// Our own write ends: they keep the readers from seeing end-of-file before the shim has
    /// opened its ends, and the container's stdin open. Dropped once the container has exited.
    keepalive: Option<Vec<pipe::Sender>>,
    done: watch::Receiver<bool>,
}

impl LogPipes {
    /// Makes the FIFOs in `dir` and starts draining them into `log_file`.
    pub(crate) fn open(
        dir: &Path,
        log_file: PathBuf,
        rotation: LogRotation,
        stdio: Stdio,
        forward: Option<LogForward>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        rotation.save(dir)?;
        if let Some(parent) = log_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // The log exists from the start, also for a container that never prints.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_FILE_MODE)
            .open(&log_file)?;
        let stdout = dir.join("stdout");
        let stderr = (!stdio.terminal).then(|| dir.join("stderr"));
        let stdin = stdio.stdin.then(|| dir.join("stdin"));
        for p in std::iter::once(&stdout).chain(&stderr).chain(&stdin) {
            match nix::unistd::mkfifo(p.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
            {
                Ok(()) => {}
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(std::io::Error::from(e)),
            }
        }
        let out_rx = pipe::OpenOptions::new().open_receiver(&stdout)?;
        let err_rx = stderr
            .as_ref()
            .map(|p| pipe::OpenOptions::new().open_receiver(p))
            .transpose()?;
        let mut keepalive = vec![pipe::OpenOptions::new().open_sender(&stdout)?];
        if let Some(p) = &stderr {
            keepalive.push(pipe::OpenOptions::new().open_sender(p)?);
        }
        if let Some(p) = &stdin {
            // Read-write, so that opening it needs no reader yet (the shim opens its end later).
            keepalive.push(pipe::OpenOptions::new().read_write(true).open_sender(p)?);
        }
        let (done_tx, done) = watch::channel(false);
        tokio::spawn(async move {
            let mut writer = LogWriter::new(log_file, rotation);
            writer.forward = forward;
            if let Err(error) = drain(out_rx, err_rx, &mut writer).await {
                tracing::warn!(log.file = %writer.path.display(), %error, "container log drain failed");
            }
            let _ = writer.flush().await;
            if writer.dropped > 0 {
                tracing::warn!(log.file = %writer.path.display(), dropped = writer.dropped, "container output ended; lines that could not be written were dropped");
            }
            let _ = done_tx.send(true);
        });
        Ok(Self {
            stdout,
            stderr,
            stdin,
            keepalive: Some(keepalive),
            done,
        })
    }

    /// Called once the container's process has exited: drops our write ends so the drain
    /// ends when the shim closes its own, then waits (bounded) for the last bytes to land.
    pub(crate) async fn finish(&mut self, within: std::time::Duration) -> bool {
        self.keepalive = None;
        let mut done = self.done.clone();
        tokio::time::timeout(within, done.wait_for(|d| *d))
            .await
            .is_ok()
    }
}

async fn drain(
    out: pipe::Receiver,
    err: Option<pipe::Receiver>,
    writer: &mut LogWriter,
) -> std::io::Result<()> {
    let mut out_buf = LineBuffer::new("stdout");
    let Some(err) = err else {
        // A terminal: one stream.
        return drain_one(&out, &mut out_buf, writer).await;
    };
    let mut err_buf = LineBuffer::new("stderr");
    let (mut out_open, mut err_open) = (true, true);
    let (mut chunk_out, mut chunk_err) = (Vec::new(), Vec::new());
    while out_open || err_open {
        tokio::select! {
            r = read_some(&out, &mut chunk_out), if out_open => match r {
                Ok(0) => { out_open = false; out_buf.flush_partial(writer).await?; }
                Ok(n) => out_buf.push(&chunk_out[..n], writer).await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            },
            r = read_some(&err, &mut chunk_err), if err_open => match r {
                Ok(0) => { err_open = false; err_buf.flush_partial(writer).await?; }
                Ok(n) => err_buf.push(&chunk_err[..n], writer).await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

/// Drains the one output of a container with a terminal.
async fn drain_one(
    out: &pipe::Receiver,
    buf: &mut LineBuffer,
    writer: &mut LogWriter,
) -> std::io::Result<()> {
    let mut chunk = Vec::new();
    loop {
        match read_some(out, &mut chunk).await {
            Ok(0) => return buf.flush_partial(writer).await,
            Ok(n) => buf.push(&chunk[..n], writer).await?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How many bytes a drain reads from a pipe at a time.
const CHUNK: usize = 32 * 1024;

/// Reads what `pipe` holds into `chunk`, which is allocated only once the pipe first turns
/// readable: a container that never writes (most long-running services between requests, and
/// every idle task of a dense host) holds no read buffer at all, where two eager 32 KiB
/// buffers per container came to 16 MiB of the agent's memory at 250 tasks. Cancel-safe: the
/// wait is `readable`, and the read itself does not await.
async fn read_some(pipe: &pipe::Receiver, chunk: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        pipe.readable().await?;
        if chunk.is_empty() {
            chunk.resize(CHUNK, 0);
        }
        match pipe.try_read(chunk) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

/// Accumulates one stream's bytes until a newline or [`MAX_LINE`].
struct LineBuffer {
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineBuffer {
    fn new(stream: &'static str) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    async fn push(&mut self, mut bytes: &[u8], writer: &mut LogWriter) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if self.pending.len() + i < MAX_LINE => {
                    self.pending.extend_from_slice(&bytes[..=i]);
                    bytes = &bytes[i + 1..];
                    writer.entry(self.stream, &self.pending).await?;
                    self.pending.clear();
                }
                _ => {
                    let room = MAX_LINE - self.pending.len();
                    let take = room.min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() >= MAX_LINE {
                        writer.entry(self.stream, &self.pending).await?;
                        self.pending.clear();
                    }
                }
            }
        }
        Ok(())
    }

    async fn flush_partial(&mut self, writer: &mut LogWriter) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            writer.entry(self.stream, &self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// Appends entries to the log file, rotating `file` → `file.1` → … by size. A write that
/// fails (a full disk, a removed directory) drops its entry and counts it, as Docker's logger
/// does: the drain keeps reading, so the container's output never blocks, and the file is
/// reopened for the next entry.
struct LogWriter {
    path: PathBuf,
    rotation: LogRotation,
    file: Option<tokio::fs::File>,
    size: u64,
    /// Entries dropped since the last one written.
    dropping: u64,
    /// Entries dropped in all.
    dropped: u64,
    /// A write failed since the last entry written, maybe halfway through its line: the next
    /// entry starts on a new line, so only that line is lost (readers skip it).
    broken: bool,
    /// Where each entry also goes (a remote log driver), after the file.
    forward: Option<LogForward>,
}

impl LogWriter {
    fn new(path: PathBuf, rotation: LogRotation) -> Self {
        Self {
            path,
            rotation,
            file: None,
            size: 0,
            dropping: 0,
            dropped: 0,
            broken: false,
            forward: None,
        }
    }

    /// Writes one entry; one that cannot be written is dropped and counted (never an error).
    async fn entry(&mut self, stream: &str, bytes: &[u8]) -> std::io::Result<()> {
        let now = SystemTime::now();
        let line = format_entry(stream, bytes, now);
        match self.write_line(&line).await {
            Ok(()) if self.dropping > 0 => {
                tracing::warn!(log.file = %self.path.display(), dropped = self.dropping, dropped_total = self.dropped, "container log writable again; the lines written meanwhile were dropped");
                self.dropping = 0;
            }
            Ok(()) => {}
            Err(error) => {
                if self.dropping == 0 {
                    tracing::warn!(log.file = %self.path.display(), %error, "cannot write the container log; dropping (and counting) its lines until it can be written again");
                }
                self.dropping += 1;
                self.dropped += 1;
                self.broken = true;
                // Reopened for the next entry.
                self.file = None;
            }
        }
        if let Some(forward) = &self.forward {
            let stream = if stream == "stderr" {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            forward.send(stream, bytes, now).await;
        }
        Ok(())
    }

    async fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.ensure_open().await?;
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_size {
            self.rotate().await?;
            self.ensure_open().await?;
        }
        if let Some(file) = self.file.as_mut() {
            if self.broken {
                file.write_all(b"\n").await?;
                self.size += 1;
                self.broken = false;
            }
            file.write_all(line.as_bytes()).await?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    /// Opens (or creates) the current file after start or a rotation.
    async fn ensure_open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(LOG_FILE_MODE)
                .open(&self.path)
                .await?;
            self.size = file.metadata().await?.len();
            self.file = Some(file);
        }
        Ok(())
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
        }
        let keep = self.rotation.max_files.max(1);
        let name = |i: u32| -> PathBuf {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if keep == 1 {
            tokio::fs::remove_file(&self.path)
                .await
                .or_else(ignore_missing)?;
        } else {
            tokio::fs::remove_file(name(keep - 1))
                .await
                .or_else(ignore_missing)?;
            for i in (1..keep - 1).rev() {
                tokio::fs::rename(name(i), name(i + 1))
                    .await
                    .or_else(ignore_missing)?;
            }
            tokio::fs::rename(&self.path, name(1))
                .await
                .or_else(ignore_missing)?;
        }
        self.size = 0;
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush().await?;
        }
        Ok(())
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// One json-file entry, newline-terminated. Invalid UTF-8 is replaced, as Docker does.
fn format_entry(stream: &str, bytes: &[u8], at: SystemTime) -> String {
    let text = String::from_utf8_lossy(bytes);
    let entry = serde_json::json!({
        "log": text,
        "stream": stream,
        "time": crate::time::rfc3339_nanos(at),
    });
    let mut line = entry.to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    fn read_entries(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn entries_are_json_file_lines() {
        let line = format_entry("stdout", b"hi \"there\"\n", SystemTime::UNIX_EPOCH);
        assert_eq!(
            line,
            "{\"log\":\"hi \\\"there\\\"\\n\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:00.000000000Z\"}\n"
        );
    }

    #[tokio::test]
    async fn lines_are_split_at_newlines_and_at_the_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::new(path.clone(), LogRotation::default());
        let mut b = LineBuffer::new("stdout");
        b.push(b"one\ntw", &mut w).await.unwrap();
        b.push(b"o\n", &mut w).await.unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        b.push(&long, &mut w).await.unwrap();
        b.flush_partial(&mut w).await.unwrap();
        w.flush().await.unwrap();
        let logs: Vec<String> = read_entries(&path)
            .iter()
            .map(|e| e["log"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(logs[0], "one\n");
        assert_eq!(logs[1], "two\n");
        assert_eq!(logs[2].len(), MAX_LINE);
        assert_eq!(logs[3].len(), MAX_LINE);
        assert_eq!(logs[4].len(), 10);
    }

    #[tokio::test]
    async fn rotation_keeps_the_configured_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rotation = LogRotation {
            max_size: 1000,
            max_files: 3,
        };
        let mut w = LogWriter::new(path.clone(), rotation);
        let mut b = LineBuffer::new("stderr");
        for i in 0..100 {
            b.push(format!("line {i:04}\n").as_bytes(), &mut w)
                .await
                .unwrap();
        }
        w.flush().await.unwrap();
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["c.log", "c.log.1", "c.log.2"]);
        for f in &files {
            assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 1000);
        }
        // The newest entries are in the current file, in order, and the last one is line 99.
        let current = read_entries(&path);
        assert_eq!(current.last().unwrap()["log"], "line 0099\n");
        let older = read_entries(&dir.path().join("c.log.1"));
        let first_current: String = current[0]["log"].as_str().unwrap().into();
        let last_older: String = older.last().unwrap()["log"].as_str().unwrap().into();
        let n = |s: &str| s[5..9].parse::<u32>().unwrap();
        assert_eq!(
            n(&last_older) + 1,
            n(&first_current),
            "no entry lost between files"
        );
    }

    #[tokio::test]
    async fn fifo_output_is_drained_until_the_writers_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/c.log");
        let mut pipes = LogPipes::open(
            &dir.path().join("io"),
            log.clone(),
            LogRotation::default(),
            Stdio::default(),
            None,
        )
        .unwrap();
        assert_eq!(pipes.stdin, None);
        // Play the shim: open the write ends, write, close.
        let mut out = pipe::OpenOptions::new().open_sender(&pipes.stdout).unwrap();
        let mut err = pipe::OpenOptions::new()
            .open_sender(pipes.stderr.as_ref().unwrap())
            .unwrap();
        out.write_all(b"hello\npartial").await.unwrap();
        err.write_all(b"oops\n").await.unwrap();
        drop(out);
        drop(err);
        assert!(pipes.finish(Duration::from_secs(5)).await);
        let entries = read_entries(&log);
        let mut got: Vec<(String, String)> = entries
            .iter()
            .map(|e| {
                (
                    e["stream"].as_str().unwrap().into(),
                    e["log"].as_str().unwrap().into(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("stderr".to_owned(), "oops\n".to_owned()),
                ("stdout".to_owned(), "hello\n".to_owned()),
                ("stdout".to_owned(), "partial".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_terminal_has_one_stream_and_an_open_stdin_never_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/c.log");
        let stdio = Stdio {
            stdin: true,
            terminal: true,
        };
        let mut pipes = LogPipes::open(
            &dir.path().join("io"),
            log.clone(),
            LogRotation::default(),
            stdio,
            None,
        )
        .unwrap();
        assert_eq!(pipes.stderr, None);
        assert!(!dir.path().join("io/stderr").exists());
        // Play the shim: read stdin (nothing comes, and no end either while we hold it).
        let stdin = pipes.stdin.clone().unwrap();
        let mut input = pipe::OpenOptions::new().open_receiver(&stdin).unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), input.read(&mut byte)).await;
        assert!(read.is_err(), "stdin ended or gave data: {read:?}");
        let mut out = pipe::OpenOptions::new().open_sender(&pipes.stdout).unwrap();
        out.write_all(b"tty\r\n").await.unwrap();
        drop(out);
        assert!(pipes.finish(Duration::from_secs(5)).await);
        let entries = read_entries(&log);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0]["stream"].as_str(), entries[0]["log"].as_str()),
            (Some("stdout"), Some("tty\r\n"))
        );
        // Once the container is done, its stdin ends.
        let read = tokio::time::timeout(Duration::from_secs(5), input.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    }

    #[test]
    fn stdio_labels_round_trip() {
        for stdin in [false, true] {
            for terminal in [false, true] {
                let stdio = Stdio { stdin, terminal };
                assert_eq!(Stdio::from_label(&stdio.label()), stdio);
            }
        }
        assert_eq!(Stdio::default().label(), "");
        assert_eq!(
            Stdio::from_label("terminal,other"),
            Stdio {
                stdin: false,
                terminal: true
            }
        );
    }
}

#[cfg(test)]
mod write_errors {
    use super::*;

    #[tokio::test]
    async fn lines_that_cannot_be_written_are_dropped_and_counted_and_writing_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let path = logs.join("app.log");
        std::fs::create_dir(&logs).unwrap();
        let mut w = LogWriter::new(path.clone(), LogRotation::default());
        w.entry("stdout", b"kept 1").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.dropped, 0);
        // The log's directory goes (as a full disk refuses writes): lines are dropped, the
        // drain is never told to stop.
        std::fs::remove_dir_all(&logs).unwrap();
        w.file = None;
        w.entry("stdout", b"lost 1").await.unwrap();
        w.entry("stderr", b"lost 2").await.unwrap();
        assert_eq!((w.dropped, w.dropping), (2, 2));
        std::fs::create_dir(&logs).unwrap();
        w.entry("stdout", b"kept 2").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!((w.dropped, w.dropping), (2, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let entries: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(entries.len(), 1, "{text}");
        assert_eq!(entries[0]["log"], "kept 2");
    }

    #[tokio::test]
    async fn a_full_disk_never_fails_the_drain() {
        // Every write to /dev/full fails with ENOSPC.
        let mut w = LogWriter::new(PathBuf::from("/dev/full"), LogRotation::default());
        for i in 0..10 {
            w.entry("stdout", format!("line {i}").as_bytes())
                .await
                .unwrap();
        }
        assert!(w.dropped >= 5, "dropped {}", w.dropped);
    }
}
