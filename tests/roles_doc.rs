//! Each role's README lists every variable of its `defaults/main.yml` with the same
//! default, and nothing else: the table is what users configure from.

use std::collections::BTreeMap;
use std::path::Path;

/// `name: value` top-level lines of a defaults file (the value without its `# noqa`).
fn defaults(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("zferry_"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            let v = v.split("  # noqa").next().unwrap_or(v).trim();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `| `name` | `value` | meaning |` rows of a README (the value without its backticks; a
/// `|` inside a cell is written `\|`, as tables need).
fn documented(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `zferry_"))
        .filter_map(|l| {
            let mut cells = l.split(" | ");
            let name = cells.next()?.trim_end_matches('`');
            let value = cells.next()?.trim().trim_matches('`');
            Some((format!("zferry_{name}"), value.replace("\\|", "|")))
        })
        .collect()
}

#[test]
fn every_role_documents_each_default_exactly() {
    let roles = Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible/roles");
    let mut checked = 0;
    for entry in std::fs::read_dir(&roles).unwrap() {
        let role = entry.unwrap().path();
        let read = |f: &str| std::fs::read_to_string(role.join(f)).unwrap();
        let (want, have) = (
            defaults(&read("defaults/main.yml")),
            documented(&read("README.md")),
        );
        assert!(!want.is_empty(), "{}: no defaults found", role.display());
        assert_eq!(have, want, "{}: README table vs defaults", role.display());
        checked += 1;
    }
    assert_eq!(checked, 4, "backup_server, backup_client, offsite, install");
}

#[test]
fn parsers_read_the_shapes_the_files_use() {
    let d = defaults("---\n# c\nzferry_a: \"x\"  # noqa: var-naming\nzferry_b: []\n  - nested\n");
    assert_eq!(d["zferry_a"], "\"x\"");
    assert_eq!(d["zferry_b"], "[]");
    assert_eq!(d.len(), 2);
    let r = documented("| variable | default |\n|---|---|\n| `zferry_a` | `\"x\"` | why |\n| `zferry_b` | `[]` |  |\n| `zferry_c` | `\"{{ x \\| bool }}\"` | piped |\n");
    assert_eq!(r["zferry_c"], "\"{{ x | bool }}\"");
    let r: BTreeMap<_, _> = r.into_iter().filter(|(k, _)| k != "zferry_c").collect();
    assert_eq!(r, d);
}
