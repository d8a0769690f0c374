//! `zferry generate`: man pages and shell completions rendered from the clap definitions.
//!
//! Hidden from `--help`: it is for packagers (`packaging/deb.sh`), not for users. Both
//! outputs come from the same [`Cli`] definition as `--help`, so a new flag or subcommand
//! shows up in them without anyone editing a page by hand.

use super::{exit, Cli};
use crate::log;
use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `zferry generate man DIR | completions SHELL`.
#[derive(Args, Debug)]
pub(super) struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Write zferry.1 and one page per subcommand (zferry-pull.1, ...) into DIR.
    Man {
        /// Directory for the pages (created if missing).
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on stdout.
    Completions {
        /// bash, zsh, fish (also elvish, powershell).
        shell: Shell,
    },
}

/// Runs `zferry generate`; exit 0, or 1 when a page cannot be written.
pub(super) fn command(a: GenerateArgs) -> ExitCode {
    match a.what {
        What::Man { dir } => match man_pages(&dir) {
            Ok(files) => {
                for f in files {
                    log::info!("wrote {}", f.display());
                }
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("zferry: generate man {}: {e}", dir.display());
                ExitCode::from(exit::FAILED)
            }
        },
        What::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            match completions(shell, &mut out).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => {
                    eprintln!("zferry: generate completions: {e}");
                    ExitCode::from(exit::FAILED)
                }
            }
        }
    }
}

/// Writes the completion script for `shell` into `out`.
fn completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    // clap_complete panics on a write error (a closed pipe): render into memory, then write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut for_users(), "zferry", &mut script);
    out.write_all(&script)
}

/// The command line as users see it: clap_complete offers hidden subcommands too, so this
/// copy of [`Cli`] leaves them out (global flags still propagate to every subcommand).
fn for_users() -> clap::Command {
    let cli = Cli::command();
    // The same version as #[command(version)] on Cli, so -V/--version is completed.
    let mut cmd = clap::Command::new("zferry")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(cli.get_arguments().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(a) = cli.get_about() {
        cmd = cmd.about(a.clone());
    }
    cmd
}

/// Writes `zferry.1` and `zferry-<sub>.1` for every visible subcommand into `dir`;
/// returns the files written, the main page first.
fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // build() sets each subcommand's display name (zferry-pull) and bin name (zferry pull),
    // which clap_mangen uses for the page title, file name and synopsis.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let source = format!("zferry {version}");
    let page = |c: clap::Command| Man::new(c).source(source.clone()).manual("zferry manual");

    let main = page(cmd.clone());
    let mut text = Vec::new();
    main.render(&mut text)?;
    text.extend_from_slice(main_page_extra().to_roff().as_bytes());
    let path = dir.join(main.get_filename());
    std::fs::write(&path, text)?;
    let mut written = vec![path];

    // Hidden subcommands (this one) get no page: they are not for users.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub.clone()).generate_to(dir)?);
    }
    Ok(written)
}

/// Sections of zferry.1 that `--help` does not carry: exit codes, files, related pages.
fn main_page_extra() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        (
            exit::OK,
            "Every job and dataset succeeded (or was up to date, or skipped with a note).",
        ),
        (
            exit::FAILED,
            "A job or dataset failed or was refused; for status: something is stale, missing or failed.",
        ),
        (exit::USAGE, "Bad command line or config; nothing was touched."),
        (
            exit::LOCK,
            "A job lock was held longer than lock_max_age: a run is wedged.",
        ),
    ] {
        r.control("TP", []).text([bold(code.to_string())]).text([roman(what)]);
    }
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/zferry/zferry.toml",
            "Default config of run, plan, status, holds, check, snapshot and prune.",
        ),
        (
            "/var/lib/zferry",
            "Run reports and job locks when run as root (else ~/.local/state/zferry).",
        ),
    ] {
        r.control("TP", []).text([bold(path)]).text([roman(what)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "zfs(8), zfs-send(8), zfs-receive(8), zfs-allow(8), zfs-hold(8), ssh(1), sshd(8)",
    )]);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_subcommands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_main_man_page_names_every_subcommand_and_each_has_its_own_page() {
        let dir = std::env::temp_dir().join(format!("zferry-man-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = man_pages(&dir).unwrap();
        let subs = visible_subcommands();
        assert!(subs.len() >= 10, "{subs:?}");
        assert_eq!(written.len(), subs.len() + 1);

        let main = std::fs::read_to_string(dir.join("zferry.1")).unwrap();
        assert!(main.starts_with(".ie"), "roff: {main}");
        assert!(main.contains(".TH zferry 1"), "{main}");
        assert!(main.contains("EXIT STATUS"), "{main}");
        for s in &subs {
            // The SUBCOMMANDS section lists each as `zferry-<name>(1)`.
            assert!(
                main.contains(&format!("zferry\\-{s}(1)")),
                "zferry.1 does not name {s}"
            );
            let page = std::fs::read_to_string(dir.join(format!("zferry-{s}.1")))
                .unwrap_or_else(|e| panic!("zferry-{s}.1: {e}"));
            assert!(page.contains(&format!(".TH zferry-{s} 1 ")), "{page}");
        }
        // The packager's subcommand stays out of the pages.
        assert!(!main.contains("generate"), "{main}");
        assert!(!dir.join("zferry-generate.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_completion_script_knows_pull_and_prune() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            // The packager's subcommand is not offered to users.
            assert!(!script.contains("generate"), "{shell} offers generate");
            // fish spells long flags `-l dry-run`, bash and zsh `--dry-run`.
            for word in ["pull", "prune", "dry-run"] {
                assert!(script.contains(word), "{shell} completion lacks {word}");
            }
        }
    }
}
