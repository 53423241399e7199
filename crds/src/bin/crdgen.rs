//! Writes the CustomResourceDefinitions of Borcelle's resources into the repository:
//! `deploy/crds/` and the Helm chart's `charts/borcelle/crds/` (relative to the workspace root, or
//! to the directories given as arguments). `crds/tests/crdgen.rs` fails when they are stale.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let dirs = if args.is_empty() { vec![root.join("deploy/crds"), root.join("charts/borcelle/crds")] } else { args };
    let manifests = match borcelle_crds::crd_manifests() {
        Ok(manifests) => manifests,
        Err(err) => {
            eprintln!("crdgen: cannot render the CRDs: {err}");
            return ExitCode::FAILURE;
        }
    };
    for dir in &dirs {
        if let Err(err) = std::fs::create_dir_all(dir) {
            eprintln!("crdgen: cannot create {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
        for (name, yaml) in &manifests {
            let path = dir.join(name);
            if let Err(err) = std::fs::write(&path, yaml) {
                eprintln!("crdgen: cannot write {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
