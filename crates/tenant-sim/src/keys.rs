//! Token signing: an RS256 key generated at start (more after `POST /_sim/keys/rotate`),
//! the JWKS document, and the claims of the tokens the simulator issues and checks.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a key could not be made or a token not signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// RSA key generation failed (the OS random source).
    #[error("could not generate the RSA signing key: {0}")]
    Generate(String),
    /// The JWT library refused the key or claims.
    #[error("could not sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// One RSA signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh 2048-bit RSA key. This takes a moment in debug builds; tests that
    /// start many simulators can share one key through [`crate::Config::signing_key`].
    pub fn generate() -> Result<Arc<Self>, KeyError> {
        let mut rng = rsa::rand_core::OsRng;
        let key =
            RsaPrivateKey::new(&mut rng, 2048).map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let decoding = DecodingKey::from_rsa_components(&n, &e)?;
        let digest = Sha256::digest(n.as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..20]);
        Ok(Arc::new(Self {
            kid,
            encoding,
            decoding,
            n,
            e,
        }))
    }

    /// The key id in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// One entry of the JWKS document (`/discovery/v2.0/keys`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Key id.
    pub kid: String,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
    /// Always `RS256`.
    pub alg: String,
    /// The issuer template this key signs for.
    pub issuer: String,
}

/// `{"keys": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, newest first.
    pub keys: Vec<Jwk>,
}

/// The signing keys: the newest signs, all of them verify.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(first: Arc<SigningKey>) -> Self {
        Self { keys: vec![first] }
    }

    /// Adds a new current key; older ones keep verifying (at most 3 are kept).
    pub fn rotate(&mut self, key: Arc<SigningKey>) {
        self.keys.insert(0, key);
        self.keys.truncate(3);
    }

    /// The key that signs now.
    pub fn current(&self) -> &Arc<SigningKey> {
        // The ring is never empty: `new` takes a key and `rotate` only adds.
        &self.keys[0]
    }

    /// The JWKS document.
    pub fn jwks(&self, issuer_template: &str) -> Jwks {
        Jwks {
            keys: self
                .keys
                .iter()
                .map(|k| Jwk {
                    kty: "RSA".into(),
                    use_: "sig".into(),
                    kid: k.kid.clone(),
                    n: k.n.clone(),
                    e: k.e.clone(),
                    alg: "RS256".into(),
                    issuer: issuer_template.to_string(),
                })
                .collect(),
        }
    }

    /// Signs claims with the current key (RS256, `typ: JWT`, `kid`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let key = self.current();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Checks the signature (by `kid`, RS256 only) and decodes the claims. Time, audience and
    /// issuer are checked by the caller against the simulator's clock.
    pub fn verify<T: for<'de> Deserialize<'de>>(&self, token: &str) -> Result<T, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("unsupported alg {:?}", header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| "token header has no kid".to_string())?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| "signing key not found (unknown kid)".to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| format!("signature or claims invalid: {e}"))
    }
}

/// Claims of an access token (Microsoft's v2.0 access-token layout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// Audience: `https://graph.microsoft.com` or the API's app id URI.
    pub aud: String,
    /// `{issuer_base}/{tid}/v2.0`.
    pub iss: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// The client (application) id that asked for the token.
    pub azp: String,
    /// `0`: public client.
    pub azpacr: String,
    /// Display name.
    pub name: String,
    /// The user's object id.
    pub oid: String,
    /// The sign-in name (UPN).
    pub preferred_username: String,
    /// Delegated scopes, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// App roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Pairwise subject.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Unique token id.
    pub uti: String,
    /// `2.0`.
    pub ver: String,
    /// Client capabilities the app declared (`cp1`: it handles claims challenges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xms_cc: Vec<String>,
}

/// Claims of an id_token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdClaims {
    /// The client id.
    pub aud: String,
    /// `{issuer_base}/{tid}/v2.0`.
    pub iss: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Display name.
    pub name: String,
    /// The nonce of the authorization request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Object id.
    pub oid: String,
    /// Sign-in name.
    pub preferred_username: String,
    /// E-mail (with the `email` scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Pairwise subject.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Unique token id.
    pub uti: String,
    /// `2.0`.
    pub ver: String,
}

/// A pairwise subject for (user, app), as Entra ID makes one per application.
pub fn pairwise_sub(oid: &str, client_id: &str) -> String {
    let digest = Sha256::digest(format!("{oid}:{client_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..32])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One key for all unit tests (generation is slow in debug builds).
    pub(crate) fn test_key() -> Arc<SigningKey> {
        static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().expect("keygen"))
            .clone()
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            aud: "https://graph.microsoft.com".into(),
            iss: "http://x/t/v2.0".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            azp: "app".into(),
            azpacr: "0".into(),
            name: "A".into(),
            oid: "o".into(),
            preferred_username: "a@x".into(),
            scp: Some("User.Read".into()),
            roles: vec![],
            sub: "s".into(),
            tid: "t".into(),
            uti: "u".into(),
            ver: "2.0".into(),
            xms_cc: vec![],
        }
    }

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let ring = KeyRing::new(test_key());
        let token = ring.sign(&claims()).unwrap();
        let back: AccessClaims = ring.verify(&token).unwrap();
        assert_eq!(back, claims());
        // Alter the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut c = claims();
        c.oid = "someone-else".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert!(ring.verify::<AccessClaims>(&parts.join(".")).is_err());
        // alg none is refused.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(ring
            .verify::<AccessClaims>(&format!("{none_header}.{}.", parts[1]))
            .is_err());
    }

    #[test]
    fn jwks_lists_kid_and_components() {
        let ring = KeyRing::new(test_key());
        let jwks = ring.jwks("http://x/{tenantid}/v2.0");
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kid, ring.current().kid());
        assert_eq!(jwks.keys[0].e, "AQAB");
        // The JWKS alone is enough to verify a token.
        let token = ring.sign(&claims()).unwrap();
        let key = DecodingKey::from_rsa_components(&jwks.keys[0].n, &jwks.keys[0].e).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<AccessClaims>(&token, &key, &v).is_ok());
    }
}
