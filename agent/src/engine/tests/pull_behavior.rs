//! Pull behaviours in the driver: which of the cache and the registry a start uses, and what
//! a failing registry does under each behaviour.

use berth_policy::PullBehavior;
use berth_runtime::PulledImage;

use super::*;

fn cached_image(name: &str) -> PulledImage {
    PulledImage {
        name: name.into(),
        target_digest: "sha256:cached-t".into(),
        manifest_digest: "sha256:cached".into(),
        config_digest: "sha256:cached-c".into(),
        chain_id: "sha256:cached-x".into(),
        size: 1,
        downloaded: 0,
    }
}

fn pulls(fake: &Fake, image: &str) -> usize {
    count_calls(fake, &format!("pull {image}"))
}

#[tokio::test]
async fn default_starts_from_the_cache_when_the_registry_fails_and_says_so() {
    let h = start();
    h.fake
        .cached
        .lock()
        .unwrap()
        .insert("img:1".into(), cached_image("img:1"));
    h.fake.fail_pull_of("img:1");
    let running = h.run(one_container("t-fallback", |_| {})).await;
    assert_eq!(running.containers[0].image_digest, "sha256:cached");
    let reason = &running.containers[0].reason;
    assert!(
        reason.starts_with("CannotPullContainerError: ")
            && reason.ends_with(
                "started from the cached image sha256:cached (image pull behavior default)"
            ),
        "{reason}"
    );
    assert_eq!(pulls(&h.fake, "img:1"), 1, "the registry was asked first");
    h.cancel.cancel();
}

#[tokio::test]
async fn always_fails_with_the_registry_even_with_the_image_cached() {
    let h = start();
    h.fake
        .cached
        .lock()
        .unwrap()
        .insert("img:1".into(), cached_image("img:1"));
    h.fake.fail_pull_of("img:1");
    let mut a = one_container("t-always", |_| {});
    if let Some(d) = a.definition.as_mut() {
        d.image_pull_behavior = "always".into();
    }
    h.assign(a).await;
    let stopped = until(&h.store, "t-always", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped
            .stopped_reason
            .starts_with("CannotPullContainerError"),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn prefer_cached_and_a_cached_digest_never_ask_the_registry() {
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.pull_behavior = PullBehavior::PreferCached;
    });
    h.fake
        .cached
        .lock()
        .unwrap()
        .insert("img:1".into(), cached_image("img:1"));
    let running = h.run(one_container("t-prefer", |_| {})).await;
    assert_eq!(running.containers[0].image_digest, "sha256:cached");
    assert!(running.containers[0].reason.is_empty());
    assert_eq!(pulls(&h.fake, "img:1"), 0);

    let pinned = "r/app@sha256:0123";
    h.fake
        .cached
        .lock()
        .unwrap()
        .insert(pinned.into(), cached_image(pinned));
    let mut a = one_container("t-pinned", |c| c.image = pinned.into());
    if let Some(d) = a.definition.as_mut() {
        d.image_pull_behavior = "always".into();
    }
    h.run(a).await;
    assert_eq!(pulls(&h.fake, pinned), 0, "a cached digest is not resolved");
    h.cancel.cancel();
}

#[tokio::test]
async fn once_pulls_what_this_agent_never_pulled_and_then_uses_the_cache() {
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.pull_behavior = PullBehavior::Once;
    });
    // Cached, but not by this agent: pulled.
    h.fake
        .cached
        .lock()
        .unwrap()
        .insert("img:1".into(), cached_image("img:1"));
    h.run(one_container("t-once-1", |_| {})).await;
    assert_eq!(pulls(&h.fake, "img:1"), 1);
    // Pulled by this agent now: the cache serves.
    h.run(one_container("t-once-2", |_| {})).await;
    assert_eq!(pulls(&h.fake, "img:1"), 1);
    h.cancel.cancel();
}
