//! Where things live under the data directory.
//!
//! Instance paths are derived from SHA-256 hashes of validated UIDs, never
//! from the UIDs themselves, so no peer-supplied byte ever reaches a path.
//!
//! ```text
//! data/
//!   index.sqlite            index and audit trail (WAL mode)
//!   tmp/                    receives in progress; emptied at start-up
//!   instances/ab/<study>/<instance>.dcm
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

    /// Path of an instance relative to the data directory (what the index stores).
    pub fn instance_relative_path(study_uid: &str, sop_instance_uid: &str) -> PathBuf {
        let study = short_hash(study_uid);
        let instance = short_hash(sop_instance_uid);
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

/// First 128 bits of SHA-256, hex: unique enough for paths, short enough to read.
fn short_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_are_hashes_not_uids() {
        let p = Layout::instance_relative_path("1.2.3", "1.2.3.4");
        let s = p.to_string_lossy();
        assert!(s.starts_with("instances/"));
        assert!(!s.contains("1.2.3"));
        assert!(s.ends_with(".dcm"));
        assert_eq!(p, Layout::instance_relative_path("1.2.3", "1.2.3.4"));
        assert_ne!(p, Layout::instance_relative_path("1.2.3", "1.2.3.5"));
    }
}
