//! Subcommands of the headless `switchboard-agent` CLI, one module per area.
//! Each module owns a clap `Subcommand` enum and an async `run` function; `main.rs` only
//! dispatches.
pub mod account;
pub mod audio;
pub mod call;
pub mod phone;
pub mod router;
pub mod work;

pub mod secrets {
    //! SIP passwords given to the CLI: from the environment or a file rather than the
    //! command line, which every user of the machine can read (`ps`, `/proc/*/cmdline`).

    use std::path::Path;

    use anyhow::{bail, Context};

    /// The flags that carry a password on the command line.
    const SECRET_FLAGS: &[&str] = &["--password", "--account"];

    /// Which password-carrying flags `argv` uses (`--password x`, `--password=x`,
    /// `--account u:p`), each once.
    pub fn secret_flags_in<I: IntoIterator<Item = String>>(argv: I) -> Vec<&'static str> {
        let mut found = Vec::new();
        for a in argv {
            if a == "--" {
                break;
            }
            for f in SECRET_FLAGS {
                let hit = a == *f || a.strip_prefix(f).is_some_and(|r| r.starts_with('='));
                if hit && !found.contains(f) {
                    found.push(*f);
                }
            }
        }
        found
    }

    /// Warns (on stderr, never with the value) about each password given on the command line.
    pub fn warn_about_argv() {
        for f in secret_flags_in(std::env::args().skip(1)) {
            let instead = if f == "--account" {
                "--accounts-file FILE (USER:PASSWORD lines)"
            } else {
                "SWITCHBOARD_SIP_PASSWORD or --password-file FILE"
            };
            eprintln!(
                "warning: a password given with {f} on the command line can be read by every user of this machine (ps, /proc); use {instead} instead"
            );
        }
    }

    /// Reads a secret file: the first line, without its line ending. Warns when other users
    /// may read the file.
    pub fn read_password_file(path: &Path) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        warn_if_shared(path);
        let first = text.lines().next().unwrap_or_default();
        if first.is_empty() {
            bail!(
                "the password file {} is empty: put the password on its first line",
                path.display()
            );
        }
        Ok(first.to_owned())
    }

    /// Reads an accounts file: one `USER:PASSWORD` a line; blank lines and `#` comments
    /// skipped.
    pub fn read_accounts_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the accounts file {}", path.display()))?;
        warn_if_shared(path);
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                    out.push((u.to_owned(), p.to_owned()))
                }
                _ => bail!("{}, line {}: expected USER:PASSWORD", path.display(), n + 1),
            }
        }
        Ok(out)
    }

    fn warn_if_shared(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: {} can be read by other users; chmod 600 it",
                        path.display()
                    );
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn argv(s: &str) -> Vec<String> {
            s.split_whitespace().map(String::from).collect()
        }

        #[test]
        fn passwords_on_the_command_line_are_noticed() {
            assert_eq!(
                secret_flags_in(argv("register --server sip:x --user a --password s3cret")),
                vec!["--password"]
            );
            assert_eq!(
                secret_flags_in(argv("register --password=s --account b:c --account d:e")),
                vec!["--password", "--account"]
            );
            assert!(
                secret_flags_in(argv("register --password-file f --accounts-file g")).is_empty()
            );
            assert!(secret_flags_in(argv("call sip:x -- --password")).is_empty());
        }

        #[test]
        fn password_and_accounts_files() {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("pw");
            std::fs::write(&p, "s3cret:with:colons\nignored\n").unwrap();
            assert_eq!(read_password_file(&p).unwrap(), "s3cret:with:colons");
            std::fs::write(&p, "\n").unwrap();
            assert!(read_password_file(&p)
                .unwrap_err()
                .to_string()
                .contains("empty"));
            let a = dir.path().join("accounts");
            std::fs::write(&a, "# team\nbob:b1\n\ncarol:c:2\n").unwrap();
            assert_eq!(
                read_accounts_file(&a).unwrap(),
                vec![
                    ("bob".to_owned(), "b1".to_owned()),
                    ("carol".to_owned(), "c:2".to_owned())
                ]
            );
            std::fs::write(&a, "bob\n").unwrap();
            assert!(read_accounts_file(&a)
                .unwrap_err()
                .to_string()
                .contains("line 1"));
        }
    }
}
