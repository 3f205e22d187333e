//! berthctl's secret commands: create-secret (from a file, standard input or a literal),
//! list-secrets and delete-secret. No command ever prints a value: the scheduler never
//! returns one.

use std::io::Read as _;
use std::path::PathBuf;

use berth_proto::v1 as proto;
use serde::Serialize;

use super::commands::Context;
use super::error::CliError;
use super::json::time;
use super::table::Table;

/// A secret as berthctl shows it (`-o json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretJson {
    name: String,
    cluster: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
}

fn secret_json(s: &proto::SecretInfo) -> SecretJson {
    SecretJson {
        name: s.name.clone(),
        cluster: s.cluster.clone(),
        size: s.size,
        created_at: time(s.created_at.as_ref()),
        updated_at: time(s.updated_at.as_ref()),
    }
}

/// The value of `create-secret`: the file's bytes as they are (`-`: standard input), or the
/// literal.
fn read_value(
    name: &str,
    from_file: Option<PathBuf>,
    from_literal: Option<String>,
) -> Result<Vec<u8>, CliError> {
    crate::secrets::validate_name(name).map_err(CliError::InvalidSecret)?;
    let value = match (from_file, from_literal) {
        (_, Some(literal)) => literal.into_bytes(),
        (Some(path), None) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(crate::secrets::MAX_VALUE_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|error| CliError::ReadFile { path, error })?;
            buf
        }
        (Some(path), None) => {
            let too_big = std::fs::metadata(&path)
                .map(|m| m.len() > crate::secrets::MAX_VALUE_BYTES as u64)
                .unwrap_or(false);
            if too_big {
                return Err(CliError::InvalidSecret(format!(
                    "{} is larger than {} bytes (64 KiB), the most a secret holds",
                    path.display(),
                    crate::secrets::MAX_VALUE_BYTES
                )));
            }
            std::fs::read(&path).map_err(|error| CliError::ReadFile { path, error })?
        }
        (None, None) => {
            return Err(CliError::InvalidSecret(
                "create-secret needs --from-file FILE or --from-literal VALUE".to_owned(),
            ));
        }
    };
    crate::secrets::validate_value(name, &value).map_err(CliError::InvalidSecret)?;
    Ok(value)
}

impl Context<'_> {
    pub(super) async fn create_secret(
        &mut self,
        name: String,
        from_file: Option<PathBuf>,
        from_literal: Option<String>,
        overwrite: bool,
    ) -> Result<(), CliError> {
        let value = read_value(&name, from_file, from_literal)?;
        let response = self
            .call(
                self.client
                    .clone()
                    .create_secret(proto::CreateSecretRequest {
                        cluster: self.cluster.clone(),
                        name,
                        value,
                        overwrite,
                    }),
            )
            .await?;
        let secret = response.secret.unwrap_or_default();
        let verb = if response.replaced {
            "replaced"
        } else {
            "created"
        };
        let shown = secret_json(&secret);
        self.emit(&shown, || {
            format!(
                "{verb} secret {} in cluster {} ({} bytes)\n",
                secret.name, secret.cluster, secret.size
            )
        })
    }

    pub(super) async fn list_secrets(&mut self) -> Result<(), CliError> {
        let response = self
            .call(self.client.clone().list_secrets(proto::ListSecretsRequest {
                cluster: self.cluster.clone(),
            }))
            .await?;
        let secrets: Vec<SecretJson> = response.secrets.iter().map(secret_json).collect();
        let mut table = Table::new(&["NAME", "SIZE", "CREATED", "UPDATED"]);
        for s in &secrets {
            table.row(vec![
                s.name.clone(),
                s.size.to_string(),
                s.created_at.clone().unwrap_or_default(),
                s.updated_at.clone().unwrap_or_default(),
            ]);
        }
        let text = table.render(super::table::terminal_width());
        self.emit(&serde_json::json!({ "secrets": secrets }), || text)
    }

    pub(super) async fn delete_secret(&mut self, name: String) -> Result<(), CliError> {
        self.call(
            self.client
                .clone()
                .delete_secret(proto::DeleteSecretRequest {
                    cluster: self.cluster.clone(),
                    name: name.clone(),
                }),
        )
        .await?;
        let cluster = self.cluster.clone();
        self.emit(
            &serde_json::json!({ "name": name, "cluster": cluster }),
            || format!("deleted secret {name} from cluster {cluster}\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_comes_from_a_file_or_a_literal_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v");
        std::fs::write(&file, b"s3cr3t\n").unwrap();
        assert_eq!(read_value("db", Some(file), None).unwrap(), b"s3cr3t\n");
        assert_eq!(read_value("db", None, Some("lit".into())).unwrap(), b"lit");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; crate::secrets::MAX_VALUE_BYTES + 1]).unwrap();
        let error = read_value("db", Some(big), None).unwrap_err();
        assert!(error.to_string().contains("64 KiB"), "{error}");
        assert_eq!(error.exit_code(), 64);
        let error = read_value("bad name", None, Some("v".into())).unwrap_err();
        assert!(error.to_string().contains("contains ' '"), "{error}");
        let error = read_value("db", Some(dir.path().join("absent")), None).unwrap_err();
        assert!(matches!(error, CliError::ReadFile { .. }), "{error}");
    }
}
