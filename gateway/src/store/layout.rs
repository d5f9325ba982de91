//! Where things live under the data directory.
//!
//! Instance paths are derived from SHA-256 hashes of validated UIDs, never
//! from the UIDs themselves, so no peer-supplied byte ever reaches a path.
//! The hashes cover the site too: an instance is identified by (site, SOP
//! Instance UID), and two sites' copies of one UID never share a file.
//! Rows written before that (index schema 1) keep the path they recorded.
//!
//! ```text
//! data/
//!   index.sqlite            index and audit trail (WAL mode)
//!   tmp/                    receives in progress; emptied at start-up
//!   instances/ab/<site+study>/<site+instance>.dcm
//!   superseded/<instance>.<unix-nanos>.dcm   replaced objects (policy "replace")
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The data directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.sqlite")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    pub fn superseded_dir(&self) -> PathBuf {
        self.root.join("superseded")
    }

    /// Path of `site`'s copy of an instance, relative to the data directory
    /// (what the index stores).
    pub fn instance_relative_path(site: &str, study_uid: &str, sop_instance_uid: &str) -> PathBuf {
        let study = short_hash(site, study_uid);
        let instance = short_hash(site, sop_instance_uid);
        PathBuf::from("instances")
            .join(&study[..2])
            .join(study)
            .join(format!("{instance}.dcm"))
    }

    pub fn absolute(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }

    /// Creates the directories the store writes into.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [self.tmp_dir(), self.instances_dir(), self.superseded_dir()] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

/// First 128 bits of SHA-256 of `site/uid`, hex: unique enough for paths,
/// short enough to read. The separator cannot occur in a site name
/// (`config::validate::check_label_name`) or a UID, so no two pairs hash
/// the same input.
fn short_hash(site: &str, uid: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(site.as_bytes());
    hasher.update(b"/");
    hasher.update(uid.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_are_hashes_not_uids() {
        let p = Layout::instance_relative_path("north", "1.2.3", "1.2.3.4");
        let s = p.to_string_lossy();
        assert!(s.starts_with("instances/"));
        assert!(!s.contains("1.2.3") && !s.contains("north"));
        assert!(s.ends_with(".dcm"));
        assert_eq!(
            p,
            Layout::instance_relative_path("north", "1.2.3", "1.2.3.4")
        );
        assert_ne!(
            p,
            Layout::instance_relative_path("north", "1.2.3", "1.2.3.5")
        );
    }

    #[test]
    fn two_sites_copies_of_one_uid_never_share_a_path() {
        let north = Layout::instance_relative_path("north", "1.2.3", "1.2.3.4");
        let south = Layout::instance_relative_path("south", "1.2.3", "1.2.3.4");
        assert_ne!(north, south);
        assert_ne!(north.file_name(), south.file_name());
        // The separator keeps (site, uid) pairs apart that concatenate alike.
        assert_ne!(
            Layout::instance_relative_path("a", "1.2", "1.11"),
            Layout::instance_relative_path("a1", "1.2", "1.1")
        );
    }
}
