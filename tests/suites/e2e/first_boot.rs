//! First boot end to end: `berth-agent first-boot` takes the scheduler endpoint and join token
//! from a user data file and the cluster and CA pin from EC2 tags served by a fake IMDSv2 on
//! 127.0.0.1 (token required), writes the first-boot file; the agent joins the real TLS
//! scheduler with what it holds, removes the used token from it, and joins no more: started
//! again, it connects with the certificate it got.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::berth::{Agent, bin};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::Env;

const TOKEN: &str = "fake-imds-session-token";

/// A fake IMDSv2: a session token for a PUT with a TTL header, the tags only with that token.
struct FakeImds {
    endpoint: String,
    /// Requests refused for a missing or wrong token.
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeImds {
    fn start(tags: Vec<(String, String)>) -> Result<FakeImds> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopping) = (Arc::clone(&refused), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &tags, &counted);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(FakeImds {
            endpoint,
            refused,
            stop,
        })
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers one request (the client's connection is closed after it).
fn answer(
    stream: TcpStream,
    tags: &[(String, String)],
    refused: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "PUT" && path == "/latest/api/token" {
        match header("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => ("200 OK", TOKEN.to_owned()),
            None => ("400 Bad Request", String::new()),
        }
    } else if header("x-aws-ec2-metadata-token") != Some(TOKEN) {
        refused.fetch_add(1, Ordering::SeqCst);
        ("401 Unauthorized", String::new())
    } else if path == "/latest/meta-data/tags/instance" {
        let names: Vec<&str> = tags.iter().map(|(n, _)| n.as_str()).collect();
        ("200 OK", names.join("\n"))
    } else {
        match path
            .strip_prefix("/latest/meta-data/tags/instance/")
            .and_then(|name| tags.iter().find(|(n, _)| n == name))
        {
            Some((_, value)) => ("200 OK", value.clone()),
            None => ("404 Not Found", String::new()),
        }
    };
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

pub(super) fn first_boot_from_user_data_and_tags_joins_and_forgets_the_token(
    w: &World,
) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let cluster = env.cluster.clone();
    env.ok(&["create-cluster", &cluster])?;
    let join = env.scheduler.join_token(&cluster)?;
    let imds = FakeImds::start(vec![
        ("Name".to_owned(), "berth-host".to_owned()),
        ("berth:cluster".to_owned(), cluster.clone()),
        ("berth:scheduler_ca_pin".to_owned(), join.ca_pin.clone()),
    ])?;
    let user_data = env.dir.join("user-data.txt");
    std::fs::write(
        &user_data,
        format!(
            "#cloud-config\npackage_update: false\nberth:\n  scheduler_endpoint: {}\n  join_token: {}\n",
            env.scheduler.endpoint, join.token
        ),
    )?;
    std::fs::create_dir_all(&env.opts.data_dir)?;
    let config = env.opts.data_dir.join("agent.toml");
    std::fs::write(&config, "# all settings come from the environment\n")?;
    let out = Command::new(bin("berth-agent")?)
        .arg("--config")
        .arg(&config)
        .arg("first-boot")
        .arg("--user-data")
        .arg(&user_data)
        .arg("--imds-endpoint")
        .arg(&imds.endpoint)
        .env_clear()
        .output()
        .context("run berth-agent first-boot")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "first-boot failed: {out:?}");
    for line in [
        "cluster from EC2 tag berth:cluster",
        "scheduler_ca_pin from EC2 tag berth:scheduler_ca_pin",
        "join_token from user data",
    ] {
        ensure!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    ensure!(
        imds.refused.load(Ordering::SeqCst) == 0,
        "a call without the session token"
    );
    let first_boot = env.opts.data_dir.join("first-boot.toml");
    let mode = std::fs::metadata(&first_boot)?.permissions().mode();
    ensure!(mode & 0o777 == 0o600, "first-boot.toml has mode {mode:o}");
    ensure!(std::fs::read_to_string(&first_boot)?.contains(&join.token));

    // The agent joins with the token and the pin it reads only from the first-boot file.
    // (Env::start_agent would give it a token of its own in its environment.)
    env.opts.join = None;
    env.agent = Some(Agent::start(&env.opts, env.dir.join("agent-first.log"))?);
    env.wait_instance_connected()?;
    poll(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&first_boot)?;
        Ok((!text.contains(&join.token)).then_some(()))
    })
    .with_context(|| format!("the used token stays in first-boot.toml{}", env.logs()))?;
    let kept = std::fs::read_to_string(&first_boot)?;
    ensure!(
        kept.contains(&join.ca_pin) && kept.contains(&format!("cluster = \"{cluster}\"")),
        "first-boot.toml lost more than the token:\n{kept}"
    );

    // Started again, it needs no token: the certificate it got is in its data dir.
    let agent = env.agent.take().context("no agent")?;
    agent
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(20))?;
    drop(agent);
    env.agent = Some(Agent::start(&env.opts, env.dir.join("agent-again.log"))?);
    poll(Duration::from_secs(30), || {
        Ok(env
            .instances()?
            .into_iter()
            .filter(|i| i["agentConnected"] == true)
            .count()
            .eq(&1)
            .then_some(()))
    })
    .with_context(|| format!("the agent did not reconnect without a token{}", env.logs()))?;
    ensure!(
        env.instances()?.len() == 1,
        "the restarted agent joined as a new instance"
    );
    Ok(())
}
