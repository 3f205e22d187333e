//! moto's server (PyPI `moto[server]`), the AWS emulator of the awslogs and AWS secrets trials
//! and the awslogs bench, on a free 127.0.0.1 port; a small blocking client of its CloudWatch
//! Logs, SSM Parameter Store and Secrets Manager APIs, and stop/start on the same port to play
//! an outage (moto keeps its state in memory: a restarted server is empty).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::process;
use crate::registry::free_port;

/// Where `make deps` installs moto's server; `BERTH_MOTO_SERVER` names another.
pub const MOTO_SERVER: &str = "/opt/berth-moto/bin/moto_server";
/// The variable that names the moto_server executable.
pub const MOTO_SERVER_ENV: &str = "BERTH_MOTO_SERVER";
/// The region the trials use.
pub const REGION: &str = "eu-west-1";
/// The account moto answers as (its default), part of the ARNs it makes.
pub const ACCOUNT: &str = "123456789012";
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The moto_server executable, when installed.
pub fn moto_server() -> Option<PathBuf> {
    let path = std::env::var_os(MOTO_SERVER_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(MOTO_SERVER));
    path.exists().then_some(path)
}

/// One CloudWatch Logs event as moto returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
}

/// A moto server started by the harness. Killed on drop.
#[derive(Debug)]
pub struct Moto {
    program: PathBuf,
    log: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl Moto {
    /// Starts moto's server in `dir` (its log there) on a free port.
    pub fn start(dir: &Path) -> Result<Moto> {
        let program = moto_server().with_context(|| {
            format!("moto_server not found at {MOTO_SERVER} or {MOTO_SERVER_ENV}: run `make deps`")
        })?;
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let moto = Moto {
            program,
            log: dir.join("moto.log"),
            port: free_port()?,
            child: Mutex::new(None),
        };
        moto.resume()?;
        Ok(moto)
    }

    /// Starts the server again on its port after [`Moto::stop`] (empty: moto keeps nothing).
    pub fn resume(&self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let log_err = log.try_clone().context("clone log handle")?;
        let mut cmd = process::daemon_command(&self.program);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.program.display()))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        process::wait_ready(
            &format!("moto on port {}", self.port),
            &self.log,
            START_DEADLINE,
            || {
                let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
                guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
            },
            || {
                self.call("DescribeLogGroups", &json!({}))
                    .map(drop)
                    .map_err(|e| format!("{e:#}"))
            },
        )
    }

    /// Stops the server (the endpoint refuses connections until [`Moto::resume`]).
    pub fn stop(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = guard.take() {
            process::terminate(&mut child, Duration::from_secs(5));
        }
    }

    /// `http://127.0.0.1:PORT`, the agent's `awslogs_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fake credentials and the region, for the agent's environment.
    pub fn agent_env() -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }

    /// The server's log, the last `lines` lines.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log, lines)
    }

    /// Creates a log group.
    pub fn create_log_group(&self, group: &str) -> Result<()> {
        self.call("CreateLogGroup", &json!({"logGroupName": group}))
            .map(drop)
    }

    /// The names of a group's streams (empty when the group is not there).
    pub fn log_streams(&self, group: &str) -> Result<Vec<String>> {
        let out = match self.call("DescribeLogStreams", &json!({"logGroupName": group})) {
            Ok(out) => out,
            Err(e) if format!("{e:#}").contains("ResourceNotFoundException") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(out["logStreams"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["logStreamName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every event of a stream, oldest first (empty when it is not there).
    pub fn log_events(&self, group: &str, stream: &str) -> Result<Vec<LogEvent>> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"logGroupName": group, "logStreamName": stream,
                                 "startFromHead": true});
            if let Some(t) = &token {
                req["nextToken"] = json!(t);
            }
            let out = match self.call("GetLogEvents", &req) {
                Ok(out) => out,
                Err(e) if format!("{e:#}").contains("ResourceNotFoundException") => {
                    return Ok(events);
                }
                Err(e) => return Err(e),
            };
            let page = out["events"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return Ok(events);
            }
            events.extend(page.iter().map(|e| LogEvent {
                timestamp: e["timestamp"].as_i64().unwrap_or(0),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            }));
            let next = out["nextForwardToken"].as_str().map(str::to_owned);
            if next.is_none() || next == token {
                return Ok(events);
            }
            token = next;
        }
    }

    /// Stores an SSM SecureString parameter (encrypted with moto's default key); its ARN.
    pub fn put_secure_parameter(&self, name: &str, value: &str) -> Result<String> {
        self.call_service(
            "ssm",
            "AmazonSSM",
            "PutParameter",
            &json!({"Name": name, "Value": value, "Type": "SecureString"}),
        )?;
        let path = name.trim_start_matches('/');
        Ok(format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{path}"))
    }

    /// Gives an existing SSM parameter a new value (a rotation), as a SecureString.
    pub fn overwrite_parameter(&self, name: &str, value: &str) -> Result<()> {
        self.call_service(
            "ssm",
            "AmazonSSM",
            "PutParameter",
            &json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true}),
        )
        .map(drop)
    }

    /// Creates a Secrets Manager secret holding `value` as text; its ARN (with moto's random
    /// suffix, as AWS makes it).
    pub fn create_secret(&self, name: &str, value: &str) -> Result<String> {
        let out = self.call_service(
            "secretsmanager",
            "secretsmanager",
            "CreateSecret",
            &json!({"Name": name, "SecretString": value}),
        )?;
        out["ARN"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("CreateSecret answered {out}"))
    }

    /// One call of the CloudWatch Logs JSON protocol; the answer's body, or its error.
    fn call(&self, action: &str, body: &Value) -> Result<Value> {
        self.call_service("logs", "Logs_20140328", action, body)
    }

    /// One call of an AWS JSON 1.1 protocol (`service` as signed, `target` the X-Amz-Target
    /// prefix); the answer's body, or its error.
    fn call_service(
        &self,
        service: &str,
        target: &str,
        action: &str,
        body: &Value,
    ) -> Result<Value> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let timeout = Duration::from_secs(10);
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(timeout))
            .context("set read timeout")?;
        let body = body.to_string();
        // moto takes the region from the credential scope; it checks no signature.
        write!(
            s,
            "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: {target}.{action}\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=testing/20240101/{REGION}/{service}/aws4_request, SignedHeaders=host, \
             Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .context("send request")?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).context("read answer")?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("answer without a body")?;
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status != "200" {
            bail!("{action} answered {status}: {body}");
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(body).with_context(|| format!("{action} answered {body}"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
