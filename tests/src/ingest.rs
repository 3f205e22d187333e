//! Content-store states that other clients leave, made with `ctr content ingest` the way any
//! client writes a blob: a blob committed in some namespace, an ingest left half written, and
//! an ingest whose writer is still at work and holds its lock.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::containerd::PrivateContainerd;
use crate::prereq::bins;
use crate::process::{self, wait_deadline};

/// The label that makes a blob a root of containerd's garbage collection.
const GC_ROOT: &str = "containerd.io/gc.root=berth-tests";
/// How long one `ctr content ingest` may take.
const INGEST_TIMEOUT: Duration = Duration::from_secs(60);

impl PrivateContainerd {
    fn ingest_command(&self, ns: &str, reference: &str, size: usize, digest: &str) -> Command {
        let mut cmd = Command::new(bins::CTR);
        cmd.arg("--address")
            .arg(self.socket())
            .args(["-n", ns, "content", "ingest"])
            .args(["--expected-size", &size.to_string()])
            .args(["--expected-digest", digest, reference])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Commits `blob` (whose digest is `digest`) in namespace `ns`, written under ingest
    /// `reference`, as a client that fetched it for itself and keeps it leaves it: labelled
    /// only as a root of containerd's garbage collection, or the next collection takes it.
    pub fn commit_blob(&self, ns: &str, reference: &str, digest: &str, blob: &[u8]) -> Result<()> {
        let out = self.run_ingest(ns, reference, blob.len(), digest, blob)?;
        ensure!(
            out.0.success(),
            "ctr content ingest {reference} in {ns} failed: {}",
            out.1
        );
        self.ctr(&["-n", ns, "content", "label", digest, GC_ROOT])?;
        Ok(())
    }

    /// Leaves ingest `reference` in namespace `ns` half written: it declares the blob's `size`
    /// and `digest` and holds `part` (the blob's first bytes, or anything else), as a client
    /// that died mid-download leaves it. No lease holds it (containerd expires it after 24 h).
    pub fn leave_ingest(
        &self,
        ns: &str,
        reference: &str,
        size: usize,
        digest: &str,
        part: &[u8],
    ) -> Result<()> {
        ensure!(
            part.len() < size,
            "a partial ingest holds less than the blob"
        );
        // ctr writes what it read, then fails at the end of its input: the ingest stays.
        let (status, stderr) = self.run_ingest(ns, reference, size, digest, part)?;
        ensure!(
            !status.success(),
            "ctr committed a partial ingest of {digest}?"
        );
        self.wait_ingest_offset(ns, reference, part.len() as u64)
            .with_context(|| format!("ctr content ingest said: {stderr}"))
    }

    /// Starts a writer on ingest `reference` in namespace `ns` that holds the ingest's lock
    /// until [`HeldIngest::release`] (or drop) ends it, and is given `part`. `ctr` writes in
    /// chunks of 1 MiB, so a smaller part reaches the ingest only when the writer is released.
    pub fn hold_ingest(
        &self,
        ns: &str,
        reference: &str,
        size: usize,
        digest: &str,
        part: &[u8],
    ) -> Result<HeldIngest> {
        let mut child = self
            .ingest_command(ns, reference, size, digest)
            .spawn()
            .context("spawn ctr content ingest")?;
        let mut stdin = child.stdin.take().context("ctr has no stdin")?;
        let mut held = HeldIngest { child, stdin: None };
        stdin.write_all(part).context("feed ctr content ingest")?;
        stdin.flush().context("feed ctr content ingest")?;
        held.stdin = Some(stdin);
        // The ingest exists once the writer holds it.
        self.wait_ingest_offset(ns, reference, 0)?;
        Ok(held)
    }

    /// The ingests of namespace `ns` (`ctr content active`).
    pub fn active_ingests(&self, ns: &str) -> Result<Vec<String>> {
        let out = self.ctr(&["-n", ns, "content", "active"])?;
        Ok(out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// How many bytes ingest `reference` of namespace `ns` holds, read from the local content
    /// store (`ctr` only prints rounded sizes): each ingest directory names its backend
    /// reference, `<namespace>/<sequence>/<reference>`, in a file `ref` beside its `data`.
    pub fn ingest_bytes(&self, ns: &str, reference: &str) -> Result<Option<u64>> {
        let dir = self.root().join("io.containerd.content.v1.content/ingest");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
        };
        for entry in entries.flatten() {
            let Ok(backend_ref) = std::fs::read_to_string(entry.path().join("ref")) else {
                continue;
            };
            let mut parts = backend_ref.trim().splitn(3, '/');
            if parts.next() == Some(ns) && parts.nth(1) == Some(reference) {
                let data = entry.path().join("data");
                let len = std::fs::metadata(&data)
                    .with_context(|| format!("stat {}", data.display()))?
                    .len();
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    fn wait_ingest_offset(&self, ns: &str, reference: &str, offset: u64) -> Result<()> {
        let deadline = std::time::Instant::now() + INGEST_TIMEOUT;
        loop {
            let held = self.ingest_bytes(ns, reference)?;
            if held.is_some_and(|b| b >= offset) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!("ingest {reference} in {ns} holds {held:?} bytes, not {offset}");
            }
            std::thread::sleep(process::POLL);
        }
    }

    fn run_ingest(
        &self,
        ns: &str,
        reference: &str,
        size: usize,
        digest: &str,
        data: &[u8],
    ) -> Result<(std::process::ExitStatus, String)> {
        let mut child = self
            .ingest_command(ns, reference, size, digest)
            .spawn()
            .context("spawn ctr content ingest")?;
        let mut stdin = child.stdin.take().context("ctr has no stdin")?;
        let written = stdin.write_all(data);
        drop(stdin);
        let status = wait_deadline(&mut child, INGEST_TIMEOUT);
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let Some(status) = status else {
            process::terminate(&mut child, Duration::from_secs(1));
            bail!("ctr content ingest {reference} did not finish within {INGEST_TIMEOUT:?}");
        };
        written.context("feed ctr content ingest")?;
        Ok((status, stderr))
    }
}

/// A `ctr content ingest` that has written part of a blob and waits for more, holding the
/// ingest's lock. Killed on drop.
#[derive(Debug)]
pub struct HeldIngest {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl HeldIngest {
    /// Ends the input: the writer fails at its end and goes, leaving the ingest half written
    /// and unlocked.
    pub fn release(mut self) -> Result<()> {
        drop(self.stdin.take());
        match wait_deadline(&mut self.child, INGEST_TIMEOUT) {
            Some(_) => Ok(()),
            None => bail!(
                "ctr content ingest did not end within {INGEST_TIMEOUT:?} after its input closed"
            ),
        }
    }
}

impl Drop for HeldIngest {
    fn drop(&mut self) {
        drop(self.stdin.take());
        process::terminate(&mut self.child, Duration::from_secs(1));
    }
}
