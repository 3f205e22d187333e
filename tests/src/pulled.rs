//! What a clean pull leaves in containerd (see DESIGN.md, "What `ctr images pull` leaves"),
//! checked the way an operator would look: with `ctr`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};

use crate::containerd::PrivateContainerd;
use crate::digest::chain_ids;
use crate::fixtures::{ImageFixture, IndexFixture};

/// What was pulled: an image, or an index and the platform's image in it.
#[derive(Debug, Clone, Copy)]
pub enum Pulled<'a> {
    Image(&'a ImageFixture),
    Index(&'a IndexFixture, &'a ImageFixture),
}

impl Pulled<'_> {
    fn image(&self) -> &ImageFixture {
        match self {
            Pulled::Image(i) | Pulled::Index(_, i) => i,
        }
    }
    fn reference(&self) -> &str {
        match self {
            Pulled::Image(i) => &i.reference,
            Pulled::Index(x, _) => &x.reference,
        }
    }
    fn target(&self) -> &str {
        match self {
            Pulled::Image(i) => &i.digest,
            Pulled::Index(x, _) => &x.digest,
        }
    }
}

/// The labels of every blob of namespace `ns`, by digest (`ctr content ls`).
pub fn content_labels(
    cd: &PrivateContainerd,
    ns: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let out = cd.ctr(&["-n", ns, "content", "ls"])?;
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let digest = fields.next()?.to_owned();
            // DIGEST SIZE(2 words) AGE(2-3 words) LABELS: labels are the last field, if any.
            let labels = line
                .split_whitespace()
                .last()
                .filter(|l| l.contains('='))
                .map(parse_labels)
                .unwrap_or_default();
            Some((digest, labels))
        })
        .collect())
}

/// `k=v,k2=v2` where a value may itself hold commas (a distribution source listing several
/// repositories): a piece without `=` continues the previous value.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut last: Option<String> = None;
    for piece in text.split(',') {
        match piece.split_once('=') {
            Some((k, v)) => {
                labels.insert(k.to_owned(), v.to_owned());
                last = Some(k.to_owned());
            }
            None => {
                if let Some(value) = last.as_ref().and_then(|k| labels.get_mut(k)) {
                    value.push(',');
                    value.push_str(piece);
                }
            }
        }
    }
    labels
}

/// Checks that namespace `ns` holds `pulled` as a clean pull leaves it: the image record named
/// by the reference and targeting what it resolved to; the garbage-collection references, the
/// uncompressed digests and the distribution source on the blobs; the snapshots committed
/// under their chain IDs on their parents; no lease left behind; and that containerd's
/// collector, run synchronously, keeps all of it.
pub fn expect_clean_pull(cd: &PrivateContainerd, ns: &str, pulled: Pulled<'_>) -> Result<()> {
    let img = pulled.image();
    let images = cd.ctr(&["-n", ns, "images", "ls"])?;
    ensure!(
        images
            .lines()
            .any(|l| l.starts_with(pulled.reference()) && l.contains(pulled.target())),
        "no image record {} → {}:\n{images}",
        pulled.reference(),
        pulled.target()
    );
    check_labels(cd, ns, pulled).context("labels after the pull")?;
    let chains = chain_ids(&img.diff_ids);
    let snaps = cd.ctr(&["-n", ns, "snapshots", "ls"])?;
    for (i, c) in chains.iter().enumerate() {
        let parent = if i == 0 { "" } else { chains[i - 1].as_str() };
        ensure!(
            snaps.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&c.as_str())
                    && f.last() == Some(&"Committed")
                    && (parent.is_empty() || f.get(1) == Some(&parent))
            }),
            "snapshot {c} (parent {parent:?}) missing in {ns}:\n{snaps}"
        );
    }
    let leases = cd.ctr(&["-n", ns, "leases", "ls", "-q"])?;
    ensure!(
        leases.trim().is_empty(),
        "lease left behind in {ns}:\n{leases}"
    );
    // Deleting a lease with --sync runs the collector before answering.
    cd.ctr(&["-n", ns, "leases", "create", "--id", "gc-trigger"])?;
    cd.ctr(&["-n", ns, "leases", "delete", "--sync", "gc-trigger"])?;
    check_labels(cd, ns, pulled).context("after containerd's garbage collection")?;
    let after = cd.ctr(&["-n", ns, "snapshots", "ls"])?;
    ensure!(
        chains.iter().all(|c| after.contains(c.as_str())),
        "snapshots collected in {ns}:\n{after}"
    );
    Ok(())
}

fn check_labels(cd: &PrivateContainerd, ns: &str, pulled: Pulled<'_>) -> Result<()> {
    let img = pulled.image();
    let all = content_labels(cd, ns)?;
    let labels = |digest: &str| {
        all.get(digest)
            .with_context(|| format!("{digest} is not in the content store of {ns}"))
    };
    let source_key = format!("containerd.io/distribution.source.{}", img.host);
    let has_source = |l: &BTreeMap<String, String>| {
        l.get(&source_key)
            .is_some_and(|v| v.split(',').any(|r| r == img.repo))
    };
    let expect = |l: &BTreeMap<String, String>, key: &str, value: &str, what: &str| {
        ensure!(
            l.get(key).map(String::as_str) == Some(value),
            "{what}: label {key} is {:?}, not {value:?}; labels {l:?}",
            l.get(key)
        );
        Ok(())
    };
    if let Pulled::Index(index, _) = pulled {
        let l = labels(&index.digest)?;
        for (i, m) in index.manifests.iter().enumerate() {
            expect(
                l,
                &format!("containerd.io/gc.ref.content.m.{i}"),
                &m.digest,
                "index",
            )?;
        }
        ensure!(has_source(l), "index without {source_key}: {l:?}");
    }
    let manifest = labels(&img.digest)?;
    expect(
        manifest,
        "containerd.io/gc.ref.content.config",
        &img.config_digest,
        "manifest",
    )?;
    for (i, layer) in img.layer_digests.iter().enumerate() {
        expect(
            manifest,
            &format!("containerd.io/gc.ref.content.l.{i}"),
            layer,
            "manifest",
        )?;
    }
    ensure!(
        has_source(manifest),
        "manifest without {source_key}: {manifest:?}"
    );
    let config = labels(&img.config_digest)?;
    expect(
        config,
        "containerd.io/gc.ref.snapshot.overlayfs",
        &img.chain_id,
        "config",
    )?;
    ensure!(
        has_source(config),
        "config without {source_key}: {config:?}"
    );
    for (layer, diff_id) in img.layer_digests.iter().zip(&img.diff_ids) {
        let l = labels(layer)?;
        expect(l, "containerd.io/uncompressed", diff_id, "layer")?;
        ensure!(has_source(l), "layer {layer} without {source_key}: {l:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_may_hold_commas() {
        let l = parse_labels("a=1,containerd.io/distribution.source.h=app,web,b=2");
        assert_eq!(l["a"], "1");
        assert_eq!(l["containerd.io/distribution.source.h"], "app,web");
        assert_eq!(l["b"], "2");
    }
}
