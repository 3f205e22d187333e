//! Each image's last use by a task and whether this agent pulled it, by image name: what the
//! image collector orders its removals by and the `once` pull behaviour asks.

use std::time::{Duration, SystemTime};

use redb::{ReadableTable, TableDefinition};

use super::{Store, StoreError, skipped, wrap};

/// image name → [`ImageRecord`]: the last use in unix milliseconds (u64 little endian), then
/// one flag byte (1: pulled by this agent).
pub(super) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");

/// What the agent keeps of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRecord {
    pub(crate) name: String,
    /// When a task last used it (started from it, or stopped).
    pub(crate) last_used: SystemTime,
    /// This agent pulled it from its registry at least once.
    pub(crate) pulled: bool,
}

impl ImageRecord {
    fn encode(&self) -> [u8; 9] {
        let millis = self
            .last_used
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut out = [0u8; 9];
        out[..8].copy_from_slice(&millis.to_le_bytes());
        out[8] = u8::from(self.pulled);
        out
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            what: "image record",
            key: name.to_owned(),
            reason: reason.to_owned(),
        };
        let (millis, flag) = match bytes {
            [m @ .., f] if m.len() == 8 => (m, *f),
            _ => return Err(corrupt("not 9 bytes")),
        };
        let millis = u64::from_le_bytes(millis.try_into().map_err(|_| corrupt("not 9 bytes"))?);
        Ok(Self {
            name: name.to_owned(),
            last_used: SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
            pulled: flag == 1,
        })
    }
}

impl Store {
    /// Every image record (one that cannot be decoded is reported and skipped).
    pub(crate) fn image_records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let tx = self.begin_read()?;
        let t = wrap("open images", tx.open_table(IMAGES))?;
        let mut out = Vec::new();
        for entry in wrap("iterate images", t.iter())? {
            let (k, v) = wrap("read image", entry)?;
            match ImageRecord::decode(k.value(), v.value()) {
                Ok(r) => out.push(r),
                Err(error) => skipped("images", &error),
            }
        }
        Ok(out)
    }

    /// Writes these records, in one transaction.
    pub(crate) fn put_image_records(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open images", tx.open_table(IMAGES))?;
            for r in records {
                wrap("insert", t.insert(r.name.as_str(), r.encode().as_slice()))?;
            }
        }
        self.committed(tx.commit())
    }

    /// Drops an image's record (the image was removed).
    pub(crate) fn forget_image_record(&self, name: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut t = wrap("open images", tx.open_table(IMAGES))?;
            wrap("remove", t.remove(name))?;
        }
        self.committed(tx.commit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_a_garbled_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let a = ImageRecord {
            name: "r/a:1".into(),
            last_used: t,
            pulled: true,
        };
        store.put_image_records(std::slice::from_ref(&a)).unwrap();
        {
            let tx = store.begin_write().unwrap();
            tx.open_table(IMAGES)
                .unwrap()
                .insert("r/bad:1", [1u8, 2].as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(store.image_records().unwrap(), [a]);
        store.forget_image_record("r/a:1").unwrap();
        store.forget_image_record("r/bad:1").unwrap();
        assert!(store.image_records().unwrap().is_empty());
    }
}
