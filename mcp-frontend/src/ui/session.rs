//! The web view's server-side sessions: a random id in an HttpOnly, SameSite=Strict cookie
//! names a session holding the access token (which never reaches the page) and the session's
//! CSRF token. A sign-in under way is held under its `state`, bound to the browser that began
//! it by a second cookie.

use changeflow_engine::login::PendingLogin;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "changeflow_session";
/// The cookie binding a sign-in under way to its browser.
pub const LOGIN_COOKIE: &str = "changeflow_login";
/// How long a sign-in may take at the provider.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub access_token: String,
    pub csrf: String,
}

/// A sign-in under way.
struct Pending {
    login: PendingLogin,
    browser: String,
    next: String,
    began: Instant,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, (Session, Instant)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random source");
    hex::encode(bytes)
}

/// Equal without a timing side channel on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// Keeps a sign-in under way; returns the browser binding to set as `LOGIN_COOKIE`.
    pub fn begin(&self, state: String, login: PendingLogin, next: String) -> String {
        let browser = random_token();
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| p.began.elapsed() < LOGIN_TTL);
        pending.insert(
            state,
            Pending {
                login,
                browser: browser.clone(),
                next,
                began: Instant::now(),
            },
        );
        browser
    }

    /// The sign-in `state` names, if this browser began it (used once).
    pub fn take_pending(&self, state: &str, browser: &str) -> Option<(PendingLogin, String)> {
        let mut pending = lock(&self.pending);
        let found = pending.get(state)?;
        if !same_secret(&found.browser, browser) || found.began.elapsed() >= LOGIN_TTL {
            return None;
        }
        pending.remove(state).map(|p| (p.login, p.next))
    }

    /// A new session for a verified access token; returns its id.
    pub fn create(&self, access_token: String) -> String {
        let id = random_token();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, created))| *created)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            (
                Session {
                    access_token,
                    csrf: random_token(),
                },
                Instant::now(),
            ),
        );
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        lock(&self.sessions).get(id).map(|(s, _)| s.clone())
    }

    pub fn end(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }
}

/// A cookie's value in a request's `Cookie` headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Adds a `Set-Cookie` scoped to `/ui` to `response`.
pub fn set_cookie(
    response: &mut axum::response::Response,
    (name, value): (&str, &str),
    same_site: &str,
    secure: bool,
    max_age: Option<u64>,
) {
    let mut text = format!("{name}={value}; Path=/ui; HttpOnly; SameSite={same_site}");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    // Names and values are ours (hex tokens or empty), so the header is always valid.
    if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
}
