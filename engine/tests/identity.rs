//! Token validation against the development issuer over real HTTP: discovery, JWKS, and every
//! way a token can be wrong.

use base64::Engine;
use changeflow_devstack::dev_issuer::{self, DevIssuer, DevTokenRequest};
use changeflow_engine::identity::{TokenError, TokenVerifier, VerifierConfig};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Fixture {
    running: dev_issuer::RunningDevIssuer,
    verifier: TokenVerifier,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(refresh_interval: Duration) -> Fixture {
    let dir = std::env::temp_dir().join(format!("cf-idp-{}", uuid::Uuid::new_v4().simple()));
    let running = dev_issuer::start(&dir, 0).await.unwrap();
    let mut config = VerifierConfig::new(running.url(), "changeflow");
    config.jwks_refresh_interval = refresh_interval;
    let verifier = TokenVerifier::discover(config, reqwest::Client::new())
        .await
        .expect("discovery");
    Fixture {
        running,
        verifier,
        dir,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(f: &Fixture) -> Value {
    json!({"iss": f.running.url(), "sub": "alice", "aud": "changeflow", "iat": now(), "nbf": now(), "exp": now() + 300, "groups": ["network-engineers"], "amr": ["pwd", "mfa"], "client_id": "c"})
}

fn header(f: &Fixture) -> Value {
    json!({"alg": "ES256", "kid": f.running.issuer.key_id()})
}

fn with(mut value: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            value.as_object_mut().unwrap().remove(k);
        } else {
            value[k] = v.clone();
        }
    }
    value
}

#[tokio::test]
async fn a_dev_token_yields_the_callers_identity() {
    let f = fixture(Duration::from_secs(60)).await;
    let token = f
        .running
        .issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: None,
        })
        .unwrap();
    let identity = f.verifier.verify(&token).await.unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.groups, vec!["network-engineers"]);
    assert_eq!(identity.amr, vec!["pwd", "mfa"]);
    assert_eq!(identity.client_id.as_deref(), Some("changeflow-dev"));
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));

    let no_mfa = f
        .running
        .issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: Some(false),
        })
        .unwrap();
    assert_eq!(f.verifier.verify(&no_mfa).await.unwrap().amr, vec!["pwd"]);
    let array_audience = f.running.issuer.sign(
        &header(&f),
        &with(claims(&f), json!({"aud": ["other", "changeflow"]})),
    );
    assert!(
        f.verifier.verify(&array_audience).await.is_ok(),
        "aud may be a list containing ours"
    );
}

#[tokio::test]
async fn every_bad_token_is_rejected_for_its_own_reason() {
    let f = fixture(Duration::from_secs(60)).await;
    let sign = |h: Value, c: Value| f.running.issuer.sign(&h, &c);
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());

    let other_dir = f.dir.join("other");
    let impostor = DevIssuer::load_or_create(&other_dir, f.running.url()).unwrap();
    let forged = impostor.sign(&header(&f), &claims(&f));

    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims(&f)));
    let hmac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        f.running.issuer.jwk().to_string().as_bytes(),
    );
    let hs_message = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "kid": f.running.issuer.key_id()})),
        b64(&claims(&f))
    );
    let hs_token = format!(
        "{hs_message}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::hmac::sign(&hmac_key, hs_message.as_bytes()).as_ref())
    );
    let valid = sign(header(&f), claims(&f));
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&with(claims(&f), json!({"groups": ["admin"]}))),
            parts[2]
        )
    };

    let cases: Vec<(&str, String, TokenError)> = vec![
        ("forged signature", forged, TokenError::Signature),
        ("tampered claims", tampered, TokenError::Signature),
        ("alg none", unsigned, TokenError::Algorithm("none".into())),
        (
            "HMAC with the public key",
            hs_token,
            TokenError::Algorithm("HS256".into()),
        ),
        (
            "expired",
            sign(header(&f), with(claims(&f), json!({"exp": now() - 3600}))),
            TokenError::Expired,
        ),
        (
            "not yet valid",
            sign(header(&f), with(claims(&f), json!({"nbf": now() + 3600}))),
            TokenError::NotYetValid,
        ),
        (
            "wrong audience",
            sign(
                header(&f),
                with(claims(&f), json!({"aud": "another-server"})),
            ),
            TokenError::Audience,
        ),
        (
            "wrong issuer",
            sign(
                header(&f),
                with(claims(&f), json!({"iss": "https://evil.example"})),
            ),
            TokenError::Issuer("https://evil.example".into()),
        ),
        (
            "no subject",
            sign(header(&f), with(claims(&f), json!({"sub": null}))),
            TokenError::MissingClaim("sub"),
        ),
        (
            "no expiry",
            sign(header(&f), with(claims(&f), json!({"exp": null}))),
            TokenError::MissingClaim("exp"),
        ),
        (
            "no audience",
            sign(header(&f), with(claims(&f), json!({"aud": null}))),
            TokenError::MissingClaim("aud"),
        ),
        (
            "two parts",
            "abc.def".to_string(),
            TokenError::Malformed("expected three dot-separated parts".into()),
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(
            f.verifier.verify(&token).await.unwrap_err(),
            expected,
            "{name}"
        );
    }
    assert!(
        f.verifier.verify(&valid).await.is_ok(),
        "the untouched token still verifies"
    );
}

#[tokio::test]
async fn unknown_keys_refresh_the_key_set_at_most_once_per_interval() {
    let f = fixture(Duration::from_secs(3600)).await;
    let fetched = f.running.issuer.jwks_fetches();
    let unknown = f
        .running
        .issuer
        .sign(&json!({"alg": "ES256", "kid": "rotated-away"}), &claims(&f));
    assert_eq!(
        f.verifier.verify(&unknown).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        f.verifier.verify(&unknown).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        f.running.issuer.jwks_fetches(),
        fetched,
        "within the interval: no fetch per request"
    );

    let eager = fixture(Duration::ZERO).await;
    let before = eager.running.issuer.jwks_fetches();
    let unknown = eager
        .running
        .issuer
        .sign(&json!({"alg": "ES256", "kid": "new-key"}), &claims(&eager));
    assert_eq!(
        eager.verifier.verify(&unknown).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        eager.running.issuer.jwks_fetches(),
        before + 1,
        "an unknown kid refetches once the interval allows"
    );
}

#[tokio::test]
async fn discovery_refuses_an_issuer_that_names_another() {
    let f = fixture(Duration::from_secs(60)).await;
    let config = VerifierConfig::new(format!("{}/tenant", f.running.url()), "changeflow");
    assert!(matches!(
        TokenVerifier::discover(config, reqwest::Client::new()).await,
        Err(TokenError::ProviderUnavailable(_))
    ));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = VerifierConfig::new(format!("http://{closed}"), "changeflow");
    assert!(matches!(
        TokenVerifier::discover(config, reqwest::Client::new()).await,
        Err(TokenError::ProviderUnavailable(_))
    ));
}

/// A token verified once is remembered, but its times are checked on every use: it stops
/// verifying the moment it expires, and a tampered copy is verified (and refused) afresh.
#[tokio::test]
async fn a_remembered_token_still_expires_and_a_tampered_copy_is_not_remembered() {
    let dir = std::env::temp_dir().join(format!("cf-idp-{}", uuid::Uuid::new_v4().simple()));
    let running = dev_issuer::start(&dir, 0).await.unwrap();
    let mut config = VerifierConfig::new(running.url(), "changeflow");
    config.leeway = Duration::ZERO;
    let verifier = TokenVerifier::discover(config, reqwest::Client::new())
        .await
        .unwrap();
    let f = Fixture {
        running,
        verifier,
        dir,
    };
    let token = f
        .running
        .issuer
        .sign(&header(&f), &with(claims(&f), json!({"exp": now() + 2})));
    assert_eq!(f.verifier.verify(&token).await.unwrap().subject, "alice");
    assert_eq!(f.verifier.verify(&token).await.unwrap().subject, "alice");
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(
        f.verifier.verify(&tampered).await,
        Err(TokenError::Signature | TokenError::Malformed(_))
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        f.verifier.verify(&token).await,
        Err(TokenError::Expired)
    ));
}
