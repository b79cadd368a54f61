//! Signing people in with OpenID Connect: the authorization code flow with PKCE (S256) and a
//! nonce, for the web view. The provider is discovered on first use (and again after a failed
//! discovery); the ID token is verified against the provider's keys, and the access token it
//! returns is what the caller then verifies like any bearer token, so a browser session carries
//! exactly the identity an MCP client would.

use crate::identity::fetch;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Who the web view signs in as, and where the provider sends people back.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub issuer: String,
    pub client_id: String,
    /// A confidential client's secret; `None` for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// The callback URL registered with the provider.
    pub redirect_uri: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("sign-in configuration: {0}")]
    Config(String),
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
}

/// A sign-in under way: what the callback needs to finish it (kept server-side).
pub struct PendingLogin {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
}

/// A finished sign-in: the access token to verify and keep server-side, and who the ID token
/// names.
pub struct SignedIn {
    pub access_token: String,
    pub subject: String,
}

/// The web view's OpenID Connect client.
pub struct OidcLogin {
    config: LoginConfig,
    http: reqwest::Client,
    client: tokio::sync::OnceCell<Client>,
}

impl OidcLogin {
    pub fn new(config: LoginConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub fn config(&self) -> &LoginConfig {
        &self.config
    }

    async fn client(&self) -> Result<&Client, LoginError> {
        self.client
            .get_or_try_init(|| async {
                let issuer = IssuerUrl::new(self.config.issuer.clone())
                    .map_err(|e| LoginError::Config(format!("issuer URL: {e}")))?;
                let http = |request| fetch(self.http.clone(), request);
                let metadata = CoreProviderMetadata::discover_async(issuer, &http)
                    .await
                    .map_err(|e| {
                        LoginError::ProviderUnavailable(format!(
                            "discovery of {}: {e}",
                            self.config.issuer
                        ))
                    })?;
                let redirect = RedirectUrl::new(self.config.redirect_uri.clone())
                    .map_err(|e| LoginError::Config(format!("redirect URI: {e}")))?;
                Ok(CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(self.config.client_id.clone()),
                    self.config.client_secret.clone().map(ClientSecret::new),
                )
                .set_redirect_uri(redirect))
            })
            .await
    }

    /// Where to send the browser, the `state` the callback must bring back, and what finishes
    /// the sign-in.
    pub async fn begin(&self) -> Result<(String, String, PendingLogin), LoginError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            PendingLogin { verifier, nonce },
        ))
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token (issuer,
    /// audience, signature, expiry, nonce).
    pub async fn finish(&self, code: &str, pending: PendingLogin) -> Result<SignedIn, LoginError> {
        let client = self.client().await?;
        let http = |request| fetch(self.http.clone(), request);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::Config(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&http)
            .await
            .map_err(|e| LoginError::Refused(token_error(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| LoginError::InvalidIdToken("the provider returned none".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .map_err(|e| LoginError::InvalidIdToken(e.to_string()))?;
        Ok(SignedIn {
            access_token: response.access_token().secret().clone(),
            subject: claims.subject().to_string(),
        })
    }
}

/// The provider's refusal without anything the exchange carried.
fn token_error<E: std::error::Error>(error: &E) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}
