//! Opening the agent's store, and what happens when its file cannot be read: it is moved aside
//! with a timestamp and an empty store is made in its place, marked as rebuilt.

use std::path::Path;

use redb::Database;

use super::{
    ASSIGNMENTS, COUNTERS, ENDPOINT_IDS, KEY_NEXT_SEQ, KEY_REBUILT, META, OUTBOX, RESUMES, STATES,
    Store, StoreError, db_err, images::IMAGES, wrap,
};

/// Why a database file could not be opened: it is not readable as one, or something else.
enum Failure {
    Unreadable(String),
    Other(StoreError),
}

/// The file is not a database redb can read (as opposed to one it cannot reach or write).
fn unreadable(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::RepairAborted | redb::DatabaseError::UpgradeRequired(_) => true,
        redb::DatabaseError::Storage(s) => corrupt_storage(s),
        _ => false,
    }
}

fn corrupt_storage(e: &redb::StorageError) -> bool {
    match e {
        redb::StorageError::Corrupted(_) => true,
        redb::StorageError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

fn corrupt(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_) | redb::Error::TableTypeMismatch { .. } => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

impl Store {
    /// Opens (or creates) `<data_dir>/agent.redb`. A file that cannot be read as a database
    /// (truncated, garbled, of an unknown format) is moved aside as
    /// `agent.redb.corrupt-<UTC time>` and an empty store is made in its place, marked as
    /// rebuilt: the agent starts, and the scheduler's full view reconciles its tasks. Any other
    /// failure (permissions, another agent holding the file, a full disk) is returned.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("agent.redb");
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        match Self::open_file(&path) {
            Ok(store) => Ok(store),
            Err(Failure::Other(error)) => Err(error),
            Err(Failure::Unreadable(reason)) => {
                let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
                let aside = data_dir.join(format!("agent.redb.corrupt-{stamp}"));
                tracing::error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "the agent database cannot be read; it is moved aside and the agent starts with an empty one (the scheduler's view reconciles the tasks, the orphan sweep removes what no task owns)"
                );
                std::fs::rename(&path, &aside).map_err(|e| StoreError::Open {
                    path: path.clone(),
                    reason: format!("cannot move the unreadable database aside: {e}"),
                })?;
                let store = Self::open_file(&path).map_err(|f| match f {
                    Failure::Other(e) => e,
                    Failure::Unreadable(reason) => StoreError::Open {
                        path: path.clone(),
                        reason,
                    },
                })?;
                store.set_rebuilt(&format!("moved aside to {}", aside.display()))?;
                Ok(store)
            }
        }
    }

    fn open_file(path: &Path) -> Result<Self, Failure> {
        let fresh = !path.exists();
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        // redb's debug builds assert on some corruptions instead of returning them: a file
        // that makes it panic is unreadable all the same.
        let created = std::panic::catch_unwind(|| Database::create(path))
            .map_err(|_| Failure::Unreadable("the database library panicked reading it".into()))?;
        let db = created.map_err(|e| match unreadable(&e) {
            true => Failure::Unreadable(e.to_string()),
            false => Failure::Other(open_err(e.to_string())),
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Task definitions carry their secrets: the store is the agent's alone.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Failure::Other(open_err(e.to_string())))?;
        }
        // Create every table so reads never meet a missing one.
        let tables = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                tx.open_table(META)?;
                tx.open_table(COUNTERS)?;
                tx.open_table(ASSIGNMENTS)?;
                tx.open_table(STATES)?;
                tx.open_table(OUTBOX)?;
                tx.open_table(RESUMES)?;
                tx.open_table(ENDPOINT_IDS)?;
                tx.open_table(IMAGES)?;
                if fresh {
                    let mut meta = tx.open_table(META)?;
                    meta.insert(KEY_REBUILT, "created")?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(tables)) {
            Ok(Ok(())) => {
                let store = Self::new(db, path.to_path_buf());
                let last = store.counter(KEY_NEXT_SEQ).map_err(Failure::Other)?;
                store.unsent_lock().all_sent_up_to(last);
                Ok(store)
            }
            Ok(Err(e)) if corrupt(&e) => Err(Failure::Unreadable(e.to_string())),
            Ok(Err(e)) => Err(Failure::Other(db_err("create tables")(e))),
            Err(_) => Err(Failure::Unreadable(
                "the database library panicked reading it".into(),
            )),
        }
    }

    fn set_rebuilt(&self, why: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut meta = wrap("open meta", tx.open_table(META))?;
            wrap("insert", meta.insert(KEY_REBUILT, why))?;
        }
        self.committed(tx.commit())
    }
}
