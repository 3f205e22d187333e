//! sha256 digests in OCI form (`sha256:<hex>`) and containerd's chain IDs.

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The chain ID of the top layer, as containerd computes it (identity.ChainID):
/// `chain(L0) = diff_id0`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff_idn)`.
/// `None` for an image without layers.
pub fn chain_id<S: AsRef<str>>(diff_ids: &[S]) -> Option<String> {
    let mut it = diff_ids.iter();
    let mut chain = it.next()?.as_ref().to_owned();
    for diff in it {
        chain = sha256_digest(format!("{chain} {}", diff.as_ref()).as_bytes());
    }
    Some(chain)
}

/// The chain IDs of every prefix of `diff_ids` (index i = chain ID of layers 0..=i), which are
/// the names containerd gives committed snapshots.
pub fn chain_ids<S: AsRef<str>>(diff_ids: &[S]) -> Vec<String> {
    (1..=diff_ids.len())
        .filter_map(|n| chain_id(&diff_ids[..n]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_one_is_the_diff_id() {
        assert_eq!(chain_id(&["sha256:a"]).as_deref(), Some("sha256:a"));
        assert_eq!(chain_id::<&str>(&[]), None);
    }

    #[test]
    fn chain_of_two() {
        let want = sha256_digest(b"sha256:a sha256:b");
        assert_eq!(chain_id(&["sha256:a", "sha256:b"]), Some(want.clone()));
        assert_eq!(
            chain_ids(&["sha256:a", "sha256:b"]),
            vec!["sha256:a".to_owned(), want]
        );
    }
}
