//! `zfs_allow`: delegated permissions, idempotent, with check mode and diff.
//!
//! A superset of community.general.zfs_delegate_admin: same option names and meanings,
//! plus create time permissions, permission sets and `exact`.

use super::args::{self, ModuleArgs, Opt, Type};
use super::{Diff, Failure, Module, Outcome};
use crate::allow::compat::{self, Version};
use crate::allow::{self as grants, Desired, Scope, Table, Who};
use crate::host::Host;
use crate::zfs::name::Dataset;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The options; `ansible/plugins/modules/zfs_allow.py` documents exactly these (a unit
/// test checks it).
pub const SPEC: &[Opt] = &[
    Opt::new("name", Type::Str).required(),
    Opt::new("state", Type::Str).choices(&["present", "absent"]),
    Opt::new("users", Type::List),
    Opt::new("groups", Type::List),
    Opt::new("everyone", Type::Bool),
    Opt::new("permissions", Type::List),
    Opt::new("local", Type::Bool),
    Opt::new("descendents", Type::Bool),
    Opt::new("recursive", Type::Bool),
    Opt::new("create_time_permissions", Type::List),
    Opt::new("sets", Type::DictOfLists),
    Opt::new("exact", Type::Bool),
    Opt::new("older_zfs", Type::Str).choices(&["fail", "fallback"]),
];

/// A permission, `@set` or principal name that cannot be mistaken for an option or
/// split by `zfs` (it takes comma-separated lists).
fn check_word(what: &str, w: &str) -> Result<(), String> {
    let ok = !w.is_empty()
        && !w.starts_with('-')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} '{w}': use letters, digits, '_', '.', ':', '-' (and '@' for sets), not starting with '-'"))
    }
}

/// The dataset and the desired state, from checked options.
pub fn desired(a: &ModuleArgs) -> Result<(Dataset, Desired, Vec<String>), String> {
    let name = a.str("name").unwrap_or_default();
    let ds = Dataset::new(name).map_err(|e| format!("name: {e}"))?;
    let present = a.str("state").unwrap_or("present") == "present";
    let mut warnings = Vec::new();
    let mut who = Vec::new();
    for u in a.list("users") {
        check_word("user", &u)?;
        who.push(Who::User(u));
    }
    for g in a.list("groups") {
        check_word("group", &g)?;
        who.push(Who::Group(g));
    }
    if a.bool("everyone") == Some(true) {
        who.push(Who::Everyone);
    }
    let norm = |what: &str, list: Vec<String>| -> Result<BTreeSet<String>, String> {
        list.into_iter()
            .map(|p| {
                let p = p.trim().to_ascii_lowercase();
                check_word(what, &p).map(|_| p)
            })
            .collect()
    };
    let permissions = norm("permission", a.list("permissions"))?;
    let create_time = match a.options.get("create_time_permissions") {
        Some(_) => Some(norm("permission", a.list("create_time_permissions"))?),
        None => None,
    };
    let mut sets = BTreeMap::new();
    if let Some(Value::Object(m)) = a.options.get("sets") {
        for (k, v) in m {
            if !k.starts_with('@') || k.len() < 2 {
                return Err(format!(
                    "sets: permission set names start with '@', got '{k}'"
                ));
            }
            check_word("permission set", k)?;
            let list = v
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            sets.insert(k.clone(), norm("permission", list)?);
        }
    }
    // Like zfs_delegate_admin: neither flag (or both) means local and descendents.
    let (l, d) = (
        a.bool("local") == Some(true),
        a.bool("descendents") == Some(true),
    );
    let scope = if l || d {
        Scope {
            local: l,
            descendent: d,
        }
    } else {
        Scope::BOTH
    };
    let exact = a.bool("exact") == Some(true);
    if present && !who.is_empty() && permissions.is_empty() && !exact {
        return Err("permissions is required with state=present and users, groups or everyone (or set exact=true to remove all their permissions)".into());
    }
    if !present && exact {
        return Err("exact applies to state=present only".into());
    }
    if !permissions.is_empty() && who.is_empty() {
        return Err("permissions need users, groups or everyone=true to grant them to".into());
    }
    if who.is_empty() && create_time.is_none() && sets.is_empty() {
        return Err(
            "nothing to do: give users, groups, everyone, create_time_permissions or sets".into(),
        );
    }
    if present && a.bool("recursive") == Some(true) {
        warnings.push("recursive only applies to state=absent; ignored".into());
    }
    Ok((
        ds,
        Desired {
            present,
            who,
            permissions,
            scope,
            create_time,
            sets,
            exact,
        },
        warnings,
    ))
}

/// Runs the module on this host from the args file text.
pub fn run(text: &str) -> Outcome {
    let a = match args::parse(Module::Allow.name(), text, SPEC) {
        Ok(a) => a,
        Err(e) => return Outcome::default().fail(Failure::msg(e)),
    };
    let (ds, want, warnings) = match desired(&a) {
        Ok(x) => x,
        Err(e) => return Outcome::default().fail(Failure::msg(e)),
    };
    let recursive = !want.present && a.bool("recursive") == Some(true);
    let rt = match crate::host::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome::default().fail(Failure::msg(format!("cannot start the runtime: {e}")))
        }
    };
    let mut out = Outcome {
        warnings,
        ..Outcome::default()
    };
    let fallback = a.str("older_zfs") == Some("fallback");
    let want = if fallback && want.present {
        match rt.block_on(for_this_host(want)) {
            Ok((want, version, notes)) => {
                out.extra
                    .insert("zfs_version".into(), json!(version.to_string()));
                out.warnings.extend(notes);
                want
            }
            Err(f) => return out.fail(f),
        }
    } else {
        want
    };
    match rt.block_on(execute(&ds, &want, recursive, a.check_mode)) {
        Ok(done) => {
            out.changed = !done.commands.is_empty();
            if a.diff {
                out.diff = Some(Diff {
                    before: render_all(&done.before),
                    after: render_all(&done.after),
                    before_header: format!("zfs allow {ds} (before)"),
                    after_header: format!(
                        "zfs allow {ds} ({})",
                        if a.check_mode { "predicted" } else { "after" }
                    ),
                });
            }
            out.extra.insert("name".into(), json!(ds.as_str()));
            out.extra.insert(
                "commands".into(),
                json!(done
                    .commands
                    .iter()
                    .map(|c| crate::host::shell_quote(c))
                    .collect::<Vec<_>>()),
            );
            out.extra.insert("grants".into(), tables_json(&done.after));
            out.msg = Some(if done.commands.is_empty() {
                format!("permissions on {ds} are already as requested")
            } else if a.check_mode {
                format!("would run {} command(s) on {ds}", done.commands.len())
            } else {
                format!("ran {} command(s) on {ds}", done.commands.len())
            });
            if !a.check_mode && done.after != done.predicted {
                out.warnings.push(format!(
                    "the permissions on {ds} after the change differ from what was predicted; zfs allow now shows:\n{}",
                    render_all(&done.after)
                ));
            }
            out
        }
        Err(f) => out.fail(f),
    }
}

/// `want` with the delegations this host's OpenZFS does not know replaced by their older
/// equivalents (`older_zfs: fallback`), the host's version and one warning per replacement.
async fn for_this_host(mut want: Desired) -> Result<(Desired, Version, Vec<String>), Failure> {
    let argv = vec!["zfs".to_string(), "version".to_string()];
    let out = Host::Local.run(&argv).await.map_err(|e| Failure {
        msg: format!("older_zfs=fallback needs this host's OpenZFS version: {e:#}"),
        rc: None,
        stderr: String::new(),
        argv: Some(argv.clone()),
    })?;
    let Some(version) = compat::kmod_version(&out.stdout).filter(|_| out.ok()) else {
        return Err(Failure {
            msg: "older_zfs=fallback needs this host's OpenZFS version, but `zfs version` printed no zfs-kmod-X.Y.Z line (is the zfs module loaded?)".into(),
            rc: out.code,
            stderr: out.stderr,
            argv: Some(argv),
        });
    };
    let mut made = Vec::new();
    let mut map = |p: &BTreeSet<String>| {
        let (p, m) = compat::for_host(p, version);
        made.extend(m);
        p
    };
    want.permissions = map(&want.permissions);
    want.create_time = want.create_time.as_ref().map(&mut map);
    for p in want.sets.values_mut() {
        *p = map(p);
    }
    let mut notes: Vec<String> = made.iter().map(|f| f.warning(version)).collect();
    notes.dedup();
    Ok((want, version, notes))
}

/// What a run did (or would do): tables before and after per dataset, and commands.
struct Done {
    before: BTreeMap<Dataset, Table>,
    predicted: BTreeMap<Dataset, Table>,
    after: BTreeMap<Dataset, Table>,
    commands: Vec<Vec<String>>,
}

fn render_all(t: &BTreeMap<Dataset, Table>) -> String {
    let mut s = String::new();
    for (ds, table) in t {
        s.push_str(&format!("---- Permissions on {ds} ----\n"));
        s.push_str(&table.render());
    }
    s
}

/// The grants as data: per dataset, sets, create time and per-principal scopes.
fn tables_json(t: &BTreeMap<Dataset, Table>) -> Value {
    let mut m = serde_json::Map::new();
    for (ds, table) in t {
        let grants: Vec<Value> = table
            .grants
            .iter()
            .map(|(who, g)| {
                let (kind, name) = match who {
                    Who::User(u) => ("user", Some(u.as_str())),
                    Who::Group(g) => ("group", Some(g.as_str())),
                    Who::Everyone => ("everyone", None),
                };
                json!({"type": kind, "name": name, "local": g.local, "descendent": g.descendent})
            })
            .collect();
        m.insert(
            ds.to_string(),
            json!({"sets": table.sets, "create_time": table.create_time, "grants": grants}),
        );
    }
    Value::Object(m)
}

/// The datasets to act on: `ds`, and with `recursive` every descendent (`zfs list -r`).
async fn targets(host: &Host, ds: &Dataset, recursive: bool) -> Result<Vec<Dataset>, Failure> {
    if !recursive {
        return Ok(vec![ds.clone()]);
    }
    let argv: Vec<String> = [
        "zfs",
        "list",
        "-H",
        "-o",
        "name",
        "-t",
        "filesystem,volume",
        "-r",
        ds.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = host.run(&argv).await.map_err(|e| Failure {
        msg: format!("{e:#}"),
        rc: None,
        stderr: String::new(),
        argv: Some(argv.clone()),
    })?;
    if !out.ok() {
        return Err(crate::allow::CommandError {
            argv,
            code: out.code,
            stderr: out.stderr,
        }
        .into());
    }
    out.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| Dataset::new(l).map_err(|e| Failure::msg(format!("zfs list printed '{l}': {e}"))))
        .collect()
}

async fn execute(
    ds: &Dataset,
    want: &Desired,
    recursive: bool,
    check: bool,
) -> Result<Done, Failure> {
    let host = Host::Local;
    let mut done = Done {
        before: BTreeMap::new(),
        predicted: BTreeMap::new(),
        after: BTreeMap::new(),
        commands: Vec::new(),
    };
    // `recursive` (absent only) removes the principals' grants from every descendent
    // too; each dataset gets its own exact unallow so the diff is what really happens.
    for d in targets(&host, ds, recursive).await? {
        let before = grants::read(&host, &d).await?;
        let (changes, predicted) = grants::diff(&before, want, &d);
        if !check {
            grants::apply(&host, &changes).await?;
        }
        let after = if check || changes.is_empty() {
            predicted.clone()
        } else {
            grants::read(&host, &d).await?
        };
        // Only datasets with grants (or the named one) appear in diffs and results.
        if d == *ds || !before.is_empty() || !after.is_empty() {
            done.before.insert(d.clone(), before);
            done.predicted.insert(d.clone(), predicted);
            done.after.insert(d.clone(), after);
        }
        done.commands.extend(changes.into_iter().map(|c| c.argv));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: Value) -> Result<Desired, String> {
        let a = args::parse("zfs_allow", &v.to_string(), SPEC)?;
        desired(&a).map(|(_, d, _)| d)
    }

    #[test]
    fn options_map_to_the_desired_state() {
        let w = d(
            json!({"name": "p/x", "users": "alice,bob", "everyone": "yes",
                         "permissions": "Send,hold", "local": "true"}),
        )
        .unwrap();
        assert!(w.present);
        assert_eq!(
            w.who,
            [
                Who::User("alice".into()),
                Who::User("bob".into()),
                Who::Everyone
            ]
        );
        assert_eq!(
            w.permissions.iter().cloned().collect::<Vec<_>>(),
            ["hold", "send"]
        );
        assert_eq!(
            w.scope,
            Scope {
                local: true,
                descendent: false
            }
        );
        let w = d(
            json!({"name": "p/x", "groups": ["g"], "permissions": ["send"],
                         "local": false, "descendents": false}),
        )
        .unwrap();
        assert_eq!(w.scope, Scope::BOTH);
        let w = d(json!({"name": "p/x", "sets": {"@s": ["send"]}, "create_time_permissions": []}))
            .unwrap();
        assert_eq!(w.create_time, Some(BTreeSet::new()));
        assert_eq!(w.sets.len(), 1);
    }

    #[test]
    fn the_24_delegations_with_a_colon_are_accepted() {
        // OpenZFS 2.4: send:raw, send:encrypted, receive:append (the last also in 2.3.2).
        let w = d(json!({"name": "p/x", "users": ["zferry"],
                         "permissions": "Send:Raw,receive:append,send:encrypted",
                         "sets": {"@raw": ["send:raw", "hold"]},
                         "create_time_permissions": ["receive:append"]}))
        .unwrap();
        assert_eq!(
            w.permissions.iter().cloned().collect::<Vec<_>>(),
            ["receive:append", "send:encrypted", "send:raw"]
        );
        assert_eq!(
            w.sets["@raw"].iter().cloned().collect::<Vec<_>>(),
            ["hold", "send:raw"]
        );
        assert_eq!(
            w.create_time.unwrap().into_iter().collect::<Vec<_>>(),
            ["receive:append"]
        );
    }

    #[test]
    fn bad_combinations_and_names_are_refused_before_any_command() {
        for (v, needle) in [
            (
                json!({"name": "p/x;rm", "users": ["a"], "permissions": ["send"]}),
                "name:",
            ),
            (
                json!({"name": "p/x", "users": ["-a"], "permissions": ["send"]}),
                "invalid user '-a'",
            ),
            (
                json!({"name": "p/x", "users": ["a"], "permissions": ["send,x y"]}),
                "invalid permission 'send,x y'",
            ),
            (
                json!({"name": "p/x", "users": ["a"]}),
                "permissions is required",
            ),
            (
                json!({"name": "p/x", "permissions": ["send"]}),
                "need users, groups or everyone",
            ),
            (json!({"name": "p/x"}), "nothing to do"),
            (
                json!({"name": "p/x", "sets": {"s": ["send"]}}),
                "start with '@'",
            ),
            (
                json!({"name": "p/x", "state": "absent", "exact": true, "users": ["a"]}),
                "exact applies",
            ),
        ] {
            let e = d(v.clone()).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn bad_args_give_a_failed_outcome_without_running_anything() {
        let out = run(r#"{"name": "p/x", "users": ["a"], "permissions": ["send"], "bogus": 1}"#);
        assert!(out.is_failed());
        assert!(out
            .msg
            .unwrap()
            .contains("Unsupported parameters for (zfs_allow) module: bogus"));
        assert!(!out.changed);
    }
}
