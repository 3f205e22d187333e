//! berthctl's commands on the client certificates the scheduler issued: list them (serial,
//! holder, role, scope, lifetime, revocation; never a key, which only its holder has) and
//! revoke one by its serial number.

use berth_proto::v1 as proto;
use serde::Serialize;

use super::commands::Context;
use super::error::CliError;
use super::json::time;
use super::table::Table;

/// One certificate in `list-client-certificates -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientCertificateJson {
    serial: String,
    name: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientCertificates {
    client_certificates: Vec<ClientCertificateJson>,
}

fn certificate_json(c: &proto::ClientCertificate) -> ClientCertificateJson {
    ClientCertificateJson {
        serial: c.serial.clone(),
        name: c.name.clone(),
        role: c.role.clone(),
        cluster: (!c.cluster.is_empty()).then(|| c.cluster.clone()),
        created_at: time(c.created_at.as_ref()),
        expires_at: time(c.expires_at.as_ref()),
        revoked_at: time(c.revoked_at.as_ref()),
    }
}

impl Context<'_> {
    pub(super) async fn list_client_certificates(&mut self) -> Result<(), CliError> {
        let response = self
            .call(
                self.client
                    .clone()
                    .list_client_certificates(proto::ListClientCertificatesRequest {}),
            )
            .await?;
        let certs: Vec<ClientCertificateJson> =
            response.certificates.iter().map(certificate_json).collect();
        let mut table = Table::new(&["SERIAL", "NAME", "ROLE", "CLUSTER", "EXPIRES", "REVOKED"]);
        for c in &certs {
            table.row(vec![
                c.serial.clone(),
                c.name.clone(),
                c.role.clone(),
                c.cluster.clone().unwrap_or_else(|| "*".to_owned()),
                c.expires_at.clone().unwrap_or_default(),
                c.revoked_at.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        let text = table.render(super::table::terminal_width());
        self.emit(
            &ClientCertificates {
                client_certificates: certs,
            },
            || text,
        )
    }

    pub(super) async fn revoke_client_certificate(
        &mut self,
        serial: String,
    ) -> Result<(), CliError> {
        let response = self
            .call(
                self.client
                    .clone()
                    .revoke_client_certificate(proto::RevokeClientCertificateRequest { serial }),
            )
            .await?;
        let cert = certificate_json(&response.certificate.unwrap_or_default());
        let text = format!(
            "revoked client certificate {} of {} ({}) at {}\n",
            cert.serial,
            cert.name,
            cert.role,
            cert.revoked_at.as_deref().unwrap_or("?")
        );
        self.emit(&cert, || text)
    }
}
