//! A development OpenID provider for the embedded stack: discovery, JWKS and a token endpoint
//! on loopback, issuing ES256-signed JWT access tokens for the demo users. The server validates
//! these tokens through the same discovery/JWKS path as any production provider. Its signing
//! key lives in the data directory so tokens stay valid across restarts on the same port.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience dev tokens carry unless another is asked for.
pub const DEV_AUDIENCE: &str = "changeflow";
/// The OAuth client of `changeflow token`.
pub const DEV_CLIENT_ID: &str = "changeflow-dev";

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
    #[error("unknown dev user '{0}' (known: alice, bob, carol, dave, admin)")]
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
        let (user, name, groups, mfa) = DEV_USERS
            .iter()
            .find(|(u, ..)| *u == request.user)
            .ok_or_else(|| DevIssuerError::UnknownUser(request.user.clone()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
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
            "client_id": DEV_CLIENT_ID,
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

    /// Discovery, JWKS and token endpoints.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(self.clone())
    }
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
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
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
    client_id: String,
    client_secret: String,
    username: String,
    audience: Option<String>,
    ttl: Option<u64>,
    mfa: Option<bool>,
}

/// The development grant: the dev client authenticates and names the demo user.
async fn token(State(issuer): State<Arc<DevIssuer>>, Form(form): Form<TokenForm>) -> Response {
    let error = |status: StatusCode, code: &str, description: String| {
        (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response()
    };
    if form.grant_type != "password" {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only the development password grant".into(),
        );
    }
    if form.client_id != DEV_CLIENT_ID || form.client_secret != issuer.client_secret {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret".into(),
        );
    }
    let ttl = Duration::from_secs(form.ttl.unwrap_or(3600).clamp(1, 86_400));
    let request = DevTokenRequest {
        user: form.username,
        audience: form.audience.unwrap_or_else(|| DEV_AUDIENCE.to_string()),
        ttl,
        mfa: form.mfa,
    };
    match issuer.mint(&request) {
        Ok(token) => Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
        )
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_grant", e.to_string()),
    }
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
