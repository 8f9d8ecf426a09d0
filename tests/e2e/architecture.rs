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
        ("redis", "petrel-throttle"),
    ] {
        assert_eq!(users(dependency), vec![owner], "{dependency} belongs to {owner} alone");
    }
    // Only the binary crate wires the Lua runtime in.
    assert_eq!(users("petrel-lua"), vec!["petrel"]);
    assert!(!deps["petrel-queue"].iter().any(|d| d == "petrel-egress"), "source choice lives in delivery");
}

/// Module → the sibling modules its files name as `crate::module`.
fn module_graph(src: &std::path::Path) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(src, &mut all);
    let module_of = |path: &std::path::Path| -> String {
        let rel = path.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: std::collections::BTreeSet<String> = all.iter().map(|p| module_of(p)).collect();
    let mut graph = BTreeMap::new();
    for path in &all {
        let module = module_of(path);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let mut named = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            let heads: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for head in heads {
                let name: String = head.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if modules.contains(&name) && name != module {
                    named.insert(name);
                }
            }
        }
        graph.entry(module).or_insert_with(std::collections::BTreeSet::new).extend(named);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        assert_eq!(find_cycle(&graph), None, "{}: modules import each other in a circle", entry.path().display());
    }
}
