//! The pull's unit tests: the sizes of its futures, and its paths, failures above all, against
//! a fake containerd and a registry in memory.

use std::collections::BTreeMap;
use std::future::Future;

use futures::StreamExt;
use tonic::Code;

use super::super::DEFAULT_MAX_MANIFEST_BYTES;
use super::super::fixture::TestImage;
use super::super::ingest::{self, BlobWrite};
use super::super::manifest::{Descriptor, Manifest};
use super::super::registry::{BlobStream, Registry};
use super::store::Stored;
use super::*;
use crate::containerd::fake::{FakeContainerd, digest_of};
use crate::containerd::{Grpc, Op};

/// The most a caller's frame holds of any step's future (a debug build several copies).
const HELD_BUDGET: usize = 4096;

/// What a caller holds of a future, and for a boxed one what sits on the heap.
fn sizes<T: ?Sized>(held: &impl std::ops::Deref<Target = T>) -> (usize, usize) {
    (std::mem::size_of_val(held), std::mem::size_of_val(&**held))
}

fn unboxed<F: Future>(f: &F) -> (usize, usize) {
    (std::mem::size_of_val(f), 0)
}

/// The futures of a pull, by size. Each lives inside the future that awaits it (or in a
/// task of its own when spawned), and its caller's poll frame holds it, in a debug build
/// several copies of it, while creating it: the large steps are boxed, so a frame only
/// holds a pointer. Run with --nocapture to see the figures.
#[tokio::test]
async fn pull_futures_stay_small() {
    let client: Arc<dyn Containerd> = Arc::new(Grpc::unconnected("sizes"));
    let registry = Registry::new(&[], None, Credentials::default());
    let puller = Puller::new(
        Arc::clone(&client),
        Arc::new(registry.clone()),
        3,
        DEFAULT_MAX_MANIFEST_BYTES,
    );
    let image = ImageRef::parse("127.0.0.1:5000/app:1").unwrap();
    let auth = RegistryAuth::Anonymous;
    let lease = Lease::borrowed(&client, "lease");
    let desc = Descriptor {
        media_type: manifest::OCI_MANIFEST.to_owned(),
        digest: "sha256:1".to_owned(),
        size: 1,
        platform: None,
    };
    let manifest = Manifest {
        config: desc.clone(),
        layers: vec![desc.clone()],
    };
    let stored = Stored {
        config_digest: String::new(),
        chain_id: String::new(),
        size: 0,
        downloaded: 0,
    };
    let source = (String::new(), String::new());
    let blob = BlobWrite {
        kind: "layer",
        digest: "d",
        size: 1,
        labels: HashMap::new(),
    };
    let mut open = |_| -> BoxFuture<'static, _> {
        Box::pin(async {
            Err(PullError::Cancelled {
                reference: String::new(),
            })
        })
    };
    let mut on_bytes = |_| {};
    let bytes = Bytes::new();
    let measured = [
        ("pull", unboxed(&puller.pull("x", &auth, None))),
        (
            "pull_once",
            sizes(&puller.pull_once(image.clone(), auth.clone())),
        ),
        (
            "store",
            sizes(&puller.store(&image, &auth, &lease, &manifest, Bytes::new(), "d")),
        ),
        (
            "record",
            sizes(&puller.record(&image, &lease, None, &bytes, "d", "d", stored)),
        ),
        (
            "config",
            sizes(&puller.config(&image, &auth, &lease, &desc, &source)),
        ),
        (
            "put_small",
            sizes(&puller.put_small(&lease, "manifest", "d", Bytes::new(), HashMap::new())),
        ),
        (
            "layer",
            sizes(&puller.layer(&image, &auth, "lease", &desc, HashMap::new(), None)),
        ),
        (
            "download_layer",
            sizes(&puller.download_layer(&image, &auth, "lease", &desc, HashMap::new(), None)),
        ),
        (
            "write_blob",
            sizes(&ingest::write_blob(
                &*client,
                &lease,
                &blob,
                &mut open,
                &mut on_bytes,
            )),
        ),
        (
            "unpack_layer",
            sizes(&unpack::unpack_layer(&*client, &lease, &desc, "d", "", "c")),
        ),
        (
            "fetch_manifest",
            sizes(&puller.fetch_manifest(&image, &auth)),
        ),
        ("already_pulled", sizes(&puller.already_pulled(&image, "d"))),
        (
            "registry fetch_manifest",
            sizes(&registry.fetch_manifest(&image, &auth, 1)),
        ),
        (
            "registry blob_stream",
            sizes(&registry.blob_stream(&image, &auth, "d", 1, "m", 0)),
        ),
        ("lease create", unboxed(&Lease::create(&client, "p"))),
    ];
    for (name, (held, boxed)) in measured {
        if boxed > 0 {
            println!("{name}: {held} bytes held, {boxed} bytes boxed");
        } else {
            println!("{name}: {held} bytes held");
        }
        assert!(
            held <= HELD_BUDGET,
            "{name}'s future is {held} bytes: box it"
        );
    }
}

pub(super) const REF: &str = "127.0.0.1:5000/app:1";
const SOURCE_LABEL: &str = "containerd.io/distribution.source.127.0.0.1:5000";

/// A registry in memory: manifests by tag and digest, blobs by digest.
#[derive(Debug, Default)]
pub(super) struct FakeRegistry {
    manifests: std::sync::Mutex<HashMap<String, Bytes>>,
    blobs: std::sync::Mutex<HashMap<String, Bytes>>,
}

impl FakeRegistry {
    /// Serves `image` as `app:<tag>`.
    pub(super) fn serving(tag: &str, image: &TestImage) -> Arc<Self> {
        let registry = Self::default();
        let manifest = Bytes::from(image.manifest.clone());
        let mut manifests = registry.manifests.lock().unwrap();
        manifests.insert(tag.to_owned(), manifest.clone());
        manifests.insert(image.manifest_digest.clone(), manifest);
        drop(manifests);
        let mut blobs = registry.blobs.lock().unwrap();
        blobs.insert(image.config_digest.clone(), image.config.clone().into());
        for (layer, digest) in image.layers.iter().zip(&image.layer_digests) {
            blobs.insert(digest.clone(), layer.clone().into());
        }
        drop(blobs);
        Arc::new(registry)
    }

    /// Serves other bytes than the blob's under its digest.
    fn corrupt(&self, digest: &str, bytes: &'static [u8]) {
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.to_owned(), Bytes::from_static(bytes));
    }
}

#[async_trait::async_trait]
impl Distribution for FakeRegistry {
    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        _auth: &RegistryAuth,
        _limit: u64,
    ) -> Result<(Bytes, String), PullError> {
        let bytes = self
            .manifests
            .lock()
            .unwrap()
            .get(&image.tag_or_digest())
            .cloned();
        let bytes = bytes.ok_or_else(|| PullError::ManifestUnknown {
            registry: image.registry().to_owned(),
            repository: image.repository().to_owned(),
            tag: image.tag_or_digest(),
        })?;
        let digest = digest_of(&bytes);
        Ok((bytes, digest))
    }

    async fn blob_stream(
        &self,
        image: &ImageRef,
        _auth: &RegistryAuth,
        digest: &str,
        _size: i64,
        _media_type: &str,
        offset: u64,
    ) -> Result<BlobStream, PullError> {
        let bytes = self.blobs.lock().unwrap().get(digest).cloned();
        let bytes = bytes.ok_or_else(|| PullError::Registry {
            registry: image.registry().to_owned(),
            what: format!("blob {digest}"),
            reason: "blob unknown".to_owned(),
            transient: false,
        })?;
        let rest = bytes.slice((offset as usize).min(bytes.len())..);
        Ok(futures::stream::iter([Ok(rest)]).boxed())
    }
}

fn puller(image: &TestImage) -> (Arc<FakeContainerd>, Puller) {
    let fake = FakeContainerd::new();
    let client: Arc<dyn Containerd> = fake.clone();
    let puller = Puller::new(
        client,
        FakeRegistry::serving("1", image),
        3,
        DEFAULT_MAX_MANIFEST_BYTES,
    );
    (fake, puller)
}

async fn pull(puller: &Puller) -> PullOutcome {
    puller.pull(REF, &RegistryAuth::Anonymous, None).await
}

/// Nothing of a failed pull is left: its lease was deleted with a collection, which took
/// every blob and snapshot only the lease held; no ingest and no image record remain.
fn assert_nothing_left(fake: &FakeContainerd) {
    assert!(fake.leases().is_empty(), "leases {:?}", fake.leases());
    let released = fake.released();
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(released[0].1, "the lease was deleted without a collection");
    assert!(fake.content().is_empty(), "content {:?}", fake.content());
    assert!(fake.snapshots().is_empty(), "{:?}", fake.snapshots());
    assert!(fake.ingests().is_empty(), "ingests {:?}", fake.ingests());
    assert!(fake.images().is_empty(), "images {:?}", fake.images());
}

#[tokio::test]
async fn a_pull_leaves_what_containerds_client_leaves_and_no_lease() {
    let image = TestImage::new(&["first layer", "second layer"]);
    let (fake, puller) = puller(&image);
    let pulled = pull(&puller).await.unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(pulled.config_digest, image.config_digest);
    assert_eq!(pulled.chain_id, image.chain_id());
    let layer_bytes: usize = image.layers.iter().map(Vec::len).sum();
    assert_eq!(pulled.downloaded, layer_bytes as u64);

    assert_eq!(fake.images()[REF], image.target());
    let manifest = fake.labels(&image.manifest_digest).unwrap();
    assert_eq!(
        manifest["containerd.io/gc.ref.content.config"],
        image.config_digest
    );
    for (i, digest) in image.layer_digests.iter().enumerate() {
        assert_eq!(
            &manifest[&format!("containerd.io/gc.ref.content.l.{i}")],
            digest
        );
        let layer = fake.labels(digest).unwrap();
        assert_eq!(&layer["containerd.io/uncompressed"], digest);
        assert_eq!(layer[SOURCE_LABEL], "app");
    }
    let config = fake.labels(&image.config_digest).unwrap();
    assert_eq!(
        config["containerd.io/gc.ref.snapshot.overlayfs"],
        image.chain_id()
    );
    let committed: BTreeMap<String, bool> =
        image.chain_ids.iter().map(|c| (c.clone(), true)).collect();
    assert_eq!(fake.snapshots(), committed);
    assert!(fake.leases().is_empty() && fake.ingests().is_empty());
    // Released without a collection: the record and its labels hold everything now.
    assert!(fake.released().iter().all(|(_, collected)| !collected));
}

#[tokio::test]
async fn a_refused_content_write_aborts_its_ingest_and_releases_the_lease() {
    let image = TestImage::new(&["layer"]);
    let (fake, puller) = puller(&image);
    fake.fail(
        Op::ContentWrite,
        Code::PermissionDenied,
        "read-only content store",
    );
    let err = pull(&puller).await.unwrap_err();
    assert!(
        matches!(&err, PullError::Containerd(e) if e.code() == Code::PermissionDenied),
        "{err}"
    );
    // The config is the first blob written; its ingest is dropped.
    let config = &image.config_digest;
    assert_eq!(
        fake.calls_of(&[Op::ContentWrite, Op::ContentAbort]),
        [
            format!("content write {config}"),
            format!("content abort config-{config}")
        ]
    );
    assert_nothing_left(&fake);
}

#[tokio::test]
async fn bytes_that_do_not_match_the_digest_are_never_committed() {
    let image = TestImage::new(&["the layer"]);
    let fake = FakeContainerd::new();
    let layer = image.layer_digests[0].clone();
    let registry = FakeRegistry::serving("1", &image);
    registry.corrupt(&layer, b"the lover");
    let puller = Puller::new(fake.clone(), registry, 3, DEFAULT_MAX_MANIFEST_BYTES);
    let err = pull(&puller).await.unwrap_err();
    match &err {
        PullError::DigestMismatch {
            kind,
            digest,
            reason,
        } => {
            assert_eq!((*kind, digest), ("layer", &layer));
            assert!(reason.contains("unexpected commit digest"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert!(
        fake.calls()
            .contains(&format!("content abort layer-{layer}"))
    );
    assert_nothing_left(&fake);
}

#[tokio::test]
async fn a_blob_committed_by_another_client_meanwhile_is_taken_as_it_is() {
    let image = TestImage::new(&["shared layer"]);
    let (fake, puller) = puller(&image);
    let layer = image.layer_digests[0].clone();
    // Committed between Berth's look (which found nothing) and its write.
    fake.put_content(&image.layers[0], HashMap::new());
    fake.fail_on(Op::ContentInfo, &layer, 1, Code::NotFound, "not found");
    let pulled = pull(&puller).await.unwrap();
    assert_eq!(pulled.downloaded, 0);
    let calls = fake.calls();
    assert!(calls.contains(&format!("content write {layer}")));
    assert!(calls.contains(&format!("lease add resource {layer}")));
    let labels = fake.labels(&layer).unwrap();
    assert_eq!(labels["containerd.io/uncompressed"], layer);
    assert_eq!(labels[SOURCE_LABEL], "app");
    assert!(fake.ingests().is_empty() && fake.leases().is_empty());
}

#[tokio::test]
async fn a_chain_committed_by_another_pull_meanwhile_drops_the_unpack_snapshot() {
    let image = TestImage::new(&["layer"]);
    let (fake, puller) = puller(&image);
    let chain = image.chain_id().to_owned();
    // Committed after both of Berth's looks found nothing.
    fake.put_snapshot(&chain, "");
    for nth in [1, 2] {
        fake.fail_on(Op::SnapshotStat, &chain, nth, Code::NotFound, "not found");
    }
    pull(&puller).await.unwrap();
    let commits = fake.calls_of(&[Op::SnapshotCommit, Op::SnapshotRemove]);
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert_eq!(commits[0], format!("snapshot commit {chain}"));
    assert!(
        commits[1].starts_with("snapshot remove extract-"),
        "{commits:?}"
    );
    let snapshots: Vec<(String, bool)> = fake.snapshots().into_iter().collect();
    assert_eq!(snapshots, [(chain, true)]);
}

#[tokio::test]
async fn an_image_record_that_exists_is_pointed_at_the_new_pull() {
    let image = TestImage::new(&["layer"]);
    let (fake, puller) = puller(&image);
    let old = TestImage::new(&["old layer"]);
    fake.put_image(REF, old.target());
    pull(&puller).await.unwrap();
    assert_eq!(
        fake.calls_of(&[Op::ImageCreate, Op::ImageUpdate]),
        [format!("image create {REF}"), format!("image update {REF}")]
    );
    assert_eq!(fake.images()[REF], image.target());
}

#[tokio::test]
async fn a_failed_unpack_removes_its_snapshot_and_releases_the_lease() {
    let image = TestImage::new(&["layer"]);
    let (fake, puller) = puller(&image);
    fake.fail(Op::DiffApply, Code::Internal, "no space left on device");
    let err = pull(&puller).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unpacking layer {} failed: diff apply: no space left on device",
            image.layer_digests[0]
        )
    );
    let removed = fake.calls_of(&[Op::SnapshotRemove]);
    assert!(
        removed.len() == 1 && removed[0].starts_with("snapshot remove extract-"),
        "{removed:?}"
    );
    assert_nothing_left(&fake);
}

#[tokio::test]
async fn a_refused_image_record_leaves_nothing_of_the_pull() {
    let image = TestImage::new(&["layer one", "layer two"]);
    let (fake, puller) = puller(&image);
    fake.fail(Op::ImageCreate, Code::Unavailable, "metadata store busy");
    let err = pull(&puller).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("containerd image create {REF}")),
        "{err}"
    );
    assert_nothing_left(&fake);
}

#[tokio::test]
async fn a_lease_that_cannot_be_made_fails_the_pull_before_anything_is_written() {
    let image = TestImage::new(&["layer"]);
    let (fake, puller) = puller(&image);
    fake.fail(Op::LeaseCreate, Code::Unavailable, "connection refused");
    let err = pull(&puller).await.unwrap_err();
    assert!(matches!(err, PullError::Containerd(_)), "{err}");
    assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
    assert!(fake.content().is_empty() && fake.ingests().is_empty());
}

#[tokio::test]
async fn a_manifest_over_the_cap_fails_the_pull_with_size_and_cap() {
    let image = TestImage::new(&["layer"]);
    let fake = FakeContainerd::new();
    let limit = image.manifest.len() as u64 - 1;
    let puller = Puller::new(fake.clone(), FakeRegistry::serving("1", &image), 3, limit);
    let err = pull(&puller).await.unwrap_err();
    assert!(
        matches!(&err, PullError::TooLarge { size, limit: l, .. } if *size == limit + 1 && *l == limit),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the manifest of 127.0.0.1:5000/app:1"),
        "{err}"
    );
    assert!(fake.calls_of(&[Op::ContentWrite]).is_empty());
    assert!(fake.leases().is_empty());
}

#[tokio::test]
async fn a_config_declared_over_the_cap_is_refused_before_it_is_fetched() {
    let image = TestImage::new(&["layer"]);
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["size"] = serde_json::json!(100u64 << 20);
    let registry = FakeRegistry::serving("1", &image);
    let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    registry
        .manifests
        .lock()
        .unwrap()
        .insert("1".to_owned(), bytes);
    let fake = FakeContainerd::new();
    let puller = Puller::new(fake.clone(), registry, 3, DEFAULT_MAX_MANIFEST_BYTES);
    let err = pull(&puller).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the image config {} of {REF} from registry 127.0.0.1:5000 is 104857600 bytes \
             (100 MiB), over the cap of 4 MiB on manifests, indexes and image configs \
             (the agent's max_manifest_size)",
            image.config_digest
        )
    );
    assert!(fake.calls_of(&[Op::ContentWrite]).is_empty());
    assert_nothing_left(&fake);
}

/// A try that finds content containerd's collector then takes is tried again; containerd
/// refusing or failing a call is an answer.
#[test]
fn content_collected_under_a_try_is_transient_and_other_refusals_are_not() {
    use crate::containerd::{ContainerdError, Op};
    use crate::image::PullError;
    let err = |op, status: tonic::Status| {
        PullError::Containerd(ContainerdError::new(op, "sha256:abc", &status))
    };
    assert!(
        err(
            Op::ContentRead,
            tonic::Status::not_found("content digest sha256:abc: not found")
        )
        .is_transient()
    );
    assert!(err(Op::ContentInfo, tonic::Status::not_found("not found")).is_transient());
    assert!(
        !err(
            Op::ContentRead,
            tonic::Status::unavailable("connection refused")
        )
        .is_transient()
    );
    assert!(!err(Op::ContentWrite, tonic::Status::invalid_argument("bad ref")).is_transient());
    assert!(!err(Op::ContentUpdate, tonic::Status::not_found("no such lease")).is_transient());
}

#[tokio::test]
async fn progress_announces_every_layer_then_reports_each_done() {
    let image = TestImage::new(&["first layer", "a longer second layer"]);
    let (_fake, puller) = puller(&image);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    puller
        .pull(REF, &RegistryAuth::Anonymous, Some(tx))
        .await
        .unwrap();
    let mut reports = Vec::new();
    while let Ok(r) = rx.try_recv() {
        reports.push(r);
    }
    // The config first, then every layer announced with nothing done, in manifest order.
    assert!(!reports[0].layer && reports[0].digest == image.config_digest);
    let announced: Vec<(&str, u64, u64)> = reports[1..=image.layers.len()]
        .iter()
        .map(|r| (r.digest.as_str(), r.done, r.total))
        .collect();
    let expected: Vec<(&str, u64, u64)> = image
        .layer_digests
        .iter()
        .zip(&image.layers)
        .map(|(d, bytes)| (d.as_str(), 0, bytes.len() as u64))
        .collect();
    assert_eq!(announced, expected);
    // Each layer ends done, and every report is of this pull and a layer past the config.
    for (digest, bytes) in image.layer_digests.iter().zip(&image.layers) {
        let last = reports.iter().rev().find(|r| &r.digest == digest).unwrap();
        assert!(last.layer && last.done == bytes.len() as u64, "{last:?}");
    }
    assert!(reports.iter().all(|r| r.reference == REF));
}
