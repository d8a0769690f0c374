//! The module graph stays a house a newcomer can live in (issue 13): arrows between
//! top-level modules point one way, and only `cli` knows about exit codes.
//!
//! Reads every `src/**/*.rs`, collects the `crate::<top>` paths each top-level module
//! names (comments and `#[cfg(test)]` code left out: tests may reach anywhere), and
//! asserts that nothing outside `cli` names `crate::cli` and that the graph has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("readable src dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The line without its `//` comment (a `//` inside a string literal is kept).
fn strip_line_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'\'' if !in_str && i + 2 < b.len() && b[i + 2] == b'\'' => i += 2,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The code of a file: comments removed, `#[cfg(test)]` items (modules, functions,
/// `mod tests;` declarations) cut out by brace depth.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut in_block_comment = false;
    while let Some(line) = lines.next() {
        let mut line = line;
        if in_block_comment {
            match line.find("*/") {
                Some(i) => {
                    in_block_comment = false;
                    line = &line[i + 2..];
                }
                None => continue,
            }
        }
        let mut code = strip_line_comment(line).to_string();
        while let Some(i) = code.find("/*").filter(|i| !code[..*i].contains('"')) {
            match code[i..].find("*/") {
                Some(j) => code.replace_range(i..i + j + 2, " "),
                None => {
                    in_block_comment = true;
                    code.truncate(i);
                }
            }
        }
        if code.trim() == "#[cfg(test)]" {
            // Skip the item that follows: through its matching closing brace, or to
            // its `;` for a declaration like `mod tests;`.
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                let l = strip_line_comment(l);
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(&code);
        out.push('\n');
    }
    out
}

/// Top-level modules named through `crate::` in `code` (`use crate::{a, b::c}` too).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` (a macro's own module) or part of a longer name
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: depth-0 items up to the closing brace.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            refs.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// Top-level module -> the top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let top = first.as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue; // the crate root declares every module; it is not one of them
        }
        let text = fs::read_to_string(&f).expect("readable source");
        let refs = crate_refs(&code_of(&text));
        let entry = g.entry(top.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != top));
    }
    g
}

/// A cycle through the graph, as a path that starts and ends at the same module.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut done, &mut Vec::new()))
}

fn show(g: &BTreeMap<String, BTreeSet<String>>) -> String {
    g.iter()
        .map(|(m, refs)| {
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            format!("{m} -> {}\n", refs.join(", "))
        })
        .collect()
}

#[test]
fn only_cli_names_cli() {
    let g = graph();
    let offenders: Vec<&String> = g
        .iter()
        .filter(|(m, refs)| m.as_str() != "cli" && refs.contains("cli"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        offenders.is_empty(),
        "only cli maps outcomes to exit codes, but {offenders:?} name crate::cli\n{}",
        show(&g)
    );
}

#[test]
fn top_level_modules_import_each_other_one_way() {
    let g = graph();
    assert!(g.len() > 10, "the graph was not read:\n{}", show(&g));
    // `cargo test --test imports -- --nocapture` shows the graph.
    println!("{}", show(&g));
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle: {}\n{}", cycle.join(" -> "), show(&g));
    }
}

#[test]
fn the_reader_sees_paths_and_skips_comments_and_tests() {
    let code = code_of(
        "use crate::{host::Host, zfs::{cmd, name}};\n\
         // crate::cli in a comment\n\
         let u = \"http://x\"; crate::log::warn!(\"{u}\");\n\
         $crate::log::level();\n\
         #[cfg(test)]\n\
         mod tests {\n    use crate::cli;\n    fn f() { {} }\n}\n\
         #[cfg(test)]\n\
         mod more;\n\
         /* crate::cli */ crate::plan::x();\n",
    );
    let refs: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(refs, ["host", "log", "plan", "zfs"]);
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "a"]);
}
