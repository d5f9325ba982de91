//! Read access to the index for queries (QIDO-RS, WADO-RS, CLI).
//!
//! Each query opens its own read-only connection: WAL lets readers run
//! beside the committer, and opening a SQLite connection costs tens of
//! microseconds, less than a pool's bookkeeping would save here.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags};

/// Opens read-only connections to the index.
#[derive(Debug, Clone)]
pub struct IndexReader {
    path: PathBuf,
}

impl IndexReader {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Runs `query` on a fresh connection on the blocking pool.
    pub async fn run<T, F>(&self, query: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || query(&reader.connect()?))
            .await
            .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }
}
