//! Pull behaviours (issue 21) through the real binaries, each against a registry of the
//! trial's own that is up, then changed (the same tag moved to another image), then down
//! (killed: its port refuses connections): `default` falls back to the cached image and says so
//! in the container's reason, `always` fails, `once` and `prefer-cached` keep starting from
//! the cache. The agent's key sets the behaviour of two trials and a task definition's
//! `berth.imagePullBehavior` that of the two others; an image pinned by digest starts with
//! the registry down whatever the behaviour.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::fixtures::{self, ImageFixture};
use berth_tests::image::BuiltImage;
use berth_tests::{PrivateRegistry, World};
use serde_json::{Value, json};

use super::{Env, container};

/// A task must reach RUNNING, or STOPPED, within this on a loaded machine.
const WITHIN: Duration = Duration::from_secs(60);

/// A registry of the trial's own with `hello` at `<repo>:v1`, and the image the tag moves to.
struct Scene {
    registry: PrivateRegistry,
    env: Env,
    first: ImageFixture,
    second: BuiltImage,
    /// Where the behaviour is set: None for the agent's key, else the definition's.
    in_definition: Option<&'static str>,
    runs: usize,
}

impl Scene {
    /// `behavior` set on the agent (`--image-pull-behavior`) or, with `in_definition`, in
    /// every task definition while the agent keeps its default.
    fn new(w: &World, behavior: &'static str, in_definition: bool) -> Result<Scene> {
        let registry = PrivateRegistry::start(&w.scratch_dir("registry")?)?;
        let host = registry.host();
        let first = w.block_on(fixtures::hello(&host, "behaviour", "v1"))?;
        let second = fixtures::layered_image()?;
        let mut env = Env::new(w, "10800")?;
        env.opts.insecure_registries.push(host);
        // A registry that is down fails a pull within this even when the pull retries.
        env.opts
            .extra_args
            .push("--image-pull-timeout=20s".to_owned());
        if !in_definition {
            env.opts
                .extra_args
                .push(format!("--image-pull-behavior={behavior}"));
        }
        env.connect()?;
        Ok(Scene {
            registry,
            env,
            first,
            second,
            in_definition: in_definition.then_some(behavior),
            runs: 0,
        })
    }

    /// Moves the tag to the second image.
    fn change(&self, w: &World) -> Result<()> {
        w.block_on(berth_tests::push_image(
            &self.registry.host(),
            &self.first.repo,
            "v1",
            &self.second,
        ))?;
        Ok(())
    }

    fn second_digest(&self) -> &str {
        &self.second.manifest.digest
    }

    /// Runs a task of `image` and waits for RUNNING or STOPPED; its description.
    fn run(&mut self, image: &str) -> Result<Value> {
        self.runs += 1;
        let mut def = json!({
            "family": format!("behaviour-{}", self.runs),
            "networkMode": "none",
            "containerDefinitions": [{"name": "app", "image": image, "memory": 32,
                "stopTimeout": 1, "command": ["sleep", "600"]}],
        });
        if let Some(behavior) = self.in_definition {
            def["berth"] = json!({"imagePullBehavior": behavior});
        }
        self.env.register(&def)?;
        let id = self
            .env
            .run_task(def["family"].as_str().context("family")?)?;
        berth_tests::poll(WITHIN, || {
            let t = self.env.task(&id)?;
            match t["lastStatus"].as_str() {
                Some("RUNNING" | "STOPPED") => Ok(Some(t)),
                _ => Ok(None),
            }
        })
        .with_context(|| format!("task {id} neither ran nor stopped{}", self.env.logs()))
    }

    fn tagged(&self) -> &str {
        &self.first.reference
    }
}

/// The task runs from the image with this manifest digest.
fn runs_from(t: &Value, digest: &str) -> Result<()> {
    ensure!(t["lastStatus"] == "RUNNING", "not running: {t}");
    let app = container(t, "app")?;
    ensure!(
        app["imageDigest"] == digest,
        "runs {} not {digest}: {t}",
        app["imageDigest"]
    );
    Ok(())
}

/// The task failed to start for want of its image.
fn cannot_pull(t: &Value) -> Result<()> {
    ensure!(t["lastStatus"] == "STOPPED", "not stopped: {t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("CannotPullContainerError"),
        "stopped for another reason: {t}"
    );
    Ok(())
}

/// `default` (the agent's key): up pulls, changed follows the tag, down starts from the cached
/// image and the container's reason says the registry failed.
pub(super) fn default_falls_back_to_the_cache_and_says_so(w: &World) -> Result<()> {
    let mut s = Scene::new(w, "default", false)?;
    let tag = s.tagged().to_owned();
    runs_from(&s.run(&tag)?, &s.first.digest)?;
    s.change(w)?;
    let second = s.second_digest().to_owned();
    runs_from(&s.run(&tag)?, &second)?;
    s.registry.shutdown();
    let t = s.run(&tag)?;
    runs_from(&t, &second)?;
    let reason = container(&t, "app")?["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("CannotPullContainerError")
            && reason.contains(&format!("started from the cached image {second}")),
        "the container does not say it started from the cache: {t}"
    );
    Ok(())
}

/// `always` (in the definition): up pulls, changed follows the tag, down fails the task
/// although its image is cached.
pub(super) fn always_fails_when_the_registry_does(w: &World) -> Result<()> {
    let mut s = Scene::new(w, "always", true)?;
    let tag = s.tagged().to_owned();
    runs_from(&s.run(&tag)?, &s.first.digest)?;
    s.change(w)?;
    let second = s.second_digest().to_owned();
    runs_from(&s.run(&tag)?, &second)?;
    s.registry.shutdown();
    cannot_pull(&s.run(&tag)?)
}

/// `once` (the agent's key): up pulls, changed and down keep starting from what this agent
/// pulled first, without asking the registry.
pub(super) fn once_pulls_only_what_it_never_pulled(w: &World) -> Result<()> {
    let mut s = Scene::new(w, "once", false)?;
    let tag = s.tagged().to_owned();
    let first = s.first.digest.clone();
    runs_from(&s.run(&tag)?, &first)?;
    s.change(w)?;
    let manifests = s.registry.manifest_get_count(&s.first.repo)?;
    runs_from(&s.run(&tag)?, &first)?;
    ensure!(
        s.registry.manifest_get_count(&s.first.repo)? == manifests,
        "once asked the registry for an image it had pulled"
    );
    s.registry.shutdown();
    runs_from(&s.run(&tag)?, &first)
}

/// `prefer-cached` (in the definition): the cached image serves when the tag moved and when
/// the registry is down; an image that is not cached still needs the registry.
pub(super) fn prefer_cached_uses_the_cache(w: &World) -> Result<()> {
    let mut s = Scene::new(w, "prefer-cached", true)?;
    let tag = s.tagged().to_owned();
    let first = s.first.digest.clone();
    runs_from(&s.run(&tag)?, &first)?;
    s.change(w)?;
    runs_from(&s.run(&tag)?, &first)?;
    s.registry.shutdown();
    runs_from(&s.run(&tag)?, &first)?;
    let absent = format!("{}/behaviour:absent", s.registry.host());
    cannot_pull(&s.run(&absent)?)
}

/// An image pinned by digest, once pulled, starts with the registry down under `always`: it is
/// never resolved again.
pub(super) fn digest_pinned_image_starts_with_the_registry_down(w: &World) -> Result<()> {
    let mut s = Scene::new(w, "always", false)?;
    let pinned = s.first.reference_by_digest();
    runs_from(&s.run(&pinned)?, &s.first.digest)?;
    s.registry.shutdown();
    runs_from(&s.run(&pinned)?, &s.first.digest.clone())
}
