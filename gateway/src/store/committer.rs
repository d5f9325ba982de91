//! Group commit: the single writer that makes received instances durable.
//!
//! Each association fsyncs its own temp file in parallel; this thread then
//! takes every commit request waiting at that moment, renames the files into
//! place, fsyncs each touched directory once and commits all index rows in
//! one SQLite transaction. Only then does any request in the batch get its
//! answer. Under concurrency the directory and WAL fsyncs are shared by the
//! whole batch; with one association a batch is one instance and nothing is
//! lost by waiting.
//!
//! Duplicates are decided within the sender's site: an instance is
//! identified by (site, SOP Instance UID), so a UID another site holds is a
//! new instance here, stored as the sender's own copy beside the other
//! site's, which is neither read nor touched. That is what makes the answer
//! the same whether or not the UID exists elsewhere, and what the sender is
//! told is stored is always what it can then retrieve.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::index::{self, ExistingInstance, IndexRow};
use super::layout::Layout;
use super::staging::StagedFile;
use super::{CommitOutcome, StoreError, StoredInstance};
use crate::audit::{self, AuditEntry};
use crate::config::DuplicatePolicy;
use crate::telemetry::Metrics;

/// Most requests one transaction takes; bounds the latency a batch adds.
const MAX_BATCH: usize = 64;

/// What identifies a stored instance: (site, SOP Instance UID).
type InstanceKey = (String, String);

pub(super) struct CommitRequest {
    pub staged: StagedFile,
    /// Index row without `path`, `sha256` and `file_size`, which the
    /// committer fills in.
    pub row: IndexRow,
    pub received_at: Instant,
    pub reply: oneshot::Sender<Result<StoredInstance, StoreError>>,
}

pub(super) struct Committer {
    pub conn: Connection,
    pub layout: Layout,
    pub policy: DuplicatePolicy,
    pub metrics: Metrics,
}

/// What one request will become once the transaction commits.
enum Plan {
    Insert {
        row: Box<IndexRow>,
        outcome: CommitOutcome,
        audit: Option<AuditEntry>,
    },
    Answer(Result<StoredInstance, StoreError>),
}

impl Committer {
    /// Runs until every sender is dropped.
    pub fn run(mut self, mut rx: mpsc::Receiver<CommitRequest>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.metrics
                .store_batch_instances
                .with_label_values(&[] as &[&str])
                .observe(batch.len() as f64);
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<CommitRequest>) {
        let mut dirs = BTreeSet::new();
        // Instances placed earlier in this batch, which the index does not
        // show yet, by (site, SOP Instance UID).
        let mut placed: HashMap<InstanceKey, ExistingInstance> = HashMap::new();
        let mut plans = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch {
            let plan = self.place(request.staged, request.row, &mut placed, &mut dirs);
            plans.push(plan);
            replies.push((request.reply, request.received_at));
        }

        // The directory fsyncs and the index commit (a WAL fsync) run at the
        // same time: the file systems we run on fold concurrent fsyncs into one
        // journal commit. Nobody is answered before both have finished, and a
        // crash between them leaves at most an index row whose file is not
        // durable, which start-up reconciliation removes (it was never
        // acknowledged).
        let (synced, committed) = std::thread::scope(|scope| {
            let dir_sync = scope.spawn(|| dirs.iter().try_for_each(|dir| fsync_dir(dir)));
            let committed = self.write_rows(&plans);
            let synced = dir_sync
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("directory fsync thread panicked")));
            (synced, committed)
        });
        let committed = match (synced, committed) {
            (Ok(()), committed) => committed,
            (Err(e), Ok(())) => {
                // The rows are committed but the renames may not be durable:
                // take the rows back so the index never claims more than the disk.
                self.unindex(&plans);
                Err(StoreError::Write(e))
            }
            (Err(_), Err(e)) => Err(e),
        };

        for (plan, (reply, received_at)) in plans.into_iter().zip(replies) {
            let answer = match plan {
                Plan::Answer(answer) => answer,
                Plan::Insert { row, outcome, .. } => match &committed {
                    Ok(()) => {
                        self.metrics
                            .store_commit_seconds
                            .with_label_values(&[row.site.as_str()])
                            .observe(received_at.elapsed().as_secs_f64());
                        Ok(StoredInstance {
                            outcome,
                            path: PathBuf::from(&row.path),
                            sha256: row.sha256.clone(),
                            file_size: row.file_size,
                        })
                    }
                    Err(e) => Err(StoreError::Commit(e.to_string())),
                },
            };
            // The receiver may have gone (association aborted); nothing to do then.
            let _ = reply.send(answer);
        }
    }

    /// Best-effort removal of the rows of a batch whose directory sync failed.
    fn unindex(&mut self, plans: &[Plan]) {
        let removed = self.conn.transaction().and_then(|tx| {
            for plan in plans {
                if let Plan::Insert { row, .. } = plan {
                    index::delete(&tx, &row.site, &row.attributes.sop_instance_uid)?;
                }
            }
            tx.commit()
        });
        if let Err(e) = removed {
            tracing::error!(error = %e, "cannot take back index rows after a failed directory sync; start-up reconciliation will");
        }
    }

    fn write_rows(&mut self, plans: &[Plan]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::Index)?;
        for plan in plans {
            if let Plan::Insert { row, audit, .. } = plan {
                index::upsert(&tx, row).map_err(StoreError::Index)?;
                // Series assembly learns of the arrival in the same
                // transaction, so it is exactly as durable as the instance.
                if row.protocol != super::GENERATED_PROTOCOL {
                    super::activity::record_arrival(&tx, row).map_err(StoreError::Index)?;
                }
                if let Some(entry) = audit {
                    audit::append(&tx, entry).map_err(StoreError::Index)?;
                }
            }
        }
        tx.commit().map_err(StoreError::Index)
    }

    /// Puts one staged file in its place (or decides it need not be) and
    /// records which directories now need an fsync.
    fn place(
        &mut self,
        staged: StagedFile,
        mut row: IndexRow,
        placed: &mut HashMap<InstanceKey, ExistingInstance>,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Plan {
        let sop_uid = row.attributes.sop_instance_uid.clone();
        let key: InstanceKey = (row.site.clone(), sop_uid.clone());
        let relative =
            Layout::instance_relative_path(&row.site, &row.attributes.study_instance_uid, &sop_uid);
        row.path = relative.to_string_lossy().into_owned();
        row.sha256 = staged.sha256.clone();
        row.file_size = staged.file_size;

        // Only the sender's own site is looked at: another site's copy of
        // this UID is not a duplicate (see the module docs).
        let existing = match placed.get(&key) {
            Some(e) => Some(e.clone()),
            None => match index::find(&self.conn, &row.site, &sop_uid) {
                Ok(found) => found,
                Err(e) => {
                    remove_quietly(&staged.path);
                    return Plan::Answer(Err(StoreError::Index(e)));
                }
            },
        };

        let mut outcome = CommitOutcome::Stored;
        let mut audit_entry = None;
        if let Some(existing) = existing {
            if existing.sha256 == staged.sha256 {
                remove_quietly(&staged.path);
                return Plan::Answer(Ok(StoredInstance {
                    outcome: CommitOutcome::AlreadyStored,
                    path: PathBuf::from(existing.path),
                    sha256: existing.sha256,
                    file_size: existing.file_size,
                }));
            }
            let detail = serde_json::json!({
                "sop_instance_uid": sop_uid,
                "study_instance_uid": row.attributes.study_instance_uid,
                "site": row.site,
                "calling_ae": row.calling_ae,
                "protocol": row.protocol,
                "stored_sha256": existing.sha256,
                "received_sha256": staged.sha256,
            });
            match self.policy {
                DuplicatePolicy::Reject => {
                    remove_quietly(&staged.path);
                    // Rejections are audited in their own transaction: no row changes.
                    let entry = AuditEntry {
                        actor: format!("{}:{}/{}", row.protocol, row.site, row.calling_ae),
                        action: "store.duplicate_rejected".into(),
                        detail,
                    };
                    if let Err(e) = self.append_audit(&entry) {
                        tracing::error!(error = %e, "cannot audit a rejected duplicate");
                    }
                    return Plan::Answer(Err(StoreError::DuplicateConflict));
                }
                DuplicatePolicy::Replace => {
                    let old = self.layout.absolute(Path::new(&existing.path));
                    let keep = self.layout.superseded_dir().join(format!(
                        "{}.{}.dcm",
                        old.file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or("instance"),
                        crate::time::unix_nanos()
                    ));
                    if let Err(e) = std::fs::rename(&old, &keep) {
                        remove_quietly(&staged.path);
                        return Plan::Answer(Err(StoreError::Write(e)));
                    }
                    dirs.insert(self.layout.superseded_dir());
                    dirs.extend(old.parent().map(Path::to_path_buf));
                    outcome = CommitOutcome::Replaced;
                    let mut detail = detail;
                    detail["superseded_path"] = serde_json::Value::String(
                        keep.strip_prefix(self.layout.root())
                            .unwrap_or(&keep)
                            .display()
                            .to_string(),
                    );
                    audit_entry = Some(AuditEntry {
                        actor: format!("{}:{}/{}", row.protocol, row.site, row.calling_ae),
                        action: "store.replaced".into(),
                        detail,
                    });
                }
            }
        }

        let target = self.layout.absolute(&relative);
        if let Err(e) = self.rename_into_place(&staged.path, &target, dirs) {
            remove_quietly(&staged.path);
            return Plan::Answer(Err(StoreError::Write(e)));
        }
        placed.insert(
            key,
            ExistingInstance {
                sha256: row.sha256.clone(),
                path: row.path.clone(),
                file_size: row.file_size,
            },
        );
        Plan::Insert {
            row: Box::new(row),
            outcome,
            audit: audit_entry,
        }
    }

    fn rename_into_place(
        &self,
        from: &Path,
        to: &Path,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> std::io::Result<()> {
        let parent = to
            .parent()
            .ok_or_else(|| std::io::Error::other("instance path has no parent"))?;
        // A directory we create must itself be made durable in its parent.
        let mut missing = parent;
        while !missing.exists() {
            dirs.extend(missing.parent().map(Path::to_path_buf));
            match missing.parent() {
                Some(up) => missing = up,
                None => break,
            }
        }
        std::fs::create_dir_all(parent)?;
        std::fs::rename(from, to)?;
        dirs.insert(parent.to_path_buf());
        Ok(())
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        audit::append(&tx, entry)?;
        tx.commit()
    }
}

/// Makes the directory's entries (renames, new files) durable.
pub(super) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(error = %e, "cannot remove temp file");
    }
}

#[cfg(test)]
#[path = "committer_tests.rs"]
mod tests;
