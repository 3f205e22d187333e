//! Cold start (`cargo bench --bench e2e -- cold`): `berthctl run-task` → RUNNING of a task
//! whose image is not cached (the `big` fixture: the base layer and three layers of 10 MiB of
//! incompressible data), beside `ctr images pull` + `ctr run -d` of the same image, each its
//! own process, into a namespace of its own. Before every start, both namespaces lose the image
//! and containerd collects its content and snapshots (`ctr images rm --sync`), so each pull
//! downloads and unpacks every layer but the base, which the bench's cached image shares (and
//! containerd shares its content across namespaces). The two alternate which goes first. Also
//! the agent's CPU time per cold start (utime + stime).

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use berth_proto::v1::TaskStatus;
use berth_tests::PrivateContainerd;
use berth_tests::bench::{report, stat_seconds, timed};
use berth_tests::fixtures::ImageFixture;

use crate::Ctr;

/// Rounds: each starts the task once and runs the reference once (each pulls about 30 MiB).
const RUNS: usize = 10;
/// ctr's own namespace, so that its pulls and Berth's never share an image record.
const CTR_NAMESPACE: &str = "bench-cold-ctr";

/// What the cold section needs from the bench's setup.
pub(crate) struct Cold<'a> {
    /// berthctl's config file (the scheduler's `ctl_config`).
    pub(crate) config: &'a Path,
    /// A task definition family: one container of `image` running `sleep 3600`.
    pub(crate) family: &'a str,
    pub(crate) image: &'a ImageFixture,
    pub(crate) containerd: &'a PrivateContainerd,
    /// The agent's containerd namespace.
    pub(crate) namespace: &'a str,
    pub(crate) agent_pid: u32,
}

impl Cold<'_> {
    /// Runs the rounds and prints the figures. `settled` waits for a task to reach a status
    /// (STOPPED: also until the host released what it held).
    pub(crate) fn run(
        &self,
        settled: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<()> {
        let ctr = Ctr {
            containerd: self.containerd,
            namespace: CTR_NAMESPACE,
            image: &self.image.reference,
        };
        let stat = format!("/proc/{}/stat", self.agent_pid);
        let mut berth = Vec::new();
        let mut reference = Vec::new();
        let mut agent_cpu = 0.0;
        for i in 0..RUNS {
            for k in [i % 2, (i + 1) % 2] {
                self.purge()?;
                if k == 0 {
                    let [u0, s0] = stat_seconds(&stat, [14, 15])?;
                    let start = Instant::now();
                    let id = crate::run_task(self.config, self.family)?;
                    settled(&id, TaskStatus::Running)?;
                    berth.push(start.elapsed());
                    let [u1, s1] = stat_seconds(&stat, [14, 15])?;
                    agent_cpu += (u1 - u0) + (s1 - s0);
                    crate::ctl(self.config, &["stop-task", &id])?;
                    settled(&id, TaskStatus::Stopped)?;
                } else {
                    let id = format!("cold-{i}");
                    let pull = timed(ctr.command().args([
                        "images",
                        "pull",
                        "--plain-http",
                        &self.image.reference,
                    ]))?;
                    let run = ctr.start_detached(&id)?;
                    reference.push(pull + run);
                    ctr.remove(&id)?;
                }
            }
        }
        self.purge()?;
        report(
            &format!(
                "cold start: berthctl run-task -> RUNNING, image not cached ({} layers, {:.1} MiB)",
                self.image.layer_digests.len(),
                self.image
                    .image
                    .layers
                    .iter()
                    .map(|l| l.size())
                    .sum::<u64>() as f64
                    / (1 << 20) as f64
            ),
            "berth",
            &mut berth,
            "ctr pull + run -d",
            &mut reference,
        );
        println!(
            "  berth-agent CPU per cold start (pull, unpack, start): {:.0} ms",
            agent_cpu * 1000.0 / RUNS as f64
        );
        Ok(())
    }

    /// Removes the image from both namespaces and collects, then checks that no layer of it
    /// but the shared base is left in either.
    fn purge(&self) -> Result<()> {
        for ns in [self.namespace, CTR_NAMESPACE] {
            let _ =
                self.containerd
                    .ctr(&["-n", ns, "images", "rm", "--sync", &self.image.reference]);
        }
        for ns in [self.namespace, CTR_NAMESPACE] {
            let left = self.containerd.ctr(&["-n", ns, "content", "ls", "-q"])?;
            if let Some(d) = self
                .image
                .layer_digests
                .iter()
                .skip(1)
                .find(|d| left.contains(d.as_str()))
            {
                bail!(
                    "layer {d} of {} still in namespace {ns} after its removal",
                    self.image.reference
                );
            }
        }
        Ok(())
    }
}
