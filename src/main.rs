//! One binary, two doors: the `zferry` command line, and Ansible binary modules when
//! invoked as `zfs_pull`, `zfs_push` or `zfs_allow` with an args file.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args
        .first()
        .and_then(|a| zferry::ansible::Module::from_argv0(a))
    {
        Some(module) => zferry::ansible::main(module, args),
        None => zferry::cli::main(args),
    }
}
