//! Bearer secrets, kubeadm's shape: `<id>.<secret>`, the ID six and the secret sixteen (join
//! tokens) or thirty-two (API tokens) lowercase letters and digits. The ID names the token in
//! lists and logs; only a SHA-256 of the secret is stored, so the store never holds a
//! credential.

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
/// A join token's secret length (kubeadm's).
pub const JOIN_SECRET_LEN: usize = 16;
/// An API token's secret length.
pub const API_SECRET_LEN: usize = 32;

/// A new token: the whole `<id>.<secret>` and its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub secret_hash: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A new random token with a secret of `secret_len` characters.
pub fn generate(secret_len: usize) -> NewToken {
    let id = random_string(ID_LEN);
    let secret = random_string(secret_len);
    NewToken {
        token: format!("{id}.{secret}"),
        secret_hash: hash(&secret),
        id,
    }
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A presented token split into ID and secret hash; an error says what shape is expected
/// (never repeating the token).
pub fn parse(token: &str, secret_len: usize) -> Result<(String, String), String> {
    let valid = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
    match token.trim().split_once('.') {
        Some((id, secret)) if valid(id, ID_LEN) && valid(secret, secret_len) => {
            Ok((id.to_owned(), hash(secret)))
        }
        _ => Err(format!(
            "a token is <id>.<secret>: {ID_LEN} and {secret_len} lowercase letters or digits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_id_and_hash() {
        let t = generate(JOIN_SECRET_LEN);
        assert_eq!(t.token.len(), 6 + 1 + 16);
        assert_eq!(
            parse(&t.token, JOIN_SECRET_LEN),
            Ok((t.id.clone(), t.secret_hash.clone()))
        );
        assert!(!t.secret_hash.contains(t.token.split_once('.').unwrap().1));
        assert!(!format!("{t:?}").contains(&t.token));
        assert_ne!(generate(JOIN_SECRET_LEN).token, t.token);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde!",
        ] {
            assert!(parse(bad, JOIN_SECRET_LEN).is_err(), "{bad}");
        }
    }
}
