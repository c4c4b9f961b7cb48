//! `switchboard-identity`: signing in to the Microsoft identity platform — or any OpenID
//! Connect provider — as a public client, and keeping the tokens.
//!
//! - [`discovery`]: the authority's endpoints, with Microsoft's `{tenantid}` issuer template;
//! - [`client`]: authorization code + PKCE (S256) in the system browser with a loopback
//!   redirect on 127.0.0.1 (RFC 8252), device code (RFC 8628), refresh with rotation, the
//!   claims challenge of a `WWW-Authenticate` header;
//! - [`jwt`]: id_token and access-token checks against the provider's JWKS;
//! - [`cache`]: the token cache (several accounts, access tokens per scope set renewed
//!   silently) in the OS keychain or an encrypted file;
//! - [`error`]: errors that say what to do, AADSTS codes turned into actions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_identity::IdentityError> {
//! use switchboard_identity::client::{ClientConfig, IdentityClient, Interactive, SystemBrowser};
//! let client = IdentityClient::discover(ClientConfig::new(
//!     "https://login.microsoftonline.com/organizations/v2.0",
//!     "8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20",
//! ))
//! .await?;
//! let req = Interactive { scopes: vec!["User.Read".into()], ..Default::default() };
//! let signed_in = client.sign_in_interactive(&req, &SystemBrowser, std::future::pending()).await?;
//! println!("hello {:?}", signed_in.account.username);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod cache;
pub mod client;
pub mod discovery;
pub mod error;
pub mod jwt;
pub mod loopback;
pub mod pkce;

pub use cache::{EncryptedFile, KeyPlace, Storage, TokenCache, KEYCHAIN_SERVICE};
pub use client::{Account, ClientConfig, IdentityClient, Interactive, Secret, SignIn, Tokens};
pub use error::{Action, IdentityError, ProviderError};
