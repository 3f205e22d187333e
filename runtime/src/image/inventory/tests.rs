//! The inventory's unit tests against a fake containerd: what counts as cached, sizes, and a
//! removal that takes the image's content and snapshots but nothing another image holds.

use super::*;
use crate::containerd::fake::FakeContainerd;
use crate::image::fixture::TestImage;

#[tokio::test]
async fn a_complete_image_is_cached_as_a_pull_left_it() {
    let fake = FakeContainerd::new();
    let image = TestImage::new(&["one", "two"]);
    image.install(&fake, "r/app:1");
    let cached = cached(&*fake, "r/app:1").await.unwrap().expect("cached");
    assert_eq!(cached.name, "r/app:1");
    assert_eq!(cached.target_digest, image.manifest_digest);
    assert_eq!(cached.manifest_digest, image.manifest_digest);
    assert_eq!(cached.config_digest, image.config_digest);
    assert_eq!(cached.chain_id, image.chain_id());
    assert_eq!(cached.size, 6);
    assert_eq!(cached.downloaded, 0);
}

#[tokio::test]
async fn an_image_missing_anything_a_container_needs_is_not_cached() {
    let fake = FakeContainerd::new();
    assert_eq!(cached(&*fake, "r/absent:1").await.unwrap(), None);

    // A record whose manifest is gone.
    let image = TestImage::new(&["one"]);
    fake.put_image("r/bare:1", image.target());
    assert_eq!(cached(&*fake, "r/bare:1").await.unwrap(), None);

    // Everything but the unpacked snapshot.
    let fake = FakeContainerd::new();
    image.install(&fake, "r/app:1");
    fake.put_image("r/other:1", TestImage::new(&["x"]).target());
    let unpacked = TestImage::new(&["never-unpacked"]);
    fake.put_content(&unpacked.layers[0], Default::default());
    fake.put_content(&unpacked.config, Default::default());
    fake.put_content(&unpacked.manifest, Default::default());
    fake.put_image("r/packed:1", unpacked.target());
    assert_eq!(cached(&*fake, "r/packed:1").await.unwrap(), None);
}

#[tokio::test]
async fn an_error_other_than_absence_is_reported() {
    let fake = FakeContainerd::new();
    fake.fail(
        crate::containerd::Op::ImageGet,
        tonic::Code::Unavailable,
        "down",
    );
    assert!(cached(&*fake, "r/app:1").await.is_err());
}

#[tokio::test]
async fn list_gives_each_image_its_blobs_size() {
    let fake = FakeContainerd::new();
    let image = TestImage::new(&["one", "two"]);
    image.install(&fake, "r/app:1");
    image.install(&fake, "r/app:again");
    fake.put_image("r/broken:1", TestImage::new(&["gone"]).target());
    let mut listed = list(&*fake).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let full = (image.manifest.len() + image.config.len() + 6) as u64;
    assert_eq!(
        listed
            .iter()
            .map(|i| (i.name.as_str(), i.size))
            .collect::<Vec<_>>(),
        [
            ("r/app:1", full),
            ("r/app:again", full),
            (
                "r/broken:1",
                TestImage::new(&["gone"]).manifest.len() as u64
            ),
        ]
    );
    assert_eq!(listed[0].target_digest, image.manifest_digest);
}

#[tokio::test]
async fn removal_collects_what_only_that_image_held() {
    let fake = FakeContainerd::new();
    let shared = TestImage::new(&["base"]);
    let own = TestImage::new(&["base", "own"]);
    shared.install(&fake, "r/base:1");
    own.install(&fake, "r/app:1");
    remove(&*fake, "r/app:1").await.unwrap();
    assert!(!fake.images().contains_key("r/app:1"));
    let content = fake.content();
    assert!(
        !content.contains(&own.manifest_digest),
        "manifest collected"
    );
    assert!(
        !content.contains(&own.layer_digests[1]),
        "own layer collected"
    );
    assert!(
        content.contains(&shared.layer_digests[0]),
        "shared layer kept"
    );
    let snapshots = fake.snapshots();
    assert!(!snapshots.contains_key(own.chain_id()));
    assert!(snapshots.contains_key(shared.chain_id()));
    assert!(cached(&*fake, "r/base:1").await.unwrap().is_some());
    // Removing what is gone already is done.
    remove(&*fake, "r/app:1").await.unwrap();
}
