//! A cached access token for one downstream system: logged in on first use, renewed before it
//! expires, and renewed once more when the system refuses it (401) mid-lifetime.

use crate::http::DownstreamError;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Margin before expiry at which a token is renewed, so none expires mid-call.
const RENEW_EARLY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Session {
    token: Mutex<Option<(String, Instant)>>,
}

impl Session {
    /// The cached token, or a fresh one from `login` (which returns the token and its lifetime)
    /// when there is none, it is about to expire, or `renew` is set.
    async fn token<L, LF>(&self, renew: bool, login: &L) -> Result<String, DownstreamError>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<(String, Duration), DownstreamError>>,
    {
        let mut cached = self.token.lock().await;
        if let (false, Some((token, expiry))) = (renew, cached.as_ref())
            && *expiry > Instant::now()
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = login().await?;
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_EARLY),
        ));
        Ok(token)
    }

    /// Runs `call` with a token; a 401 triggers one fresh login and one more try.
    pub async fn authorized<L, LF, C, CF, T>(&self, login: L, call: C) -> Result<T, DownstreamError>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<(String, Duration), DownstreamError>>,
        C: Fn(String) -> CF,
        CF: Future<Output = Result<T, DownstreamError>>,
    {
        let token = self.token(false, &login).await?;
        match call(token).await {
            Err(DownstreamError::Unauthorized { .. }) => {
                call(self.token(true, &login).await?).await
            }
            other => other,
        }
    }
}

/// What every call to one downstream system shares: its base URL, the HTTP client and the
/// token session. Each vendor's client adds its login and how a token is presented.
pub struct Api {
    system: &'static str,
    base_url: String,
    http: reqwest::Client,
    session: Session,
    /// How this system wants its token presented.
    authorize: fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
}

impl Api {
    pub fn new(
        system: &'static str,
        base_url: &str,
        http: reqwest::Client,
        authorize: fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
    ) -> Self {
        Api {
            system,
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            session: Session::default(),
            authorize,
        }
    }

    /// The URL of `path` on this system.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The HTTP client (for logins, which carry no token).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One authenticated JSON call: the token from `login`, renewed once on a 401.
    pub async fn call<L, LF>(
        &self,
        login: L,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, DownstreamError>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<(String, Duration), DownstreamError>>,
    {
        let url = self.url(path);
        self.session
            .authorized(login, |token| {
                let request = crate::http::request(&self.http, method.clone(), &url, query, body);
                crate::http::send_json(self.system, (self.authorize)(request, &token))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn tokens_are_reused_and_renewed_once_on_401() {
        let session = Session::default();
        let logins = AtomicU32::new(0);
        let login = || async {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((format!("token-{n}"), Duration::from_secs(3600)))
        };
        let ok = |token: String| async move { Ok::<_, DownstreamError>(token) };
        assert_eq!(session.authorized(login, ok).await.unwrap(), "token-1");
        assert_eq!(
            session.authorized(login, ok).await.unwrap(),
            "token-1",
            "cached"
        );

        let refuse_old = |token: String| async move {
            if token == "token-1" {
                Err(DownstreamError::Unauthorized { system: "s" })
            } else {
                Ok(token)
            }
        };
        assert_eq!(
            session.authorized(login, refuse_old).await.unwrap(),
            "token-2"
        );

        let always_refuse =
            |_: String| async { Err::<String, _>(DownstreamError::Unauthorized { system: "s" }) };
        assert!(matches!(
            session.authorized(login, always_refuse).await,
            Err(DownstreamError::Unauthorized { .. })
        ));
        assert_eq!(
            logins.load(Ordering::SeqCst),
            3,
            "exactly one renewal per refused call"
        );
    }

    #[tokio::test]
    async fn short_lived_tokens_are_renewed_before_use() {
        let session = Session::default();
        let logins = AtomicU32::new(0);
        let login = || async {
            logins.fetch_add(1, Ordering::SeqCst);
            Ok(("t".to_string(), Duration::from_secs(30)))
        };
        let ok = |token: String| async move { Ok::<_, DownstreamError>(token) };
        session.authorized(login, ok).await.unwrap();
        session.authorized(login, ok).await.unwrap();
        assert_eq!(
            logins.load(Ordering::SeqCst),
            2,
            "a token within the renewal margin is not reused"
        );
    }
}
