//! A development OpenID provider for the embedded stack: discovery, JWKS, a token endpoint and
//! an authorization endpoint on loopback, issuing ES256-signed JWT access tokens for the demo
//! users. The server validates these tokens through the same discovery/JWKS path as any
//! production provider. Its signing key lives in the data directory so tokens stay valid across
//! restarts on the same port.
//!
//! Two grants: the development password grant of `changeflow token` (the confidential client
//! `changeflow-dev`), and the authorization code flow with PKCE (S256) for the web view (the
//! public client `changeflow-ui`), whose `/authorize` is a plain page to pick a demo user. It
//! only redirects back to loopback addresses.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience dev tokens carry unless another is asked for.
pub const DEV_AUDIENCE: &str = "changeflow";
/// The OAuth client of `changeflow token`.
pub const DEV_CLIENT_ID: &str = "changeflow-dev";
/// The public OAuth client of the web view (authorization code with PKCE, no secret).
pub const DEV_UI_CLIENT_ID: &str = "changeflow-ui";
/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(60);

/// A demo user: (user name, display name, groups, signs in with MFA).
pub const DEV_USERS: &[(&str, &str, &[&str], bool)] = &[
    ("alice", "Alice Network", &["network-engineers"], true),
    ("bob", "Bob Servicedesk", &["service-desk"], false),
    ("carol", "Carol Approver", &["change-approvers"], true),
    ("dave", "Dave Developer", &["developers"], false),
    ("erin", "Erin Auditor", &["auditors"], true),
    ("admin", "System Administrator", &["admin"], true),
];

const KEY_FILE: &str = "dev-issuer-key.p8";
const SECRET_FILE: &str = "dev-issuer-client-secret";

/// What a token is asked for.
#[derive(Debug, Clone)]
pub struct DevTokenRequest {
    pub user: String,
    pub audience: String,
    pub ttl: Duration,
    /// Override the user's MFA (`--no-mfa` sets `Some(false)`).
    pub mfa: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    #[error("unknown dev user '{0}' (known: alice, bob, carol, dave, erin, admin)")]
    UnknownUser(String),
    #[error("dev issuer key in {path}: {message}")]
    Key { path: String, message: String },
    #[error("dev issuer: {0}")]
    Io(#[from] std::io::Error),
}

/// The issuer's key, identity and counters.
pub struct DevIssuer {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    client_secret: String,
    jwks_fetches: AtomicU64,
    /// Authorization codes not yet exchanged, by code.
    codes: Mutex<HashMap<String, CodeGrant>>,
}

/// What an authorization code was issued for.
struct CodeGrant {
    user: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    issued: std::time::Instant,
}

impl DevIssuer {
    /// Loads the key and client secret from `data_dir`, creating them on first use.
    pub fn load_or_create(
        data_dir: &Path,
        issuer: impl Into<String>,
    ) -> Result<Self, DevIssuerError> {
        std::fs::create_dir_all(data_dir)?;
        let key_path = data_dir.join(KEY_FILE);
        let key_error = |message: String| DevIssuerError::Key {
            path: key_path.display().to_string(),
            message,
        };
        let pkcs8 = match std::fs::read(&key_path) {
            Ok(bytes) => bytes,
            Err(_) => {
                let document = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| key_error("cannot generate".into()))?;
                write_private(&key_path, document.as_ref())?;
                document.as_ref().to_vec()
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|e| key_error(e.to_string()))?;
        let secret_path = data_dir.join(SECRET_FILE);
        let client_secret = match std::fs::read_to_string(&secret_path) {
            Ok(secret) => secret.trim().to_string(),
            Err(_) => {
                let secret = format!("dev-{}", uuid::Uuid::new_v4().simple());
                write_private(&secret_path, secret.as_bytes())?;
                secret
            }
        };
        let kid = hex::encode(&sha2_digest(key.public_key().as_ref())[..8]);
        Ok(Self {
            key,
            kid,
            issuer: issuer.into(),
            client_secret,
            jwks_fetches: AtomicU64::new(0),
            codes: Mutex::new(HashMap::new()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The secret `changeflow token` authenticates with (written to endpoints.json).
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// How often the key set was fetched (tests check refresh throttling).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref(); // 0x04 || X || Y
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]), "kid": self.kid, "use": "sig", "alg": "ES256"})
    }

    /// An access token for a demo user.
    pub fn mint(&self, request: &DevTokenRequest) -> Result<String, DevIssuerError> {
        self.mint_for(request, DEV_CLIENT_ID)
    }

    /// An access token for a demo user, issued to `client_id`.
    fn mint_for(
        &self,
        request: &DevTokenRequest,
        client_id: &str,
    ) -> Result<String, DevIssuerError> {
        let (user, name, groups, mfa) = dev_user(&request.user)?;
        let now = now_secs();
        let amr: Vec<&str> = if request.mfa.unwrap_or(*mfa) {
            vec!["pwd", "mfa"]
        } else {
            vec!["pwd"]
        };
        let claims = json!({
            "iss": self.issuer,
            "sub": user,
            "aud": request.audience,
            "iat": now,
            "nbf": now,
            "exp": now + request.ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
            "client_id": client_id,
            "scope": "mcp",
            "name": name,
            "email": format!("{user}@example.com"),
            "groups": groups,
            "amr": amr,
        });
        Ok(self.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}),
            &claims,
        ))
    }

    /// Signs arbitrary header and claims with the issuer key (tests forge variants with it).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = self
            .key
            .sign(&SystemRandom::new(), message.as_bytes())
            .expect("ECDSA signing");
        format!(
            "{message}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// An ID token for a demo user signed in through `/authorize`.
    fn id_token(
        &self,
        user: &str,
        client_id: &str,
        nonce: Option<&str>,
        ttl: Duration,
    ) -> Result<String, DevIssuerError> {
        let (user, name, ..) = dev_user(user)?;
        let now = now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": user,
            "aud": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + ttl.as_secs(),
            "name": name,
            "email": format!("{user}@example.com"),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        Ok(self.sign(
            &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            &claims,
        ))
    }

    /// Discovery, JWKS, token and authorization endpoints.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/authorize", get(authorize_page).post(authorize))
            .with_state(self.clone())
    }
}

fn dev_user(
    user: &str,
) -> Result<&'static (&'static str, &'static str, &'static [&'static str], bool), DevIssuerError> {
    DEV_USERS
        .iter()
        .find(|(u, ..)| *u == user)
        .ok_or_else(|| DevIssuerError::UnknownUser(user.to_string()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents)
}

async fn discovery(State(issuer): State<Arc<DevIssuer>>) -> Json<Value> {
    let base = issuer.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": issuer.issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["authorization_code", "password"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "mcp"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
        "claims_supported": ["sub", "name", "email", "groups", "amr"],
    }))
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Json<Value> {
    issuer.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    Json(json!({"keys": [issuer.jwk()]}))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    audience: Option<String>,
    ttl: Option<u64>,
    mfa: Option<bool>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

fn token_error(status: StatusCode, code: &str, description: impl Into<String>) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": code, "error_description": description.into()})),
    )
        .into_response()
}

/// The token endpoint: the development password grant (the dev client authenticates and names
/// the demo user) or an authorization code with its PKCE verifier.
async fn token(State(issuer): State<Arc<DevIssuer>>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type == "authorization_code" {
        return exchange_code(&issuer, form);
    }
    if form.grant_type != "password" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code, or the development password grant",
        );
    }
    if form.client_id.as_deref() != Some(DEV_CLIENT_ID)
        || form.client_secret.as_deref() != Some(issuer.client_secret.as_str())
    {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let Some(user) = form.username else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username is required",
        );
    };
    let ttl = Duration::from_secs(form.ttl.unwrap_or(3600).clamp(1, 86_400));
    let request = DevTokenRequest {
        user,
        audience: form.audience.unwrap_or_else(|| DEV_AUDIENCE.to_string()),
        ttl,
        mfa: form.mfa,
    };
    match issuer.mint(&request) {
        Ok(token) => Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
        )
        .into_response(),
        Err(e) => token_error(StatusCode::BAD_REQUEST, "invalid_grant", e.to_string()),
    }
}

/// `grant_type=authorization_code`: the code is used once, by the client and redirect it was
/// issued for, within `CODE_TTL`, with the verifier whose S256 digest is its challenge.
fn exchange_code(issuer: &DevIssuer, form: TokenForm) -> Response {
    let invalid = |why: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let Some(code) = form.code else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is required",
        );
    };
    let grant = issuer
        .codes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&code);
    let Some(grant) = grant else {
        return invalid("unknown or already used authorization code");
    };
    if grant.issued.elapsed() > CODE_TTL {
        return invalid("authorization code expired");
    }
    if form.client_id.as_deref() != Some(grant.client_id.as_str()) {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the code was issued to another client",
        );
    }
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return invalid("redirect_uri differs from the authorization request's");
    }
    let Some(verifier) = form.code_verifier else {
        return invalid("code_verifier is required (PKCE)");
    };
    let digest =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2_digest(verifier.as_bytes()));
    if digest != grant.code_challenge {
        return invalid("code_verifier does not match the code challenge");
    }
    let ttl = Duration::from_secs(3600);
    let request = DevTokenRequest {
        user: grant.user.clone(),
        audience: DEV_AUDIENCE.to_string(),
        ttl,
        mfa: None,
    };
    let tokens = issuer
        .mint_for(&request, &grant.client_id)
        .and_then(|access| {
            let id = issuer.id_token(&grant.user, &grant.client_id, grant.nonce.as_deref(), ttl)?;
            Ok((access, id))
        });
    match tokens {
        Ok((access, id)) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"access_token": access, "id_token": id, "token_type": "Bearer", "expires_in": ttl.as_secs(), "scope": "openid mcp"})),
        )
            .into_response(),
        Err(e) => invalid(&e.to_string()),
    }
}

/// An authorization request (`/authorize`), as the page's form posts it back with the user.
#[derive(Deserialize)]
struct AuthorizeRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    /// The demo user picked (the form's button).
    user: Option<String>,
}

/// A loopback `http` URL: the only redirects this development provider makes.
fn loopback_redirect(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        && url.fragment().is_none()
}

impl AuthorizeRequest {
    /// Refuses what cannot be redirected back (shown on the page, as OAuth asks) and what the
    /// flow does not support.
    fn check(&self) -> Result<(&str, &str, &str), String> {
        let client_id = self.client_id.as_deref().unwrap_or_default();
        if client_id != DEV_UI_CLIENT_ID {
            return Err(format!(
                "unknown client '{client_id}' (the web view's client is {DEV_UI_CLIENT_ID})"
            ));
        }
        let redirect = self.redirect_uri.as_deref().unwrap_or_default();
        if !loopback_redirect(redirect) {
            return Err("redirect_uri must be an http URL on loopback".into());
        }
        if self.response_type.as_deref() != Some("code") {
            return Err("response_type must be code".into());
        }
        let challenge = self.code_challenge.as_deref().unwrap_or_default();
        if self.code_challenge_method.as_deref() != Some("S256") || challenge.len() < 43 {
            return Err("PKCE is required: code_challenge with code_challenge_method S256".into());
        }
        Ok((client_id, redirect, challenge))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn authorize_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in refused</title></head><body><main><h1>Sign-in refused</h1><p>{}</p></main></body></html>",
            escape(message)
        )),
    )
        .into_response()
}

/// `GET /authorize`: a plain page to pick a demo user; each button posts the request back.
async fn authorize_page(Query(request): Query<AuthorizeRequest>) -> Response {
    if let Err(message) = request.check() {
        return authorize_error(&message);
    }
    let hidden: String = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("state", &request.state),
        ("nonce", &request.nonce),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
        ("scope", &request.scope),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value.as_ref().map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            )
        })
    })
    .collect();
    let buttons: String = DEV_USERS
        .iter()
        .map(|(user, name, groups, mfa)| {
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{user}\">{}</button> {} {}</li>",
                escape(name),
                escape(&groups.join(", ")),
                if *mfa { "(MFA)" } else { "" }
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>changeflow development sign-in</title></head><body><main><h1>changeflow development sign-in</h1><p>Development identity provider: pick a demo user. It serves loopback only.</p><form method=\"post\" action=\"authorize\">{hidden}<ul>{buttons}</ul></form></main></body></html>"
    ))
    .into_response()
}

/// `POST /authorize`: the picked user gets a code, sent back to the client's redirect URI with
/// its state.
async fn authorize(
    State(issuer): State<Arc<DevIssuer>>,
    Form(request): Form<AuthorizeRequest>,
) -> Response {
    let (client_id, redirect, challenge) = match request.check() {
        Ok(checked) => checked,
        Err(message) => return authorize_error(&message),
    };
    let user = request.user.as_deref().unwrap_or_default();
    if dev_user(user).is_err() {
        return authorize_error(&format!("unknown dev user '{user}'"));
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    {
        let mut codes = issuer
            .codes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        codes.retain(|_, grant| grant.issued.elapsed() <= CODE_TTL);
        codes.insert(
            code.clone(),
            CodeGrant {
                user: user.to_string(),
                client_id: client_id.to_string(),
                redirect_uri: redirect.to_string(),
                code_challenge: challenge.to_string(),
                nonce: request.nonce.clone(),
                issued: std::time::Instant::now(),
            },
        );
    }
    let Ok(mut url) = url::Url::parse(redirect) else {
        return authorize_error("redirect_uri is not a URL");
    };
    url.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &request.state {
        url.query_pairs_mut().append_pair("state", state);
    }
    Redirect::to(url.as_str()).into_response()
}

/// A served dev issuer; stops when dropped.
pub struct RunningDevIssuer {
    pub issuer: Arc<DevIssuer>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningDevIssuer {
    pub fn url(&self) -> &str {
        self.issuer.issuer()
    }
}

impl Drop for RunningDevIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves a dev issuer on loopback (`port` 0 picks a free one), keyed from `data_dir`.
pub async fn start(data_dir: &Path, port: u16) -> Result<RunningDevIssuer, DevIssuerError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let issuer = Arc::new(DevIssuer::load_or_create(data_dir, url)?);
    let app = issuer.router();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningDevIssuer {
        issuer,
        shutdown: Some(stop),
    })
}
