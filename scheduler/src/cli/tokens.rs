//! berthctl's credential commands: join tokens (with the CA pin agents check), API tokens and
//! client certificates. A new token is printed once; lists show IDs, scopes and lifetimes,
//! never secrets; a client certificate's key is made here, written 0600, and never sent.

use std::time::Duration;

use berth_proto::v1 as proto;
use serde::Serialize;

use super::commands::Context;
use super::error::CliError;
use super::json::time;
use super::table::Table;

/// `create-join-token -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewJoinToken {
    token: String,
    ca_pin: String,
}

/// `create-api-token -o json`.
#[derive(Debug, Serialize)]
struct NewApiToken {
    id: String,
    token: String,
    role: String,
}

/// `create-client-certificate -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewClientCertificate {
    serial: String,
    cert_file: String,
    key_file: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// One join token in `list-join-tokens -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinTokenJson {
    id: String,
    cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// None when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    uses_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
}

/// One API token in `list-api-tokens -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiTokenJson {
    id: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinTokens {
    join_tokens: Vec<JoinTokenJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiTokens {
    api_tokens: Vec<ApiTokenJson>,
}

fn join_token_json(t: &proto::JoinToken) -> JoinTokenJson {
    JoinTokenJson {
        id: t.id.clone(),
        cluster: t.cluster.clone(),
        expires_at: time(t.expires_at.as_ref()),
        uses_left: (!t.unlimited).then_some(t.uses_left),
        created_at: time(t.created_at.as_ref()),
    }
}

fn api_token_json(t: &proto::ApiToken) -> ApiTokenJson {
    ApiTokenJson {
        id: t.id.clone(),
        role: t.role.clone(),
        cluster: (!t.cluster.is_empty()).then(|| t.cluster.clone()),
        created_at: time(t.created_at.as_ref()),
        expires_at: time(t.expires_at.as_ref()),
    }
}

impl Context<'_> {
    pub(super) async fn create_join_token(
        &mut self,
        ttl: Duration,
        uses: Option<u32>,
    ) -> Result<(), CliError> {
        let request = proto::CreateJoinTokenRequest {
            cluster: self.cluster.clone(),
            ttl_seconds: ttl.as_secs().max(1),
            uses: uses.unwrap_or(0),
        };
        let response = self
            .call(self.client.clone().create_join_token(request))
            .await?;
        let json = NewJoinToken {
            token: response.token,
            ca_pin: response.ca_pin,
        };
        let table = format!("token:  {}\ncaPin:  {}\n", json.token, json.ca_pin);
        self.emit(&json, || table)
    }

    pub(super) async fn list_join_tokens(&mut self) -> Result<(), CliError> {
        let response = self
            .call(
                self.client
                    .clone()
                    .list_join_tokens(proto::ListJoinTokensRequest {}),
            )
            .await?;
        let tokens: Vec<JoinTokenJson> = response.tokens.iter().map(join_token_json).collect();
        let mut table = Table::new(&["ID", "CLUSTER", "EXPIRES", "USES LEFT"]);
        for t in &tokens {
            table.row(vec![
                t.id.clone(),
                t.cluster.clone(),
                t.expires_at.clone().unwrap_or_default(),
                t.uses_left
                    .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            ]);
        }
        let text = table.render(super::table::terminal_width());
        self.emit(
            &JoinTokens {
                join_tokens: tokens,
            },
            || text,
        )
    }

    pub(super) async fn delete_join_token(&mut self, id: String) -> Result<(), CliError> {
        self.call(
            self.client
                .clone()
                .delete_join_token(proto::DeleteJoinTokenRequest { id: id.clone() }),
        )
        .await?;
        self.emit(&serde_json::json!({ "id": id }), || {
            format!("deleted join token {id}\n")
        })
    }

    pub(super) async fn create_api_token(
        &mut self,
        role: String,
        ttl: Option<Duration>,
    ) -> Result<(), CliError> {
        let request = proto::CreateApiTokenRequest {
            role,
            cluster: self.scoped_cluster.clone().unwrap_or_default(),
            ttl_seconds: ttl.map_or(0, |t| t.as_secs().max(1)),
        };
        let response = self
            .call(self.client.clone().create_api_token(request))
            .await?;
        let info = response.info.unwrap_or_default();
        let json = NewApiToken {
            id: info.id,
            token: response.token,
            role: info.role,
        };
        let table = format!(
            "id:     {}\nrole:   {}\ntoken:  {}\n(the token is shown only now)\n",
            json.id, json.role, json.token
        );
        self.emit(&json, || table)
    }

    pub(super) async fn create_client_certificate(
        &mut self,
        name: String,
        role: String,
        ttl: Option<Duration>,
        cert_out: &std::path::Path,
        key_out: &std::path::Path,
    ) -> Result<(), CliError> {
        if key_out.exists() {
            return Err(CliError::WriteFile {
                path: key_out.to_owned(),
                reason: "it exists already; choose another --key-out or remove it".to_owned(),
            });
        }
        let key = rcgen::KeyPair::generate().map_err(|e| CliError::Key(e.to_string()))?;
        let csr_pem = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| CliError::Key(e.to_string()))?;
        let request = proto::CreateClientCertificateRequest {
            csr_pem,
            name,
            role: role.clone(),
            cluster: self.scoped_cluster.clone().unwrap_or_default(),
            ttl_seconds: ttl.map_or(0, |t| t.as_secs().max(1)),
        };
        let response = self
            .call(self.client.clone().create_client_certificate(request))
            .await?;
        let write_err = |path: &std::path::Path| {
            let path = path.to_owned();
            move |e: crate::trust::PkiError| CliError::WriteFile {
                path,
                reason: super::error::root_cause(&e),
            }
        };
        crate::trust::pki::write_private(key_out, key.serialize_pem().as_bytes(), 0o600)
            .map_err(write_err(key_out))?;
        crate::trust::pki::write_private(cert_out, response.certificate_pem.as_bytes(), 0o644)
            .map_err(write_err(cert_out))?;
        let json = NewClientCertificate {
            serial: response.serial,
            cert_file: cert_out.display().to_string(),
            key_file: key_out.display().to_string(),
            role,
            expires_at: time(response.expires_at.as_ref()),
        };
        let table = format!(
            "certificate: {}\nkey:         {}\nserial:      {}\nrole:        {}\nexpires:     {}\nuse it with --cert-file/--key-file or cert_file/key_file in a berthctl config file\n",
            json.cert_file,
            json.key_file,
            json.serial,
            json.role,
            json.expires_at.as_deref().unwrap_or("never")
        );
        self.emit(&json, || table)
    }

    pub(super) async fn list_api_tokens(&mut self) -> Result<(), CliError> {
        let response = self
            .call(
                self.client
                    .clone()
                    .list_api_tokens(proto::ListApiTokensRequest {}),
            )
            .await?;
        let tokens: Vec<ApiTokenJson> = response.tokens.iter().map(api_token_json).collect();
        let mut table = Table::new(&["ID", "ROLE", "CLUSTER", "EXPIRES"]);
        for t in &tokens {
            table.row(vec![
                t.id.clone(),
                t.role.clone(),
                t.cluster.clone().unwrap_or_else(|| "*".to_owned()),
                t.expires_at.clone().unwrap_or_else(|| "never".to_owned()),
            ]);
        }
        let text = table.render(super::table::terminal_width());
        self.emit(&ApiTokens { api_tokens: tokens }, || text)
    }

    pub(super) async fn delete_api_token(&mut self, id: String) -> Result<(), CliError> {
        self.call(
            self.client
                .clone()
                .delete_api_token(proto::DeleteApiTokenRequest { id: id.clone() }),
        )
        .await?;
        self.emit(&serde_json::json!({ "id": id }), || {
            format!("deleted API token {id}\n")
        })
    }
}
