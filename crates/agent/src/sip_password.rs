//! The password of Settings → Phone's plain SIP account, kept apart from `settings.toml`:
//! in `sip-password.bin` in the user's data folder, AES-256-GCM encrypted, its key in the OS
//! keychain — the same place and threat model as the token cache
//! ([`switchboard_identity::EncryptedFile`]). Where no keychain answers (a server without a
//! desktop session, CI) the key is kept in a file beside it, readable by the user only, and
//! [`SipPasswordStore::fallback`] says why; `SWITCHBOARD_TOKEN_KEY=file` chooses that.
//!
//! The password goes from here into the phone's account and nowhere else: never into the
//! settings file, a log, the window or an event.

use switchboard_identity::{EncryptedFile, Storage};

use crate::call::Secret;
use crate::settings::SettingsError;

/// The file the password is kept in, in the user's data folder.
pub const SIP_PASSWORD_FILE: &str = "sip-password.bin";

/// The longest password kept.
pub const MAX_SIP_PASSWORD: usize = 256;

/// Where the plain SIP account's password is kept.
#[derive(Debug, Clone)]
pub struct SipPasswordStore {
    file: EncryptedFile,
}

/// Why the password could not be kept or read.
#[derive(Debug, thiserror::Error)]
#[error("the SIP account's password cannot be {what} {place}: {detail} — enter it again in Settings → Phone")]
pub struct PasswordError {
    what: &'static str,
    place: String,
    detail: String,
}

impl PasswordError {
    /// A stable code for the UI.
    pub fn code(&self) -> &'static str {
        "sip_password_unavailable"
    }
}

/// Checks a password as typed (not trimmed: spaces may belong to it).
pub fn check_password(password: &str) -> Result<(), SettingsError> {
    let bad = |reason: &str| SettingsError::InvalidSipAccount {
        field: "password",
        reason: reason.to_owned(),
    };
    if password.is_empty() {
        return Err(bad("it is empty — enter the password of the SIP account"));
    }
    if password.chars().count() > MAX_SIP_PASSWORD {
        return Err(bad("it is longer than 256 characters"));
    }
    if password.chars().any(char::is_control) {
        return Err(bad(
            "it holds control characters (a line break pasted with it?)",
        ));
    }
    Ok(())
}

impl SipPasswordStore {
    /// The user's store: the OS keychain holds the key where one answers, else a file beside.
    pub fn for_current_user() -> Result<Self, PasswordError> {
        EncryptedFile::for_current_user_named(SIP_PASSWORD_FILE)
            .map(Self::at)
            .map_err(|e| PasswordError {
                what: "kept",
                place: "for this user".into(),
                detail: e.to_string(),
            })
    }

    /// A store in `file` (tests: `EncryptedFile::new(path)` keeps the key beside it).
    pub fn at(file: EncryptedFile) -> Self {
        Self { file }
    }

    /// Why the key is in a file although the keychain was wanted, if it is.
    pub fn fallback(&self) -> Option<&str> {
        self.file.fallback()
    }

    /// Where the password is kept, for a person.
    pub fn describe(&self) -> String {
        self.file.describe()
    }

    fn failed(&self, what: &'static str, detail: String) -> PasswordError {
        PasswordError {
            what,
            place: format!("in {}", self.file.describe()),
            detail,
        }
    }

    /// The password, if one is kept.
    pub fn get(&self) -> Result<Option<Secret>, PasswordError> {
        let bytes = self.file.load().map_err(|d| self.failed("read", d))?;
        match bytes {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(|p| Some(Secret(p)))
                .map_err(|_| self.failed("read", "it is not text".into())),
        }
    }

    /// Whether a password is kept (without decrypting it).
    pub fn is_set(&self) -> bool {
        self.get().ok().flatten().is_some()
    }

    /// Keeps `password` (checked first).
    pub fn set(&self, password: &str) -> Result<(), SettingsError> {
        check_password(password)?;
        self.file
            .save(password.as_bytes())
            .map_err(|d| SettingsError::InvalidSipAccount {
                field: "password",
                reason: self.failed("kept", d).to_string(),
            })
    }

    /// Forgets the password (and its key).
    pub fn clear(&self) -> Result<(), PasswordError> {
        self.file.clear().map_err(|d| self.failed("deleted", d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_keychain_the_password_is_kept_encrypted_with_its_key_beside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIP_PASSWORD_FILE);
        let store = SipPasswordStore::at(EncryptedFile::new(&path));
        assert!(store.get().unwrap().is_none());
        assert!(!store.is_set());
        store.set("wonder land!").unwrap();
        assert_eq!(
            store.get().unwrap().map(|s| s.0).as_deref(),
            Some("wonder land!")
        );
        // Encrypted: the password's bytes are nowhere in the file.
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"wonder"));
        assert!(path.with_extension("key").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by the user only");
        }
        store.clear().unwrap();
        assert!(!path.exists() && !path.with_extension("key").exists());
        assert!(store.get().unwrap().is_none());
    }

    #[test]
    fn bad_passwords_are_refused_with_a_code_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIP_PASSWORD_FILE);
        let store = SipPasswordStore::at(EncryptedFile::new(&path));
        for bad in [
            "".to_owned(),
            "a\nb".to_owned(),
            "p".repeat(MAX_SIP_PASSWORD + 1),
        ] {
            let e = store.set(&bad).unwrap_err();
            assert_eq!(e.code(), "invalid_sip_password", "{bad:?}");
            assert!(e.to_string().contains("Settings → Phone"), "{e}");
            assert!(
                !e.to_string().contains(&bad) || bad.is_empty(),
                "not echoed: {e}"
            );
        }
        assert!(!path.exists());
    }

    #[test]
    fn a_damaged_file_says_so_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIP_PASSWORD_FILE);
        let store = SipPasswordStore::at(EncryptedFile::new(&path));
        store.set("wonderland").unwrap();
        std::fs::write(&path, b"SBTC1 not what was written").unwrap();
        let e = store.get().unwrap_err();
        assert_eq!(e.code(), "sip_password_unavailable");
        assert!(
            e.to_string().contains("enter it again in Settings → Phone"),
            "{e}"
        );
        assert!(!store.is_set());
    }
}
