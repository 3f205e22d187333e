//! Reading a container's json-file log back, as `docker logs` does: the rotated files oldest
//! first (`c.log.N` … `c.log.1`), then the current one (`c.log`), optionally only the last N
//! lines or the lines since a time, and optionally following the current file as it grows and
//! is rotated (the file being read is held open, so a rename loses nothing; its successor is
//! found by inode among the rotated files, so nothing is read twice).
//!
//! Memory is bounded: a line of the file is read into a buffer of at most [`MAX_FILE_LINE`]
//! bytes; a longer one (never written by Berth, whose entries are at most 16 KiB of output) is
//! skipped and counted, as are lines that are not json-file entries. A partial line at the end
//! of the current file (the writer is mid-write) is kept until its newline arrives.

use std::collections::VecDeque;
use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};

/// The longest line of a log file the reader holds; longer lines are skipped.
pub const MAX_FILE_LINE: usize = 1 << 20;

/// Bytes read from a file at a time (also the step of the backward scan for `tail`).
const BLOCK: usize = 64 * 1024;

/// Which output of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One entry of a container log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: LogStream,
    /// When the runtime read it from the container.
    pub time: SystemTime,
    /// The output, with its newline when the line had one (a line longer than 16 KiB is split
    /// into several entries, only the last of which ends with a newline).
    pub text: String,
}

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last this many entries present when reading starts.
    pub tail: Option<u64>,
    /// Only entries written at or after this time.
    pub since: Option<SystemTime>,
}

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    #[error("no log file at {}: the container has not been created yet, or its task was cleaned up", path.display())]
    NoLog { path: PathBuf },
    /// The cause is the source: a caller that shows the error to people walks the chain.
    #[error("cannot read log file {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads one container's log files. [`LogReader::next_entry`] returns `None` when there is
/// nothing more to read for now; call it again later to follow the log.
#[derive(Debug)]
pub struct LogReader {
    base: PathBuf,
    since: Option<SystemTime>,
    /// The file being read.
    current: OpenLog,
    /// Files opened at the start and not read yet, oldest first.
    pending: VecDeque<OpenLog>,
    /// The current file was renamed (or removed) by a rotation: it is complete, and its
    /// successor is read once it is read to its end.
    rotated: bool,
    /// Bytes of a line whose newline has not been read yet.
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_FILE_LINE`]: dropped up to its newline.
    discarding: bool,
    skipped: u64,
}

#[derive(Debug)]
struct OpenLog {
    path: PathBuf,
    inode: (u64, u64),
    reader: BufReader<tokio::fs::File>,
}

impl LogReader {
    /// Opens the log whose current file is `path` (rotated files are `path.1`, `path.2`, …).
    pub async fn open(path: &Path, query: &LogQuery) -> Result<Self, LogReadError> {
        let io = |source| LogReadError::Io {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for candidate in chain(path).await.map_err(io)? {
            if let Some(f) = open_file(&candidate.0).await.map_err(io)?
                && !files.iter().any(|o: &OpenLog| o.inode == f.inode)
            {
                files.push(f);
            }
        }
        if files.is_empty() {
            return Err(LogReadError::NoLog {
                path: path.to_owned(),
            });
        }
        if let Some(n) = query.tail {
            let (first, offset) = tail_start(&mut files, n).await.map_err(io)?;
            files.drain(..first);
            if let Some(f) = files.first_mut() {
                f.reader.seek(SeekFrom::Start(offset)).await.map_err(io)?;
            }
        }
        let mut pending: VecDeque<OpenLog> = files.into();
        let Some(current) = pending.pop_front() else {
            return Err(LogReadError::NoLog {
                path: path.to_owned(),
            });
        };
        Ok(Self {
            base: path.to_owned(),
            since: query.since,
            current,
            pending,
            rotated: false,
            partial: Vec::new(),
            discarding: false,
            skipped: 0,
        })
    }

    /// Lines skipped so far: not json-file entries, or longer than [`MAX_FILE_LINE`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next entry, or `None` when everything written so far has been read.
    pub async fn next_entry(&mut self) -> Result<Option<LogEntry>, LogReadError> {
        loop {
            match self.read_line().await? {
                Some(line) => {
                    let Some(entry) = parse_entry(&line) else {
                        self.skipped += 1;
                        continue;
                    };
                    if self.since.is_some_and(|since| entry.time < since) {
                        continue;
                    }
                    return Ok(Some(entry));
                }
                None => {
                    if !self.advance().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// At the end of the current file: moves on to the next one if the current one is complete
    /// and read to its end. False when there is nothing more to read for now.
    async fn advance(&mut self) -> Result<bool, LogReadError> {
        if let Some(next) = self.pending.pop_front() {
            self.switch_to(next);
            return Ok(true);
        }
        if !self.rotated {
            let io = |source| LogReadError::Io {
                path: self.base.clone(),
                source,
            };
            match tokio::fs::metadata(&self.base).await {
                Ok(m) if (m.dev(), m.ino()) == self.current.inode => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            // Renamed away: the writer flushed it before, so it is complete now. Read what
            // landed since the last read before moving on.
            self.rotated = true;
            return Ok(true);
        }
        match self.successor().await? {
            Some(next) => {
                self.switch_to(next);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn switch_to(&mut self, next: OpenLog) {
        if !self.partial.is_empty() || self.discarding {
            // A complete file never ends inside a line unless its writer died mid-write.
            self.skipped += 1;
        }
        self.partial.clear();
        self.discarding = false;
        self.rotated = false;
        self.current = next;
    }

    /// The file written after the current one: the next newer one in the rotation chain, or
    /// the oldest one left when the current one was rotated out of the chain altogether.
    async fn successor(&self) -> Result<Option<OpenLog>, LogReadError> {
        let io = |source| LogReadError::Io {
            path: self.base.clone(),
            source,
        };
        // A rotation between listing and opening renames files under us: list again.
        for _ in 0..5 {
            let chain = chain(&self.base).await.map_err(io)?;
            let candidate = match chain.iter().position(|(_, ino)| *ino == self.current.inode) {
                Some(i) => chain.get(i + 1),
                None => chain.first(),
            };
            let Some((path, inode)) = candidate else {
                return Ok(None);
            };
            match open_file(path).await.map_err(io)? {
                Some(f) if f.inode == *inode => return Ok(Some(f)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// The next complete line of the current file, without its newline; `None` at its end
    /// (a partial line is kept for later).
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>, LogReadError> {
        loop {
            let buf = match self.current.reader.fill_buf().await {
                Ok(buf) => buf,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LogReadError::Io {
                        path: self.current.path.clone(),
                        source,
                    });
                }
            };
            if buf.is_empty() {
                return Ok(None);
            }
            let (take, complete) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if !self.discarding {
                if self.partial.len() + take <= MAX_FILE_LINE {
                    self.partial.extend_from_slice(&buf[..take]);
                } else {
                    self.partial = Vec::new();
                    self.discarding = true;
                }
            }
            self.current
                .reader
                .consume(if complete { take + 1 } else { take });
            if complete {
                if std::mem::take(&mut self.discarding) {
                    self.skipped += 1;
                    continue;
                }
                return Ok(Some(std::mem::take(&mut self.partial)));
            }
        }
    }
}

/// The log's files that exist, oldest first: `path.N` … `path.1`, `path`, each with its
/// device and inode.
async fn chain(path: &Path) -> std::io::Result<Vec<(PathBuf, (u64, u64))>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let name = name.to_string_lossy().into_owned();
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = file
            .strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|n| n.parse::<u32>().ok())
        {
            rotated.push((n, entry.path()));
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out = Vec::new();
    for p in rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(path.to_owned()))
    {
        match tokio::fs::metadata(&p).await {
            Ok(m) => out.push((p, (m.dev(), m.ino()))),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Opens a log file; `None` when it does not exist (any more).
async fn open_file(path: &Path) -> std::io::Result<Option<OpenLog>> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = file.metadata().await?;
    Ok(Some(OpenLog {
        path: path.to_owned(),
        inode: (m.dev(), m.ino()),
        reader: BufReader::with_capacity(BLOCK, file),
    }))
}

/// Where the last `n` complete lines across `files` (oldest first) start: the index of the file
/// and the offset in it. Scans backwards a block at a time, so it reads only what it skips over.
async fn tail_start(files: &mut [OpenLog], n: u64) -> std::io::Result<(usize, u64)> {
    // The (n+1)-th newline from the end ends the line before the first one wanted. A partial
    // line after the last newline is not a line yet.
    let mut newlines = 0u64;
    let mut block = vec![0u8; BLOCK];
    for (index, f) in files.iter_mut().enumerate().rev() {
        let file = f.reader.get_mut();
        let mut end = file.metadata().await?.len();
        while end > 0 {
            let start = end.saturating_sub(BLOCK as u64);
            let len = (end - start) as usize;
            file.seek(SeekFrom::Start(start)).await?;
            file.read_exact(&mut block[..len]).await?;
            for (i, b) in block[..len].iter().enumerate().rev() {
                if *b == b'\n' {
                    newlines += 1;
                    if newlines == n + 1 {
                        let offset = start + i as u64 + 1;
                        file.seek(SeekFrom::Start(0)).await?;
                        return Ok((index, offset));
                    }
                }
            }
            end = start;
        }
        file.seek(SeekFrom::Start(0)).await?;
    }
    Ok((0, 0))
}

#[derive(serde::Deserialize)]
struct RawEntry {
    log: String,
    stream: String,
    time: String,
}

fn parse_entry(line: &[u8]) -> Option<LogEntry> {
    let raw: RawEntry = serde_json::from_slice(line).ok()?;
    let stream = match raw.stream.as_str() {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => return None,
    };
    Some(LogEntry {
        stream,
        time: crate::time::parse_rfc3339(&raw.time)?,
        text: raw.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000 + secs)
    }

    fn entry(stream: &str, text: &str, secs: u64) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": text, "stream": stream, "time": crate::time::rfc3339_nanos(at(secs))})
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Writes lines `from..to` ("line N\n", at second N) to `path`.
    fn lines(path: &Path, from: u64, to: u64) {
        let text: String = (from..to)
            .map(|i| entry("stdout", &format!("line {i}\n"), i))
            .collect();
        append(path, &text);
    }

    async fn read_all(r: &mut LogReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().await.unwrap() {
            out.push(e.text);
        }
        out
    }

    fn numbered(from: u64, to: u64) -> Vec<String> {
        (from..to).map(|i| format!("line {i}\n")).collect()
    }

    /// Three files: c.log.2 (0..10), c.log.1 (10..20), c.log (20..30).
    fn rotated_fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c.log");
        lines(&dir.path().join("c.log.2"), 0, 10);
        lines(&dir.path().join("c.log.1"), 10, 20);
        lines(&base, 20, 30);
        (dir, base)
    }

    #[tokio::test]
    async fn reads_rotated_files_oldest_first() {
        let (_dir, base) = rotated_fixture();
        let mut r = LogReader::open(&base, &LogQuery::default()).await.unwrap();
        assert_eq!(read_all(&mut r).await, numbered(0, 30));
    }

    #[tokio::test]
    async fn tail_spans_rotated_files() {
        let (_dir, base) = rotated_fixture();
        for (n, from) in [(0, 30), (1, 29), (10, 20), (15, 15), (30, 0), (100, 0)] {
            let q = LogQuery {
                tail: Some(n),
                ..Default::default()
            };
            let mut r = LogReader::open(&base, &q).await.unwrap();
            assert_eq!(read_all(&mut r).await, numbered(from, 30), "tail {n}");
        }
    }

    #[tokio::test]
    async fn since_and_tail_combine() {
        let (_dir, base) = rotated_fixture();
        let q = LogQuery {
            since: Some(at(25)),
            ..Default::default()
        };
        let mut r = LogReader::open(&base, &q).await.unwrap();
        assert_eq!(read_all(&mut r).await, numbered(25, 30));
        let q = LogQuery {
            since: Some(at(5)),
            tail: Some(3),
        };
        let mut r = LogReader::open(&base, &q).await.unwrap();
        assert_eq!(read_all(&mut r).await, numbered(27, 30));
        let q = LogQuery {
            since: Some(at(28)),
            tail: Some(10),
        };
        let mut r = LogReader::open(&base, &q).await.unwrap();
        assert_eq!(read_all(&mut r).await, numbered(28, 30));
    }

    #[tokio::test]
    async fn a_partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c.log");
        let whole = entry("stderr", "oops\n", 1);
        append(&base, &whole[..10]);
        let q = LogQuery {
            tail: Some(5),
            ..Default::default()
        };
        let mut r = LogReader::open(&base, &q).await.unwrap();
        assert_eq!(r.next_entry().await.unwrap(), None);
        append(&base, &whole[10..]);
        let e = r.next_entry().await.unwrap().unwrap();
        assert_eq!(
            (e.stream, e.text.as_str(), e.time),
            (LogStream::Stderr, "oops\n", at(1))
        );
        assert_eq!(r.skipped(), 0);
    }

    #[tokio::test]
    async fn huge_and_broken_lines_are_skipped_with_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c.log");
        lines(&base, 0, 1);
        // Several MiB without a newline, then its end: never held whole.
        let huge = "x".repeat(3 * MAX_FILE_LINE);
        append(&base, &huge);
        append(&base, "\nnot json\n");
        lines(&base, 1, 2);
        let mut r = LogReader::open(&base, &LogQuery::default()).await.unwrap();
        assert_eq!(r.next_entry().await.unwrap().unwrap().text, "line 0\n");
        assert_eq!(r.next_entry().await.unwrap().unwrap().text, "line 1\n");
        assert_eq!(r.skipped(), 2);
        assert_eq!(r.next_entry().await.unwrap(), None);
    }

    #[tokio::test]
    async fn following_continues_across_rotations_without_loss_or_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c.log");
        let name = |i: u32| dir.path().join(format!("c.log.{i}"));
        lines(&base, 0, 5);
        let mut r = LogReader::open(&base, &LogQuery::default()).await.unwrap();
        let mut got = read_all(&mut r).await;
        // The writer appends, then rotates (c.log → c.log.1), then writes the new c.log.
        lines(&base, 5, 8);
        std::fs::rename(&base, name(1)).unwrap();
        got.extend(read_all(&mut r).await);
        lines(&base, 8, 12);
        got.extend(read_all(&mut r).await);
        // Two rotations while the reader is not looking, with three files kept.
        lines(&base, 12, 14);
        std::fs::rename(name(1), name(2)).unwrap();
        std::fs::rename(&base, name(1)).unwrap();
        lines(&base, 14, 16);
        std::fs::remove_file(name(2)).unwrap();
        std::fs::rename(name(1), name(2)).unwrap();
        std::fs::rename(&base, name(1)).unwrap();
        lines(&base, 16, 20);
        got.extend(read_all(&mut r).await);
        assert_eq!(got, numbered(0, 20));
        // Only one file kept (max-file 1): the current one is removed, a new one started.
        std::fs::remove_file(name(1)).unwrap();
        std::fs::remove_file(name(2)).unwrap();
        std::fs::remove_file(&base).unwrap();
        assert_eq!(r.next_entry().await.unwrap(), None);
        lines(&base, 20, 22);
        assert_eq!(read_all(&mut r).await, numbered(20, 22));
    }

    #[tokio::test]
    async fn a_missing_log_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = LogReader::open(&dir.path().join("nope/c.log"), &LogQuery::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LogReadError::NoLog { .. }), "{err}");
    }
}
