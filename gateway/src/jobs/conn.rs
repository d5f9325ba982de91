//! The runners' handle on the index database: each call opens a fresh
//! connection on the blocking pool, so a job step never holds a connection
//! across an await and never blocks the async runtime.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;

/// How long a statement waits for another writer before it is an error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the index database is; cheap to clone.
#[derive(Clone)]
pub(super) struct IndexDb {
    path: PathBuf,
}

impl IndexDb {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Runs `f` on a fresh connection to the index, off the async runtime.
    pub async fn run<T, F>(&self, f: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            f(&mut conn)
        })
        .await
        .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }
}
