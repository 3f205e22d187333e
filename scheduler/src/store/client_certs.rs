//! The client certificates the CA issued (table `client_certs`, keyed by serial number in
//! hex): who holds each, its role, cluster scope and lifetime, and when it was revoked. The
//! key is the client's and never reaches the scheduler, so nothing secret is stored here. A
//! revoked certificate stays listed until it expires, so that its refusals keep naming it.

use std::time::SystemTime;

use berth_proto::v1 as pb;
use prost_types::Timestamp;

use super::codec::{all_recs, get_rec, put_rec};
use super::{CLIENT_CERTS, Store, StoreError};

impl Store {
    /// Records a certificate just issued.
    pub fn record_client_certificate(
        &self,
        cert: &pb::ClientCertificate,
    ) -> Result<(), StoreError> {
        self.write(|txn| put_rec(&mut txn.open_table(CLIENT_CERTS)?, &cert.serial, cert))?;
        tracing::info!(serial = %cert.serial, client = %cert.name, role = %cert.role, "client certificate recorded");
        Ok(())
    }

    /// Every client certificate issued, oldest first; those expired for more than a day are
    /// forgotten (a CA refuses them anyway), so the list does not grow without end.
    pub fn list_client_certificates(
        &self,
        now: SystemTime,
    ) -> Result<Vec<pb::ClientCertificate>, StoreError> {
        let horizon = Timestamp::from(now).seconds - 24 * 3600;
        let mut certs: Vec<pb::ClientCertificate> =
            self.read(|txn| all_recs(&txn.open_table(CLIENT_CERTS)?, "client_certs"))?;
        certs.retain(|c| c.expires_at.is_none_or(|e| e.seconds > horizon));
        certs.sort_by_key(|c| c.created_at.map(|t| (t.seconds, t.nanos)));
        Ok(certs)
    }

    /// Revokes the certificate with `serial` (hex, any case, colons allowed); revoking it
    /// again keeps the first time. The certificate as it is now recorded.
    pub fn revoke_client_certificate(
        &self,
        serial: &str,
        now: SystemTime,
    ) -> Result<pb::ClientCertificate, StoreError> {
        let serial = normalize_serial(serial);
        self.write(|txn| {
            let mut table = txn.open_table(CLIENT_CERTS)?;
            let Some(mut cert) = get_rec::<pb::ClientCertificate>(&table, "client_certs", &serial)?
            else {
                return Err(StoreError::ClientCertificateNotFound { serial });
            };
            if cert.revoked_at.is_none() {
                cert.revoked_at = Some(Timestamp::from(now));
                put_rec(&mut table, &serial, &cert)?;
                tracing::info!(%serial, client = %cert.name, "client certificate revoked");
            }
            Ok(cert)
        })
    }

    /// The certificate with `serial` when it was revoked; None while it is honoured (also
    /// for one the scheduler has no record of: issued before records were kept).
    pub fn revoked_client_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<pb::ClientCertificate>, StoreError> {
        let cert: Option<pb::ClientCertificate> =
            self.read(|txn| get_rec(&txn.open_table(CLIENT_CERTS)?, "client_certs", serial))?;
        Ok(cert.filter(|c| c.revoked_at.is_some()))
    }
}

/// A serial number as the scheduler keys it: lowercase hex without separators.
pub fn normalize_serial(serial: &str) -> String {
    serial
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cert(serial: &str, now: SystemTime, lifetime: Duration) -> pb::ClientCertificate {
        pb::ClientCertificate {
            serial: serial.into(),
            name: "ci@ops".into(),
            role: "operator".into(),
            cluster: String::new(),
            created_at: Some(Timestamp::from(now)),
            expires_at: Some(Timestamp::from(now + lifetime)),
            revoked_at: None,
        }
    }

    #[test]
    fn a_revoked_certificate_is_known_as_revoked_and_listed_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = SystemTime::now();
        store
            .record_client_certificate(&cert("0a1b", now, Duration::from_secs(3600)))
            .unwrap();
        store
            .record_client_certificate(&cert("0c2d", now, Duration::from_secs(3600)))
            .unwrap();
        assert_eq!(store.revoked_client_certificate("0a1b").unwrap(), None);

        let revoked = store.revoke_client_certificate("0A:1B", now).unwrap();
        assert_eq!(revoked.serial, "0a1b");
        assert!(revoked.revoked_at.is_some());
        assert!(store.revoked_client_certificate("0a1b").unwrap().is_some());
        assert_eq!(store.revoked_client_certificate("0c2d").unwrap(), None);
        // Again: the first revocation time stays.
        let later = now + Duration::from_secs(60);
        let again = store.revoke_client_certificate("0a1b", later).unwrap();
        assert_eq!(again.revoked_at, revoked.revoked_at);

        let listed = store.list_client_certificates(now).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(
            listed
                .iter()
                .any(|c| c.serial == "0a1b" && c.revoked_at.is_some())
        );
    }

    #[test]
    fn an_unknown_serial_is_not_found_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.contents().unwrap();
        let err = store
            .revoke_client_certificate("ff", SystemTime::now())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no client certificate with serial ff"),
            "{err}"
        );
        assert_eq!(store.contents().unwrap(), before);
    }

    #[test]
    fn long_expired_certificates_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let old = now - Duration::from_secs(10 * 24 * 3600);
        store
            .record_client_certificate(&cert("01", old, Duration::from_secs(3600)))
            .unwrap();
        store
            .record_client_certificate(&cert("02", now, Duration::from_secs(3600)))
            .unwrap();
        let listed = store.list_client_certificates(now).unwrap();
        assert_eq!(
            listed.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(),
            ["02"]
        );
    }
}
