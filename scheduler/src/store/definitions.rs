//! Task definitions: registered as their family's next revision, found by "family" (the latest)
//! or "family:revision".

use berth_proto::v1 as pb;
use prost::Message as _;
use redb::ReadableTable;

use super::codec::decode;
use super::{Store, StoreError, TASK_DEFS, now};

/// Splits "family" or "family:rev".
pub(super) fn parse_reference(reference: &str) -> Result<(&str, Option<u32>), StoreError> {
    let bad = || StoreError::InvalidTaskDefinitionRef {
        reference: reference.to_owned(),
    };
    match reference.rsplit_once(':') {
        Some((family, rev)) => {
            let rev: u32 = rev.parse().map_err(|_| bad())?;
            if family.is_empty() || rev == 0 {
                return Err(bad());
            }
            Ok((family, Some(rev)))
        }
        None if reference.is_empty() => Err(bad()),
        None => Ok((reference, None)),
    }
}

fn latest_revision(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    family: &str,
) -> Result<Option<u32>, StoreError> {
    let last = table
        .range((family, 0u32)..=(family, u32::MAX))?
        .next_back();
    match last {
        Some(item) => {
            let (k, _) = item?;
            Ok(Some(k.value().1))
        }
        None => Ok(None),
    }
}

pub(super) fn load_definition(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    reference: &str,
) -> Result<pb::TaskDefinition, StoreError> {
    let (family, rev) = parse_reference(reference)?;
    let latest = latest_revision(table, family)?;
    let not_found = || StoreError::TaskDefinitionNotFound {
        reference: reference.to_owned(),
        family: family.to_owned(),
        latest,
    };
    let rev = match (rev, latest) {
        (Some(r), _) => r,
        (None, Some(l)) => l,
        (None, None) => return Err(not_found()),
    };
    let key = format!("{family}:{rev}");
    match table.get((family, rev))? {
        Some(v) => decode("task_definitions", &key, v.value()),
        None => Err(not_found()),
    }
}

impl Store {
    /// Stores `def` as its family's next revision, stamped with the registration time.
    pub fn register_task_definition(
        &self,
        mut def: pb::TaskDefinition,
    ) -> Result<pb::TaskDefinition, StoreError> {
        if def.family.is_empty() {
            return Err(StoreError::EmptyFamily);
        }
        self.write(|txn| {
            let mut defs = txn.open_table(TASK_DEFS)?;
            let rev = latest_revision(&defs, &def.family)?
                .unwrap_or(0)
                .saturating_add(1);
            def.revision = rev;
            def.registered_at = Some(now());
            defs.insert((def.family.as_str(), rev), def.encode_to_vec().as_slice())?;
            tracing::info!(family = %def.family, revision = rev, "task definition registered");
            Ok(def)
        })
    }

    /// "family" (the latest revision) or "family:revision".
    pub fn task_definition(&self, reference: &str) -> Result<pb::TaskDefinition, StoreError> {
        self.read(|txn| load_definition(&txn.open_table(TASK_DEFS)?, reference))
    }

    /// "family:revision" of every definition (of one family when given), oldest first.
    pub fn list_task_definitions(&self, family: Option<&str>) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let defs = txn.open_table(TASK_DEFS)?;
            let mut out = Vec::new();
            let iter = match family {
                Some(f) => defs.range((f, 0u32)..=(f, u32::MAX))?,
                None => defs.iter()?,
            };
            for item in iter {
                let (k, v) = item?;
                let (fam, rev) = k.value();
                let key = format!("{fam}:{rev}");
                let def: pb::TaskDefinition = decode("task_definitions", &key, v.value())?;
                let at = def.registered_at.map(|t| (t.seconds, t.nanos));
                out.push((at, key));
            }
            out.sort();
            Ok(out.into_iter().map(|(_, k)| k).collect())
        })
    }
}
