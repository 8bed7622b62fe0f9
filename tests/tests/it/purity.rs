//! Architecture invariant: the pure crates (`events`, `commands`, and the pure half of
//! `projections` when it exists) never depend, even transitively, on an I/O or async
//! crate. Checked over `cargo metadata`'s resolved graph of normal and build
//! dependencies (dev-dependencies may do anything).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

const PURE: &[&str] = &["tape-events", "tape-commands", "tape-projections", "tape-replay"];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-postgres",
    "postgres-protocol",
    "deadpool-postgres",
    "redis",
    "tracing",
    "mio",
    "hyper",
    "reqwest",
    "axum",
    "socket2",
];
// `getrandom` is not listed: uuid's `v7` feature brings it, and Cargo unifies features
// across the workspace (services mint real UUIDv7s). The core cannot call it: clippy's
// `disallowed-methods` (clippy.toml) bans `Uuid::now_v7` and the clocks in every crate.

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn pure_crates_depend_on_no_io_crate() {
    let meta = metadata();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let edges: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].as_str() != Some("dev")))
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (node["id"].as_str().unwrap(), deps)
        })
        .collect();
    for pure in PURE {
        let root =
            names.iter().find(|(_, n)| *n == pure).map(|(id, _)| *id).expect("the pure crate is in the workspace");
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([(root, vec![*pure])]);
        while let Some((id, path)) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            for dep in edges.get(id).into_iter().flatten() {
                let name = names[dep];
                let mut next = path.clone();
                next.push(name);
                assert!(
                    !FORBIDDEN.contains(&name),
                    "{pure} must stay pure, but depends on {name}: {}",
                    next.join(" -> ")
                );
                queue.push_back((dep, next));
            }
        }
        assert!(seen.len() > 1, "{pure} has dependencies to check");
    }
}
