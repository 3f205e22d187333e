//! Agent certificates and session claims over the real wire against the TLS scheduler. A
//! forged agent certificate, one of another CA and an expired one of the cluster CA are
//! refused at the handshake, which the scheduler logs with the peer's address and the reason
//! and the agent logs as its own failure; a hand-driven agent holding a real certificate of
//! the cluster sends a forged sequence number, a forged `last_applied_seq` and a report on
//! another instance's task, each refused with the reason and logged with the peer's identity,
//! and none of it changes what the scheduler holds.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use berth_proto::v1::agent_service_client::AgentServiceClient;
use berth_proto::v1::{self as pb, agent_message, scheduler_message};
use berth_tests::berth::Agent;
use berth_tests::netlab::AgentNetns;
use berth_tests::{World, poll};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair, SanType};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{Env, hello, taskdef};

/// An agent's certificate and key (PEM).
struct AgentCert {
    cert: String,
    key: String,
}

/// A certificate naming `uri`, valid from `validity.0` to `validity.1`, signed by `issuer` or
/// self-signed.
fn agent_cert(
    uri: &str,
    validity: (SystemTime, SystemTime),
    issuer: Option<&Issuer<'_, KeyPair>>,
) -> Result<AgentCert> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "agent");
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.not_before = validity.0.into();
    params.not_after = validity.1.into();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer)?,
        None => params.self_signed(&key)?,
    };
    Ok(AgentCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn ca_pem(env: &Env) -> Result<String> {
    std::fs::read_to_string(env.scheduler.data_dir.join("pki/ca.crt")).context("read the CA")
}

/// An AgentService client over TLS, presenting `cert` when given.
async fn agent_client(
    endpoint: &str,
    ca: &str,
    cert: Option<&AgentCert>,
) -> Result<AgentServiceClient<Channel>> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await?;
    Ok(AgentServiceClient::new(channel))
}

/// How many lines of `log` contain every one of `needles`.
fn lines_with(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits until the scheduler's log has more lines with all of `needles` than `before`.
fn wait_scheduler_log(env: &Env, needles: &[&str], before: usize) -> Result<()> {
    poll(Duration::from_secs(30), || {
        Ok((lines_with(&env.scheduler.daemon.log(), needles) > before).then_some(()))
    })
    .with_context(|| {
        format!(
            "the scheduler never logged {needles:?}; its log:\n{}",
            env.scheduler.daemon.log()
        )
    })
}

/// What the scheduler holds that a refusal must leave alone: every task and every instance
/// without what changes on its own (heartbeats, health, measured use, whether connected).
fn holdings(env: &Env) -> Result<String> {
    let mut instances = env.instances()?;
    for i in &mut instances {
        if let Some(o) = i.as_object_mut() {
            for live in [
                "lastHeartbeatAt",
                "agentHealth",
                "measuredResources",
                "agentConnected",
            ] {
                o.remove(live);
            }
        }
    }
    Ok(format!(
        "{}\n{}",
        serde_json::to_string(&instances)?,
        env.json(&["list-tasks"])?
    ))
}

/// Starts an agent, in a network namespace of its own, whose data dir holds `cert` as the
/// certificate it joined with (and the cluster CA); it connects with it.
fn agent_with(env: &Env, name: &str, cert: &AgentCert) -> Result<(Agent, AgentNetns)> {
    let mut opts = env.opts.clone();
    opts.data_dir = env.dir.join(format!("{name}-agent"));
    opts.join = None;
    let net = AgentNetns::create(&env.dir.join(format!("net-{name}")))?;
    opts.host_netns = net.host.path().to_owned();
    opts.netns_dir = net.netns_dir.clone();
    let tls = opts.data_dir.join("tls");
    std::fs::create_dir_all(&tls)?;
    std::fs::write(tls.join("agent.crt"), &cert.cert)?;
    std::fs::write(tls.join("agent.key"), &cert.key)?;
    std::fs::write(tls.join("ca.crt"), ca_pem(env)?)?;
    let agent = Agent::start(&opts, env.dir.join(format!("{name}-agent.log")))?;
    Ok((agent, net))
}

pub(super) fn forged_expired_and_foreign_agent_certificates_are_refused_and_logged(
    w: &World,
) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let instance = env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .context("no instance ID")?
        .to_owned();
    // Each names the real instance: an intruder taking over the host's identity.
    let uri = format!("spiffe://berth/cluster/{}/instance/{instance}", env.cluster);
    let now = SystemTime::now();
    let valid = (
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let before = holdings(&env)?;

    let refused = "TLS handshake refused: bad client certificate";
    let not_ours = "not issued by this cluster's CA";
    let forged = agent_cert(&uri, valid, None)?;
    let mut foreign_ca = CertificateParams::default();
    foreign_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign = Issuer::new(foreign_ca, KeyPair::generate()?);
    let foreign = agent_cert(&uri, valid, Some(&foreign))?;
    for (name, cert) in [("forged", &forged), ("foreign", &foreign)] {
        let seen = lines_with(&env.scheduler.daemon.log(), &[refused, not_ours]);
        let (agent, _net) = agent_with(&env, name, cert)?;
        wait_scheduler_log(&env, &[refused, not_ours, "127.0.0.1:"], seen)
            .with_context(|| format!("the {name} certificate"))?;
        // The agent's side: it says the scheduler refused its certificate, and what to do.
        // Where TLS 1.3's late alert reached only another of its reads (the Register call
        // then sees just "operation was canceled"), the agent's probe names it.
        agent
            .daemon
            .wait_for_log(
                "refused this agent's certificate during the TLS handshake",
                Duration::from_secs(30),
            )
            .with_context(|| {
                format!(
                    "the agent with the {name} certificate does not say it was refused:\n{}",
                    agent.daemon.log()
                )
            })?;
    }

    // Expired, of the cluster CA: the agent refuses to use it (and says when it expired)...
    let ca = ca_pem(&env)?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(
        env.scheduler.data_dir.join("pki/ca.key"),
    )?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca, ca_key)?;
    let expired = agent_cert(
        &uri,
        (
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        ),
        Some(&issuer),
    )?;
    let (agent, _net) = agent_with(&env, "expired", &expired)?;
    agent
        .daemon
        .wait_for_log("expired at", Duration::from_secs(30))?;
    // ...and a peer that presents it anyway is refused at the handshake.
    let seen = lines_with(&env.scheduler.daemon.log(), &[refused, "has expired"]);
    let endpoint = env.scheduler.endpoint.clone();
    let refusal = w.block_on(async {
        let mut client = agent_client(&endpoint, &ca, Some(&expired)).await?;
        Ok::<_, anyhow::Error>(client.register(pb::RegisterRequest::default()).await)
    })?;
    let Err(status) = refusal else {
        bail!("a Register with an expired certificate was answered");
    };
    // In TLS 1.3 the client counts its handshake done before the server has checked its
    // certificate, so the server's alert can lose the race with the client's first write: the
    // client then sees the connection cut rather than the alert, or (when the cut comes before
    // HTTP/2 is up) its call cancelled because the connection never became ready. Either way
    // it is refused; the agent itself never gets this far (it names the expiry above), and the
    // scheduler's line below names the reason.
    let said = status.to_string();
    ensure!(
        [
            "certificate",
            "alert",
            "broken pipe",
            "connection reset",
            "connection closed",
            "connection was not ready",
        ]
        .iter()
        .any(|why| said.contains(why)),
        "the client of an expired certificate is not refused at the handshake: {status}"
    );
    wait_scheduler_log(&env, &[refused, "has expired", "127.0.0.1:"], seen)?;

    ensure!(
        holdings(&env)? == before,
        "a refused certificate changed what the scheduler holds"
    );
    ensure!(
        env.instances()?
            .iter()
            .any(|i| i["containerInstanceId"] == instance.as_str() && i["agentConnected"] == true),
        "the real agent lost its session"
    );
    Ok(())
}

/// An agent session driven by hand: the messages it sends and the stream it reads.
struct HandSession {
    tx: tokio::sync::mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::SchedulerMessage>,
}

fn agent_msg(m: agent_message::Message) -> pb::AgentMessage {
    pb::AgentMessage { message: Some(m) }
}

impl HandSession {
    /// Opens a session as `instance` with `last_applied_seq`; the refusal if it is refused.
    async fn open(
        client: &mut AgentServiceClient<Channel>,
        cluster: &str,
        instance: &str,
        last_applied_seq: u64,
    ) -> Result<Result<HandSession, tonic::Status>> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(agent_msg(agent_message::Message::Hello(pb::SessionHello {
            cluster: cluster.to_owned(),
            container_instance_id: instance.to_owned(),
            last_applied_seq,
        })))
        .await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut rx = match client.session(stream).await {
            Ok(r) => r.into_inner(),
            Err(status) => return Ok(Err(status)),
        };
        match rx.message().await {
            Ok(Some(pb::SchedulerMessage {
                message: Some(scheduler_message::Message::Accepted(_)),
            })) => Ok(Ok(HandSession { tx, rx })),
            Ok(other) => bail!("expected SessionAccepted, got {other:?}"),
            Err(status) => Ok(Err(status)),
        }
    }

    /// Sends `m` and reads the session to the status it is closed with.
    async fn refused_after(mut self, m: agent_message::Message) -> Result<tonic::Status> {
        self.tx.send(agent_msg(m)).await?;
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.rx.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(status) => return Some(status),
                }
            }
        })
        .await
        .context("the session stayed open after a forged claim")?;
        end.context("the session ended without a reason")
    }
}

fn state_change(seq: u64, task_id: &str) -> agent_message::Message {
    agent_message::Message::StateChange(pb::StateChange {
        seq,
        task: Some(pb::TaskState {
            task_id: task_id.to_owned(),
            status: pb::TaskStatus::Stopped as i32,
            ..Default::default()
        }),
    })
}

pub(super) fn forged_claims_over_mtls_are_refused_and_logged(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-claims")?;
    let def = taskdef(
        "claims",
        serde_json::json!([{"name": "app", "image": image, "memory": 64,
                            "command": ["sleep", "300"], "stopTimeout": 1}]),
    );
    let (task_id, _) = env.start_task(&def)?;
    let ca = ca_pem(&env)?;
    let cluster = env.cluster.clone();
    let endpoint = env.scheduler.endpoint.clone();

    // A second host joins by hand with a token of the cluster: a real certificate, its own
    // instance, no task.
    let join = env.scheduler.join_token(&cluster)?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let (intruder, cert) = w.block_on(async {
        let mut client = agent_client(&endpoint, &ca, None).await?;
        let joined = client
            .join_cluster(pb::JoinClusterRequest {
                token: join.token.clone(),
                csr_pem: csr,
                cluster: cluster.clone(),
            })
            .await?
            .into_inner();
        let cert = AgentCert {
            cert: joined.certificate_pem,
            key: key.serialize_pem(),
        };
        let mut client = agent_client(&endpoint, &ca, Some(&cert)).await?;
        let registered = client
            .register(pb::RegisterRequest {
                cluster: cluster.clone(),
                container_instance_id: joined.container_instance_id.clone(),
                instance_identity: "hand-driven-intruder".to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok::<_, anyhow::Error>((registered.container_instance_id, cert))
    })?;
    let before = holdings(&env)?;
    let refused_in = "session refused and closed";
    let refused_at_open = "session refused: the agent claimed";
    let log = || env.scheduler.daemon.log();

    w.block_on(async {
        let mut client = agent_client(&endpoint, &ca, Some(&cert)).await?;

        // A report on the real agent's task.
        let seen = lines_with(&log(), &[refused_in, &intruder]);
        let session = HandSession::open(&mut client, &cluster, &intruder, 0)
            .await?
            .map_err(|s| anyhow::anyhow!("the intruder's session was refused at once: {s}"))?;
        let status = session.refused_after(state_change(1, &task_id)).await?;
        ensure!(
            status.code() == tonic::Code::PermissionDenied
                && status.message().contains("runs on another instance"),
            "a report on another instance's task: {status:?}"
        );
        wait_scheduler_log(&env, &[refused_in, &intruder, "127.0.0.1:"], seen)?;

        // A forged sequence number, far ahead of the next one.
        let seen = lines_with(&log(), &[refused_in, &intruder, "out of sequence"]);
        let session = HandSession::open(&mut client, &cluster, &intruder, 0)
            .await?
            .map_err(|s| anyhow::anyhow!("the intruder's session was refused at once: {s}"))?;
        let status = session
            .refused_after(state_change(u64::MAX, &task_id))
            .await?;
        ensure!(
            status.code() == tonic::Code::InvalidArgument
                && status
                    .message()
                    .contains("out of sequence: the next one is 1"),
            "a forged sequence number: {status:?}"
        );
        wait_scheduler_log(&env, &[refused_in, &intruder, "out of sequence"], seen)?;

        // A forged last_applied_seq: nothing was ever issued to this instance.
        let seen = lines_with(&log(), &[refused_at_open, &intruder]);
        let Err(status) = HandSession::open(&mut client, &cluster, &intruder, 99).await? else {
            bail!("a session claiming last_applied_seq 99 was accepted");
        };
        ensure!(
            status.code() == tonic::Code::InvalidArgument
                && status.message().contains("last_applied_seq 99"),
            "a forged last_applied_seq: {status:?}"
        );
        wait_scheduler_log(&env, &[refused_at_open, &intruder, "127.0.0.1:"], seen)?;

        // None of the refused numbers was recorded: the intruder's next session starts at 0.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(agent_msg(agent_message::Message::Hello(pb::SessionHello {
            cluster: cluster.clone(),
            container_instance_id: intruder.clone(),
            last_applied_seq: 0,
        })))
        .await?;
        let mut stream = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = stream.message().await?;
        let Some(pb::SchedulerMessage {
            message: Some(scheduler_message::Message::Accepted(accepted)),
        }) = first
        else {
            bail!("expected SessionAccepted, got {first:?}");
        };
        ensure!(
            accepted.last_received_seq == 0,
            "a refused number was recorded: {accepted:?}"
        );
        Ok(())
    })?;

    // The intruder's last session closes when its stream is dropped; wait for that, so the
    // comparison sees no live session of it.
    poll(Duration::from_secs(30), || {
        Ok(env
            .instances()?
            .iter()
            .any(|i| i["containerInstanceId"] == intruder.as_str() && i["agentConnected"] == false)
            .then_some(()))
    })
    .context("the intruder's session never closed")?;
    let after = holdings(&env)?;
    ensure!(
        before == after,
        "a refused claim changed what the scheduler holds:\nbefore {before}\nafter {after}"
    );
    ensure!(
        env.task(&task_id)?["lastStatus"] == "RUNNING",
        "the real agent's task moved"
    );
    Ok(())
}
