//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4): where an authority's endpoints
//! are, with Microsoft's `{tenantid}` issuer template for the `common` and `organizations`
//! authorities.

use serde::Deserialize;
use url::Url;

use crate::IdentityError;

/// Microsoft's global authority for work and school accounts of any tenant.
pub const MICROSOFT_ORGANIZATIONS: &str = "https://login.microsoftonline.com/organizations/v2.0";

/// The authority of one Microsoft Entra tenant (id or domain).
pub fn microsoft_authority(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// What discovery tells about a provider (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    /// The `iss` of its tokens; may hold Microsoft's `{tenantid}` template.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// RFC 8628's endpoint (Microsoft: `/oauth2/v2.0/devicecode`).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Microsoft's cloud (`microsoftonline.com`, …): present only in Entra ID's documents.
    #[serde(default)]
    pub cloud_instance_name: Option<String>,
}

/// The template Microsoft puts in the issuer of multi-tenant authorities.
pub const TENANT_TEMPLATE: &str = "{tenantid}";

impl ProviderMetadata {
    /// Whether this is Entra ID (its discovery names a Microsoft cloud), whose token
    /// endpoints take `xms_cc` client capabilities in the `claims` parameter.
    pub fn is_entra(&self) -> bool {
        self.cloud_instance_name.is_some()
    }

    /// The issuer a token of tenant `tid` must carry.
    pub fn issuer_for(&self, tid: Option<&str>) -> Option<String> {
        if self.issuer.contains(TENANT_TEMPLATE) {
            tid.filter(|t| {
                !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .map(|t| self.issuer.replace(TENANT_TEMPLATE, t))
        } else {
            Some(self.issuer.clone())
        }
    }

    /// Parses a discovery document and checks it belongs to `authority` (mix-up protection,
    /// §4.3) and that every endpoint is https, or http on a loopback address (tests, the
    /// simulated tenant).
    pub fn from_document(authority: &str, body: &[u8]) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::Discovery {
            authority: authority.to_owned(),
            reason,
        };
        let m: ProviderMetadata = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the discovery document is not valid: {e}")))?;
        let auth = Url::parse(authority).map_err(|e| bad(e.to_string()))?;
        let iss = Url::parse(&m.issuer.replace(TENANT_TEMPLATE, "t"))
            .map_err(|e| bad(format!("its issuer is not a URL: {e}")))?;
        let trim = |s: &str| s.trim_end_matches('/').to_owned();
        let same_origin = iss.origin() == auth.origin();
        // Microsoft names a tenant by domain in the authority and by id in the issuer; with
        // the template the tenant segment varies too.
        let microsoft_style = same_origin
            && (m.issuer.contains(TENANT_TEMPLATE)
                || (auth.path().ends_with("/v2.0") && iss.path().ends_with("/v2.0")));
        if trim(&m.issuer) != trim(authority) && !microsoft_style {
            return Err(bad(format!(
                "it names {} as its issuer, not this authority",
                m.issuer
            )));
        }
        for (what, u) in [
            ("authorization_endpoint", Some(&m.authorization_endpoint)),
            ("token_endpoint", Some(&m.token_endpoint)),
            ("jwks_uri", Some(&m.jwks_uri)),
            (
                "device_authorization_endpoint",
                m.device_authorization_endpoint.as_ref(),
            ),
        ] {
            if let Some(u) = u {
                check_endpoint(u).map_err(|r| bad(format!("{what} {u:?}: {r}")))?;
            }
        }
        if let Some(methods) = &m.code_challenge_methods_supported {
            if !methods.iter().any(|x| x == "S256") {
                return Err(bad("it does not support PKCE with S256".into()));
            }
        }
        Ok(m)
    }

    /// Fetches and checks `authority`'s discovery document.
    pub async fn discover(http: &reqwest::Client, authority: &str) -> Result<Self, IdentityError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            authority.trim_end_matches('/')
        );
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| IdentityError::offline(&url, &e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| IdentityError::offline(&url, &e))?;
        if !status.is_success() {
            return Err(IdentityError::Discovery {
                authority: authority.to_owned(),
                reason: format!("{url} answered {status}"),
            });
        }
        Self::from_document(authority, &body)
    }
}

/// https, or http to a loopback address.
pub(crate) fn check_endpoint(u: &str) -> Result<Url, String> {
    let url = Url::parse(u).map_err(|e| e.to_string())?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("plain http is allowed only on this machine (127.0.0.1, localhost)".into()),
        s => Err(format!("the scheme {s} is not http(s)")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's discovery document for `common`, abridged to the fields we read (from
    /// https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration).
    const COMMON: &str = r#"{
      "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
      "token_endpoint_auth_methods_supported": ["client_secret_post","private_key_jwt","client_secret_basic"],
      "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
      "response_modes_supported": ["query","fragment","form_post"],
      "subject_types_supported": ["pairwise"],
      "id_token_signing_alg_values_supported": ["RS256"],
      "response_types_supported": ["code","id_token","code id_token","id_token token"],
      "scopes_supported": ["openid","profile","email","offline_access"],
      "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
      "request_uri_parameter_supported": false,
      "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
      "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
      "device_authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
      "http_logout_supported": true,
      "frontchannel_logout_supported": true,
      "end_session_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/logout",
      "claims_supported": ["sub","iss","cloud_instance_name","cloud_instance_host_name","cloud_graph_host_name","msgraph_host","aud","exp","iat","auth_time","acr","nonce","preferred_username","name","tid","ver","at_hash","c_hash","email"],
      "kerberos_endpoint": "https://login.microsoftonline.com/common/kerberos",
      "tenant_region_scope": null,
      "cloud_instance_name": "microsoftonline.com",
      "cloud_graph_host_name": "graph.windows.net",
      "msgraph_host": "graph.microsoft.com",
      "rbac_url": "https://pas.windows.net"
    }"#;

    #[test]
    fn microsofts_common_document_and_its_issuer_template() {
        let m = ProviderMetadata::from_document(
            "https://login.microsoftonline.com/common/v2.0",
            COMMON.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            m.device_authorization_endpoint.as_deref(),
            Some("https://login.microsoftonline.com/common/oauth2/v2.0/devicecode")
        );
        let tid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        assert_eq!(
            m.issuer_for(Some(tid)).unwrap(),
            format!("https://login.microsoftonline.com/{tid}/v2.0")
        );
        assert_eq!(m.issuer_for(None), None, "a templated issuer needs tid");
        assert_eq!(m.issuer_for(Some("../evil")), None);
    }

    #[test]
    fn a_document_for_another_issuer_is_refused() {
        let other = COMMON.replace(
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            "https://evil.example/",
        );
        let e = ProviderMetadata::from_document(
            "https://login.microsoftonline.com/common/v2.0",
            other.as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("evil.example"), "{e}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let doc = |base: &str| {
            serde_json::json!({
                "issuer": base, "authorization_endpoint": format!("{base}/auth"),
                "token_endpoint": format!("{base}/token"), "jwks_uri": format!("{base}/jwks"),
            })
            .to_string()
        };
        assert!(ProviderMetadata::from_document(
            "http://127.0.0.1:3000",
            doc("http://127.0.0.1:3000").as_bytes()
        )
        .is_ok());
        let e = ProviderMetadata::from_document(
            "http://idp.example",
            doc("http://idp.example").as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(ProviderMetadata::from_document("http://127.0.0.1:1", b"{}").is_err());
        assert!(ProviderMetadata::from_document("http://127.0.0.1:1", b"\xff").is_err());
    }
}
