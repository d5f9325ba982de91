//! The layer check: no module imports a module above it in the order that
//! ARCHITECTURE.md ("Layers") states, apart from the known exceptions below.
//! Test-only; it reads the source tree and ARCHITECTURE.md from disk.
//!
//! A module's imports are the `crate::X` paths in its non-test code (`use`
//! items and inline paths alike); `//` comment lines, `tests.rs`,
//! `*_tests.rs`, `tests/` folders and a trailing `#[cfg(test)] mod … {` are
//! skipped, since tests may reach any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The line of ARCHITECTURE.md that lists the layers, lowest first.
const LAYERS_PREFIX: &str = "layers (lowest first):";

/// Upward imports that exist today and are to be removed by issue 13
/// (deliverables 1, 3 and 4): (importer, imported). Each is checked to
/// still occur, so a fixed one must be taken off this list.
const KNOWN_EXCEPTIONS: &[(&str, &str)] = &[
    // issue 13 (1): `app::Control` moves next to the admin API.
    ("admin", "app"),
    // issue 13: `config` gathers every stage's configuration types and
    // validators; they belong to the stages.
    ("config", "auth"),
    ("config", "cache"),
    ("config", "egress"),
    ("config", "infer"),
    ("config", "route"),
    ("config", "store"),
    // issue 13 (3): the conductor reads `ReadySeries` from `assemble`.
    ("jobs", "assemble"),
    // issue 13: `models` names engine settings from `infer`.
    ("models", "infer"),
    // issue 13 (4): `telemetry::Metrics` holds every stage's families and
    // the drift monitor.
    ("telemetry", "config"),
    ("telemetry", "infer"),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer order from ARCHITECTURE.md's layers line.
fn layers_from(architecture: &str) -> Vec<String> {
    architecture
        .lines()
        .find_map(|l| l.trim().strip_prefix(LAYERS_PREFIX))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `path` relative to `src`, so only folders inside the crate count.
fn is_test_file(src: &Path, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let inside = path.strip_prefix(src).unwrap_or(path);
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || inside.components().any(|c| c.as_os_str() == "tests")
}

/// The modules named by `crate::X` paths in `source`'s non-test code.
fn imports_in(source: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let next_opens_module = lines.get(i + 1).is_some_and(|n| {
            let n = n.trim();
            (n.starts_with("mod ") || n.starts_with("pub mod ") || n.starts_with("pub(crate) mod "))
                && n.ends_with('{')
        });
        if trimmed == "#[cfg(test)]" && next_opens_module {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `$crate::`/`super::crate` do not occur; skip non-module paths.
            if !name.is_empty() && !line[..at].ends_with('$') {
                found.insert(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("readable source dir");
    for entry in entries {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each top-level module of `src` and the other modules it imports.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("readable src") {
        let path = entry.expect("readable entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name == "lib" || name == "main" || name == "layers" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.clone());
        } else {
            continue;
        }
        let mut imports = BTreeSet::new();
        for file in files.iter().filter(|f| !is_test_file(src, f)) {
            let text = std::fs::read_to_string(file).expect("readable source");
            imports.extend(imports_in(&text));
        }
        imports.remove(&name);
        map.insert(name, imports);
    }
    map
}

/// Every (importer, imported) where the imported module is higher.
fn upward_imports(
    layers: &[String],
    imports: &BTreeMap<String, BTreeSet<String>>,
) -> Result<BTreeSet<(String, String)>, String> {
    let rank = |m: &str| layers.iter().position(|l| l == m);
    let mut upward = BTreeSet::new();
    for (module, deps) in imports {
        let Some(own) = rank(module) else {
            return Err(format!("module `{module}` is missing from the layers line"));
        };
        for dep in deps {
            match rank(dep) {
                Some(r) if r > own => {
                    upward.insert((module.clone(), dep.clone()));
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "`{module}` imports `{dep}`, not in the layers line"
                    ));
                }
            }
        }
    }
    Ok(upward)
}

#[test]
fn no_module_imports_a_higher_layer() {
    let architecture = std::fs::read_to_string(manifest_dir().join("../ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md beside the gateway crate");
    let layers = layers_from(&architecture);
    assert!(
        !layers.is_empty(),
        "ARCHITECTURE.md has no `{LAYERS_PREFIX}` line"
    );
    let imports = module_imports(&manifest_dir().join("src"));
    let upward = upward_imports(&layers, &imports).unwrap();
    let known: BTreeSet<(String, String)> = KNOWN_EXCEPTIONS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = upward.difference(&known).collect();
    assert!(new.is_empty(), "lower layer imports a higher one: {new:?}");
    let stale: Vec<_> = known.difference(&upward).collect();
    assert!(
        stale.is_empty(),
        "fixed, take off KNOWN_EXCEPTIONS: {stale:?}"
    );
}

#[test]
fn an_upward_import_is_found() {
    let layers: Vec<String> = ["db", "store", "app"].map(String::from).to_vec();
    let source = "use crate::app::schema;\n// crate::db in a comment\n#[cfg(test)]\nmod tests {\n    use crate::app::x;\n}\n";
    let found = imports_in(source);
    assert_eq!(found, BTreeSet::from(["app".to_string()]));
    let imports = BTreeMap::from([
        ("store".to_string(), found),
        ("db".to_string(), BTreeSet::new()),
    ]);
    let upward = upward_imports(&layers, &imports).unwrap();
    assert_eq!(
        upward,
        BTreeSet::from([("store".to_string(), "app".to_string())])
    );
    let unknown = BTreeMap::from([("nowhere".to_string(), BTreeSet::new())]);
    assert!(upward_imports(&layers, &unknown).is_err());
}
