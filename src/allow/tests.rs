use super::*;

/// Real `zfs allow` output from OpenZFS 2.3.2 in the lab, with an unknown uid and gid,
/// a set, create time permissions, all three scopes and an ancestor's block.
const LAB_OUTPUT: &str = "---- Permissions on an0/d --------------------------------------------
Permission sets:
\t@myset create,mount,receive
Create time permissions:
\tdestroy,mount
Local permissions:
\tuser (unknown: 12345) mount
Descendent permissions:
\tgroup (unknown: 54321) snapshot
\teveryone userprop
Local+Descendent permissions:
\tuser zferry @myset,hold,send
\tgroup root create
---- Permissions on an0 ----------------------------------------------
Local+Descendent permissions:
\tuser zferry send
\tuser other destroy
";

fn ds(s: &str) -> Dataset {
    Dataset::new(s).unwrap()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn user(u: &str) -> Who {
    Who::User(u.into())
}

fn argvs(c: &[Change]) -> Vec<String> {
    c.iter().map(|c| c.argv.join(" ")).collect()
}

#[test]
fn parses_every_section_and_ignores_ancestors() {
    let t = parse(LAB_OUTPUT, &ds("an0/d")).unwrap();
    assert_eq!(t.sets["@myset"], set(&["create", "mount", "receive"]));
    assert_eq!(t.create_time, set(&["destroy", "mount"]));
    let z = &t.grants[&user("zferry")];
    assert_eq!(z.local, set(&["@myset", "hold", "send"]));
    assert_eq!(z.descendent, z.local);
    let unknown = &t.grants[&user("12345")];
    assert_eq!(unknown.local, set(&["mount"]));
    assert!(unknown.descendent.is_empty());
    assert_eq!(
        t.grants[&Who::Group("54321".into())].descendent,
        set(&["snapshot"])
    );
    assert_eq!(t.grants[&Who::Everyone].descendent, set(&["userprop"]));
    assert_eq!(t.grants[&Who::Group("root".into())].local, set(&["create"]));
    // `other` is only granted on the ancestor.
    assert!(!t.grants.contains_key(&user("other")));
}

#[test]
fn ancestor_block_is_read_for_the_ancestor() {
    let t = parse(LAB_OUTPUT, &ds("an0")).unwrap();
    assert_eq!(t.grants.len(), 2);
    assert_eq!(t.grants[&user("other")].local, set(&["destroy"]));
    assert!(t.sets.is_empty() && t.create_time.is_empty());
}

#[test]
fn no_output_is_an_empty_table_and_garbage_is_an_error() {
    assert!(parse("", &ds("p/x")).unwrap().is_empty());
    let e = parse("---- Permissions on p/x ----\nWeird section:\n", &ds("p/x")).unwrap_err();
    assert!(e.to_string().contains("unknown section"), "{e}");
    let e = parse(
        "---- Permissions on p/x ----\nLocal permissions:\n\tmachine m send\n",
        &ds("p/x"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn render_round_trips_through_parse() {
    let d = ds("an0/d");
    let t = parse(LAB_OUTPUT, &d).unwrap();
    let text = format!("---- Permissions on an0/d ----\n{}", t.render());
    // Unknown ids render as plain numbers, which parse back to the same principal.
    assert_eq!(parse(&text, &d).unwrap(), t);
}

fn present(who: Vec<Who>, perms: &[&str]) -> Desired {
    Desired {
        present: true,
        who,
        permissions: set(perms),
        scope: Scope::BOTH,
        ..Desired::default()
    }
}

#[test]
fn grants_only_what_is_missing_and_then_nothing() {
    let d = ds("p/x");
    let want = present(
        vec![user("zferry"), Who::Group("staff".into())],
        &["send", "hold"],
    );
    let (c, after) = diff(&Table::default(), &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs allow -u zferry hold,send p/x",
            "zfs allow -g staff hold,send p/x"
        ]
    );
    let (again, same) = diff(&after, &want, &d);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(same, after);
}

#[test]
fn a_permission_missing_only_locally_is_granted_with_dash_l() {
    let d = ds("an0/d");
    let t = parse(LAB_OUTPUT, &d).unwrap();
    let want = present(vec![user("12345")], &["mount", "send"]);
    let (c, after) = diff(&t, &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs allow -u 12345 send an0/d",
            "zfs allow -d -u 12345 mount an0/d"
        ]
    );
    let g = &after.grants[&user("12345")];
    assert_eq!(
        (g.local.clone(), g.descendent.clone()),
        (set(&["mount", "send"]), set(&["mount", "send"]))
    );
}

#[test]
fn local_only_scope_leaves_descendents_alone() {
    let d = ds("p/x");
    let mut want = present(vec![Who::Everyone], &["snapshot"]);
    want.scope = Scope {
        local: true,
        descendent: false,
    };
    let (c, after) = diff(&Table::default(), &want, &d);
    assert_eq!(argvs(&c), ["zfs allow -l -e snapshot p/x"]);
    assert!(after.grants[&Who::Everyone].descendent.is_empty());
}

#[test]
fn exact_removes_unlisted_grants_of_listed_principals_only() {
    let d = ds("an0/d");
    let t = parse(LAB_OUTPUT, &d).unwrap();
    let mut want = present(vec![user("zferry")], &["send", "hold", "release"]);
    want.exact = true;
    let (c, after) = diff(&t, &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs allow -u zferry release an0/d",
            "zfs unallow -u zferry @myset an0/d"
        ]
    );
    assert_eq!(
        after.grants[&user("zferry")].local,
        set(&["hold", "release", "send"])
    );
    // Other principals, sets and create time permissions are untouched.
    assert_eq!(after.grants[&Who::Everyone], t.grants[&Who::Everyone]);
    assert_eq!(after.sets, t.sets);
    assert_eq!(after.create_time, t.create_time);
    // Without exact the extra grant stays.
    want.exact = false;
    let (c, _) = diff(&t, &want, &d);
    assert_eq!(argvs(&c), ["zfs allow -u zferry release an0/d"]);
}

#[test]
fn exact_in_one_scope_removes_only_there() {
    let d = ds("p/x");
    let mut t = Table::default();
    t.grants.insert(
        user("u"),
        Grants {
            local: set(&["send", "destroy"]),
            descendent: set(&["send", "destroy"]),
        },
    );
    let mut want = present(vec![user("u")], &["send"]);
    want.exact = true;
    want.scope = Scope {
        local: false,
        descendent: true,
    };
    let (c, after) = diff(&t, &want, &d);
    assert_eq!(argvs(&c), ["zfs unallow -d -u u destroy p/x"]);
    assert_eq!(after.grants[&user("u")].local, set(&["send", "destroy"]));
}

#[test]
fn absent_removes_listed_or_all_permissions() {
    let d = ds("an0/d");
    let t = parse(LAB_OUTPUT, &d).unwrap();
    let mut want = present(vec![user("zferry")], &["send", "nothere"]);
    want.present = false;
    let (c, _) = diff(&t, &want, &d);
    assert_eq!(argvs(&c), ["zfs unallow -u zferry send an0/d"]);

    want.permissions.clear();
    want.who = vec![user("zferry"), user("12345"), user("nobody")];
    let (c, after) = diff(&t, &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs unallow -u zferry @myset,hold,send an0/d",
            "zfs unallow -l -u 12345 mount an0/d"
        ]
    );
    assert!(!after.grants.contains_key(&user("zferry")));
    assert!(!after.grants.contains_key(&user("nobody")));
}

#[test]
fn sets_and_create_time_permissions() {
    let d = ds("an0/d");
    let t = parse(LAB_OUTPUT, &d).unwrap();
    let mut want = Desired {
        present: true,
        sets: [
            (
                "@myset".to_string(),
                set(&["create", "mount", "receive", "hold"]),
            ),
            ("@new".to_string(), set(&["send"])),
        ]
        .into(),
        create_time: Some(set(&["destroy", "snapshot"])),
        ..Desired::default()
    };
    let (c, after) = diff(&t, &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs allow -s @myset hold an0/d",
            "zfs allow -s @new send an0/d",
            "zfs allow -c snapshot an0/d",
        ]
    );
    assert_eq!(after.create_time, set(&["destroy", "mount", "snapshot"]));

    want.exact = true;
    let (c, after) = diff(&t, &want, &d);
    assert!(
        argvs(&c).contains(&"zfs unallow -c mount an0/d".to_string()),
        "{c:?}"
    );
    assert_eq!(after.create_time, set(&["destroy", "snapshot"]));

    let absent = Desired {
        present: false,
        sets: [("@myset".to_string(), BTreeSet::new())].into(),
        create_time: Some(BTreeSet::new()),
        ..Desired::default()
    };
    let (c, after) = diff(&t, &absent, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs unallow -s @myset create,mount,receive an0/d",
            "zfs unallow -c destroy,mount an0/d"
        ]
    );
    assert!(after.sets.is_empty() && after.create_time.is_empty());
}

/// Real `zfs allow` output from OpenZFS 2.4.4 (Debian trixie-backports) in the lab: the
/// 2.4 delegations `send:raw`, `send:encrypted` and `receive:append` in a set, as a create
/// time permission and in all three scopes.
const LAB_OUTPUT_24: &str = "---- Permissions on z4p/scratch --------------------------------------
Permission sets:
\t@s24 hold,receive:append,send:raw
Create time permissions:
\tsend:raw
Local permissions:
\tuser zferry hold
Descendent permissions:
\tgroup zferry send:raw
Local+Descendent permissions:
\tuser zferry receive:append,send:encrypted,send:raw
";

#[test]
fn parses_the_24_delegations_with_a_colon() {
    let d = ds("z4p/scratch");
    let t = parse(LAB_OUTPUT_24, &d).unwrap();
    assert_eq!(t.sets["@s24"], set(&["hold", "receive:append", "send:raw"]));
    assert_eq!(t.create_time, set(&["send:raw"]));
    let z = &t.grants[&user("zferry")];
    assert_eq!(
        z.local,
        set(&["hold", "receive:append", "send:encrypted", "send:raw"])
    );
    assert_eq!(
        z.descendent,
        set(&["receive:append", "send:encrypted", "send:raw"])
    );
    assert_eq!(
        t.grants[&Who::Group("zferry".into())].descendent,
        set(&["send:raw"])
    );
    let text = format!("---- Permissions on z4p/scratch ----\n{}", t.render());
    assert_eq!(parse(&text, &d).unwrap(), t);
}

#[test]
fn exact_swaps_the_23_permissions_for_the_24_ones() {
    // A dataset delegated the 2.3 way, moved to send:raw and receive:append.
    let d = ds("p/x");
    let before = parse(
        "---- Permissions on p/x ----\nLocal+Descendent permissions:\n\tuser zferry create,hold,mount,receive,release,send\n",
        &d,
    )
    .unwrap();
    let mut want = present(
        vec![user("zferry")],
        &[
            "create",
            "hold",
            "mount",
            "receive:append",
            "release",
            "send:raw",
        ],
    );
    want.exact = true;
    let (c, after) = diff(&before, &want, &d);
    assert_eq!(
        argvs(&c),
        [
            "zfs allow -u zferry receive:append,send:raw p/x",
            "zfs unallow -u zferry receive,send p/x"
        ]
    );
    assert_eq!(after.grants[&user("zferry")].local, want.permissions);
    // What zfs then shows is the prediction: nothing more to do.
    let shown = format!("---- Permissions on p/x ----\n{}", after.render());
    let (again, _) = diff(&parse(&shown, &d).unwrap(), &want, &d);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn an_unknown_24_name_on_an_older_zfs_is_explained() {
    // What OpenZFS 2.3.2 printed in the lab for `zfs allow -u zferry send:raw z4n/names`.
    let stderr = "cannot set permissions on 'z4n/names': operation not applicable to datasets of this type\n";
    let argv = |perms: &str| -> Vec<String> {
        ["zfs", "allow", "-u", "zferry", perms, "z4n/names"]
            .map(String::from)
            .into()
    };
    let hint = unknown_name_hint(&argv("hold,send:raw,receive:append"), stderr).unwrap();
    assert!(
        hint.contains("newer names here: send:raw, receive:append;"),
        "{hint}"
    );
    assert!(hint.contains("need OpenZFS 2.4"), "{hint}");
    // Other failures, and refusals of names without ':', get no hint.
    assert_eq!(unknown_name_hint(&argv("send"), stderr), None);
    assert_eq!(
        unknown_name_hint(
            &argv("send:raw"),
            "cannot set permissions: permission denied"
        ),
        None
    );
}
