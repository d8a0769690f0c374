//! Delegated ZFS permissions (`zfs allow`): parse what a dataset grants, decide the
//! `zfs allow` / `zfs unallow` commands that reach a desired state, and apply them.
//!
//! Parsing and diffing are pure (no I/O), so the `zfs_allow` module's check mode predicts
//! exactly what a real run does; only [`read`] and [`apply`] touch a host.

pub mod compat;
#[cfg(test)]
mod tests;

use crate::host::Host;
use crate::zfs::name::Dataset;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// A user by name, or by uid when it has no name on this host.
    User(String),
    /// A group by name, or by gid when it has no name on this host.
    Group(String),
    /// Everyone.
    Everyone,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::User(u) => write!(f, "user {u}"),
            Who::Group(g) => write!(f, "group {g}"),
            Who::Everyone => write!(f, "everyone"),
        }
    }
}

/// Where a grant applies: the dataset itself (local), its descendents, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    /// On the dataset itself (`zfs allow -l`).
    pub local: bool,
    /// On its descendents (`zfs allow -d`).
    pub descendent: bool,
}

impl Scope {
    /// Local and descendent: what `zfs allow` does without `-l`/`-d`.
    pub const BOTH: Scope = Scope {
        local: true,
        descendent: true,
    };

    /// The `-l`/`-d` flag for this scope (none for both).
    fn flag(self) -> Option<&'static str> {
        match (self.local, self.descendent) {
            (true, false) => Some("-l"),
            (false, true) => Some("-d"),
            _ => None,
        }
    }
}

impl Default for Scope {
    /// Both, as `zfs allow` without `-l`/`-d`.
    fn default() -> Self {
        Scope::BOTH
    }
}

/// One principal's permissions, split the way ZFS stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Permissions (and `@sets`) on the dataset itself.
    pub local: BTreeSet<String>,
    /// Permissions (and `@sets`) on its descendents.
    pub descendent: BTreeSet<String>,
}

impl Grants {
    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.descendent.is_empty()
    }
}

/// Everything one dataset itself grants (not what it inherits from its ancestors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Permission sets defined here: `@name` → permissions.
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// Create time permissions (given to whoever creates a descendent).
    pub create_time: BTreeSet<String>,
    /// Per principal.
    pub grants: BTreeMap<Who, Grants>,
}

impl Table {
    /// True when the dataset grants nothing.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.create_time.is_empty() && self.grants.is_empty()
    }

    /// The table in `zfs allow`'s own layout, for diffs and messages.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let join = |p: &BTreeSet<String>| p.iter().cloned().collect::<Vec<_>>().join(",");
        if !self.sets.is_empty() {
            s.push_str("Permission sets:\n");
            for (name, p) in &self.sets {
                s.push_str(&format!("\t{name} {}\n", join(p)));
            }
        }
        if !self.create_time.is_empty() {
            s.push_str(&format!(
                "Create time permissions:\n\t{}\n",
                join(&self.create_time)
            ));
        }
        for (title, pick) in [
            (
                "Local",
                Scope {
                    local: true,
                    descendent: false,
                },
            ),
            (
                "Descendent",
                Scope {
                    local: false,
                    descendent: true,
                },
            ),
            ("Local+Descendent", Scope::BOTH),
        ] {
            let mut lines = Vec::new();
            for (who, g) in &self.grants {
                let p: BTreeSet<String> = match (pick.local, pick.descendent) {
                    (true, false) => g.local.difference(&g.descendent).cloned().collect(),
                    (false, true) => g.descendent.difference(&g.local).cloned().collect(),
                    _ => g.local.intersection(&g.descendent).cloned().collect(),
                };
                if !p.is_empty() {
                    lines.push(format!("\t{who} {}\n", join(&p)));
                }
            }
            if !lines.is_empty() {
                s.push_str(&format!("{title} permissions:\n"));
                s.extend(lines);
            }
        }
        s
    }

    fn grants_mut(&mut self, who: &Who) -> &mut Grants {
        self.grants.entry(who.clone()).or_default()
    }

    fn prune(&mut self) {
        self.grants.retain(|_, g| !g.is_empty());
        self.sets.retain(|_, p| !p.is_empty());
    }
}

/// `zfs allow DATASET`: what the dataset and its ancestors grant.
pub fn read_argv(ds: &Dataset) -> Vec<String> {
    vec!["zfs".into(), "allow".into(), ds.to_string()]
}

/// Parses `zfs allow DATASET` output and returns the table of `ds` itself; the blocks
/// of its ancestors (inherited grants) are ignored. No block at all means no grants.
pub fn parse(output: &str, ds: &Dataset) -> Result<Table> {
    #[derive(Clone, Copy)]
    enum Section {
        None,
        Sets,
        Create,
        Scoped(Scope),
    }
    let mut table = Table::default();
    let mut mine = false;
    let mut section = Section::None;
    for (n, raw) in output.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("---- Permissions on ") {
            let name = rest.trim_end_matches('-').trim_end();
            mine = name == ds.as_str();
            section = Section::None;
            continue;
        }
        if !mine {
            continue;
        }
        if !raw.starts_with(char::is_whitespace) {
            section = match line {
                "Permission sets:" => Section::Sets,
                "Create time permissions:" => Section::Create,
                "Local permissions:" => Section::Scoped(Scope {
                    local: true,
                    descendent: false,
                }),
                "Descendent permissions:" => Section::Scoped(Scope {
                    local: false,
                    descendent: true,
                }),
                "Local+Descendent permissions:" => Section::Scoped(Scope::BOTH),
                _ => bail!("zfs allow output line {}: unknown section '{line}'", n + 1),
            };
            continue;
        }
        let entry = line.trim();
        let perms = |s: &str| -> BTreeSet<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        };
        match section {
            Section::None => bail!(
                "zfs allow output line {}: '{entry}' outside any section",
                n + 1
            ),
            Section::Sets => {
                let Some((name, p)) = entry.split_once(char::is_whitespace) else {
                    bail!(
                        "zfs allow output line {}: permission set without permissions: '{entry}'",
                        n + 1
                    );
                };
                table
                    .sets
                    .entry(name.to_string())
                    .or_default()
                    .extend(perms(p));
            }
            Section::Create => table.create_time.extend(perms(entry)),
            Section::Scoped(scope) => {
                let (who, p) = parse_who(entry).ok_or_else(|| {
                    anyhow::anyhow!("zfs allow output line {}: cannot read '{entry}'", n + 1)
                })?;
                let p = perms(p);
                let g = table.grants_mut(&who);
                if scope.local {
                    g.local.extend(p.iter().cloned());
                }
                if scope.descendent {
                    g.descendent.extend(p);
                }
            }
        }
    }
    Ok(table)
}

/// `user NAME perms`, `user (unknown: 1234) perms`, `group ...`, `everyone perms`.
fn parse_who(entry: &str) -> Option<(Who, &str)> {
    if let Some(rest) = entry.strip_prefix("everyone ") {
        return Some((Who::Everyone, rest.trim()));
    }
    let (kind, rest) = entry.split_once(' ')?;
    let (name, perms) = if let Some(r) = rest.strip_prefix("(unknown: ") {
        // An id with no name on this host: ZFS prints "(unknown: 1234)".
        let (id, perms) = r.split_once(')')?;
        (id.trim(), perms.trim())
    } else {
        let (name, perms) = rest.split_once(' ')?;
        (name, perms.trim())
    };
    let who = match kind {
        "user" => Who::User(name.to_string()),
        "group" => Who::Group(name.to_string()),
        _ => return None,
    };
    Some((who, perms))
}

/// What the caller wants, in the terms of community.general.zfs_delegate_admin plus
/// create time permissions, permission sets and `exact`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Grant (`true`) or remove (`false`).
    pub present: bool,
    /// The principals the permissions are for.
    pub who: Vec<Who>,
    /// Permissions (and `@sets`) for those principals.
    pub permissions: BTreeSet<String>,
    /// Where: local, descendent or both.
    pub scope: Scope,
    /// Create time permissions (`zfs allow -c`); `None` leaves them alone. Absent
    /// with an empty set removes them all; `exact` makes them exactly this.
    pub create_time: Option<BTreeSet<String>>,
    /// Permission sets to define (or remove): `@name` → permissions.
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// Present only: also remove what the listed principals (in `scope`), the create
    /// time permissions (when given) and the listed sets have beyond what is listed.
    pub exact: bool,
}

/// One `zfs allow` or `zfs unallow` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The argv to run.
    pub argv: Vec<String>,
}

fn list(p: &BTreeSet<String>) -> String {
    p.iter().cloned().collect::<Vec<_>>().join(",")
}

fn who_args(who: &Who) -> Vec<String> {
    match who {
        Who::User(u) => vec!["-u".into(), u.clone()],
        Who::Group(g) => vec!["-g".into(), g.clone()],
        Who::Everyone => vec!["-e".into()],
    }
}

fn cmd(verb: &str, flags: Vec<String>, perms: &BTreeSet<String>, ds: &Dataset) -> Change {
    let mut argv = vec!["zfs".to_string(), verb.to_string()];
    argv.extend(flags);
    argv.push(list(perms));
    argv.push(ds.to_string());
    Change { argv }
}

/// Splits per-permission scope changes into at most three commands (local, descendent,
/// both), so a permission missing in both places is granted once without `-l`/`-d`.
fn scoped_cmds(
    verb: &str,
    who: &Who,
    local: &BTreeSet<String>,
    descendent: &BTreeSet<String>,
    ds: &Dataset,
) -> Vec<Change> {
    let both: BTreeSet<String> = local.intersection(descendent).cloned().collect();
    let mut out = Vec::new();
    for (scope, p) in [
        (Scope::BOTH, both.clone()),
        (
            Scope {
                local: true,
                descendent: false,
            },
            local - &both,
        ),
        (
            Scope {
                local: false,
                descendent: true,
            },
            descendent - &both,
        ),
    ] {
        if p.is_empty() {
            continue;
        }
        let mut flags: Vec<String> = scope.flag().into_iter().map(String::from).collect();
        flags.extend(who_args(who));
        out.push(cmd(verb, flags, &p, ds));
    }
    out
}

/// The commands that take `current` to `want` on `ds`, and the table they lead to.
/// Pure: check mode reports the returned table as the prediction.
pub fn diff(current: &Table, want: &Desired, ds: &Dataset) -> (Vec<Change>, Table) {
    let mut after = current.clone();
    let mut changes = Vec::new();

    // Sets first: a grant may name a set defined in the same task.
    for (name, p) in &want.sets {
        let have = current.sets.get(name).cloned().unwrap_or_default();
        let (add, remove) = if want.present {
            let add: BTreeSet<String> = p - &have;
            let remove = if want.exact {
                &have - p
            } else {
                BTreeSet::new()
            };
            (add, remove)
        } else if p.is_empty() {
            (BTreeSet::new(), have.clone())
        } else {
            (BTreeSet::new(), p & &have)
        };
        if !add.is_empty() {
            changes.push(cmd("allow", vec!["-s".into(), name.clone()], &add, ds));
        }
        if !remove.is_empty() {
            changes.push(cmd("unallow", vec!["-s".into(), name.clone()], &remove, ds));
        }
        let e = after.sets.entry(name.clone()).or_default();
        e.extend(add);
        e.retain(|x| !remove.contains(x));
    }

    if let Some(ct) = &want.create_time {
        let have = &current.create_time;
        let (add, remove) = if want.present {
            (
                ct - have,
                if want.exact {
                    have - ct
                } else {
                    BTreeSet::new()
                },
            )
        } else if ct.is_empty() {
            (BTreeSet::new(), have.clone())
        } else {
            (BTreeSet::new(), ct & have)
        };
        if !add.is_empty() {
            changes.push(cmd("allow", vec!["-c".into()], &add, ds));
        }
        if !remove.is_empty() {
            changes.push(cmd("unallow", vec!["-c".into()], &remove, ds));
        }
        after.create_time.extend(add);
        after.create_time.retain(|x| !remove.contains(x));
    }

    for who in &want.who {
        let have = current.grants.get(who).cloned().unwrap_or_default();
        let wanted = &want.permissions;
        let (mut add_l, mut add_d) = (BTreeSet::new(), BTreeSet::new());
        let (mut rm_l, mut rm_d) = (BTreeSet::new(), BTreeSet::new());
        if want.present {
            if want.scope.local {
                add_l = wanted - &have.local;
                if want.exact {
                    rm_l = &have.local - wanted;
                }
            }
            if want.scope.descendent {
                add_d = wanted - &have.descendent;
                if want.exact {
                    rm_d = &have.descendent - wanted;
                }
            }
        } else {
            // Absent without permissions removes everything the principal has (in scope).
            let pick = |h: &BTreeSet<String>| {
                if wanted.is_empty() {
                    h.clone()
                } else {
                    wanted & h
                }
            };
            if want.scope.local {
                rm_l = pick(&have.local);
            }
            if want.scope.descendent {
                rm_d = pick(&have.descendent);
            }
        }
        changes.extend(scoped_cmds("allow", who, &add_l, &add_d, ds));
        changes.extend(scoped_cmds("unallow", who, &rm_l, &rm_d, ds));
        let g = after.grants_mut(who);
        g.local.extend(add_l);
        g.descendent.extend(add_d);
        g.local.retain(|x| !rm_l.contains(x));
        g.descendent.retain(|x| !rm_d.contains(x));
    }
    after.prune();
    (changes, after)
}

/// Reads the table of `ds` on `host`; fails with the command and its stderr.
pub async fn read(host: &Host, ds: &Dataset) -> std::result::Result<Table, CommandError> {
    let argv = read_argv(ds);
    let out = host
        .run(&argv)
        .await
        .map_err(|e| CommandError::spawn(&argv, e))?;
    if !out.ok() {
        return Err(CommandError::failed(&argv, out.code, out.stderr));
    }
    parse(&out.stdout, ds).map_err(|e| CommandError::spawn(&argv, e))
}

/// Runs `changes` in order, stopping at the first failure.
pub async fn apply(host: &Host, changes: &[Change]) -> std::result::Result<(), CommandError> {
    for c in changes {
        let out = host
            .run(&c.argv)
            .await
            .map_err(|e| CommandError::spawn(&c.argv, e))?;
        if !out.ok() {
            let stderr = match unknown_name_hint(&c.argv, &out.stderr) {
                Some(hint) => format!("{}\n{hint}", out.stderr.trim_end()),
                None => out.stderr,
            };
            return Err(CommandError::failed(&c.argv, out.code, stderr));
        }
    }
    Ok(())
}

/// `zfs allow` refuses a permission name it does not know with a message about dataset
/// types. When the refused command named permissions with a `:` (OpenZFS 2.4's `send:raw`,
/// `send:encrypted`; `receive:append` since 2.3), say what the message means.
pub fn unknown_name_hint(argv: &[String], stderr: &str) -> Option<String> {
    if !stderr.contains("operation not applicable to datasets of this type") {
        return None;
    }
    let perms = argv.iter().rev().nth(1)?;
    let new: Vec<&str> = perms.split(',').filter(|p| p.contains(':')).collect();
    if new.is_empty() {
        return None;
    }
    Some(format!(
        "(zfs allow says this when this OpenZFS does not know a permission name; newer names \
         here: {}; send:raw and send:encrypted need OpenZFS 2.4, receive:append 2.3 or later; \
         'zfs allow' without arguments lists most names this host knows)",
        new.join(", ")
    ))
}

/// A command that failed, with what Ansible users need to see: the command, its exit
/// code and its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The argv that failed.
    pub argv: Vec<String>,
    /// Its exit code (`None` if it could not start or was killed).
    pub code: Option<i32>,
    /// Its stderr, or the reason it could not run.
    pub stderr: String,
}

impl CommandError {
    fn spawn(argv: &[String], e: anyhow::Error) -> Self {
        CommandError {
            argv: argv.to_vec(),
            code: None,
            stderr: format!("{e:#}"),
        }
    }

    fn failed(argv: &[String], code: Option<i32>, stderr: String) -> Self {
        CommandError {
            argv: argv.to_vec(),
            code,
            stderr,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Local commands only: an exit code 255 is zfs's own, not ssh's.
        let how = match self.code {
            Some(c) => format!("exit {c}"),
            None => "did not run to completion".into(),
        };
        write!(
            f,
            "'{}' failed ({how}): {}",
            crate::host::shell_quote(&self.argv),
            self.stderr.trim()
        )
    }
}
