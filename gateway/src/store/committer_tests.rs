//! The committer against a real index and data directory: duplicates are
//! decided within a site, and no site's write reads, replaces or moves
//! another site's copy of the same SOP Instance UID.

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::*;
use crate::store::attributes::IndexedAttributes;

const STUDY: &str = "1.2.826.0.1.3680043.10.1";
const SERIES: &str = "1.2.826.0.1.3680043.10.1.1";
const UID: &str = "1.2.826.0.1.3680043.10.1.1.1";

struct Fixture {
    _dir: tempfile::TempDir,
    layout: Layout,
    committer: Committer,
    staged: usize,
}

fn fixture(policy: DuplicatePolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    layout.create_dirs().unwrap();
    let conn = index::open(&layout.index_path()).unwrap();
    Fixture {
        committer: Committer {
            conn,
            layout: layout.clone(),
            policy,
            metrics: Metrics::new(),
        },
        layout,
        _dir: dir,
        staged: 0,
    }
}

fn row(site: &str, uid: &str) -> IndexRow {
    IndexRow {
        attributes: IndexedAttributes {
            sop_instance_uid: uid.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            study_instance_uid: STUDY.into(),
            series_instance_uid: SERIES.into(),
            ..Default::default()
        },
        site: site.into(),
        calling_ae: format!("{}-SCU", site.to_uppercase()),
        protocol: "stow".into(),
        received_at: crate::time::now_rfc3339(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        file_size: 0,
        sha256: String::new(),
        path: String::new(),
    }
}

impl Fixture {
    /// A temp file with `bytes`, as ingest leaves it for the committer.
    fn stage(&mut self, bytes: &[u8]) -> StagedFile {
        self.staged += 1;
        let path = self.layout.tmp_dir().join(format!("{}.part", self.staged));
        std::fs::write(&path, bytes).unwrap();
        StagedFile {
            path,
            sha256: hex::encode(Sha256::digest(bytes)),
            file_size: bytes.len() as u64,
            dataset_size: bytes.len() as u64,
            dataset_offset: 0,
            max_dataset_bytes: bytes.len() as u64,
        }
    }

    /// Commits one batch of (site, UID, bytes) and returns each answer.
    fn commit_batch(
        &mut self,
        instances: &[(&str, &str, &[u8])],
    ) -> Vec<Result<StoredInstance, StoreError>> {
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for (site, uid, bytes) in instances {
            let (reply, answer) = oneshot::channel();
            batch.push(CommitRequest {
                staged: self.stage(bytes),
                row: row(site, uid),
                received_at: Instant::now(),
                reply,
            });
            answers.push(answer);
        }
        self.committer.commit_batch(batch);
        answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("answered before commit_batch returns"))
            .collect()
    }

    fn commit(
        &mut self,
        site: &str,
        uid: &str,
        bytes: &[u8],
    ) -> Result<StoredInstance, StoreError> {
        self.commit_batch(&[(site, uid, bytes)]).remove(0)
    }

    /// Every column of `site`'s row for `uid`, and the bytes of its file.
    fn snapshot(&self, site: &str, uid: &str) -> (Vec<rusqlite::types::Value>, Vec<u8>) {
        let conn = &self.committer.conn;
        let mut stmt = conn
            .prepare("SELECT * FROM instances WHERE site = ?1 AND sop_instance_uid = ?2")
            .unwrap();
        let columns = stmt.column_count();
        let row = stmt
            .query_row([site, uid], |r| {
                (0..columns)
                    .map(|i| r.get(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        let path = index::find(conn, site, uid).unwrap().expect("indexed").path;
        (
            row,
            std::fs::read(self.layout.absolute(Path::new(&path))).unwrap(),
        )
    }

    fn audited(&self, action: &str) -> Vec<serde_json::Value> {
        let mut stmt = self
            .committer
            .conn
            .prepare("SELECT detail FROM audit WHERE action = ?1 ORDER BY rowid")
            .unwrap();
        stmt.query_map([action], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
            .collect()
    }

    fn superseded(&self) -> usize {
        std::fs::read_dir(self.layout.superseded_dir())
            .unwrap()
            .count()
    }
}

fn outcome(answer: Result<StoredInstance, StoreError>) -> CommitOutcome {
    answer.expect("stored").outcome
}

#[test]
fn another_sites_uid_is_stored_as_the_senders_own_copy_whatever_the_policy() {
    for policy in [DuplicatePolicy::Reject, DuplicatePolicy::Replace] {
        let mut f = fixture(policy);
        let north = f.commit("north", UID, b"north's object").unwrap();
        let before = f.snapshot("north", UID);

        // Identical bytes and different bytes, from two other sites.
        let south = f.commit("south", UID, b"north's object").unwrap();
        let east = f.commit("east", UID, b"east's object").unwrap();
        assert_eq!(south.outcome, CommitOutcome::Stored, "{policy:?}");
        assert_eq!(east.outcome, CommitOutcome::Stored, "{policy:?}");
        let paths = [&north.path, &south.path, &east.path];
        assert!(
            paths[0] != paths[1] && paths[1] != paths[2] && paths[0] != paths[2],
            "each site's copy has its own file: {paths:?}"
        );
        assert_eq!(f.snapshot("south", UID).1, b"north's object");
        assert_eq!(f.snapshot("east", UID).1, b"east's object");

        assert_eq!(
            f.snapshot("north", UID),
            before,
            "north's row and file unchanged"
        );
        assert_eq!(f.superseded(), 0);
        assert!(f.audited("store.replaced").is_empty());
        assert!(f.audited("store.duplicate_rejected").is_empty());
        assert_eq!(index::count(&f.committer.conn).unwrap(), 3);
    }
}

#[test]
fn one_batch_with_two_sites_copies_stores_both() {
    let mut f = fixture(DuplicatePolicy::Reject);
    let answers = f.commit_batch(&[
        ("north", UID, b"north's object"),
        ("south", UID, b"south's object"),
        ("north", UID, b"north's object"),
    ]);
    let outcomes: Vec<CommitOutcome> = answers.into_iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Stored,
            CommitOutcome::Stored,
            CommitOutcome::AlreadyStored
        ]
    );
    assert_eq!(f.snapshot("north", UID).1, b"north's object");
    assert_eq!(f.snapshot("south", UID).1, b"south's object");
}

#[test]
fn an_identical_resend_within_a_site_is_already_stored() {
    let mut f = fixture(DuplicatePolicy::Reject);
    let first = f.commit("north", UID, b"object").unwrap();
    let before = f.snapshot("north", UID);
    let again = f.commit("north", UID, b"object").unwrap();
    assert_eq!(again.outcome, CommitOutcome::AlreadyStored);
    assert_eq!(again.path, first.path);
    assert_eq!(f.snapshot("north", UID), before);
    assert_eq!(f.layout.tmp_dir().read_dir().unwrap().count(), 0);
}

#[test]
fn a_different_object_within_a_site_is_refused_and_audited_under_reject() {
    let mut f = fixture(DuplicatePolicy::Reject);
    f.commit("north", UID, b"first").unwrap();
    f.commit("south", UID, b"south's").unwrap();
    let before = f.snapshot("north", UID);
    let answer = f.commit("north", UID, b"second");
    assert!(
        matches!(answer, Err(StoreError::DuplicateConflict)),
        "{answer:?}"
    );
    assert_eq!(f.snapshot("north", UID), before);
    let audited = f.audited("store.duplicate_rejected");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["site"], "north");
    assert_eq!(f.snapshot("south", UID).1, b"south's");
}

#[test]
fn replace_within_a_site_supersedes_only_that_sites_copy() {
    let mut f = fixture(DuplicatePolicy::Replace);
    f.commit("north", UID, b"north's").unwrap();
    f.commit("south", UID, b"south v1").unwrap();
    let north_before = f.snapshot("north", UID);

    let replaced = f.commit("south", UID, b"south v2").unwrap();
    assert_eq!(replaced.outcome, CommitOutcome::Replaced);
    assert_eq!(f.snapshot("south", UID).1, b"south v2");
    assert_eq!(f.snapshot("north", UID), north_before, "north untouched");

    let audited = f.audited("store.replaced");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["site"], "south");
    let kept = audited[0]["superseded_path"].as_str().unwrap();
    assert_eq!(
        std::fs::read(f.layout.root().join(kept)).unwrap(),
        b"south v1"
    );
    assert_eq!(f.superseded(), 1);
}

#[test]
fn a_row_from_schema_1_keeps_its_path() {
    let mut f = fixture(DuplicatePolicy::Replace);
    // Where schema 1 put an instance: hashed from the UIDs alone.
    let legacy = "instances/0a/legacy/instance.dcm";
    let absolute = f.layout.absolute(Path::new(legacy));
    std::fs::create_dir_all(absolute.parent().unwrap()).unwrap();
    std::fs::write(&absolute, b"old").unwrap();
    let mut old = row("north", UID);
    old.path = legacy.into();
    old.sha256 = hex::encode(Sha256::digest(b"old"));
    old.file_size = 3;
    let tx = f.committer.conn.transaction().unwrap();
    index::upsert(&tx, &old).unwrap();
    tx.commit().unwrap();

    let same = f.commit("north", UID, b"old").unwrap();
    assert_eq!(same.outcome, CommitOutcome::AlreadyStored);
    assert_eq!(same.path, PathBuf::from(legacy));

    let replaced = f.commit("north", UID, b"new").unwrap();
    assert_eq!(replaced.outcome, CommitOutcome::Replaced);
    assert_ne!(
        replaced.path,
        PathBuf::from(legacy),
        "new files get site paths"
    );
    assert!(!absolute.exists(), "the old file went to superseded/");
    assert_eq!(f.snapshot("north", UID).1, b"new");
}
