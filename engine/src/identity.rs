//! Who is calling: validation of OpenID Connect JWT access tokens. The issuer's metadata and
//! keys come from its discovery document (`/.well-known/openid-configuration`) through
//! `openidconnect`; keys are cached and fetched again at most once per interval when a token
//! names an unknown key. A token is accepted only with an allow-listed asymmetric signature,
//! the exact issuer, this server's audience, a valid time window and the required claims.
//! Also the two pieces an MCP client needs to find the authorization server: RFC 9728
//! protected-resource metadata and the `WWW-Authenticate` challenge.

use base64::Engine;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{IssuerUrl, JsonWebKey};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::RwLock;

/// Signature algorithms accepted unless configured otherwise: asymmetric only.
pub const DEFAULT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];

/// How tokens are validated.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// This server's audience (its RFC 8707 resource identifier); `aud` must contain it.
    pub audience: String,
    /// Accepted `alg` values; `none` and HMAC are refused even if listed.
    pub algorithms: Vec<String>,
    /// Claim holding group names.
    pub groups_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Minimum time between two key-set fetches triggered by unknown keys.
    pub jwks_refresh_interval: Duration,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: DEFAULT_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
            groups_claim: "groups".into(),
            leeway: Duration::from_secs(60),
            jwks_refresh_interval: Duration::from_secs(60),
        }
    }
}

/// A caller whose token checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// Authentication methods, e.g. `["pwd", "mfa"]`.
    pub amr: Vec<String>,
    /// The OAuth client the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<String>,
    pub expires_at: u64,
}

/// Why a token was refused. Messages are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("signature algorithm '{0}' is not accepted")]
    Algorithm(String),
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("invalid token signature")]
    Signature,
    #[error("token issuer '{0}' is not trusted")]
    Issuer(String),
    #[error("token is not meant for this server (audience)")]
    Audience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lacks the required claim '{0}'")]
    MissingClaim(&'static str),
    /// The issuer could not be reached for its keys; the caller may retry.
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
}

struct Keys {
    set: CoreJsonWebKeySet,
    fetched_at: Instant,
    jwks_url: openidconnect::JsonWebKeySetUrl,
}

/// Validates bearer tokens for one issuer and audience.
pub struct TokenVerifier {
    config: VerifierConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Tokens whose signature and claims were verified, by their exact text, with their
    /// `nbf`: a client's next calls with the same token cost a lookup, and the token's times
    /// are checked again on every use. Emptied when the key set is fetched again (a key that
    /// was withdrawn vouches for nothing more) and when it reaches `VERIFIED_TOKENS`.
    verified: std::sync::Mutex<HashMap<String, (VerifiedIdentity, Option<u64>)>>,
}

/// How many verified tokens are remembered at most.
const VERIFIED_TOKENS: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

/// `openidconnect`'s HTTP hook, served by our reqwest client.
pub(crate) async fn fetch(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, FetchError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| FetchError(e.without_url().to_string()))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| FetchError(e.to_string()))?;
    builder
        .body(bytes.to_vec())
        .map_err(|e| FetchError(e.to_string()))
}

impl TokenVerifier {
    /// Discovers the issuer (metadata and keys). Fails when the issuer cannot be reached or its
    /// metadata names another issuer.
    pub async fn discover(
        config: VerifierConfig,
        http: reqwest::Client,
    ) -> Result<Self, TokenError> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| TokenError::ProviderUnavailable(format!("issuer URL: {e}")))?;
        let client = |request| fetch(http.clone(), request);
        let metadata = CoreProviderMetadata::discover_async(issuer, &client)
            .await
            .map_err(|e| {
                TokenError::ProviderUnavailable(format!("discovery of {}: {e}", config.issuer))
            })?;
        let jwks_url = metadata.jwks_uri().clone();
        let set = CoreJsonWebKeySet::fetch_async(&jwks_url, &client)
            .await
            .map_err(|e| {
                TokenError::ProviderUnavailable(format!("keys of {}: {e}", config.issuer))
            })?;
        Ok(Self::from_set(config, http, set, jwks_url))
    }

    /// A verifier with a key set already in hand (`{"keys": [...]}`), fetched again from
    /// `jwks_url` when a token names an unknown key. For providers whose keys are distributed
    /// out of band, and for tests that have no provider to discover.
    pub fn with_keys(
        config: VerifierConfig,
        jwks: &serde_json::Value,
        jwks_url: &str,
        http: reqwest::Client,
    ) -> Result<Self, TokenError> {
        let set: CoreJsonWebKeySet = serde_json::from_value(jwks.clone())
            .map_err(|e| TokenError::ProviderUnavailable(format!("key set: {e}")))?;
        let jwks_url = openidconnect::JsonWebKeySetUrl::new(jwks_url.to_string())
            .map_err(|e| TokenError::ProviderUnavailable(format!("key set URL: {e}")))?;
        Ok(Self::from_set(config, http, set, jwks_url))
    }

    fn from_set(
        config: VerifierConfig,
        http: reqwest::Client,
        set: CoreJsonWebKeySet,
        jwks_url: openidconnect::JsonWebKeySetUrl,
    ) -> Self {
        Self {
            config,
            http,
            keys: RwLock::new(Keys {
                set,
                fetched_at: Instant::now(),
                jwks_url,
            }),
            verified: Default::default(),
        }
    }

    /// Whether the verifier holds any key to check signatures with (readiness).
    pub async fn has_keys(&self) -> bool {
        !self.keys.read().await.set.keys().is_empty()
    }

    /// Whether the provider's key set answers now, within two seconds (readiness reports it;
    /// tokens keep verifying with the cached keys while it does not).
    pub async fn provider_reachable(&self) -> bool {
        let url = self.keys.read().await.jwks_url.url().clone();
        let probe = self.http.get(url.as_str()).send();
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(response)) if response.status().is_success()
        )
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Validates a bearer token and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<VerifiedIdentity, TokenError> {
        let known = self
            .verified
            .lock()
            .expect("verified tokens")
            .get(token)
            .cloned();
        if let Some((identity, not_before)) = known {
            self.check_times(identity.expires_at, not_before)?;
            return Ok(identity);
        }
        let (identity, not_before) = self.verify_signed(token).await?;
        let mut verified = self.verified.lock().expect("verified tokens");
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_string(), (identity.clone(), not_before));
        Ok(identity)
    }

    /// Verifies a token's signature and claims; who it names and its `nbf`.
    async fn verify_signed(
        &self,
        token: &str,
    ) -> Result<(VerifiedIdentity, Option<u64>), TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let header = decode_json(header_b64, "header")?;
        let alg_name = header["alg"]
            .as_str()
            .ok_or_else(|| TokenError::Malformed("header without alg".into()))?
            .to_string();
        if !self.accepts(&alg_name) {
            return Err(TokenError::Algorithm(alg_name));
        }
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.clone()))
            .map_err(|_| TokenError::Algorithm(alg_name))?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed("signature is not base64url".into()))?;
        let kid = header["kid"].as_str().map(str::to_string);
        let key = self.key_for(kid.as_deref()).await?;
        let message = format!("{header_b64}.{payload_b64}");
        key.verify_signature(&alg, message.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims = decode_json(payload_b64, "payload")?;
        self.check_claims(&claims)
    }

    fn accepts(&self, alg: &str) -> bool {
        let forbidden = alg == "none" || alg.starts_with("HS");
        !forbidden && self.config.algorithms.iter().any(|a| a == alg)
    }

    /// The key for `kid`; an unknown kid refreshes the key set, at most once per interval.
    async fn key_for(&self, kid: Option<&str>) -> Result<CoreJsonWebKey, TokenError> {
        if let Some(key) = find_key(&self.keys.read().await.set, kid) {
            return Ok(key);
        }
        let mut keys = self.keys.write().await;
        if keys.fetched_at.elapsed() >= self.config.jwks_refresh_interval {
            let http = self.http.clone();
            let client = move |request| fetch(http.clone(), request);
            let set = CoreJsonWebKeySet::fetch_async(&keys.jwks_url, &client)
                .await
                .map_err(|e| {
                    TokenError::ProviderUnavailable(format!("keys of {}: {e}", self.config.issuer))
                })?;
            keys.set = set;
            keys.fetched_at = Instant::now();
            self.verified.lock().expect("verified tokens").clear();
            tracing::info!(issuer = %self.config.issuer, "refreshed signing keys");
        }
        find_key(&keys.set, kid).ok_or(TokenError::UnknownKey)
    }

    /// A token's `exp` has not passed and its `nbf` has come (with the configured leeway).
    fn check_times(&self, exp: u64, nbf: Option<u64>) -> Result<(), TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let leeway = self.config.leeway.as_secs();
        if exp + leeway <= now {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = nbf
            && nbf > now + leeway
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    fn check_claims(&self, claims: &Value) -> Result<(VerifiedIdentity, Option<u64>), TokenError> {
        let iss = claims["iss"]
            .as_str()
            .ok_or(TokenError::MissingClaim("iss"))?;
        if iss != self.config.issuer {
            return Err(TokenError::Issuer(iss.to_string()));
        }
        let audience_ok = match &claims["aud"] {
            Value::String(aud) => *aud == self.config.audience,
            Value::Array(list) => list
                .iter()
                .any(|a| a.as_str() == Some(&self.config.audience)),
            Value::Null => return Err(TokenError::MissingClaim("aud")),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Audience);
        }
        let exp = claims["exp"]
            .as_u64()
            .ok_or(TokenError::MissingClaim("exp"))?;
        let nbf = claims["nbf"].as_u64();
        self.check_times(exp, nbf)?;
        let subject = claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let strings = |value: &Value| -> Vec<String> {
            match value {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
                _ => Vec::new(),
            }
        };
        let text = |name: &str| claims[name].as_str().map(str::to_string);
        let identity = VerifiedIdentity {
            subject: subject.to_string(),
            name: text("name"),
            email: text("email"),
            groups: strings(&claims[self.config.groups_claim.as_str()]),
            amr: strings(&claims["amr"]),
            client_id: text("client_id").or_else(|| text("azp")),
            expires_at: exp,
        };
        Ok((identity, nbf))
    }
}

/// The key named by `kid` (the signature check then rejects a key of the wrong type for `alg`).
fn find_key(set: &CoreJsonWebKeySet, kid: Option<&str>) -> Option<CoreJsonWebKey> {
    let candidates: Vec<&CoreJsonWebKey> = set
        .keys()
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.key_id().is_some_and(|id| id.as_str() == kid),
            None => true,
        })
        .collect();
    // Without a kid, only an unambiguous key set is usable.
    match (kid, candidates.as_slice()) {
        (Some(_), [first, ..]) => Some((*first).clone()),
        (None, [only]) => Some((*only).clone()),
        _ => None,
    }
}

fn decode_json(part: &str, what: &str) -> Result<Value, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(format!("{what} is not JSON")))
}

/// RFC 9728 protected-resource metadata, served at `/.well-known/oauth-protected-resource`.
pub fn protected_resource_metadata(
    resource: &str,
    authorization_servers: &[&str],
    scopes: &[&str],
) -> Value {
    serde_json::json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "changeflow",
    })
}

/// The `WWW-Authenticate` value of a 401: where to find the metadata and, when a token was
/// presented, why it was refused (RFC 6750 §3, RFC 9728 §5.1).
pub fn www_authenticate(resource_metadata_url: &str, error: Option<&TokenError>) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    match error {
        None => format!(
            "Bearer resource_metadata=\"{}\"",
            escape(resource_metadata_url)
        ),
        Some(err) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{}\"",
            escape(&err.to_string()),
            escape(resource_metadata_url)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_point_at_the_metadata() {
        assert_eq!(
            www_authenticate(
                "https://cf.example/.well-known/oauth-protected-resource",
                None
            ),
            "Bearer resource_metadata=\"https://cf.example/.well-known/oauth-protected-resource\""
        );
        let with_error = www_authenticate("https://m", Some(&TokenError::Expired));
        assert_eq!(
            with_error,
            "Bearer error=\"invalid_token\", error_description=\"token has expired\", resource_metadata=\"https://m\""
        );
        let metadata = protected_resource_metadata(
            "https://cf.example/mcp",
            &["https://idp.example"],
            &["mcp"],
        );
        assert_eq!(metadata["authorization_servers"][0], "https://idp.example");
        assert_eq!(metadata["resource"], "https://cf.example/mcp");
    }
}
