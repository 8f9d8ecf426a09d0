//! The crate boundaries docs/architecture.md promises, checked against the
//! manifests: each heavy dependency has one owner, the core never depends
//! on the Lua crate, and the queue layer knows nothing of egress.

use std::collections::BTreeMap;

/// Workspace crate → the names of its normal (non-dev) dependencies.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for package in meta["packages"].as_array().unwrap() {
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        map.insert(package["name"].as_str().unwrap().to_string(), deps);
    }
    map
}

#[test]
fn heavy_dependencies_have_one_owner_and_the_core_never_imports_lua() {
    let deps = dependencies();
    let users = |dependency: &str| -> Vec<&str> {
        deps.iter().filter(|(_, d)| d.iter().any(|x| x == dependency)).map(|(p, _)| p.as_str()).collect()
    };
    for (dependency, owner) in [
        ("mlua", "petrel-lua"),
        ("rocksdb", "petrel-spool"),
        ("hickory-resolver", "petrel-dns"),
        ("axum", "petrel-http-api"),
    ] {
        assert_eq!(users(dependency), vec![owner], "{dependency} belongs to {owner} alone");
    }
    // Only the binary crate wires the Lua runtime in.
    assert_eq!(users("petrel-lua"), vec!["petrel"]);
    assert!(!deps["petrel-queue"].iter().any(|d| d == "petrel-egress"), "source choice lives in delivery");
}
