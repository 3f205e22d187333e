//! How every call reaches the database: transactions begun through one place, which injects
//! the faults tests ask for ([`WriteFaults`]) and notes an I/O failure, after which redb fails
//! every call until the file is opened again ([`Store::reopen_if_failed`], by the agent's
//! recovery from a full disk).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::{Store, StoreError, db_err};

/// Faults injected into the store's writes: while set, every write transaction fails with the
/// given operating system error, as a full disk makes it fail. The seam the degraded mode's
/// unit tests drive; production never sets it.
#[derive(Debug, Default)]
pub(crate) struct WriteFaults {
    /// The errno writes fail with; 0: none.
    errno: AtomicI32,
    /// Whether a write failed since the last [`WriteFaults::take_failed`].
    failed: AtomicBool,
}

impl WriteFaults {
    /// Every write fails with `errno` from now on (`libc`'s numbering: 28 is ENOSPC).
    #[cfg(test)]
    pub(crate) fn fail_with(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
    }

    /// Writes succeed again.
    #[cfg(test)]
    pub(crate) fn heal(&self) {
        self.errno.store(0, Ordering::SeqCst);
    }

    /// Whether a write failed by injection since the last call.
    #[cfg(test)]
    pub(crate) fn take_failed(&self) -> bool {
        self.failed.swap(false, Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.errno.load(Ordering::SeqCst) {
            0 => Ok(()),
            errno => {
                self.failed.store(true, Ordering::SeqCst);
                let io = std::io::Error::from_raw_os_error(errno);
                Err(db_err("begin")(redb::Error::Io(io)))
            }
        }
    }
}

impl Store {
    pub(super) fn new(db: Database, path: std::path::PathBuf) -> Self {
        Self {
            db: std::sync::RwLock::new(Some(db)),
            path,
            failed: AtomicBool::new(false),
            faults: WriteFaults::default(),
            unsent: std::sync::Mutex::default(),
            #[cfg(test)]
            recorded: std::sync::Mutex::default(),
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The faults injected into writes (tests).
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &WriteFaults {
        &self.faults
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let db = guard.as_ref().ok_or_else(|| StoreError::Db {
            op: "begin",
            reason: "the database is being opened again".into(),
            errno: None,
        })?;
        let result = f(db);
        if let Err(error) = &result
            && error.latched()
        {
            self.failed.store(true, Ordering::SeqCst);
        }
        result
    }

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.faults.check()?;
        self.with_db(|db| db.begin_write().map_err(|e| db_err("begin")(e.into())))
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.with_db(|db| db.begin_read().map_err(|e| db_err("begin read")(e.into())))
    }

    /// Notes the outcome of a commit (an I/O failure latches redb).
    pub(super) fn committed(&self, r: Result<(), redb::CommitError>) -> Result<(), StoreError> {
        let result = r.map_err(|e| db_err("commit")(e.into()));
        if let Err(error) = &result
            && error.latched()
        {
            self.failed.store(true, Ordering::SeqCst);
        }
        result
    }

    /// Opens the database again when a call failed on an I/O error since it was opened (redb
    /// fails every later call until then); nothing otherwise. The agent's recovery from a full
    /// disk calls it before it writes what it could not.
    pub(crate) fn reopen_if_failed(&self) -> Result<(), StoreError> {
        // A write that failed inside its transaction latches redb too: a read tells.
        let reads = self
            .begin_read()
            .and_then(|tx| super::wrap("open meta", tx.open_table(super::META)).map(drop));
        if !self.failed.load(Ordering::SeqCst) && reads.is_ok() {
            return Ok(());
        }
        let mut guard = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The old handle goes first: the file takes one holder at a time.
        drop(guard.take());
        let opened = Database::create(&self.path).map_err(|e| StoreError::Open {
            path: self.path.clone(),
            reason: e.to_string(),
        });
        match opened {
            Ok(db) => {
                *guard = Some(db);
                self.failed.store(false, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "the agent database was opened again after an I/O failure");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}
