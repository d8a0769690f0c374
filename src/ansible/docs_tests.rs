//! The sidecar docs Ansible users read (`ansible-doc`) describe exactly the options the
//! binary accepts, with the same types and choices: one definition, checked.

use super::args::Opt;

/// One documented option: name, type, choices, required.
type Doc = (String, String, Vec<String>, bool);

/// The top-level `options:` of a DOCUMENTATION block.
fn documented(text: &str) -> Vec<Doc> {
    let start = text
        .find("DOCUMENTATION = r\"\"\"")
        .expect("DOCUMENTATION block");
    let body = &text[start..];
    let body = &body[..body[20..].find("\"\"\"").expect("end of block") + 20];
    let mut out: Vec<Doc> = Vec::new();
    let mut in_options = false;
    for line in body.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_options = line == "options:";
            continue;
        }
        if !in_options {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                out.push((name.to_string(), String::new(), Vec::new(), false));
                continue;
            }
        }
        let last = out.last_mut().expect("an option before its fields");
        if let Some(t) = line.strip_prefix("    type: ") {
            last.1 = t.trim().to_string();
        }
        if line == "    required: true" {
            last.3 = true;
        }
        if let Some(c) = line.strip_prefix("    choices: ") {
            last.2 = c
                .trim_matches(|ch| ch == '[' || ch == ']' || ch == ' ')
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
        }
    }
    out
}

fn check(spec: &[Opt], text: &str, what: &str) {
    let mut docs = documented(text);
    docs.sort();
    let mut want: Vec<Doc> = spec
        .iter()
        .map(|o| {
            (
                o.name.to_string(),
                o.ty.doc_name().to_string(),
                o.choices.iter().map(|c| c.to_string()).collect(),
                o.required,
            )
        })
        .collect();
    want.sort();
    assert_eq!(
        docs, want,
        "{what} documents other options than the binary accepts"
    );
}

#[test]
fn zfs_allow_docs_match_its_options() {
    check(
        super::allow::SPEC,
        include_str!("../../ansible/plugins/modules/zfs_allow.py"),
        "plugins/modules/zfs_allow.py",
    );
}

#[test]
fn job_docs_match_the_job_options() {
    check(
        super::job::SPEC,
        include_str!("../../ansible/plugins/doc_fragments/job.py"),
        "plugins/doc_fragments/job.py",
    );
    for module in [
        include_str!("../../ansible/plugins/modules/zfs_pull.py"),
        include_str!("../../ansible/plugins/modules/zfs_push.py"),
    ] {
        assert!(module.contains("extends_documentation_fragment:\n  - zferry.zfs.job"));
    }
}
