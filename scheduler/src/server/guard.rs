//! Who is calling, checked at the top of every call: an agent by the instance its certificate
//! names (and whose identity is not revoked), a client by the role its client certificate
//! names, or else by its bearer API token, against the authorization table (`trust::auth`).
//! An agent's certificate is never a client's credential, nor a client's an agent's. With `--insecure` there is no TLS and nobody is
//! checked: every caller is trusted, as the warning at start says.

use std::time::SystemTime;

use tonic::{Request, Status};

use super::Shared;
use crate::trust::{AgentIdentity, Caller, ClientIdentity, PeerIdentity, Role, Rpc, Scope};

/// The metadata key of a bearer token.
const AUTHORIZATION: &str = "authorization";

/// What a refused call is told when it brings no credential.
const NO_CREDENTIAL: &str = "no credential: this call needs an API token (berthctl --token, BERTH_TOKEN, or `token` in a berthctl config file such as <scheduler data dir>/berthctl.toml) or a client certificate of the cluster CA (--cert-file/--key-file, made by `berthctl create-client-certificate`)";

/// The peer's address, for logs.
fn peer<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
}

/// Who the request's client certificate names, if it presented one (TLS checked that the
/// cluster CA signed it and that it is valid now).
fn peer_in_cert<T>(request: &Request<T>) -> Result<Option<PeerIdentity>, Status> {
    let Some(certs) = request.peer_certs() else {
        return Ok(None);
    };
    let Some(leaf) = certs.first() else {
        return Ok(None);
    };
    PeerIdentity::from_der(leaf.as_ref()).map_err(|reason| {
        Status::unauthenticated(format!("the client certificate cannot be read: {reason}"))
    })
}

impl Shared {
    /// The client making a ControlService call, allowed to make `rpc` on `scope`; with
    /// `--insecure`, an admin. A refusal is logged with the peer and says what is missing.
    pub(crate) fn authorize<T>(
        &self,
        request: &Request<T>,
        rpc: Rpc,
        scope: Scope<'_>,
    ) -> Result<Caller, Status> {
        if self.config.trust.is_none() {
            return Ok(Caller {
                name: "an unauthenticated client (--insecure)".to_owned(),
                role: Role::Admin,
                cluster: None,
            });
        }
        let refuse = |status: Status| {
            tracing::warn!(peer = %peer(request), %rpc, reason = status.message(), "control call refused");
            status
        };
        match peer_in_cert(request).map_err(refuse)? {
            Some(PeerIdentity::Agent(agent)) => {
                return Err(refuse(Status::permission_denied(format!(
                    "the certificate of {agent} is an agent's and cannot call ControlService; use an API token or a client certificate"
                ))));
            }
            Some(PeerIdentity::Client(client)) => {
                self.refuse_revoked(request, &client).map_err(refuse)?;
                let caller = Caller {
                    name: client.to_string(),
                    role: client.role,
                    cluster: client.cluster,
                };
                caller
                    .authorize(rpc, scope)
                    .map_err(|denied| refuse(Status::permission_denied(denied.to_string())))?;
                tracing::debug!(caller = %caller.name, %rpc, "control call authorized");
                return Ok(caller);
            }
            None => {}
        }
        let bearer = match request.metadata().get(AUTHORIZATION) {
            None => return Err(refuse(Status::unauthenticated(NO_CREDENTIAL))),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    refuse(Status::unauthenticated(
                        "the authorization header is not \"Bearer <token>\"",
                    ))
                })?,
        };
        let caller = self
            .store
            .authenticate(bearer, SystemTime::now())
            .map_err(|e| refuse(Status::from(super::ServerError::from(e))))?;
        caller
            .authorize(rpc, scope)
            .map_err(|denied| refuse(Status::permission_denied(denied.to_string())))?;
        tracing::debug!(caller = %caller.name, %rpc, "control call authorized");
        Ok(caller)
    }

    /// Refuses a client certificate that an admin revoked (`revoke-client-certificate`).
    fn refuse_revoked<T>(
        &self,
        request: &Request<T>,
        client: &ClientIdentity,
    ) -> Result<(), Status> {
        let Some(leaf) = request.peer_certs().and_then(|c| c.first().cloned()) else {
            return Ok(());
        };
        let serial = crate::trust::identity::serial(leaf.as_ref()).map_err(|reason| {
            Status::unauthenticated(format!("the client certificate cannot be read: {reason}"))
        })?;
        let revoked = self
            .store
            .revoked_client_certificate(&serial)
            .map_err(|e| Status::from(super::ServerError::from(e)))?;
        match revoked.and_then(|c| c.revoked_at) {
            None => Ok(()),
            Some(at) => Err(Status::unauthenticated(format!(
                "the client certificate {serial} of {} was revoked at {}; ask an admin for a new one (berthctl create-client-certificate)",
                client.name,
                jiff::Timestamp::new(at.seconds, 0)
                    .map_or_else(|_| at.seconds.to_string(), |t| t.to_string()),
            ))),
        }
    }

    /// The agent making an AgentService call, by its certificate; None with `--insecure`.
    /// Refused without a certificate that names an agent, or when that agent's identity was
    /// revoked (its instance deregistered).
    pub(crate) async fn agent_peer<T>(
        &self,
        request: &Request<T>,
        call: &'static str,
    ) -> Result<Option<AgentIdentity>, Status> {
        if self.config.trust.is_none() {
            return Ok(None);
        }
        let refuse = |status: Status| {
            tracing::warn!(peer = %peer(request), call, reason = status.message(), "agent call refused");
            status
        };
        let agent = match peer_in_cert(request).map_err(refuse)? {
            Some(PeerIdentity::Agent(agent)) => agent,
            Some(PeerIdentity::Client(client)) => {
                return Err(refuse(Status::permission_denied(format!(
                    "the {client} is a client's and cannot call AgentService"
                ))));
            }
            None => {
                return Err(refuse(Status::unauthenticated(
                    "no agent certificate: an agent joins with a join token first (join_token and scheduler_ca_pin in its configuration)",
                )));
            }
        };
        let (cluster, id) = (agent.cluster.clone(), agent.instance_id.clone());
        let certified = self
            .db(move |s| s.agent_certified(&cluster, &id))
            .await
            .map_err(Status::from)?;
        if !certified {
            return Err(refuse(Status::permission_denied(format!(
                "the certificate of {agent} is revoked (the instance was deregistered); join again with a new join token and an empty data dir"
            ))));
        }
        Ok(Some(agent))
    }
}

/// PermissionDenied for an agent that speaks for someone else, logged with its identity.
pub(crate) fn not_yours(agent: &AgentIdentity, what: String) -> Status {
    tracing::warn!(peer = %agent, what = %what, "agent call refused");
    Status::permission_denied(format!("{agent} cannot {what}"))
}
