//! The one quoting function for anything sent to a remote shell.

/// Quotes each argument for a POSIX shell and joins them with spaces.
///
/// Arguments made only of characters no shell treats specially stay bare, which
/// keeps logged commands readable; everything else is single-quoted, with embedded
/// single quotes written as `'\''`.
pub fn shell_quote<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote_one(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes each stage with [`shell_quote`] and joins them into one pipeline (`a | b`):
/// the one form of remote command with more than one program (wire compression).
pub fn shell_pipeline<S: AsRef<str>>(stages: &[&[S]]) -> String {
    stages
        .iter()
        .map(|argv| shell_quote(argv))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn quote_one(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_what_needs_it() {
        assert_eq!(
            shell_quote(&["zfs", "list", "-Hp", "tank/a@b"]),
            "zfs list -Hp tank/a@b"
        );
        assert_eq!(
            shell_quote(&["a b", "", "it's", "$(x)"]),
            r"'a b' '' 'it'\''s' '$(x)'"
        );
    }

    #[test]
    fn a_pipeline_is_its_quoted_stages_joined_by_a_pipe() {
        let send = ["zfs", "send", "t/a b@1"];
        let zstd = ["zstd", "-c", "-3"];
        assert_eq!(
            shell_pipeline(&[&send[..], &zstd[..]]),
            "zfs send 't/a b@1' | zstd -c -3"
        );
        assert_eq!(shell_pipeline(&[&send[..]]), shell_quote(&send));
        // sh runs it as a pipeline, each stage's words as quoted.
        let line = shell_pipeline(&[&["printf", "%s|", "a | b"][..], &["tr", "|", "+"][..]]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a + b+");
    }

    proptest! {
        /// What sh parses back is exactly the argv we quoted.
        #[test]
        fn sh_round_trips(args in proptest::collection::vec("[ -~\n\t]{0,12}", 1..5)) {
            let script = format!("printf '%s\\0' {}", shell_quote(&args));
            let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
            let parts: Vec<String> = String::from_utf8(out.stdout).unwrap()
                .split('\0').map(str::to_string).collect();
            prop_assert_eq!(&parts[..parts.len() - 1], &args[..]);
        }
    }
}
