//! `kubectl`, when it is installed: what `kubectl get` shows.

use std::path::{Path, PathBuf};

/// The path of an executable `program` on PATH (what `which` finds).
pub fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The NEXT cell of object `name`'s row in `kubectl get <resource>`, failing on `<invalid>`
/// anywhere in the output.
pub fn kubectl_next_cell(kubectl: &Path, kubeconfig: &Path, resource: &str, namespace: &str, name: &str) -> String {
    let output = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", resource, "--namespace", namespace, "--request-timeout=30s"])
        .output()
        .expect("run kubectl");
    assert!(output.status.success(), "kubectl get {resource} failed: {}", String::from_utf8_lossy(&output.stderr));
    next_cell(&String::from_utf8_lossy(&output.stdout), name)
}

/// The NEXT cell of `name`'s row in `table`, the output of `kubectl get`; fails on `<invalid>`
/// anywhere in it (what kubectl shows for the age of a future time).
pub fn next_cell(table: &str, name: &str) -> String {
    assert!(!table.contains("<invalid>"), "kubectl get shows <invalid>:\n{table}");
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    // kubectl pads the columns to align them, so a cell starts where its header does.
    let column = header.find(" NEXT ").map(|at| at + 1).unwrap_or_else(|| panic!("no NEXT column in:\n{table}"));
    let row = lines
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{table}"));
    let cell = row.get(column..).and_then(|rest| rest.split_whitespace().next());
    cell.unwrap_or_else(|| panic!("no NEXT cell for {name} in:\n{table}")).to_owned()
}
