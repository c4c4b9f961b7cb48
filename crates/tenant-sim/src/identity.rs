//! The Microsoft identity platform v2.0 endpoints, with Microsoft's paths and shapes.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /{tenant}/v2.0/.well-known/openid-configuration` | discovery; `issuer` is `{base}/{tid}/v2.0`, for `common`/`organizations` the template `{base}/{tenantid}/v2.0` |
//! | `GET /{tenant}/discovery/v2.0/keys` | JWKS |
//! | `GET /{tenant}/oauth2/v2.0/authorize` | authorization request → sign-in page |
//! | `POST /{tenant}/oauth2/v2.0/authorize` | the sign-in form → redirect with `code` (query or form_post) |
//! | `POST /{tenant}/oauth2/v2.0/token` | `authorization_code` (+PKCE), `refresh_token` (rotating), device code |
//! | `POST /{tenant}/oauth2/v2.0/devicecode` | device authorization |
//! | `GET/POST /devicelogin` | where the person enters the device code |
//! | `GET /{tenant}/oauth2/v2.0/logout` | end session (redirects to `post_logout_redirect_uri`) |
//!
//! `{tenant}` is the tenant id, the demo domain, `common` or `organizations`; anything else
//! is AADSTS90002. Scopes: Graph's (`User.Read`, `Presence.Read.All`, ..., bare or as
//! `https://graph.microsoft.com/X`, `.default`), the router API's
//! (`api://switchboard-router/access_as_user` or `/.default`) and the OpenID ones. Scopes
//! of two resources in one request are AADSTS28000, as in Entra ID. Consent is assumed.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use url::Url;

use crate::directory::{DemoUser, DEMO_DOMAIN, DEMO_PASSWORD};
use crate::errors::AadError;
use crate::grants::{random_token, DeviceState, Grant};
use crate::keys::{pairwise_sub, AccessClaims, IdClaims};
use crate::{
    lock, pages, read, AppState, Shared, GRAPH_APP_ID, GRAPH_RESOURCE, ROUTER_API,
    ROUTER_API_CLIENT_ID,
};

/// Routes of the identity platform.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize).post(authorize_submit),
        )
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            axum::routing::post(devicecode),
        )
        .route("/{tenant}/oauth2/v2.0/logout", get(logout))
        .route(
            "/devicelogin",
            get(devicelogin_page).post(devicelogin_submit),
        )
}

/// Graph scopes the simulated tenant knows.
pub const GRAPH_SCOPES: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "Directory.Read.All",
    "Presence.Read",
    "Presence.Read.All",
    "Presence.ReadWrite",
    "Presence.ReadWrite.All",
];
/// What `https://graph.microsoft.com/.default` grants (the app registration's permissions).
pub const GRAPH_DEFAULT: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "Presence.Read",
    "Presence.Read.All",
    "Presence.ReadWrite",
];
/// The router API's delegated scope.
pub const ROUTER_SCOPE: &str = "access_as_user";

/// Which API a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Microsoft Graph.
    Graph,
    /// The router's API.
    Router,
}

/// A parsed `scope` parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeRequest {
    /// The resource of the access token.
    pub resource: Resource,
    /// Its scopes (bare names).
    pub scopes: Vec<String>,
    /// `openid` asked.
    pub openid: bool,
    /// `profile` asked.
    pub profile: bool,
    /// `email` asked.
    pub email: bool,
    /// `offline_access` asked.
    pub offline_access: bool,
}

impl ScopeRequest {
    /// The `scope` of the token response.
    pub fn response_scope(&self) -> String {
        let mut out: Vec<String> = match self.resource {
            Resource::Graph => self.scopes.clone(),
            Resource::Router => self
                .scopes
                .iter()
                .map(|s| format!("{ROUTER_API}/{s}"))
                .collect(),
        };
        for (on, s) in [
            (self.openid, "openid"),
            (self.profile, "profile"),
            (self.email, "email"),
            (self.offline_access, "offline_access"),
        ] {
            if on {
                out.push(s.to_string());
            }
        }
        out.join(" ")
    }
}

/// Checks the `scope` of an authorization request. Entra ID lets one sign-in ask consent for
/// the scopes of several resources (Graph and the router's API); the token endpoint then
/// issues a token for one resource at a time, and answers AADSTS28000 to a `scope` that names
/// more than one ([`parse_scopes`]). Returns the request of the first resource named.
pub fn parse_consent_scopes(scope: &str) -> Result<ScopeRequest, AadError> {
    match parse_scopes(scope) {
        Err(e) if e.code == 28000 => {
            for s in scope.split_whitespace() {
                parse_scopes(s)?;
            }
            let first = scope
                .split_whitespace()
                .find(|s| !matches!(*s, "openid" | "profile" | "email" | "offline_access"))
                .unwrap_or("");
            parse_scopes(first)
        }
        r => r,
    }
}

/// Parses and checks a `scope` parameter.
pub fn parse_scopes(scope: &str) -> Result<ScopeRequest, AadError> {
    let mut req = ScopeRequest {
        resource: Resource::Graph,
        scopes: Vec::new(),
        openid: false,
        profile: false,
        email: false,
        offline_access: false,
    };
    let mut resource: Option<Resource> = None;
    let mut set_resource = |r: Resource| -> Result<(), AadError> {
        match resource {
            Some(existing) if existing != r => Err(AadError::new(
                "invalid_request",
                28000,
                "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ... is not valid.",
            )),
            _ => {
                resource = Some(r);
                Ok(())
            }
        }
    };
    for s in scope.split_whitespace() {
        match s {
            "openid" => req.openid = true,
            "profile" => req.profile = true,
            "email" => req.email = true,
            "offline_access" => req.offline_access = true,
            _ => {
                let (res, name) = if let Some(rest) =
                    s.strip_prefix(ROUTER_API).and_then(|r| r.strip_prefix('/'))
                {
                    (Resource::Router, rest)
                } else if let Some(rest) = s
                    .strip_prefix(GRAPH_RESOURCE)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    (Resource::Graph, rest)
                } else if let Some(rest) = s
                    .strip_prefix(GRAPH_APP_ID)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    (Resource::Graph, rest)
                } else if s.contains("://") {
                    return Err(AadError::new("invalid_resource", 500011, format!("The resource principal named {s} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant.")));
                } else {
                    (Resource::Graph, s)
                };
                set_resource(res)?;
                let known: &[&str] = match res {
                    Resource::Graph => GRAPH_SCOPES,
                    Resource::Router => &[ROUTER_SCOPE],
                };
                let add: Vec<&str> = if name == ".default" {
                    match res {
                        Resource::Graph => GRAPH_DEFAULT.to_vec(),
                        Resource::Router => vec![ROUTER_SCOPE],
                    }
                } else if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
                    vec![*k]
                } else {
                    return Err(AadError::new("invalid_scope", 70011, format!("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope '{s}' does not exist.")));
                };
                for a in add {
                    if !req.scopes.iter().any(|x| x == a) {
                        req.scopes.push(a.to_string());
                    }
                }
            }
        }
    }
    req.resource = resource.unwrap_or(Resource::Graph);
    if resource.is_none() {
        // Only OpenID scopes: Entra ID issues a Graph token with User.Read.
        req.scopes.push("User.Read".to_string());
    }
    if scope.split_whitespace().next().is_none() {
        return Err(AadError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    }
    Ok(req)
}

/// The claims of an access token for a user.
pub(crate) fn access_claims(
    shared: &Shared,
    u: &DemoUser,
    client_id: &str,
    req: &ScopeRequest,
    capabilities: &[String],
) -> AccessClaims {
    let now = shared.clock.unix();
    let tid = shared.config.tenant_id.clone();
    let (aud, scp, roles) = match req.resource {
        Resource::Graph => {
            let mut scp = req.scopes.clone();
            for (on, s) in [
                (req.openid, "openid"),
                (req.profile, "profile"),
                (req.email, "email"),
            ] {
                if on {
                    scp.push(s.to_string());
                }
            }
            (GRAPH_RESOURCE.to_string(), scp.join(" "), Vec::new())
        }
        Resource::Router => (
            ROUTER_API_CLIENT_ID.to_string(),
            req.scopes.join(" "),
            u.roles.clone(),
        ),
    };
    AccessClaims {
        aud,
        iss: shared.issuer_for(&tid),
        iat: now,
        nbf: now,
        exp: now + i64::try_from(shared.config.token_lifetime.as_secs()).unwrap_or(3600),
        azp: client_id.to_string(),
        azpacr: "0".into(),
        name: u.display_name.clone(),
        oid: u.id.clone(),
        preferred_username: u.user_principal_name.clone(),
        scp: Some(scp),
        roles,
        sub: pairwise_sub(&u.id, client_id),
        tid,
        uti: random_token(16),
        ver: "2.0".into(),
        xms_cc: capabilities.to_vec(),
    }
}

/// The client capabilities a token request declares: `access_token.xms_cc.values` of its
/// `claims` parameter (`cp1`, …). Anything unreadable declares none.
pub(crate) fn capabilities_of(claims: Option<&String>) -> Vec<String> {
    claims
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|v| {
            v.pointer("/access_token/xms_cc/values")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
        })
        .unwrap_or_default()
}

fn id_claims(
    shared: &Shared,
    u: &DemoUser,
    client_id: &str,
    nonce: Option<String>,
    email: bool,
) -> IdClaims {
    let now = shared.clock.unix();
    let tid = shared.config.tenant_id.clone();
    IdClaims {
        aud: client_id.to_string(),
        iss: shared.issuer_for(&tid),
        iat: now,
        nbf: now,
        exp: now + i64::try_from(shared.config.token_lifetime.as_secs()).unwrap_or(3600),
        name: u.display_name.clone(),
        nonce,
        oid: u.id.clone(),
        preferred_username: u.user_principal_name.clone(),
        email: email.then(|| u.mail.clone()),
        sub: pairwise_sub(&u.id, client_id),
        tid,
        uti: random_token(16),
        ver: "2.0".into(),
    }
}

/// Checks an access token the simulator issued: signature, `iss`, `tid`, `exp`/`nbf` (by the
/// simulator's clock, 5 minutes of skew) and that `aud` is one of `audiences`.
pub(crate) fn check_access_token(
    shared: &Shared,
    token: &str,
    audiences: &[&str],
) -> Result<AccessClaims, String> {
    let claims: AccessClaims = read(&shared.keys).verify(token)?;
    if !audiences.contains(&claims.aud.as_str()) {
        return Err("Invalid audience.".into());
    }
    if claims.tid != shared.config.tenant_id || claims.iss != shared.issuer_for(&claims.tid) {
        return Err("Invalid issuer.".into());
    }
    let now = shared.clock.unix();
    if claims.exp <= now {
        return Err("Lifetime validation failed, the token is expired.".into());
    }
    if claims.nbf > now + 300 {
        return Err("Lifetime validation failed, the token is not yet valid.".into());
    }
    Ok(claims)
}

fn resolve_tenant(shared: &Shared, tenant: &str) -> Result<bool, AadError> {
    let t = tenant.to_ascii_lowercase();
    if t == shared.config.tenant_id.to_ascii_lowercase() || t == DEMO_DOMAIN {
        Ok(false)
    } else if t == "common" || t == "organizations" {
        Ok(true)
    } else {
        Err(AadError::new(
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        ))
    }
}

#[derive(Serialize)]
struct Discovery {
    token_endpoint: String,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    jwks_uri: String,
    response_modes_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    scopes_supported: Vec<&'static str>,
    issuer: String,
    request_uri_parameter_supported: bool,
    userinfo_endpoint: String,
    authorization_endpoint: String,
    device_authorization_endpoint: String,
    http_logout_supported: bool,
    frontchannel_logout_supported: bool,
    end_session_endpoint: String,
    claims_supported: Vec<&'static str>,
    code_challenge_methods_supported: Vec<&'static str>,
    tenant_region_scope: &'static str,
    cloud_instance_name: &'static str,
    cloud_graph_host_name: &'static str,
    msgraph_host: String,
    rbac_url: &'static str,
}

async fn discovery(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    let multi = match resolve_tenant(&s, &tenant) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let base = format!("{}/{}", s.public_url, tenant);
    let issuer = if multi {
        s.issuer_for("{tenantid}")
    } else {
        s.issuer_for(&s.config.tenant_id)
    };
    let host = Url::parse(&s.public_url).ok().and_then(|u| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    });
    Json(Discovery {
        token_endpoint: format!("{base}/oauth2/v2.0/token"),
        token_endpoint_auth_methods_supported: vec![
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        jwks_uri: format!("{base}/discovery/v2.0/keys"),
        response_modes_supported: vec!["query", "fragment", "form_post"],
        subject_types_supported: vec!["pairwise"],
        id_token_signing_alg_values_supported: vec!["RS256"],
        response_types_supported: vec!["code", "id_token", "code id_token", "id_token token"],
        scopes_supported: vec!["openid", "profile", "email", "offline_access"],
        issuer,
        request_uri_parameter_supported: false,
        userinfo_endpoint: format!("{}/oidc/userinfo", s.public_url),
        authorization_endpoint: format!("{base}/oauth2/v2.0/authorize"),
        device_authorization_endpoint: format!("{base}/oauth2/v2.0/devicecode"),
        http_logout_supported: true,
        frontchannel_logout_supported: true,
        end_session_endpoint: format!("{base}/oauth2/v2.0/logout"),
        claims_supported: vec![
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        code_challenge_methods_supported: vec!["plain", "S256"],
        tenant_region_scope: "WW",
        cloud_instance_name: "microsoftonline.com",
        cloud_graph_host_name: "graph.windows.net",
        msgraph_host: host.unwrap_or_else(|| "graph.microsoft.com".into()),
        rbac_url: "https://pas.windows.net",
    })
    .into_response()
}

async fn jwks(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    if let Err(e) = resolve_tenant(&s, &tenant) {
        return e.into_response();
    }
    let doc = read(&s.keys).jwks(&s.issuer_for("{tenantid}"));
    Json(doc).into_response()
}

/// Whether a redirect URI is acceptable for the (public, desktop) app registration:
/// loopback on any port (RFC 8252 §7.3; registered as `http://localhost`) or Microsoft's
/// native-client page.
pub fn redirect_allowed(uri: &str) -> bool {
    if uri == "https://login.microsoftonline.com/common/oauth2/nativeclient" {
        return true;
    }
    match Url::parse(uri) {
        Ok(u) => {
            u.scheme() == "http"
                && matches!(
                    u.host_str(),
                    Some("localhost") | Some("127.0.0.1") | Some("[::1]")
                )
                && u.fragment().is_none()
        }
        Err(_) => false,
    }
}

fn client_known(s: &Shared, client_id: &str) -> bool {
    s.config
        .client_ids
        .iter()
        .any(|c| c.eq_ignore_ascii_case(client_id))
}

fn unknown_client(s: &Shared, client_id: &str) -> AadError {
    let mut e = AadError::new(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            s.config.tenant_id
        ),
    );
    e.status = StatusCode::BAD_REQUEST;
    e
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, Html(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Redirects to the client with parameters (query, fragment or form_post).
fn respond_to_client(redirect_uri: &str, mode: &str, params: Vec<(&str, String)>) -> Response {
    if mode == "form_post" {
        return html(StatusCode::OK, pages::form_post(redirect_uri, &params));
    }
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error(50011, "The redirect URI is not a valid URL."),
        );
    };
    if mode == "fragment" {
        let frag: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        url.set_fragment(Some(&frag));
    } else {
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    }
    Redirect::to(url.as_str()).into_response()
}

fn redirect_error(p: &HashMap<String, String>, error: &str, code: u32, text: &str) -> Response {
    let redirect = p.get("redirect_uri").cloned().unwrap_or_default();
    let mode = p
        .get("response_mode")
        .map(String::as_str)
        .unwrap_or("query");
    let mut params = vec![
        ("error", error.to_string()),
        ("error_description", format!("AADSTS{code}: {text}")),
    ];
    if let Some(st) = p.get("state") {
        params.push(("state", st.clone()));
    }
    respond_to_client(&redirect, mode, params)
}

/// Validates an authorization request. `Err` is the response to send (an error page when
/// the client or redirect cannot be trusted, else a redirect with `error`).
fn check_authorize(
    s: &Shared,
    tenant: &str,
    p: &HashMap<String, String>,
) -> Result<ScopeRequest, Box<Response>> {
    if let Err(e) = resolve_tenant(s, tenant) {
        return Err(Box::new(html(
            StatusCode::BAD_REQUEST,
            pages::error(e.code, &e.description),
        )));
    }
    let client_id = p.get("client_id").map(String::as_str).unwrap_or("");
    if client_id.is_empty() {
        return Err(Box::new(html(
            StatusCode::BAD_REQUEST,
            pages::error(
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ),
        )));
    }
    if !client_known(s, client_id) {
        let e = unknown_client(s, client_id);
        return Err(Box::new(html(
            StatusCode::BAD_REQUEST,
            pages::error(e.code, &e.description),
        )));
    }
    let redirect = p.get("redirect_uri").map(String::as_str).unwrap_or("");
    if !redirect_allowed(redirect) {
        return Err(Box::new(html(
            StatusCode::BAD_REQUEST,
            pages::error(50011, &format!("The redirect URI '{redirect}' specified in the request does not match the redirect URIs configured for the application '{client_id}'.")),
        )));
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(Box::new(redirect_error(
            p,
            "unsupported_response_type",
            70005,
            "The response_type is not supported; use 'code'.",
        )));
    }
    if let Some(m) = p.get("code_challenge_method") {
        if m != "S256" && m != "plain" {
            return Err(Box::new(redirect_error(
                p,
                "invalid_request",
                50147,
                "The code_challenge_method is not supported; use S256.",
            )));
        }
    }
    let req = match parse_consent_scopes(p.get("scope").map(String::as_str).unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return Err(Box::new(redirect_error(p, e.error, e.code, &e.description))),
    };
    if p.get("prompt").map(String::as_str) == Some("none") {
        return Err(Box::new(redirect_error(
            p,
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        )));
    }
    Ok(req)
}

const AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "login_hint",
    "domain_hint",
    "claims",
];

fn hidden_fields(p: &HashMap<String, String>) -> Vec<(String, String)> {
    AUTHORIZE_PARAMS
        .iter()
        .filter_map(|k| p.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

async fn authorize(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check_authorize(&s, &tenant, &p) {
        return *r;
    }
    let users = read(&s.directory)
        .all()
        .iter()
        .take(60)
        .cloned()
        .collect::<Vec<_>>();
    let hint = p.get("login_hint").cloned().unwrap_or_default();
    html(
        StatusCode::OK,
        pages::login(
            &hidden_fields(&p),
            &users,
            &hint,
            None,
            &format!("/{tenant}/oauth2/v2.0/authorize"),
        ),
    )
}

/// Checks a demo user's credentials.
fn sign_in(s: &Shared, login: &str, password: &str) -> Result<DemoUser, &'static str> {
    let dir = read(&s.directory);
    let u = dir.find(login.trim()).ok_or("AADSTS50034: We couldn't find an account with that username. Try another, or pick one of the demo users below.")?;
    if password != DEMO_PASSWORD {
        return Err("AADSTS50126: Your account or password is incorrect. (Every demo user's password is shown below.)");
    }
    Ok(u.clone())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn authorize_submit(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let p = form(&body);
    let req = match check_authorize(&s, &tenant, &p) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let login = p.get("login").cloned().unwrap_or_default();
    let user = match sign_in(
        &s,
        &login,
        p.get("passwd").map(String::as_str).unwrap_or(""),
    ) {
        Ok(u) => u,
        Err(msg) => {
            tracing::info!(login = %login, "demo sign-in refused");
            let users = read(&s.directory)
                .all()
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>();
            return html(
                StatusCode::OK,
                pages::login(
                    &hidden_fields(&p),
                    &users,
                    &login,
                    Some(msg),
                    &format!("/{tenant}/oauth2/v2.0/authorize"),
                ),
            );
        }
    };
    if let Some(c) = p.get("claims") {
        tracing::info!(user = %user.user_principal_name, "interactive sign-in with a claims request");
        *lock(&s.last_claims) = Some(c.clone());
    }
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    let redirect = p.get("redirect_uri").cloned().unwrap_or_default();
    let challenge = p.get("code_challenge").filter(|c| !c.is_empty()).map(|c| {
        (
            c.clone(),
            p.get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".into()),
        )
    });
    let scopes: Vec<String> = p
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let _ = req;
    let grant = Grant {
        client_id,
        oid: user.id.clone(),
        scopes,
        nonce: p.get("nonce").cloned(),
    };
    let code = lock(&s.grants).issue_code(grant, &redirect, challenge, s.clock.now());
    tracing::info!(user = %user.user_principal_name, "demo user signed in; authorization code issued");
    let mut params = vec![("code", code)];
    if let Some(st) = p.get("state") {
        params.push(("state", st.clone()));
    }
    params.push(("session_state", uuid::Uuid::new_v4().to_string()));
    respond_to_client(
        &redirect,
        p.get("response_mode")
            .map(String::as_str)
            .unwrap_or("query"),
        params,
    )
}

/// The token endpoint's success body.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// `Bearer`.
    pub token_type: &'static str,
    /// Granted scopes.
    pub scope: String,
    /// Seconds.
    pub expires_in: u64,
    /// Seconds.
    pub ext_expires_in: u64,
    /// JWT.
    pub access_token: String,
    /// Opaque, rotating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn issue(
    s: &Shared,
    user: &DemoUser,
    client_id: &str,
    req: &ScopeRequest,
    nonce: Option<String>,
    refresh: Option<String>,
    capabilities: &[String],
) -> Result<TokenResponse, AadError> {
    let keys = read(&s.keys);
    let sign_err = |e: crate::keys::KeyError| AadError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        code: 90033,
        description: e.to_string(),
    };
    let access_token = keys
        .sign(&access_claims(s, user, client_id, req, capabilities))
        .map_err(sign_err)?;
    let id_token = if req.openid {
        Some(
            keys.sign(&id_claims(s, user, client_id, nonce, req.email))
                .map_err(sign_err)?,
        )
    } else {
        None
    };
    let lifetime = s.config.token_lifetime.as_secs();
    Ok(TokenResponse {
        token_type: "Bearer",
        scope: req.response_scope(),
        expires_in: lifetime,
        ext_expires_in: lifetime,
        access_token,
        refresh_token: refresh,
        id_token,
    })
}

fn token_json(t: TokenResponse) -> Response {
    let mut r = Json(t).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AadError> {
    p.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            AadError::new(
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
}

async fn token(State(s): State<AppState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    match token_inner(&s, &tenant, &form(&body)) {
        Ok(t) => token_json(t),
        Err(e) => {
            tracing::info!(error = e.error, code = e.code, "token request refused");
            e.into_response()
        }
    }
}

fn token_inner(
    s: &Shared,
    tenant: &str,
    p: &HashMap<String, String>,
) -> Result<TokenResponse, AadError> {
    resolve_tenant(s, tenant)?;
    let grant_type = required(p, "grant_type")?;
    let client_id = required(p, "client_id")?;
    if !client_known(s, client_id) {
        return Err(unknown_client(s, client_id));
    }
    let now = s.clock.now();
    // Entra issues `xms_cc` into the access token when the request declares capabilities.
    let caps = capabilities_of(p.get("claims"));
    let find_user = |oid: &str| -> Result<DemoUser, AadError> {
        read(&s.directory).find(oid).cloned().ok_or_else(|| {
            AadError::new(
                "invalid_grant",
                50034,
                "The user account does not exist in the directory.",
            )
        })
    };
    match grant_type {
        "authorization_code" => {
            let code = required(p, "code")?;
            let grant = lock(&s.grants).redeem_code(
                code,
                client_id,
                p.get("redirect_uri").map(String::as_str),
                p.get("code_verifier").map(String::as_str),
                now,
            )?;
            let scope_line = p
                .get("scope")
                .cloned()
                .unwrap_or_else(|| grant.scopes.join(" "));
            let req = parse_scopes(&scope_line)?;
            let user = find_user(&grant.oid)?;
            let wants_refresh =
                req.offline_access || grant.scopes.iter().any(|x| x == "offline_access");
            let refresh = wants_refresh.then(|| lock(&s.grants).issue_refresh(grant.clone(), now));
            issue(
                s,
                &user,
                client_id,
                &req,
                grant.nonce.clone(),
                refresh,
                &caps,
            )
        }
        "refresh_token" => {
            let rt = required(p, "refresh_token")?;
            let (grant, new_rt) = lock(&s.grants).rotate_refresh(rt, client_id, now)?;
            let scope_line = p
                .get("scope")
                .cloned()
                .unwrap_or_else(|| grant.scopes.join(" "));
            let req = parse_scopes(&scope_line)?;
            let user = find_user(&grant.oid)?;
            issue(s, &user, client_id, &req, None, Some(new_rt), &caps)
        }
        "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
            let dc = p
                .get("device_code")
                .or_else(|| p.get("code"))
                .map(String::as_str)
                .filter(|v| !v.is_empty());
            let dc = dc.ok_or_else(|| {
                AadError::new(
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'device_code'.",
                )
            })?;
            let (grant, scopes) = lock(&s.grants).poll_device(dc, client_id, now)?;
            let req = parse_scopes(&scopes.join(" "))?;
            let user = find_user(&grant.oid)?;
            let refresh = req
                .offline_access
                .then(|| lock(&s.grants).issue_refresh(grant.clone(), now));
            issue(s, &user, client_id, &req, None, refresh, &caps)
        }
        other => Err(AadError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

#[derive(Serialize)]
struct DeviceCodeResponse {
    user_code: String,
    device_code: String,
    verification_uri: String,
    expires_in: u64,
    interval: u64,
    message: String,
}

async fn devicecode(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let p = form(&body);
    let result = (|| -> Result<DeviceCodeResponse, AadError> {
        resolve_tenant(&s, &tenant)?;
        let client_id = required(&p, "client_id")?;
        if !client_known(&s, client_id) {
            return Err(unknown_client(&s, client_id));
        }
        let scope = required(&p, "scope")?;
        parse_scopes(scope)?;
        let scopes = scope.split_whitespace().map(str::to_string).collect();
        let start = lock(&s.grants).start_device(
            client_id,
            scopes,
            s.config.device_code_interval,
            s.clock.now(),
        );
        let uri = format!("{}/devicelogin", s.public_url);
        Ok(DeviceCodeResponse {
            message: format!("To sign in, use a web browser to open the page {uri} and enter the code {} to authenticate.", start.user_code),
            user_code: start.user_code,
            device_code: start.device_code,
            verification_uri: uri,
            expires_in: start.expires_in,
            interval: start.interval,
        })
    })();
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn devicelogin_page(
    State(s): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let users = read(&s.directory)
        .all()
        .iter()
        .take(60)
        .cloned()
        .collect::<Vec<_>>();
    html(
        StatusCode::OK,
        pages::device(&users, p.get("otc").map(String::as_str).unwrap_or(""), None),
    )
}

async fn devicelogin_submit(State(s): State<AppState>, body: Bytes) -> Response {
    let p = form(&body);
    let code = p.get("otc").cloned().unwrap_or_default();
    let users = read(&s.directory)
        .all()
        .iter()
        .take(60)
        .cloned()
        .collect::<Vec<_>>();
    let now = s.clock.now();
    if p.get("decision").map(String::as_str) == Some("decline") {
        return match lock(&s.grants).decide_device(&code, DeviceState::Declined, now) {
            Ok(()) => html(
                StatusCode::OK,
                pages::message(
                    "Sign-in cancelled",
                    "You cancelled the sign-in. You may now close this window.",
                ),
            ),
            Err(msg) => html(StatusCode::OK, pages::device(&users, &code, Some(msg))),
        };
    }
    let user = match sign_in(
        &s,
        p.get("login").map(String::as_str).unwrap_or(""),
        p.get("passwd").map(String::as_str).unwrap_or(""),
    ) {
        Ok(u) => u,
        Err(msg) => return html(StatusCode::OK, pages::device(&users, &code, Some(msg))),
    };
    match lock(&s.grants).decide_device(&code, DeviceState::Approved(user.id.clone()), now) {
        Ok(()) => html(
            StatusCode::OK,
            pages::message(
                "You're signed in",
                &format!(
                    "{} is signed in to Switchboard on your device. You may now close this window.",
                    user.display_name
                ),
            ),
        ),
        Err(msg) => html(StatusCode::OK, pages::device(&users, &code, Some(msg))),
    }
}

async fn logout(Query(p): Query<HashMap<String, String>>) -> Response {
    match p
        .get("post_logout_redirect_uri")
        .filter(|u| redirect_allowed(u))
    {
        Some(u) => Redirect::to(u).into_response(),
        None => html(
            StatusCode::OK,
            pages::message(
                "You signed out of your account",
                "It's a good idea to close all browser windows.",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_resources_and_defaults() {
        let r = parse_scopes("openid profile offline_access User.Read Presence.Read.All").unwrap();
        assert_eq!(r.resource, Resource::Graph);
        assert_eq!(r.scopes, vec!["User.Read", "Presence.Read.All"]);
        assert_eq!(
            r.response_scope(),
            "User.Read Presence.Read.All openid profile offline_access"
        );
        let r = parse_scopes("https://graph.microsoft.com/.default").unwrap();
        assert_eq!(r.scopes, GRAPH_DEFAULT);
        let r = parse_scopes("api://switchboard-router/access_as_user offline_access").unwrap();
        assert_eq!(r.resource, Resource::Router);
        assert_eq!(
            r.response_scope(),
            "api://switchboard-router/access_as_user offline_access"
        );
        let r = parse_scopes("openid profile").unwrap();
        assert_eq!(r.scopes, vec!["User.Read"]);
        assert_eq!(
            parse_scopes("User.Read api://switchboard-router/access_as_user")
                .unwrap_err()
                .code,
            28000
        );
        assert_eq!(parse_scopes("Mail.Send").unwrap_err().code, 70011);
        // #13 item 16: /authorize may ask consent for two resources at once; the token
        // endpoint takes one at a time (AADSTS28000).
        let both = "openid offline_access User.Read api://switchboard-router/access_as_user";
        assert_eq!(parse_scopes(both).unwrap_err().code, 28000);
        assert_eq!(
            parse_consent_scopes(both).unwrap().resource,
            Resource::Graph
        );
        assert_eq!(
            parse_consent_scopes("User.Read api://other/x")
                .unwrap_err()
                .code,
            500011
        );
        assert_eq!(parse_scopes("api://other/x").unwrap_err().code, 500011);
        assert_eq!(parse_scopes("").unwrap_err().code, 900144);
    }

    #[test]
    fn loopback_redirects_only() {
        assert!(redirect_allowed("http://localhost"));
        assert!(redirect_allowed("http://localhost:51234/callback"));
        assert!(redirect_allowed("http://127.0.0.1:8400/"));
        assert!(redirect_allowed(
            "https://login.microsoftonline.com/common/oauth2/nativeclient"
        ));
        assert!(!redirect_allowed("https://evil.example/cb"));
        assert!(!redirect_allowed("http://localhost.evil.example/cb"));
        assert!(!redirect_allowed("not a url"));
    }
}
