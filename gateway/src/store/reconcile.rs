//! Start-up repair after an unclean stop (power loss, `kill -9`).
//!
//! Invariant being restored: every index row points at a complete file, and
//! every file under `instances/` has an index row. Temp files of interrupted
//! receives were never acknowledged and are removed. A file renamed into
//! place whose index commit never happened was never acknowledged either; it
//! is moved to `orphans/` rather than deleted, and reported. A row whose
//! file is missing or has the wrong size is removed and audited; a file of
//! the wrong size then goes to `orphans/` too. Rows are keyed by (site,
//! SOP Instance UID): repairing one site's copy never touches another's.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::StoreError;
use super::index;
use super::layout::Layout;
use crate::audit::{self, AuditEntry};

/// What reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub temp_files_removed: usize,
    pub rows_without_file: usize,
    pub rows_with_wrong_size: usize,
    pub files_without_row: usize,
    pub indexed_instances: u64,
}

impl ReconcileReport {
    pub fn repaired_anything(&self) -> bool {
        self.rows_without_file + self.rows_with_wrong_size + self.files_without_row > 0
    }
}

pub(super) fn reconcile(
    conn: &mut Connection,
    layout: &Layout,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();

    for entry in std::fs::read_dir(layout.tmp_dir()).map_err(StoreError::Write)? {
        let path = entry.map_err(StoreError::Write)?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(StoreError::Write)?;
            report.temp_files_removed += 1;
        }
    }

    let rows = index::all_paths(conn).map_err(StoreError::Index)?;
    let mut known = std::collections::HashSet::with_capacity(rows.len());
    let tx = conn.transaction().map_err(StoreError::Index)?;
    for row in rows {
        let path = layout.absolute(Path::new(&row.path));
        let problem = match std::fs::metadata(&path) {
            Err(_) => {
                report.rows_without_file += 1;
                Some("file missing")
            }
            Ok(meta) if meta.len() != row.file_size => {
                report.rows_with_wrong_size += 1;
                Some("file size differs from the index")
            }
            Ok(_) => None,
        };
        match problem {
            None => {
                known.insert(path);
            }
            Some(problem) => {
                // Only this site's row: another site's copy of the UID has
                // its own file and is judged on its own.
                index::delete(&tx, &row.site, &row.sop_instance_uid).map_err(StoreError::Index)?;
                audit::append(
                    &tx,
                    &AuditEntry {
                        actor: "system".into(),
                        action: "store.reconcile_removed_row".into(),
                        detail: serde_json::json!({
                            "site": row.site,
                            "sop_instance_uid": row.sop_instance_uid,
                            "path": row.path,
                            "problem": problem,
                        }),
                    },
                )
                .map_err(StoreError::Index)?;
            }
        }
    }

    let orphans_dir = layout.root().join("orphans");
    for path in dicom_files(&layout.instances_dir()) {
        if known.contains(&path) {
            continue;
        }
        std::fs::create_dir_all(&orphans_dir).map_err(StoreError::Write)?;
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let target = orphans_dir.join(name);
        std::fs::rename(&path, &target).map_err(StoreError::Write)?;
        report.files_without_row += 1;
        audit::append(
            &tx,
            &AuditEntry {
                actor: "system".into(),
                action: "store.reconcile_orphan_file".into(),
                detail: serde_json::json!({
                    "from": path.strip_prefix(layout.root()).unwrap_or(&path).display().to_string(),
                    "to": target.strip_prefix(layout.root()).unwrap_or(&target).display().to_string(),
                }),
            },
        )
        .map_err(StoreError::Index)?;
    }
    tx.commit().map_err(StoreError::Index)?;
    report.indexed_instances = index::count(conn).map_err(StoreError::Index)?;
    Ok(report)
}

/// Every `*.dcm` under `dir`, recursively.
fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "dcm") {
                found.push(path);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attributes::IndexedAttributes;
    use crate::store::index::IndexRow;

    fn row(site: &str, uid: &str, path: &str, size: u64) -> IndexRow {
        IndexRow {
            attributes: IndexedAttributes {
                sop_instance_uid: uid.into(),
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                study_instance_uid: "1.2.3".into(),
                series_instance_uid: "1.2.3.4".into(),
                ..Default::default()
            },
            site: site.into(),
            calling_ae: "DEMO-SCU".into(),
            protocol: "dimse".into(),
            received_at: "2026-11-21T00:00:00Z".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            file_size: size,
            sha256: "00".into(),
            path: path.into(),
        }
    }

    #[test]
    fn repairs_every_kind_of_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let mut conn = index::open(&layout.index_path()).unwrap();

        // A good instance, a row whose file is gone, a row whose file is truncated.
        // Site `other` holds a good copy of the UID whose `demo` copy is truncated.
        let good = Layout::instance_relative_path("demo", "1.2.3", "1.1");
        let short = Layout::instance_relative_path("demo", "1.2.3", "1.3");
        let other = Layout::instance_relative_path("other", "1.2.3", "1.3");
        for (rel, bytes) in [(&good, 10usize), (&short, 4), (&other, 10)] {
            let abs = layout.absolute(rel);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, vec![0u8; bytes]).unwrap();
        }
        // An unindexed file (renamed, never committed) and a temp file.
        let orphan = layout.absolute(&Layout::instance_relative_path("demo", "1.2.3", "1.9"));
        std::fs::write(&orphan, b"orphan").unwrap();
        std::fs::write(layout.tmp_dir().join("1-1.part"), b"half").unwrap();

        let tx = conn.transaction().unwrap();
        index::upsert(&tx, &row("demo", "1.1", &good.to_string_lossy(), 10)).unwrap();
        index::upsert(&tx, &row("demo", "1.2", "instances/00/gone.dcm", 10)).unwrap();
        index::upsert(&tx, &row("demo", "1.3", &short.to_string_lossy(), 10)).unwrap();
        index::upsert(&tx, &row("other", "1.3", &other.to_string_lossy(), 10)).unwrap();
        tx.commit().unwrap();

        let report = reconcile(&mut conn, &layout).unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                temp_files_removed: 1,
                rows_without_file: 1,
                rows_with_wrong_size: 1,
                // The truncated file is quarantined with the orphan.
                files_without_row: 2,
                indexed_instances: 2,
            }
        );
        assert!(
            index::find(&conn, "other", "1.3").unwrap().is_some(),
            "the other site's copy of a removed UID stays"
        );
        assert!(index::find(&conn, "demo", "1.3").unwrap().is_none());
        assert!(layout.absolute(&other).exists());
        assert!(!orphan.exists());
        assert_eq!(layout.root().join("orphans").read_dir().unwrap().count(), 2);
        assert_eq!(
            crate::audit::verify(&conn).unwrap(),
            Ok(4),
            "every repair audited"
        );

        // A second pass finds nothing to do.
        let again = reconcile(&mut conn, &layout).unwrap();
        assert!(!again.repaired_anything() && again.temp_files_removed == 0);
    }
}
