//! containerd's content store: existence checks, label updates (merged as containerd's own
//! client merges them), and the status and abort of ingests. Writing a blob is `ingest.rs`.

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::containerd::{Containerd, ContainerdError, Lease};

/// Prefix of the label naming the repositories a blob came from, by registry host.
pub(crate) const LABEL_SOURCE_PREFIX: &str = "containerd.io/distribution.source.";

/// Labels of a blob, if it is in the content store.
pub(crate) async fn info(
    client: &dyn Containerd,
    digest: &str,
) -> Result<Option<HashMap<String, String>>, ContainerdError> {
    match client.content_info(digest).await {
        Ok(labels) => Ok(Some(labels)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes a blob that Berth's namespace already holds into the pull: holds it under the lease
/// and gives it the labels a clean pull would have given it (`existing` are its labels now).
/// Nothing is written when it has them all.
pub(crate) fn adopt<'a>(
    client: &'a dyn Containerd,
    lease: &'a Lease,
    digest: &'a str,
    existing: &'a HashMap<String, String>,
    wanted: &'a HashMap<String, String>,
) -> BoxFuture<'a, Result<(), ContainerdError>> {
    Box::pin(async move {
        lease.hold("content", digest).await?;
        let update = label_update(existing, wanted);
        if update.is_empty() {
            return Ok(());
        }
        client
            .content_update_labels(Some(lease.id()), digest, update)
            .await
    })
}

/// The labels to write so that a blob labelled `existing` carries `wanted`: a distribution
/// source lists every repository the blob came from (sorted, without duplicates, as
/// containerd's client keeps it); any other label takes the wanted value.
pub(crate) fn label_update(
    existing: &HashMap<String, String>,
    wanted: &HashMap<String, String>,
) -> HashMap<String, String> {
    wanted
        .iter()
        .filter_map(|(key, value)| {
            let current = existing.get(key).map(String::as_str);
            let merged = if key.starts_with(LABEL_SOURCE_PREFIX) {
                merge_sources(current, value)
            } else {
                value.clone()
            };
            (current != Some(merged.as_str())).then(|| (key.clone(), merged))
        })
        .collect()
}

/// `existing` (a comma-separated list of repositories, possibly absent) with `repository`
/// added, sorted and without duplicates.
fn merge_sources(existing: Option<&str>, repository: &str) -> String {
    let mut repositories: Vec<&str> = existing
        .unwrap_or_default()
        .split(',')
        .chain([repository])
        .filter(|r| !r.is_empty())
        .collect();
    repositories.sort_unstable();
    repositories.dedup();
    repositories.join(",")
}

/// How many bytes an ingest holds; None when there is no such ingest or containerd cannot
/// tell (which a caller treats as "no progress").
pub(crate) async fn ingest_offset(client: &dyn Containerd, reference: &str) -> Option<i64> {
    client.content_status(reference).await.ok()?
}

/// Drops an ingest and what it holds. Only for an ingest this process holds or left: the
/// content store removes an ingest even while another writer holds its lock.
pub(crate) async fn abort(client: &dyn Containerd, reference: &str) {
    if let Err(error) = client.content_abort(reference).await
        && !error.is_not_found()
    {
        tracing::warn!(ingest = reference, error = %error.message(), "could not abort content ingest");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sources_are_merged_sorted_and_without_duplicates() {
        assert_eq!(merge_sources(None, "app"), "app");
        assert_eq!(merge_sources(Some(""), "app"), "app");
        assert_eq!(merge_sources(Some("web"), "app"), "app,web");
        assert_eq!(merge_sources(Some("app,web"), "app"), "app,web");
        assert_eq!(merge_sources(Some("b,a"), "c"), "a,b,c");
    }

    #[test]
    fn only_missing_or_different_labels_are_written() {
        let source = "containerd.io/distribution.source.127.0.0.1:5000";
        let wanted = labels(&[(source, "app"), ("containerd.io/uncompressed", "sha256:d")]);
        // A blob another repository brought: the repository is added, the diff ID set.
        let update = label_update(&labels(&[(source, "web")]), &wanted);
        assert_eq!(
            update,
            labels(&[
                (source, "app,web"),
                ("containerd.io/uncompressed", "sha256:d")
            ])
        );
        // A blob that has them all: nothing to write.
        let complete = labels(&[
            (source, "app,web"),
            ("containerd.io/uncompressed", "sha256:d"),
            ("other", "kept"),
        ]);
        assert!(label_update(&complete, &wanted).is_empty());
        // A garbage-collection reference that differs is replaced.
        let gc = labels(&[("containerd.io/gc.ref.content.config", "sha256:new")]);
        let update = label_update(
            &labels(&[("containerd.io/gc.ref.content.config", "sha256:old")]),
            &gc,
        );
        assert_eq!(update, gc);
    }
}
