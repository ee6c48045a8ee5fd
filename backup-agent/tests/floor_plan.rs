//! The crate's floor plan: its top-level modules (`src/<module>.rs` or `src/<module>/`) form no
//! circle through `crate::` paths. Settings live in `config.rs`, near the bottom, and every
//! feature depends down on them, never the other way; a module that needs another's work takes
//! it through the job context (`context.rs`), not through `jobs`. Test modules are left out:
//! a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code names with `crate::`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = vec![];
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let module = |p: &Path| {
        let rel = p.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_string()
    };
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| module(p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let m = module(p);
        if !names.contains(&m) {
            continue;
        }
        let text = std::fs::read_to_string(p).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let to = g.entry(m.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != m && names.contains(&name) {
                    to.insert(name);
                }
            }
        }
    }
    g
}

/// One circle, if there is any: a path that comes back to where it started.
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut c = path[i..].to_vec();
            c.push(at.to_string());
            return Some(c);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in g.get(at).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for start in g.keys() {
        if let Some(c) = visit(g, start, &mut vec![], &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_modules_form_no_circle_and_config_is_at_the_bottom() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = edges(&src);
    assert!(g.len() > 10, "modules found: {g:?}");
    if let Some(c) = circle(&g) {
        panic!("an import circle: {}", c.join(" -> "));
    }
    // Settings at the bottom: config names no module but the cron-expression parser, a leaf.
    let config: Vec<&String> = g["config"].iter().collect();
    assert!(
        config.iter().all(|m| *m == "cron"),
        "config imports {config:?}"
    );
    assert!(g["cron"].is_empty(), "cron imports {:?}", g["cron"]);
}

/// The check itself finds a circle when there is one.
#[test]
fn a_circle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        circle(&g).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_string())
    );
    g.get_mut("c").expect("c").clear();
    assert_eq!(circle(&g), None);
}
