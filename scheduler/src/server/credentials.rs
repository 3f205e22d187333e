//! ControlService's credential calls: join tokens (with the CA pin agents check), API tokens
//! and client certificates (recorded when issued, so that an admin can list and revoke them). A secret is returned once, by the call that creates it; lists
//! show IDs only; a client certificate's key never reaches the scheduler.

use std::time::{Duration, SystemTime};

use berth_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::store::DEFAULT_CLUSTER;
use crate::trust::{ClientIdentity, Role, Rpc, Scope, serial_of_pem};

fn ttl(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

pub(super) async fn create_join_token(
    shared: &Shared,
    request: Request<pb::CreateJoinTokenRequest>,
) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
    let cluster = match request.get_ref().cluster.as_str() {
        "" => DEFAULT_CLUSTER.to_owned(),
        c => c.to_owned(),
    };
    let caller = shared.authorize(&request, Rpc::CreateJoinToken, Scope::Cluster(&cluster))?;
    let Some(trust) = shared.config.trust.clone() else {
        return Err(Status::failed_precondition(
            "this scheduler runs with --insecure: it has no CA, so agents cannot join with a token",
        ));
    };
    let req = request.into_inner();
    let (token, info) = shared
        .db(move |s| {
            s.create_join_token(&cluster, ttl(req.ttl_seconds), req.uses, SystemTime::now())
        })
        .await?;
    tracing::info!(caller = %caller.name, token.id = %info.id, cluster = %info.cluster, "join token handed out");
    Ok(Response::new(pb::CreateJoinTokenResponse {
        token,
        ca_pin: trust.ca.pin().to_owned(),
        info: Some(info),
    }))
}

pub(super) async fn list_join_tokens(
    shared: &Shared,
    request: Request<pb::ListJoinTokensRequest>,
) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
    shared.authorize(&request, Rpc::ListJoinTokens, Scope::Global)?;
    let tokens = shared.db(|s| s.list_join_tokens()).await?;
    Ok(Response::new(pb::ListJoinTokensResponse { tokens }))
}

pub(super) async fn delete_join_token(
    shared: &Shared,
    request: Request<pb::DeleteJoinTokenRequest>,
) -> Result<Response<pb::DeleteJoinTokenResponse>, Status> {
    let caller = shared.authorize(&request, Rpc::DeleteJoinToken, Scope::Global)?;
    let id = request.into_inner().id;
    let deleted = id.clone();
    shared.db(move |s| s.delete_join_token(&id)).await?;
    tracing::info!(caller = %caller.name, token.id = %deleted, "join token deleted");
    Ok(Response::new(pb::DeleteJoinTokenResponse {}))
}

pub(super) async fn create_api_token(
    shared: &Shared,
    request: Request<pb::CreateApiTokenRequest>,
) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
    let role = Role::parse(&request.get_ref().role).map_err(Status::invalid_argument)?;
    let cluster = request.get_ref().cluster.clone();
    let scope = if cluster.is_empty() {
        Scope::Global
    } else {
        Scope::Cluster(&cluster)
    };
    let caller = shared.authorize(&request, Rpc::CreateApiToken, scope)?;
    let ttl_seconds = request.get_ref().ttl_seconds;
    let (token, info) = shared
        .db(move |s| {
            s.create_api_token(
                role,
                (!cluster.is_empty()).then_some(cluster.as_str()),
                ttl(ttl_seconds),
                SystemTime::now(),
            )
        })
        .await?;
    tracing::info!(caller = %caller.name, token.id = %info.id, role = %info.role, "API token handed out");
    Ok(Response::new(pb::CreateApiTokenResponse {
        token,
        info: Some(info),
    }))
}

pub(super) async fn list_api_tokens(
    shared: &Shared,
    request: Request<pb::ListApiTokensRequest>,
) -> Result<Response<pb::ListApiTokensResponse>, Status> {
    shared.authorize(&request, Rpc::ListApiTokens, Scope::Global)?;
    let tokens = shared.db(|s| s.list_api_tokens()).await?;
    Ok(Response::new(pb::ListApiTokensResponse { tokens }))
}

pub(super) async fn delete_api_token(
    shared: &Shared,
    request: Request<pb::DeleteApiTokenRequest>,
) -> Result<Response<pb::DeleteApiTokenResponse>, Status> {
    let caller = shared.authorize(&request, Rpc::DeleteApiToken, Scope::Global)?;
    let id = request.into_inner().id;
    let deleted = id.clone();
    shared.db(move |s| s.delete_api_token(&id)).await?;
    tracing::info!(caller = %caller.name, token.id = %deleted, "API token deleted");
    Ok(Response::new(pb::DeleteApiTokenResponse {}))
}

/// A client certificate's lifetime when none is asked for.
const DEFAULT_CLIENT_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) async fn create_client_certificate(
    shared: &Shared,
    request: Request<pb::CreateClientCertificateRequest>,
) -> Result<Response<pb::CreateClientCertificateResponse>, Status> {
    let req = request.get_ref();
    let role = Role::parse(&req.role).map_err(Status::invalid_argument)?;
    let cluster = (!req.cluster.is_empty()).then(|| req.cluster.clone());
    let who = ClientIdentity::new(&req.name, role, cluster.as_deref())
        .map_err(Status::invalid_argument)?;
    let scope = match &cluster {
        Some(c) => Scope::Cluster(c),
        None => Scope::Global,
    };
    let caller = shared.authorize(&request, Rpc::CreateClientCertificate, scope)?;
    let Some(trust) = shared.config.trust.clone() else {
        return Err(Status::failed_precondition(
            "this scheduler runs with --insecure: it has no CA, so it issues no client certificates",
        ));
    };
    if let Some(c) = who.cluster.clone() {
        shared.db(move |s| s.ensure_cluster(&c)).await?;
    }
    let req = request.into_inner();
    let lifetime = ttl(req.ttl_seconds).unwrap_or(DEFAULT_CLIENT_CERT_LIFETIME);
    let now = SystemTime::now();
    let certificate_pem = trust
        .ca
        .sign_client(&req.csr_pem, &who, lifetime, now)
        .map_err(|e| Status::from(super::ServerError::from(e)))?;
    let serial = serial_of_pem(&certificate_pem).map_err(|reason| {
        Status::internal(format!(
            "the certificate just signed cannot be read: {reason}"
        ))
    })?;
    let expires_at = prost_types::Timestamp::from(now + lifetime);
    let record = pb::ClientCertificate {
        serial: serial.clone(),
        name: who.name.clone(),
        role: who.role.as_str().to_owned(),
        cluster: who.cluster.clone().unwrap_or_default(),
        created_at: Some(prost_types::Timestamp::from(now)),
        expires_at: Some(expires_at),
        revoked_at: None,
    };
    // Recorded before it is handed out, so every certificate out there can be revoked.
    shared
        .db(move |s| s.record_client_certificate(&record))
        .await?;
    tracing::info!(caller = %caller.name, %serial, client = %who.name, role = %who.role, cluster = who.cluster.as_deref().unwrap_or("*"), lifetime_s = lifetime.as_secs(), "client certificate issued");
    Ok(Response::new(pb::CreateClientCertificateResponse {
        certificate_pem,
        ca_pem: trust.ca.cert_pem().to_owned(),
        expires_at: Some(expires_at),
        serial,
    }))
}

pub(super) async fn list_client_certificates(
    shared: &Shared,
    request: Request<pb::ListClientCertificatesRequest>,
) -> Result<Response<pb::ListClientCertificatesResponse>, Status> {
    shared.authorize(&request, Rpc::ListClientCertificates, Scope::Global)?;
    let certificates = shared
        .db(|s| s.list_client_certificates(SystemTime::now()))
        .await?;
    Ok(Response::new(pb::ListClientCertificatesResponse {
        certificates,
    }))
}

pub(super) async fn revoke_client_certificate(
    shared: &Shared,
    request: Request<pb::RevokeClientCertificateRequest>,
) -> Result<Response<pb::RevokeClientCertificateResponse>, Status> {
    let caller = shared.authorize(&request, Rpc::RevokeClientCertificate, Scope::Global)?;
    let serial = request.into_inner().serial;
    if serial.trim().is_empty() {
        return Err(Status::invalid_argument(
            "a serial number is required; `berthctl list-client-certificates` shows them",
        ));
    }
    let certificate = shared
        .db(move |s| s.revoke_client_certificate(&serial, SystemTime::now()))
        .await?;
    tracing::info!(caller = %caller.name, serial = %certificate.serial, client = %certificate.name, "client certificate revoked");
    Ok(Response::new(pb::RevokeClientCertificateResponse {
        certificate: Some(certificate),
    }))
}
