//! The token cache's key in a real Secret Service: gnome-keyring on a private D-Bus session
//! bus (both from Debian, installed by tests/peers/install.sh), checked from outside with
//! `secret-tool` (libsecret). Then the same cache with no keychain reachable: the file
//! fallback and its warning.
//!
//! One test function: it points this process's `DBUS_SESSION_BUS_ADDRESS` at its own bus.

use switchboard_e2e::SecretService;
use switchboard_identity::client::{Account, Secret, SignIn, Tokens};
use switchboard_identity::{EncryptedFile, KeyPlace, TokenCache, KEYCHAIN_SERVICE};

fn sign_in(oid: &str) -> SignIn {
    SignIn {
        account: Account {
            id: format!("{oid}.tenant"),
            oid: Some(oid.into()),
            tid: Some("tenant".into()),
            sub: format!("sub-{oid}"),
            username: Some(format!("{oid}@contoso.example")),
            name: None,
            authority: "https://login.microsoftonline.com/organizations/v2.0".into(),
        },
        tokens: Tokens {
            access_token: Secret::new(format!("at-{oid}")),
            expires_at: u64::MAX / 2,
            scopes: vec!["User.Read".into()],
            refresh_token: Some(Secret::new(format!("rt-{oid}"))),
            id_token: None,
        },
    }
}

#[test]
fn the_cache_key_lives_in_the_keychain_and_sign_out_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ss = rt
        .block_on(SecretService::start(dir.path()))
        .expect("gnome-keyring on a private bus (tests/peers/install.sh installs it)");
    // The process's keychain client connects to our bus (set before any use of it).
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &ss.address);
    std::env::set_var("SWITCHBOARD_DATA_DIR", dir.path().join("data"));
    std::env::remove_var("SWITCHBOARD_TOKEN_KEY");

    let storage = EncryptedFile::for_current_user().unwrap();
    let path = dir.path().join("data").join("token-cache.bin");
    let user = format!("token-cache-key:{}", path.display());
    assert_eq!(
        storage.key_place(),
        &KeyPlace::Keychain {
            service: KEYCHAIN_SERVICE.into(),
            user: user.clone()
        }
    );
    assert_eq!(storage.fallback(), None);

    let cache = TokenCache::open(Box::new(storage)).unwrap();
    cache.store(&sign_in("adele")).unwrap();
    cache.store(&sign_in("megan")).unwrap();
    let key = ss
        .lookup(KEYCHAIN_SERVICE, &user)
        .unwrap()
        .expect("the key is in the keychain");
    assert_eq!(key.len(), 44, "a base64 256-bit key: {key}");
    assert!(path.exists());
    assert!(
        !path.with_extension("key").exists(),
        "no key file beside it"
    );
    let on_disk = std::fs::read(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&on_disk).contains("rt-adele"),
        "encrypted"
    );

    // A restart: the same cache comes back through the keychain.
    let reopened = TokenCache::open(Box::new(EncryptedFile::for_current_user().unwrap())).unwrap();
    assert_eq!(reopened.accounts().len(), 2);

    // Sign-out: the first leaves the key, the last removes it and the file.
    assert!(reopened.remove("adele.tenant").unwrap());
    assert!(ss.lookup(KEYCHAIN_SERVICE, &user).unwrap().is_some());
    assert!(reopened.remove("megan.tenant").unwrap());
    assert_eq!(
        ss.lookup(KEYCHAIN_SERVICE, &user).unwrap(),
        None,
        "keychain emptied"
    );
    assert!(!path.exists());

    // No keychain on the bus any more: the fallback to a key file, with the reason.
    drop(ss);
    let storage = EncryptedFile::for_current_user().unwrap();
    assert_eq!(storage.key_place(), &KeyPlace::File);
    let why = storage.fallback().expect("a reason to show").to_owned();
    assert!(why.contains("keychain"), "{why}");
    let cache = TokenCache::open(Box::new(storage)).unwrap();
    cache.store(&sign_in("adele")).unwrap();
    assert!(path.with_extension("key").exists());
    let again = TokenCache::open(Box::new(EncryptedFile::new(&path))).unwrap();
    assert_eq!(again.accounts().len(), 1);
}
