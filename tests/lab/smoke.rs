//! Lab smoke test with plain zfs commands: a non-root user with only the delegated
//! permissions from LAB-NOTES pulls an encrypted dataset raw over SSH, then an `-I`
//! incremental. Proves the lab itself before zferry is trusted on it.

use crate::common::{lab, USER};

#[test]
fn raw_pull_by_delegated_user_then_incremental() {
    let lab = lab();
    lab.pool("client", "smc");
    lab.pool("server", "sms");
    lab.encrypted("client", "smc/secret");
    lab.write_and_snap("client", "smc/secret", "s1", 4);
    lab.allow("client", "send,hold", "smc/secret");
    lab.create_allowed("server", "sms/backup", "create,mount,receive");

    let port = lab.port("client");
    let pull = |span: &str| {
        lab.ok_as(
            "server",
            USER,
            &format!("ssh -p {port} {USER}@10.0.2.2 zfs send -w {span} | zfs receive -u sms/backup/secret"),
        )
    };
    pull("smc/secret@s1");
    assert_eq!(
        lab.prop("server", "sms/backup/secret", "keystatus"),
        "unavailable"
    );
    assert_eq!(
        lab.prop("server", "sms/backup/secret", "encryption"),
        "aes-256-gcm"
    );
    assert_eq!(
        lab.guids("server", "sms/backup/secret"),
        lab.guids("client", "smc/secret")
    );

    lab.write_and_snap("client", "smc/secret", "s2", 2);
    lab.write_and_snap("client", "smc/secret", "s3", 2);
    pull("-I smc/secret@s1 smc/secret@s3");
    let got = lab.guids("server", "sms/backup/secret");
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["s1", "s2", "s3"]
    );
    assert_eq!(got, lab.guids("client", "smc/secret"));
    assert_eq!(
        lab.prop("server", "sms/backup/secret", "keystatus"),
        "unavailable"
    );
}

#[test]
fn receive_without_create_permission_is_denied() {
    let lab = lab();
    lab.pool("client", "smd");
    lab.pool("server", "smt");
    lab.ok("client", "zfs create smd/plain");
    lab.write_and_snap("client", "smd/plain", "s1", 1);
    lab.allow("client", "send,hold", "smd/plain");
    lab.create_allowed("server", "smt/backup", "mount,receive");
    let port = lab.port("client");
    let o = lab.sh_as(
        "server",
        USER,
        &format!(
            "ssh -p {port} {USER}@10.0.2.2 zfs send smd/plain@s1 | zfs receive -u smt/backup/plain"
        ),
    );
    assert_ne!(o.code, Some(0), "receive must fail without create: {o:?}");
    assert!(o.stderr.contains("permission denied"), "{o:?}");
    assert!(lab.sh("server", "zfs list smt/backup/plain").code != Some(0));
}
