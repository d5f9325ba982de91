//! `dicom-gateway models list|verify`: what an operator sees of the model
//! repository. `main.rs` only dispatches here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::repository::{FileStatus, ModelRepository};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List every model version with the state of its file.
    List {
        #[command(flatten)]
        dir: ModelsDir,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every model file against its manifest's SHA-256; exit 1 if any
    /// file is missing, differs, or any manifest is invalid.
    Verify {
        #[command(flatten)]
        dir: ModelsDir,
        /// Also load each model into the embedded ONNX engine and check its
        /// inputs and outputs against the manifest.
        #[arg(long)]
        load: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ModelsDir {
    /// The model repository (`<name>/<version>/manifest.toml`).
    #[arg(long, env = "DICOM_GATEWAY_MODELS_DIR", default_value = "./models")]
    pub models_dir: PathBuf,
}

/// One row of `models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version: String,
    pub task: String,
    pub demo: Option<bool>,
    pub sha256: Option<String>,
    /// `ok`, `mismatch`, `missing`, `unreadable`, or `invalid` (manifest).
    pub status: &'static str,
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

impl ModelStatus {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Every version's status; hashes every model file.
pub fn statuses(repository: &ModelRepository) -> Vec<ModelStatus> {
    let mut rows: Vec<ModelStatus> = repository
        .entries()
        .iter()
        .map(|entry| {
            let manifest = entry.manifest();
            let file = entry.check_file();
            let problems = match &file {
                FileStatus::Ok => vec![],
                FileStatus::Mismatch { actual } => vec![format!(
                    "{} has sha256 {actual}, the manifest pins {}",
                    entry.model_path().display(),
                    manifest.sha256
                )],
                FileStatus::Missing => {
                    vec![format!("{} is missing", entry.model_path().display())]
                }
                FileStatus::Unreadable(e) => {
                    vec![format!("cannot read {}: {e}", entry.model_path().display())]
                }
            };
            ModelStatus {
                name: manifest.name.clone(),
                version: manifest.version.to_string(),
                task: manifest.task.as_str().to_string(),
                demo: Some(manifest.demo),
                sha256: Some(manifest.sha256.clone()),
                status: file.as_str(),
                dir: entry.dir().to_path_buf(),
                problems,
            }
        })
        .collect();
    rows.extend(repository.invalid().iter().map(|invalid| {
        let folder = |p: Option<&Path>| {
            p.and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        ModelStatus {
            name: folder(invalid.dir.parent()),
            version: folder(Some(&invalid.dir)),
            task: "-".into(),
            demo: None,
            sha256: None,
            status: "invalid",
            dir: invalid.dir.clone(),
            problems: invalid.problems.clone(),
        }
    }));
    rows
}

/// The `models list` table.
pub fn render_table(rows: &[ModelStatus]) -> String {
    let mut out = format!(
        "{:<24} {:<10} {:<16} {:<14} {:<6} STATUS\n",
        "NAME", "VERSION", "TASK", "SHA256", "DEMO"
    );
    for row in rows {
        let sha = row.sha256.as_deref().map_or("-", |s| &s[..12.min(s.len())]);
        let demo = match row.demo {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push_str(&format!(
            "{:<24} {:<10} {:<16} {:<14} {:<6} {}\n",
            row.name, row.version, row.task, sha, demo, row.status
        ));
    }
    out
}

impl ModelsCommand {
    pub fn run(self) -> ExitCode {
        let dir = match &self {
            ModelsCommand::List { dir, .. } | ModelsCommand::Verify { dir, .. } => dir,
        };
        let repository = match ModelRepository::open(&dir.models_dir) {
            Ok(repository) => repository,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let rows = statuses(&repository);
        match self {
            ModelsCommand::List { json: true, .. } => {
                match serde_json::to_string_pretty(&rows) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            ModelsCommand::List { json: false, .. } => {
                print!("{}", render_table(&rows));
                ExitCode::SUCCESS
            }
            ModelsCommand::Verify { load, .. } => verify(&repository, &rows, load),
        }
    }
}

fn verify(repository: &ModelRepository, rows: &[ModelStatus], load: bool) -> ExitCode {
    let mut failed = 0;
    for row in rows {
        println!("{:<10} {}@{}", row.status, row.name, row.version);
        for problem in &row.problems {
            println!("           {problem}");
        }
        failed += usize::from(!row.is_ok());
    }
    if load {
        let engine = crate::infer::EngineConfig::onnx();
        for entry in repository.entries() {
            let result = entry
                .load_verified()
                .map_err(|e| e.to_string())
                .and_then(|verified| engine.build(&verified).map_err(|e| e.to_string()));
            match result {
                Ok(_) => println!("loads      {} (onnx)", entry.id()),
                Err(e) => {
                    println!("no-load    {} (onnx)\n           {e}", entry.id());
                    failed += 1;
                }
            }
        }
    }
    if failed == 0 {
        println!(
            "{} model version(s) verified in {}",
            rows.len(),
            repository.root().display()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} problem(s) in {}", repository.root().display());
        ExitCode::FAILURE
    }
}
