//! The committed CRD YAML (deploy/crds and the chart's crds/) is what the types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifests = borcelle_crds::crd_manifests().expect("the CRDs render");
    assert_eq!(manifests.len(), 2);
    for dir in ["deploy/crds", "charts/borcelle/crds"] {
        for (name, yaml) in &manifests {
            let path = root.join(dir).join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|err| {
                panic!("{} is missing ({err}): run `cargo run -p borcelle-crds --bin crdgen`", path.display())
            });
            assert!(
                committed == *yaml,
                "{} differs from the types in crds/src/resources.rs: run `cargo run -p borcelle-crds --bin crdgen` and commit the result",
                path.display()
            );
        }
        let extra: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("the directory exists")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| !manifests.iter().any(|(name, _)| name == f))
            .collect();
        assert!(extra.is_empty(), "{dir} holds files crdgen does not write: {extra:?}");
    }
}
