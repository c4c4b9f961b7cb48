//! The token cache: per account, the latest refresh token (rotated on every use) and access
//! tokens per scope set, renewed silently a margin before they expire. Kept in a [`Storage`],
//! normally an [`EncryptedFile`].
//!
//! `EncryptedFile` holds the cache AES-256-GCM encrypted (tampering is detected); where its
//! random 256-bit key lives is its [`KeyPlace`]:
//!
//! - **the OS keychain** (Secret Service on Linux, Keychain on macOS, Credential Manager on
//!   Windows), the default wherever one answers. Only the key goes there: a cache with a few
//!   accounts outgrows what some keychains hold per entry (Credential Manager: 2,560 bytes).
//!   A copy of the file alone is useless; a program running as the same user needs the
//!   keychain unlocked (desktops unlock the login keyring at sign-in) and, on macOS, the
//!   person's consent.
//! - **a file beside the cache** (`.key`), the fallback where no keychain answers (a server
//!   without a desktop session, a container). Both files are readable by the user only (0600).
//!   That keeps tokens out of backups and copies that take one file, out of reach of other
//!   local users, and detects tampering; it does not protect against a program running as the
//!   same user, which can read both. The app says so when it has to use this fallback.
//!
//! Sign-out of the last account deletes the file and the key, in the keychain or beside.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::client::{unix_now, Account, IdentityClient, Secret, SignIn};
use crate::IdentityError;

/// Access tokens are renewed this long before they expire.
pub const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// Where the cache's bytes live.
pub trait Storage: Send + Sync {
    fn load(&self) -> Result<Option<Vec<u8>>, String>;
    fn save(&self, data: &[u8]) -> Result<(), String>;
    fn clear(&self) -> Result<(), String>;
    /// For messages and logs ("the file …", "the Secret Service").
    fn describe(&self) -> String;
}

const MAGIC: &[u8; 5] = b"SBTC1";

/// The keychain service name of Switchboard's entries.
pub const KEYCHAIN_SERVICE: &str = "switchboard";

/// Where an [`EncryptedFile`]'s key lives (see the module's threat model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    /// A file beside the cache, readable by the user only.
    File,
    /// An entry of the OS keychain.
    Keychain { service: String, user: String },
}

/// An AES-256-GCM encrypted file, its key in the keychain or beside it.
#[derive(Debug, Clone)]
pub struct EncryptedFile {
    path: PathBuf,
    key_place: KeyPlace,
    /// Why the key is in a file although a keychain was wanted.
    fallback: Option<String>,
}

impl EncryptedFile {
    /// A cache at `path` with its key in a file beside it.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            key_place: KeyPlace::File,
            fallback: None,
        }
    }

    /// A cache at `path` with its key in the OS keychain under (`service`, `user`).
    pub fn with_keychain(
        path: impl Into<PathBuf>,
        service: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            key_place: KeyPlace::Keychain {
                service: service.into(),
                user: user.into(),
            },
            fallback: None,
        }
    }

    /// `token-cache.bin` in the user's data folder (or `$SWITCHBOARD_DATA_DIR`), its key in
    /// the OS keychain when one answers, else in a file beside it ([`Self::fallback`] says
    /// why). `$SWITCHBOARD_TOKEN_KEY=file` skips the keychain.
    pub fn for_current_user() -> Result<Self, IdentityError> {
        Self::for_current_user_named("token-cache.bin")
    }

    /// As [`Self::for_current_user`], for another secret of the user's (`file_name` in the
    /// same data folder, its own key: e.g. a SIP account's password). The same
    /// `$SWITCHBOARD_TOKEN_KEY=file` keeps the key in a file beside it.
    pub fn for_current_user_named(file_name: &str) -> Result<Self, IdentityError> {
        let dir = match std::env::var_os("SWITCHBOARD_DATA_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => directories::ProjectDirs::from("cc", "Switchboard", "switchboard")
                .ok_or_else(|| IdentityError::Cache("no data folder for this user".into()))?
                .data_dir()
                .to_path_buf(),
        };
        let path = dir.join(file_name);
        if std::env::var("SWITCHBOARD_TOKEN_KEY").as_deref() == Ok("file") {
            return Ok(Self::new(path));
        }
        // One keychain entry per file, so that two data folders do not share a key
        // (`token-cache-key:…` for the token cache).
        let stem = file_name.split('.').next().unwrap_or(file_name);
        let user = format!("{stem}-key:{}", path.display());
        let mut me = Self::with_keychain(path, KEYCHAIN_SERVICE, user);
        if let Err(why) = me.keychain_usable() {
            tracing::warn!(reason = %why, file = file_name, "no OS keychain; the file's key is kept beside it");
            me.key_place = KeyPlace::File;
            me.fallback = Some(why);
        }
        Ok(me)
    }

    /// Where the key lives.
    pub fn key_place(&self) -> &KeyPlace {
        &self.key_place
    }

    /// Set when a keychain was wanted but did not answer: why, for the warning the person
    /// sees ("tokens are kept in an encrypted file readable by your user account").
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Asks the keychain for the entry: found or absent both mean it works. A keychain that
    /// is there but does not answer yet (gnome-keyring still starting after D-Bus activated
    /// it: "result not returned") is asked again for about a second before the file key is
    /// used; no keychain at all is known at once.
    fn keychain_usable(&self) -> Result<(), String> {
        let entry = self.keychain_entry()?;
        let mut attempt = 0;
        loop {
            match entry.get_password() {
                Ok(_) | Err(keyring::Error::NoEntry) => return Ok(()),
                Err(keyring::Error::NoStorageAccess(e)) if attempt < 4 => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "the keychain did not answer yet; asking again");
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                Err(e) => return Err(format!("the system keychain did not answer: {e}")),
            }
        }
    }

    fn keychain_entry(&self) -> Result<keyring::Entry, String> {
        let KeyPlace::Keychain { service, user } = &self.key_place else {
            return Err("no keychain entry for a file key".into());
        };
        keyring::Entry::new(service, user)
            .map_err(|e| format!("the system keychain refused the entry: {e}"))
    }

    fn key_path(&self) -> PathBuf {
        self.path.with_extension("key")
    }

    fn key(&self, create: bool) -> Result<Option<[u8; 32]>, String> {
        if let KeyPlace::Keychain { .. } = self.key_place {
            return self.keychain_key(create);
        }
        let kp = self.key_path();
        match std::fs::read(&kp) {
            Ok(k) if k.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k);
                Ok(Some(key))
            }
            Ok(_) => Err(format!("the key file {} is damaged", kp.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(&kp, &key)?;
                Ok(Some(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", kp.display())),
        }
    }

    fn keychain_key(&self, create: bool) -> Result<Option<[u8; 32]>, String> {
        use base64::engine::general_purpose::STANDARD as B64;
        use base64::Engine;
        let entry = self.keychain_entry()?;
        match entry.get_password() {
            Ok(text) => {
                let bytes = B64.decode(text.trim()).unwrap_or_default();
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| "the token cache key in the system keychain is damaged")?;
                Ok(Some(key))
            }
            Err(keyring::Error::NoEntry) if create => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                entry.set_password(&B64.encode(key)).map_err(|e| {
                    format!("cannot keep the token cache key in the system keychain: {e}")
                })?;
                Ok(Some(key))
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(format!("the system keychain did not answer: {e}")),
        }
    }
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::io::Write::write_all(&mut f, data)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Storage for EncryptedFile {
    fn load(&self) -> Result<Option<Vec<u8>>, String> {
        let blob = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let Some(key) = self.key(false)? else {
            return Err(format!(
                "{} has no key file beside it; sign in again",
                self.path.display()
            ));
        };
        if blob.len() < MAGIC.len() + 12 || &blob[..MAGIC.len()] != MAGIC {
            return Err(format!("{} is not a token cache", self.path.display()));
        }
        let (nonce, sealed) = blob[MAGIC.len()..].split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
        cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map(Some)
            .map_err(|_| {
                format!(
                    "{} was altered or its key replaced; sign in again",
                    self.path.display()
                )
            })
    }

    fn save(&self, data: &[u8]) -> Result<(), String> {
        let key = self.key(true)?.ok_or("no key")?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), data)
            .map_err(|e| e.to_string())?;
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        write_private(&self.path, &blob)
    }

    fn clear(&self) -> Result<(), String> {
        let mut files = vec![self.path.clone()];
        match self.key_place {
            KeyPlace::File => files.push(self.key_path()),
            KeyPlace::Keychain { .. } => match self.keychain_entry()?.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => {}
                Err(e) => {
                    return Err(format!(
                        "cannot delete the token cache key from the system keychain: {e}"
                    ))
                }
            },
        }
        for p in files {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot delete {}: {e}", p.display())),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self.key_place {
            KeyPlace::File => format!("the encrypted file {}", self.path.display()),
            KeyPlace::Keychain { .. } => format!(
                "the encrypted file {} (its key in the system keychain)",
                self.path.display()
            ),
        }
    }
}

/// An access token for a scope set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Access {
    scopes: Vec<String>,
    token: Secret,
    expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    account: Account,
    refresh_token: Option<Secret>,
    id_token: Option<Secret>,
    access: Vec<Access>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Data {
    accounts: Vec<Entry>,
}

/// Scopes compared without case and order, and without the sign-in ones.
fn normal(scopes: &[String]) -> Vec<String> {
    let mut v: Vec<String> = scopes
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .filter(|s| !crate::client::SIGN_IN_SCOPES.contains(&s.as_str()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Granted scopes cover the asked ones (Microsoft lists Graph scopes with their resource
/// prefix, `https://graph.microsoft.com/User.Read`).
fn covers(granted: &[String], asked: &[String]) -> bool {
    let g = normal(granted);
    normal(asked).iter().all(|a| {
        g.iter()
            .any(|x| x == a || x.rsplit('/').next() == Some(a.as_str()))
    })
}

/// Accounts and their tokens.
pub struct TokenCache {
    storage: Box<dyn Storage>,
    data: Mutex<Data>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("storage", &self.storage.describe())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Loads what `storage` holds; a damaged cache is reported (the caller signs in again).
    pub fn open(storage: Box<dyn Storage>) -> Result<Self, IdentityError> {
        let data = match storage.load().map_err(IdentityError::Cache)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                IdentityError::Cache(format!("{} is not valid: {e}", storage.describe()))
            })?,
            None => Data::default(),
        };
        Ok(Self {
            storage,
            data: Mutex::new(data),
        })
    }

    fn persist(&self, data: &Data) -> Result<(), IdentityError> {
        if data.accounts.is_empty() {
            return self.storage.clear().map_err(IdentityError::Cache);
        }
        let bytes = serde_json::to_vec(data).map_err(|e| IdentityError::Cache(e.to_string()))?;
        self.storage.save(&bytes).map_err(IdentityError::Cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a sign-in's tokens: the account, its (rotated) refresh token and the access
    /// token for its scopes.
    pub fn store(&self, s: &SignIn) -> Result<(), IdentityError> {
        let mut data = self.lock();
        let idx = match data
            .accounts
            .iter()
            .position(|e| e.account.id == s.account.id)
        {
            Some(i) => i,
            None => {
                data.accounts.push(Entry {
                    account: s.account.clone(),
                    refresh_token: None,
                    id_token: None,
                    access: Vec::new(),
                });
                data.accounts.len() - 1
            }
        };
        let e = &mut data.accounts[idx];
        e.account = s.account.clone();
        if s.tokens.refresh_token.is_some() {
            e.refresh_token = s.tokens.refresh_token.clone();
        }
        if s.tokens.id_token.is_some() {
            e.id_token = s.tokens.id_token.clone();
        }
        let scopes = normal(&s.tokens.scopes);
        e.access
            .retain(|a| normal(&a.scopes) != scopes && a.expires_at > unix_now());
        e.access.push(Access {
            scopes: s.tokens.scopes.clone(),
            token: s.tokens.access_token.clone(),
            expires_at: s.tokens.expires_at,
        });
        let snapshot = data.clone();
        drop(data);
        self.persist(&snapshot)
    }

    /// The signed-in accounts.
    pub fn accounts(&self) -> Vec<Account> {
        self.lock()
            .accounts
            .iter()
            .map(|e| e.account.clone())
            .collect()
    }

    /// The account with this id, or by user name (case-insensitive).
    pub fn find(&self, who: &str) -> Option<Account> {
        self.lock()
            .accounts
            .iter()
            .map(|e| &e.account)
            .find(|a| {
                a.id == who
                    || a.username
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(who))
            })
            .cloned()
    }

    /// The id_token of an account (for a sign-out hint).
    pub fn id_token(&self, account_id: &str) -> Option<Secret> {
        self.lock()
            .accounts
            .iter()
            .find(|e| e.account.id == account_id)
            .and_then(|e| e.id_token.clone())
    }

    /// A cached access token for `scopes` that is good for at least `margin`.
    pub fn cached(&self, account_id: &str, scopes: &[String], margin: Duration) -> Option<Secret> {
        let data = self.lock();
        let e = data.accounts.iter().find(|e| e.account.id == account_id)?;
        e.access
            .iter()
            .filter(|a| a.expires_at > unix_now() + margin.as_secs())
            .find(|a| covers(&a.scopes, scopes))
            .map(|a| a.token.clone())
    }

    /// An access token for `scopes`: the cached one, else a silent refresh (storing the
    /// rotated refresh token). An error whose action is to sign in (expired session, MFA,
    /// consent for new scopes) means an interactive sign-in is needed.
    pub async fn token(
        &self,
        client: &IdentityClient,
        account_id: &str,
        scopes: &[String],
    ) -> Result<Secret, IdentityError> {
        self.token_with_claims(client, account_id, scopes, None)
            .await
    }

    /// [`Self::token`] for a resource that sent a claims challenge: never the cached
    /// token; a refresh that carries the claims. When the provider wants the person for them
    /// (a revoked session, MFA), the error's action is to sign in, with the same claims.
    pub async fn token_with_claims(
        &self,
        client: &IdentityClient,
        account_id: &str,
        scopes: &[String],
        claims: Option<&str>,
    ) -> Result<Secret, IdentityError> {
        if claims.is_none() {
            if let Some(t) = self.cached(account_id, scopes, RENEW_MARGIN) {
                return Ok(t);
            }
        }
        let (account, refresh) = {
            let data = self.lock();
            let e = data
                .accounts
                .iter()
                .find(|e| e.account.id == account_id)
                .ok_or(IdentityError::NotSignedIn)?;
            (
                e.account.clone(),
                e.refresh_token.clone().ok_or(IdentityError::NotSignedIn)?,
            )
        };
        let fresh = client
            .refresh_with_claims(&account, &refresh, scopes, claims)
            .await?;
        self.store(&fresh)?;
        tracing::debug!(account = %account.id, "access token renewed silently");
        Ok(fresh.tokens.access_token)
    }

    /// Forgets an account (sign-out); the last one out empties the storage.
    pub fn remove(&self, account_id: &str) -> Result<bool, IdentityError> {
        let mut data = self.lock();
        let before = data.accounts.len();
        data.accounts.retain(|e| e.account.id != account_id);
        let removed = data.accounts.len() != before;
        let snapshot = data.clone();
        drop(data);
        self.persist(&snapshot)?;
        Ok(removed)
    }

    /// Drops the account's cached access tokens (a resource refused one: the next
    /// [`Self::token`] renews through the refresh token). Kept in memory only; the next
    /// store writes it through.
    pub fn expire_access_tokens(&self, account_id: &str) {
        let mut data = self.lock();
        for e in data
            .accounts
            .iter_mut()
            .filter(|e| e.account.id == account_id)
        {
            e.access.iter_mut().for_each(|a| a.expires_at = 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Tokens;

    fn sign_in(id: &str, rt: &str, scopes: &[&str], at: &str) -> SignIn {
        SignIn {
            account: Account {
                id: id.into(),
                oid: None,
                tid: None,
                sub: id.into(),
                username: Some(format!("{id}@contoso.example")),
                name: None,
                authority: "https://login.microsoftonline.com/organizations/v2.0".into(),
            },
            tokens: Tokens {
                access_token: Secret::new(at),
                expires_at: unix_now() + 3600,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                refresh_token: Some(Secret::new(rt)),
                id_token: None,
            },
        }
    }

    #[test]
    fn the_encrypted_file_round_trips_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let f = EncryptedFile::new(dir.path().join("c/token-cache.bin"));
        assert_eq!(f.load().unwrap(), None);
        f.save(b"refresh-token-123").unwrap();
        let raw = std::fs::read(dir.path().join("c/token-cache.bin")).unwrap();
        assert!(
            !raw.windows(8).any(|w| w == b"refresh-"),
            "stored encrypted"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in ["c/token-cache.bin", "c/token-cache.key"] {
                let mode = std::fs::metadata(dir.path().join(p))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{p} is private");
            }
        }
        assert_eq!(
            f.load().unwrap().as_deref(),
            Some(&b"refresh-token-123"[..])
        );
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(dir.path().join("c/token-cache.bin"), &bad).unwrap();
        assert!(f.load().unwrap_err().contains("altered"));
        f.clear().unwrap();
        assert!(!dir.path().join("c/token-cache.key").exists());
        assert_eq!(f.load().unwrap(), None);
    }

    #[test]
    fn accounts_rotate_refresh_tokens_and_keep_access_tokens_per_scope() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let cache = TokenCache::open(Box::new(EncryptedFile::new(&path))).unwrap();
        cache
            .store(&sign_in(
                "a",
                "rt1",
                &["https://graph.microsoft.com/User.Read", "openid"],
                "g1",
            ))
            .unwrap();
        cache
            .store(&sign_in(
                "a",
                "rt2",
                &["api://switchboard-router/access_as_user"],
                "r1",
            ))
            .unwrap();
        cache
            .store(&sign_in("b", "rtb", &["User.Read"], "gb"))
            .unwrap();
        let m = Duration::from_secs(60);
        assert_eq!(
            cache.cached("a", &["user.read".into()], m),
            Some(Secret::new("g1"))
        );
        assert_eq!(
            cache.cached("a", &["api://switchboard-router/access_as_user".into()], m),
            Some(Secret::new("r1"))
        );
        assert_eq!(cache.cached("a", &["Presence.Read.All".into()], m), None);
        assert_eq!(
            cache.find("B@contoso.example").map(|a| a.id),
            Some("b".into())
        );

        // Reopened from storage: the latest refresh token only.
        let again = TokenCache::open(Box::new(EncryptedFile::new(&path))).unwrap();
        assert_eq!(again.accounts().len(), 2);
        assert_eq!(
            again.lock().accounts[0].refresh_token,
            Some(Secret::new("rt2"))
        );
        assert!(again.remove("a").unwrap());
        assert!(path.exists(), "b is still signed in");
        assert!(again.remove("b").unwrap());
        assert!(!path.exists(), "the last sign-out empties the storage");
        assert!(!again.remove("b").unwrap());
    }
}
