//! The first boot against sample user data files (a good one and broken ones, each broken one
//! named by its line) and a fake IMDSv2 service on 127.0.0.1.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};

use super::imds::{Imds, Tags};
use super::*;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/user-data");
const PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn sample(name: &str) -> (PathBuf, String) {
    let path = Path::new(SAMPLES).join(name);
    let text = std::fs::read_to_string(&path).expect("sample");
    (path, text)
}

fn parse_sample(name: &str) -> Result<Option<Vec<Found>>, user_data::UserDataError> {
    let (path, text) = sample(name);
    user_data::parse(&path, &text)
}

#[test]
fn the_good_sample_gives_every_key_with_its_line() {
    let found = parse_sample("good.yaml")
        .expect("good")
        .expect("a berth section");
    let got: Vec<(&str, &str, usize)> = found
        .iter()
        .map(|f| match &f.origin {
            Origin::UserData { line, .. } => (f.key, f.value.as_str(), *line),
            Origin::Tag { .. } => panic!("not from user data"),
        })
        .collect();
    assert_eq!(
        got,
        [
            ("cluster", "prod", 10),
            ("scheduler_endpoint", "https://scheduler.internal:7700", 11),
            ("scheduler_ca_pin", PIN, 12),
            ("join_token", "abc123.0123456789abcdef", 13),
        ]
    );
}

#[test]
fn broken_samples_name_their_line() {
    let cases = [
        (
            "bad-yaml.yaml",
            4,
            "quoted scalar; its quote opens at column 23",
        ),
        (
            "wrong-type.yaml",
            5,
            "berth.join_token: invalid type: sequence, expected a string",
        ),
        (
            "unknown-key.yaml",
            5,
            "berth: unknown field `scheduler-endpoint`, expected one of",
        ),
        (
            "missing-field.yaml",
            3,
            "berth: missing field `scheduler_endpoint`",
        ),
        (
            "bad-value.yaml",
            5,
            "berth.scheduler_ca_pin is \"md5:0123\": expected",
        ),
    ];
    for (name, line, message) in cases {
        let err = parse_sample(name).expect_err(name);
        let text = err.to_string();
        assert_eq!(err.line, line, "{name}: {text}");
        assert!(
            text.starts_with(&format!("user data {SAMPLES}/{name}, line {line}: ")),
            "{name}: {text}"
        );
        assert!(text.contains(message), "{name}: {text}");
        assert!(
            !text.contains(" at line "),
            "{name}: the line said twice: {text}"
        );
    }
}

#[test]
fn a_token_of_the_wrong_form_is_not_shown() {
    let text = "#cloud-config\nberth:\n  scheduler_endpoint: https://s.example\n  join_token: not-a-token-secret\n";
    let err = user_data::parse(Path::new("/u"), text).expect_err("bad token");
    assert_eq!(err.line, 4);
    assert!(!err.to_string().contains("not-a-token-secret"), "{err}");
}

#[test]
fn user_data_without_a_berth_section_gives_nothing() {
    assert_eq!(parse_sample("script.sh").expect("a script"), None);
    let none = |text: &str| user_data::parse(Path::new("/u"), text).expect(text);
    assert_eq!(none("#cloud-config\n"), None);
    assert_eq!(none("#cloud-config\n# only comments\n---\n"), None);
    assert_eq!(none("#cloud-config\npackages: [htop]\n"), None);
    assert_eq!(none("Content-Type: multipart/mixed; boundary=x\n"), None);
}

#[test]
fn the_section_is_read_as_yaml_reads_it() {
    let parse = |text: &str| user_data::parse(Path::new("/u"), text);
    let values = |text: &str| -> Vec<(&str, String)> {
        parse(text)
            .expect(text)
            .expect("a berth section")
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect()
    };
    // Anchors and aliases, quoted and flow-style values, nulls for optional keys.
    assert_eq!(
        values(
            "#cloud-config\nx: &e https://s.example\nberth: {scheduler_endpoint: *e, cluster: 'c1', join_token: ~}\n"
        ),
        [
            ("cluster", "c1".to_owned()),
            ("scheduler_endpoint", "https://s.example".to_owned())
        ]
    );
    assert_eq!(
        parse("#cloud-config\nberth:\n").expect("null section"),
        None
    );
    assert_eq!(
        parse("#cloud-config\nberth: ~\n").expect("null section"),
        None
    );
    let refused = |text: &str, line: usize, message: &str| {
        let err = parse(text).expect_err(text);
        assert_eq!(err.line, line, "{err}");
        assert!(err.message.contains(message), "{err}");
    };
    refused(
        "#cloud-config\nberth:\n  scheduler_endpoint: https://a\n  scheduler_endpoint: https://b\n",
        4,
        "berth: duplicate field `scheduler_endpoint`",
    );
    refused(
        "#cloud-config\nberth:\n  scheduler_endpoint: ~\n",
        3,
        "berth.scheduler_endpoint is \"~\"",
    );
    refused(
        "#cloud-config\nberth: [a]\n",
        2,
        "berth: invalid type: sequence",
    );
    refused(
        "#cloud-config\n- berth\n",
        2,
        "invalid type: sequence, expected a mapping",
    );
    refused(
        "#cloud-config\nberth: {scheduler_endpoint: https://a}\n---\nb: 1\n",
        3,
        "more than one document",
    );
    refused("#cloud-config\nberth: *nowhere\n", 2, "");
    let deep = format!(
        "#cloud-config\nberth: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    refused(&deep, 2, "nested deeper than 128 levels");
}

/// A fake IMDSv2: a token for a PUT with a TTL header, tags only with that token.
#[derive(Default)]
struct FakeImds {
    tags: Vec<(String, String)>,
    /// "allow tags in instance metadata" is off: the tag list is a 404.
    tags_off: bool,
    /// GETs refused for a missing or wrong token.
    refused: AtomicUsize,
    /// Token requests.
    tokens: AtomicUsize,
}

const FAKE_TOKEN: &str = "AQAEAFake-imds-token==";

impl FakeImds {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let ok = headers
            .get("x-aws-ec2-metadata-token")
            .is_some_and(|t| t == FAKE_TOKEN);
        if !ok {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

async fn serve_fake(fake: Arc<FakeImds>) -> String {
    async fn token(State(fake): State<Arc<FakeImds>>, headers: HeaderMap) -> (StatusCode, String) {
        fake.tokens.fetch_add(1, Ordering::SeqCst);
        match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => (StatusCode::OK, FAKE_TOKEN.to_owned()),
            None => (StatusCode::BAD_REQUEST, String::new()),
        }
    }
    async fn list(State(fake): State<Arc<FakeImds>>, headers: HeaderMap) -> (StatusCode, String) {
        if !fake.authorized(&headers) {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        if fake.tags_off {
            return (StatusCode::NOT_FOUND, String::new());
        }
        let names: Vec<&str> = fake.tags.iter().map(|(n, _)| n.as_str()).collect();
        (StatusCode::OK, names.join("\n"))
    }
    async fn one(
        State(fake): State<Arc<FakeImds>>,
        UrlPath(name): UrlPath<String>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        if !fake.authorized(&headers) {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        match fake.tags.iter().find(|(n, _)| *n == name) {
            Some((_, v)) if !fake.tags_off => (StatusCode::OK, v.clone()),
            _ => (StatusCode::NOT_FOUND, String::new()),
        }
    }
    let app = Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/tags/instance", get(list))
        .route("/latest/meta-data/tags/instance/{name}", get(one))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn imds_tags_need_the_token_and_only_berth_tags_are_read() {
    let fake = Arc::new(FakeImds {
        tags: tags(&[
            ("Name", "web-1"),
            ("berth:cluster", "from-tags"),
            ("berth:scheduler_endpoint", "https://tags.example:7700"),
        ]),
        ..FakeImds::default()
    });
    let endpoint = serve_fake(Arc::clone(&fake)).await;
    let got = Imds::new(&endpoint)
        .unwrap()
        .tags(TAG_PREFIX)
        .await
        .unwrap();
    assert_eq!(
        got,
        Tags::Found(tags(&[
            ("berth:cluster", "from-tags"),
            ("berth:scheduler_endpoint", "https://tags.example:7700"),
        ]))
    );
    assert_eq!(fake.tokens.load(Ordering::SeqCst), 1);
    assert_eq!(fake.refused.load(Ordering::SeqCst), 0);
    // The fake does refuse a GET without the token (what IMDSv2 requires).
    let answer = reqwest::get(format!("{endpoint}/latest/meta-data/tags/instance"))
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn imds_with_tags_off_and_no_imds_at_all_give_nothing() {
    let fake = Arc::new(FakeImds {
        tags: tags(&[("berth:cluster", "x")]),
        tags_off: true,
        ..FakeImds::default()
    });
    let endpoint = serve_fake(fake).await;
    let got = Imds::new(&endpoint)
        .unwrap()
        .tags(TAG_PREFIX)
        .await
        .unwrap();
    assert_eq!(got, Tags::NotExposed);

    // Nothing listens: a closed port on loopback answers at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let started = std::time::Instant::now();
    let got = Imds::new(&format!("http://{address}"))
        .unwrap()
        .tags(TAG_PREFIX)
        .await
        .unwrap();
    assert!(matches!(got, Tags::NoService(_)), "{got:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A config dir with an agent.toml, a user data file and a fake IMDS.
struct Scene {
    dir: tempfile::TempDir,
    options: FirstBoot,
}

impl Scene {
    async fn new(agent_toml: &str, user_data: Option<&str>, fake: Option<FakeImds>) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, agent_toml).unwrap();
        let user_data_path = dir.path().join("user-data.txt");
        if let Some(text) = user_data {
            std::fs::write(&user_data_path, text).unwrap();
        }
        let imds_endpoint = match fake {
            Some(fake) => Some(serve_fake(Arc::new(fake)).await),
            None => None,
        };
        Scene {
            options: FirstBoot {
                config: Some(config),
                user_data: user_data_path,
                imds_endpoint,
            },
            dir,
        }
    }

    /// The agent's configuration from the files (not the test process's environment).
    fn load(&self) -> Result<config::LoadedConfig, ConfigErrors> {
        let path = self.options.config.clone().expect("a config path");
        let text = std::fs::read_to_string(&path).ok();
        let first_boot = std::fs::read_to_string(self.first_boot_file()).ok();
        config::load_with_first_boot(
            &path,
            text.as_deref(),
            first_boot.as_deref(),
            &[],
            &Overrides::default(),
        )
    }

    fn first_boot_file(&self) -> PathBuf {
        self.dir.path().join(config::FIRST_BOOT_FILE)
    }
}

#[tokio::test]
async fn user_data_wins_over_tags_which_win_over_the_file_and_it_is_written_once() {
    let (_, good) = sample("good.yaml");
    let user_data = good.replace("  cluster: prod\n", "");
    let scene = Scene::new(
        "cluster = \"from-file\"\nscheduler_endpoint = \"https://file.example\"\n",
        Some(&user_data),
        Some(FakeImds {
            tags: tags(&[
                ("berth:cluster", "from-tags"),
                ("berth:scheduler_endpoint", "https://tags.example"),
            ]),
            ..FakeImds::default()
        }),
    )
    .await;
    let outcome = run(&scene.options).await.expect("first boot");
    let Outcome::Written { path, taken, .. } = outcome else {
        panic!("not written: {outcome:?}");
    };
    assert_eq!(path, scene.first_boot_file());
    let keys: Vec<(&str, &str)> = taken.iter().map(|(k, o)| (*k, o.as_str())).collect();
    let user_data_path = scene.options.user_data.display().to_string();
    assert_eq!(
        keys,
        [
            ("cluster", "EC2 tag berth:cluster"),
            (
                "scheduler_endpoint",
                &*format!("user data {user_data_path}, line 10")
            ),
            (
                "scheduler_ca_pin",
                &*format!("user data {user_data_path}, line 11")
            ),
            (
                "join_token",
                &*format!("user data {user_data_path}, line 12")
            ),
        ]
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds the join token");

    // The agent reads it over agent.toml, with each value's source.
    let loaded = scene.load().expect("the written configuration loads");
    assert_eq!(loaded.config.cluster, "from-tags");
    assert_eq!(
        loaded.config.scheduler_endpoint,
        "https://scheduler.internal:7700"
    );
    let join = loaded.config.join.expect("a join");
    assert_eq!(join.ca_pin.as_deref(), Some(PIN));
    assert_eq!(join.token_file.as_deref(), Some(path.as_path()));
    assert_eq!(
        loaded.sources["cluster"],
        config::Source::File(path.clone())
    );

    // Once joined, the token goes; the rest stays.
    token::forget_used_token(&join);
    let kept = std::fs::read_to_string(&path).unwrap();
    assert!(
        !kept.contains("join_token =") && !kept.contains("0123456789abcdef"),
        "{kept}"
    );
    assert!(
        !kept.contains("berth:join_token") && !kept.contains("line 12"),
        "{kept}"
    );
    assert!(kept.contains("cluster = \"from-tags\""), "{kept}");

    // Later boots: done before, nothing asked.
    let again = run(&scene.options).await.expect("second run");
    assert!(matches!(again, Outcome::AlreadyDone(p) if p == path));
}

#[tokio::test]
async fn nothing_found_still_writes_the_file_so_later_boots_do_not_ask() {
    let scene = Scene::new(
        "cluster = \"only-file\"\n",
        Some("#!/bin/sh\ntrue\n"),
        Some(FakeImds {
            tags_off: true,
            ..FakeImds::default()
        }),
    )
    .await;
    let Outcome::Written { taken, notes, path } = run(&scene.options).await.expect("ok") else {
        panic!("not written");
    };
    assert!(taken.is_empty());
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].contains("allow tags in instance metadata"),
        "{notes:?}"
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("agent.toml alone applies"), "{text}");
    let loaded = scene.load().expect("loads");
    assert_eq!(loaded.config.cluster, "only-file");
}

#[tokio::test]
async fn bad_tags_and_a_bad_result_are_refused_and_nothing_is_written() {
    let typo = Scene::new(
        "",
        None,
        Some(FakeImds {
            tags: tags(&[("berth:scheduler-endpoint", "https://x.example")]),
            ..FakeImds::default()
        }),
    )
    .await;
    let err = run(&typo.options).await.expect_err("unknown tag");
    assert!(err.is_bad_input());
    assert!(
        err.to_string()
            .starts_with("EC2 tag berth:scheduler-endpoint is not a Berth key (did you mean berth:scheduler_endpoint?)"),
        "{err}"
    );
    assert!(!typo.first_boot_file().exists());

    let bad_value = Scene::new(
        "",
        None,
        Some(FakeImds {
            tags: tags(&[("berth:cluster", "no spaces allowed")]),
            ..FakeImds::default()
        }),
    )
    .await;
    let err = run(&bad_value.options).await.expect_err("bad value");
    assert!(
        err.to_string()
            .starts_with("EC2 tag berth:cluster is \"no spaces allowed\": expected a cluster name"),
        "{err}"
    );

    // A token without a way to check the scheduler's CA: refused before it is written.
    let no_pin = Scene::new(
        "",
        Some("#cloud-config\nberth:\n  scheduler_endpoint: https://s.example\n  join_token: abc123.0123456789abcdef\n"),
        None,
    )
    .await;
    let err = run(&no_pin.options).await.expect_err("no pin");
    assert!(matches!(err, FirstBootError::Config(_)), "{err}");
    assert!(
        err.to_string()
            .contains("scheduler_ca_pin (or tls_ca_file) beside it"),
        "{err}"
    );
    assert!(!no_pin.first_boot_file().exists());
}
