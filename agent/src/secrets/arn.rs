//! What a `valueFrom` (or `credentialsParameter`) names in AWS, parsed as ECS reads it:
//! an SSM Parameter Store parameter by ARN (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`), a
//! Secrets Manager secret by ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`, with
//! optional `:json-key:version-stage:version-id`), or a plain name, which is a secret of
//! Berth's own store first and else an SSM parameter of the agent's region. Pure: parsing
//! takes the text and returns what to ask for, or what is wrong with it.

/// An AWS secret to fetch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AwsRef {
    /// An SSM Parameter Store parameter, fetched with decryption.
    Parameter {
        /// The ARN's region; None (a plain name): the agent's region.
        region: Option<String>,
        /// What GetParameter is asked for: the ARN as written, or the plain name.
        name: String,
    },
    /// A Secrets Manager secret.
    Secret {
        /// The ARN's region.
        region: String,
        /// The secret's ARN without the json-key and version fields.
        secret_id: String,
        /// The key of the secret's JSON whose value is used; None: the whole value.
        json_key: Option<String>,
        /// The version stage (AWSCURRENT when neither it nor the version ID is given).
        version_stage: Option<String>,
        /// The version ID.
        version_id: Option<String>,
    },
}

impl AwsRef {
    /// The region to call; None: the agent's.
    pub(crate) fn region(&self) -> Option<&str> {
        match self {
            Self::Parameter { region, .. } => region.as_deref(),
            Self::Secret { region, .. } => Some(region),
        }
    }

    /// The AWS service, as the agent's messages name it.
    pub(crate) fn service(&self) -> &'static str {
        match self {
            Self::Parameter { .. } => "SSM Parameter Store",
            Self::Secret { .. } => "Secrets Manager",
        }
    }
}

/// Why a `valueFrom` is not an ARN Berth can fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value_from} is not an SSM Parameter Store or Secrets Manager ARN ({reason}); write arn:aws:ssm:REGION:ACCOUNT:parameter/NAME or arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:json-key:version-stage:version-id]"
)]
pub(crate) struct ArnError {
    pub(crate) value_from: String,
    pub(crate) reason: &'static str,
}

/// Whether `value_from` is an ARN (rather than a name).
pub(crate) fn is_arn(value_from: &str) -> bool {
    value_from.starts_with("arn:")
}

/// What `value_from` names in AWS: an ARN as written, a plain name as an SSM parameter of the
/// agent's region (asked for only when Berth's store does not hold it).
pub(crate) fn parse(value_from: &str) -> Result<AwsRef, ArnError> {
    if !is_arn(value_from) {
        return Ok(AwsRef::Parameter {
            region: None,
            name: value_from.to_owned(),
        });
    }
    let bad = |reason| ArnError {
        value_from: value_from.to_owned(),
        reason,
    };
    let mut parts = value_from.splitn(6, ':');
    let (_, partition, service, region, account, resource) = match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(a), Some(p), Some(s), Some(r), Some(n), Some(x)) => (a, p, s, r, n, x),
        _ => return Err(bad("an ARN has six fields separated by `:`")),
    };
    if !partition.starts_with("aws") {
        return Err(bad("the partition is not aws, aws-cn or aws-us-gov"));
    }
    if region.is_empty() {
        return Err(bad("the region is empty"));
    }
    if account.is_empty() {
        return Err(bad("the account is empty"));
    }
    match service {
        "ssm" => {
            let Some(name) = resource.strip_prefix("parameter/") else {
                return Err(bad("an SSM ARN names `parameter/NAME`"));
            };
            if name.is_empty() {
                return Err(bad("the parameter name is empty"));
            }
            Ok(AwsRef::Parameter {
                region: Some(region.to_owned()),
                name: value_from.to_owned(),
            })
        }
        "secretsmanager" => {
            let Some(rest) = resource.strip_prefix("secret:") else {
                return Err(bad("a Secrets Manager ARN names `secret:NAME`"));
            };
            let mut fields = rest.split(':');
            let name = fields.next().unwrap_or_default();
            if name.is_empty() {
                return Err(bad("the secret name is empty"));
            }
            let mut field = || fields.next().filter(|f| !f.is_empty()).map(str::to_owned);
            let (json_key, version_stage, version_id) = (field(), field(), field());
            if fields.next().is_some() {
                return Err(bad(
                    "after the secret name come at most json-key, version-stage and version-id",
                ));
            }
            if version_stage.is_some() && version_id.is_some() {
                return Err(bad("give a version stage or a version ID, not both"));
            }
            Ok(AwsRef::Secret {
                region: region.to_owned(),
                secret_id: format!(
                    "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}"
                ),
                json_key,
                version_stage,
                version_id,
            })
        }
        _ => Err(bad("the service is neither ssm nor secretsmanager")),
    }
}

/// Why a JSON key cannot be taken from a secret. Names the key, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsonKeyError {
    #[error("the secret's value is not a JSON object")]
    NotObject,
    #[error("the secret's JSON has no key {0:?}")]
    NoKey(String),
}

/// The value of `key` in the JSON object `value`: a string as it is, anything else as its
/// JSON text (as ECS hands it to the container).
pub(crate) fn json_key(value: &[u8], key: &str) -> Result<Vec<u8>, JsonKeyError> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(value).map_err(|_| JsonKeyError::NotObject)?;
    match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(other) => Ok(other.to_string().into_bytes()),
        None => Err(JsonKeyError::NoKey(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(
        region: &str,
        id: &str,
        key: Option<&str>,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> AwsRef {
        AwsRef::Secret {
            region: region.into(),
            secret_id: id.into(),
            json_key: key.map(Into::into),
            version_stage: stage.map(Into::into),
            version_id: version.map(Into::into),
        }
    }

    #[test]
    fn ssm_parameters_by_arn_and_by_name() {
        let arn = "arn:aws:ssm:eu-west-1:111122223333:parameter/frontend/db";
        assert_eq!(
            parse(arn).unwrap(),
            AwsRef::Parameter {
                region: Some("eu-west-1".into()),
                name: arn.into()
            }
        );
        let flat = "arn:aws-us-gov:ssm:us-gov-west-1:111122223333:parameter/db_password";
        assert_eq!(parse(flat).unwrap().region(), Some("us-gov-west-1"));
        for name in ["/prod/db/password", "db_password", "prod.db-pass"] {
            assert_eq!(
                parse(name).unwrap(),
                AwsRef::Parameter {
                    region: None,
                    name: name.into()
                }
            );
        }
        assert_eq!(parse(arn).unwrap().service(), "SSM Parameter Store");
    }

    #[test]
    fn secrets_manager_arns_with_json_key_and_versions() {
        let base = "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf";
        assert_eq!(
            parse(base).unwrap(),
            secret("us-east-1", base, None, None, None)
        );
        assert_eq!(
            parse(&format!("{base}:password::")).unwrap(),
            secret("us-east-1", base, Some("password"), None, None)
        );
        assert_eq!(
            parse(&format!("{base}:password:AWSPREVIOUS:")).unwrap(),
            secret(
                "us-east-1",
                base,
                Some("password"),
                Some("AWSPREVIOUS"),
                None
            )
        );
        let version = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE";
        assert_eq!(
            parse(&format!("{base}:::{version}")).unwrap(),
            secret("us-east-1", base, None, None, Some(version))
        );
        assert_eq!(
            parse(&format!("{base}:username")).unwrap(),
            secret("us-east-1", base, Some("username"), None, None)
        );
        let cn = "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:reg-creds-Xy12Zw";
        assert_eq!(
            parse(cn).unwrap(),
            secret("cn-north-1", cn, None, None, None)
        );
        assert_eq!(parse(cn).unwrap().service(), "Secrets Manager");
    }

    #[test]
    fn malformed_or_foreign_arns_are_refused_with_the_reason() {
        for (arn, reason) in [
            ("arn:aws:ssm:eu-west-1:1", "six fields"),
            ("arn:aws:s3:::bucket/key", "region is empty"),
            (
                "arn:aws:s3:eu-west-1:1:bucket",
                "neither ssm nor secretsmanager",
            ),
            ("arn:aws:ssm:eu-west-1:1:document/x", "parameter/NAME"),
            (
                "arn:aws:ssm:eu-west-1:1:parameter/",
                "parameter name is empty",
            ),
            ("arn:aws:ssm::1:parameter/x", "region is empty"),
            ("arn:aws:ssm:eu-west-1::parameter/x", "account is empty"),
            ("arn:gcp:ssm:eu-west-1:1:parameter/x", "partition"),
            (
                "arn:aws:secretsmanager:eu-west-1:1:secret:",
                "secret name is empty",
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:1:secrets/x",
                "secret:NAME",
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:1:secret:x:k:s:v:extra",
                "at most",
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:1:secret:x:k:AWSCURRENT:v1",
                "not both",
            ),
        ] {
            let error = parse(arn).unwrap_err();
            assert_eq!(error.value_from, arn);
            assert!(error.reason.contains(reason), "{arn}: {error}");
            assert!(error.to_string().starts_with(arn), "{error}");
        }
    }

    #[test]
    fn json_keys_are_taken_from_objects() {
        let value = br#"{"username":"bob","password":"pw-secret","port":5432,"tls":true}"#;
        assert_eq!(json_key(value, "password").unwrap(), b"pw-secret");
        assert_eq!(json_key(value, "port").unwrap(), b"5432");
        assert_eq!(json_key(value, "tls").unwrap(), b"true");
        let error = json_key(value, "host").unwrap_err();
        assert_eq!(error, JsonKeyError::NoKey("host".into()));
        let error = json_key(b"plain-secret-text", "password").unwrap_err();
        assert_eq!(error, JsonKeyError::NotObject);
        assert!(!error.to_string().contains("plain-secret-text"));
        assert_eq!(
            json_key(b"[1,2]", "a").unwrap_err(),
            JsonKeyError::NotObject
        );
    }
}
