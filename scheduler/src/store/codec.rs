//! Reading and writing records: each value is a prost message (the proto type itself, or one
//! of `records`), and a value that does not decode is a `Corrupt` error naming table and key.

use berth_proto::v1 as pb;
use redb::ReadableTable;

use super::StoreError;

pub(super) fn decode<M: prost::Message + Default>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_owned(),
        source: e.into(),
    })
}

pub(super) fn get_rec<M: prost::Message + Default>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    key: &str,
) -> Result<Option<M>, StoreError> {
    match table.get(key)? {
        Some(v) => decode(name, key, v.value()).map(Some),
        None => Ok(None),
    }
}

pub(super) fn all_recs<M: prost::Message + Default>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
) -> Result<Vec<M>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push(decode(name, k.value(), v.value())?);
    }
    Ok(out)
}

pub(super) fn put_rec(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    v: &impl prost::Message,
) -> Result<(), StoreError> {
    table.insert(key, v.encode_to_vec().as_slice())?;
    Ok(())
}

pub(super) fn load_task(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<pb::Task>, StoreError> {
    get_rec(table, "tasks", id)
}

pub(super) fn load_tasks(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<pb::Task>, StoreError> {
    all_recs(table, "tasks")
}

pub(super) fn put_task(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    task: &pb::Task,
) -> Result<(), StoreError> {
    put_rec(table, &task.task_id, task)
}
