//! Scanning `models/<name>/<version>/` and verifying model files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ModelId, Version};

/// The manifest's file name inside each version folder.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// The repository folder itself cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read model repository {}: {source}", .path.display())]
pub struct RepositoryError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {} is missing", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot read model file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {} does not match its manifest: its sha256 is {actual}, the manifest pins {expected}", .path.display())]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Every model version found under a repository folder.
#[derive(Debug, Clone)]
pub struct ModelRepository {
    root: PathBuf,
    /// Sorted by name, then version.
    entries: Vec<ModelEntry>,
    /// Version folders whose manifest is missing or invalid, sorted by path.
    invalid: Vec<InvalidModel>,
}

/// One model version with a valid manifest. Its file is not checked until
/// [`ModelEntry::check_file`] or [`ModelEntry::load_verified`].
#[derive(Debug, Clone)]
pub struct ModelEntry {
    dir: PathBuf,
    manifest: Arc<Manifest>,
}

/// A version folder that cannot be used, and every reason why.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidModel {
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

/// What a model file looks like right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    Ok,
    Mismatch { actual: String },
    Missing,
    Unreadable(String),
}

impl FileStatus {
    /// A short word for tables and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Mismatch { .. } => "mismatch",
            FileStatus::Missing => "missing",
            FileStatus::Unreadable(_) => "unreadable",
        }
    }
}

/// Model bytes whose SHA-256 matched the manifest when they were read. The
/// engines build only from this type, and from these very bytes, so a file
/// swapped after the check is never the one that runs.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    manifest: Arc<Manifest>,
    dir: PathBuf,
    bytes: Arc<[u8]>,
}

impl VerifiedModel {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn id(&self) -> ModelId {
        self.manifest.id()
    }

    /// The version folder (engines may find side files there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl ModelRepository {
    /// Scans `root/<name>/<version>/manifest.toml`. Only an unreadable `root`
    /// is an error; a bad version folder is listed in [`Self::invalid`] so
    /// that one broken model does not hide the others.
    pub fn open(root: impl AsRef<Path>) -> Result<ModelRepository, RepositoryError> {
        let root = root.as_ref().to_path_buf();
        let mut entries = Vec::new();
        let mut invalid = Vec::new();
        for name_dir in subfolders(&root).map_err(|source| RepositoryError {
            path: root.clone(),
            source,
        })? {
            let version_dirs = match subfolders(&name_dir) {
                Ok(dirs) => dirs,
                Err(e) => {
                    invalid.push(InvalidModel {
                        dir: name_dir,
                        problems: vec![format!("cannot read folder: {e}")],
                    });
                    continue;
                }
            };
            if version_dirs.is_empty() {
                invalid.push(InvalidModel {
                    dir: name_dir,
                    problems: vec!["no version folders".into()],
                });
            }
            for dir in version_dirs {
                match read_entry(&dir) {
                    Ok(manifest) => entries.push(ModelEntry {
                        dir,
                        manifest: Arc::new(manifest),
                    }),
                    Err(problems) => invalid.push(InvalidModel { dir, problems }),
                }
            }
        }
        entries.sort_by(|a, b| {
            (&a.manifest.name, a.manifest.version).cmp(&(&b.manifest.name, b.manifest.version))
        });
        invalid.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(ModelRepository {
            root,
            entries,
            invalid,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every valid model version, sorted by name, then version.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    pub fn invalid(&self) -> &[InvalidModel] {
        &self.invalid
    }

    pub fn get(&self, name: &str, version: Version) -> Option<&ModelEntry> {
        self.entries
            .iter()
            .find(|e| e.manifest.name == name && e.manifest.version == version)
    }

    /// The highest version of `name`.
    pub fn latest(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().rfind(|e| e.manifest.name == name)
    }
}

impl ModelEntry {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn id(&self) -> ModelId {
        self.manifest.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model_file)
    }

    /// Hashes the model file (streaming) and compares it with the manifest.
    pub fn check_file(&self) -> FileStatus {
        let path = self.model_path();
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileStatus::Missing,
            Err(e) => return FileStatus::Unreadable(e.to_string()),
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return FileStatus::Unreadable(e.to_string()),
            }
        }
        let actual = hex::encode(hasher.finalize());
        if actual == self.manifest.sha256 {
            FileStatus::Ok
        } else {
            FileStatus::Mismatch { actual }
        }
    }

    /// Reads the model file and returns its bytes only if their SHA-256 is
    /// the one the manifest pins.
    pub fn load_verified(&self) -> Result<VerifiedModel, ModelFileError> {
        let path = self.model_path();
        let bytes = std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelFileError::Missing { path: path.clone() }
            } else {
                ModelFileError::Unreadable {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != self.manifest.sha256 {
            return Err(ModelFileError::Sha256Mismatch {
                path,
                expected: self.manifest.sha256.clone(),
                actual,
            });
        }
        Ok(VerifiedModel {
            manifest: Arc::clone(&self.manifest),
            dir: self.dir.clone(),
            bytes: bytes.into(),
        })
    }
}

/// Sub-folders of `dir`, sorted, skipping hidden entries and plain files
/// (such as the repository's README.md).
fn subfolders(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and validates one version folder's manifest; the folder names must
/// agree with the manifest's name and version.
fn read_entry(dir: &Path) -> Result<Manifest, Vec<String>> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| vec![format!("cannot read {MANIFEST_FILE}: {e}")])?;
    let manifest = Manifest::from_toml(&text).map_err(|e| e.0)?;
    let folder = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut problems = Vec::new();
    if folder(dir).as_deref() != Some(manifest.version.to_string().as_str()) {
        problems.push(format!(
            "version {} does not match its folder name",
            manifest.version
        ));
    }
    if dir.parent().and_then(folder).as_deref() != Some(manifest.name.as_str()) {
        problems.push(format!(
            "name `{}` does not match its folder name",
            manifest.name
        ));
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(problems)
    }
}
