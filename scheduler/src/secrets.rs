//! Task secrets at rest: the key (`DIR/secrets.key`, made on first start, 0600), the sealing of
//! each value with ChaCha20-Poly1305 under a fresh random nonce, and the rules for a secret's
//! name and size. The store keeps only sealed values; nothing here ever logs or formats a value.
//!
//! A sealed value is `nonce (12 bytes) || ciphertext and tag`, with the cluster and name as
//! associated data, so a value copied onto another secret's record fails to open rather than
//! being handed out under the wrong name.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The key file inside the scheduler's data directory.
pub const KEY_FILE: &str = "secrets.key";

/// The largest secret value, in bytes (as ECS's Secrets Manager: 64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// The longest secret name (as AWS Secrets Manager's).
pub const MAX_NAME_CHARS: usize = 512;

const NONCE_BYTES: usize = 12;

/// Why the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the secrets key {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the secrets key {path} has mode {mode:o}, so others than the scheduler's user can read it; run `chmod 600 {path}` (and consider the values it protects exposed)"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "the secrets key {path} is malformed: it must hold 64 hexadecimal characters (32 bytes); restore it from a backup, or move it away to start with a new key (the stored secrets then cannot be read and must be created again)"
    )]
    Malformed { path: PathBuf },
}

/// Why a stored value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is too short to hold a nonce and a tag")]
    Truncated,
    #[error(
        "the value does not decrypt with this scheduler's key: the key changed, or the record was altered"
    )]
    Rejected,
}

/// The key that seals secret values. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// The key of `dir/secrets.key`, made (32 random bytes, hex, mode 0600) when absent.
    /// Refuses a key file that group or others may read or write, or that is not 64 hex
    /// characters.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let bytes: [u8; 32] = rand::random();
                file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                tracing::info!(path = %path.display(), "made a new secrets key");
                return Ok(Self::from_bytes(&bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path, mode });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| KeyError::Malformed { path: path.clone() })?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
        }
    }

    /// Seals `value` for the secret `name` of `cluster` under a new random nonce.
    pub fn seal(&self, cluster: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = associated_data(cluster, name);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            // ChaCha20-Poly1305 fails only for messages beyond 256 GiB; values are capped at
            // MAX_VALUE_BYTES before they get here.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The value sealed for `name` of `cluster`.
    pub fn open(&self, cluster: &str, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES + 16 {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated_data(cluster, name);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Rejected)
    }
}

fn associated_data(cluster: &str, name: &str) -> Vec<u8> {
    format!("berth-secret\0{cluster}\0{name}").into_bytes()
}

/// Checks a secret's name: 1 to 512 letters, digits and `/ _ + = . @ -` (the characters of AWS
/// Secrets Manager names), not an ARN. The error says what is wrong.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a secret name cannot be empty".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "secret name {name:?} is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "secret name {name:?} contains {bad:?}: use letters, digits and / _ + = . @ -"
        ));
    }
    Ok(())
}

/// Checks a value's size: at most [`MAX_VALUE_BYTES`], not empty.
pub fn validate_value(name: &str, value: &[u8]) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("the value of secret {name} is empty"));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "the value of secret {name} is {} bytes; the most is {MAX_VALUE_BYTES} (64 KiB)",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path) -> SecretKey {
        SecretKey::load_or_create(dir).expect("key")
    }

    #[test]
    fn a_value_round_trips_and_each_seal_uses_a_new_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path());
        let a = k.seal("default", "db", b"hunter2");
        let b = k.seal("default", "db", b"hunter2");
        assert_ne!(a, b, "same nonce twice");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open("default", "db", &a).unwrap(), b"hunter2");
        assert_eq!(k.open("default", "db", &b).unwrap(), b"hunter2");
    }

    #[test]
    fn the_key_persists_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = key(dir.path()).seal("c", "n", b"v");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(key(dir.path()).open("c", "n", &sealed).unwrap(), b"v");
    }

    #[test]
    fn another_key_cannot_open_a_value() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sealed = key(d1.path()).seal("c", "n", b"v");
        assert_eq!(
            key(d2.path()).open("c", "n", &sealed),
            Err(SealError::Rejected)
        );
    }

    #[test]
    fn a_tampered_or_moved_value_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path());
        let mut sealed = k.seal("c", "n", b"value");
        assert_eq!(k.open("c", "other", &sealed), Err(SealError::Rejected));
        assert_eq!(k.open("c2", "n", &sealed), Err(SealError::Rejected));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(k.open("c", "n", &sealed), Err(SealError::Rejected));
        sealed[last] ^= 1;
        sealed[NONCE_BYTES] ^= 0x80;
        assert_eq!(k.open("c", "n", &sealed), Err(SealError::Rejected));
        assert_eq!(k.open("c", "n", &sealed[..20]), Err(SealError::Truncated));
    }

    #[test]
    fn an_exposed_or_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        key(dir.path());
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = SecretKey::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(error, KeyError::Exposed { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        let error = SecretKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Malformed { .. }), "{error}");
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(
            SecretKey::load_or_create(dir.path()),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string({
            key(dir.path());
            dir.path().join(KEY_FILE)
        })
        .unwrap();
        let shown = format!("{:?}", key(dir.path()));
        assert!(!shown.contains(text.trim()));
        assert_eq!(shown, "SecretKey(<redacted>)");
    }

    #[test]
    fn names_and_sizes_follow_the_rules() {
        for ok in ["db", "prod/db_password", "a+b=c.d@e-f", &"x".repeat(512)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "has space", "arn:aws:ssm:x", "é", &"x".repeat(513)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        validate_value("n", &[0; MAX_VALUE_BYTES]).unwrap();
        let error = validate_value("n", &[0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(error.contains("65536"), "{error}");
        assert!(validate_value("n", b"").is_err());
    }
}
