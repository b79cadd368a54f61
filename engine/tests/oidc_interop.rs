//! Interop with an OpenID provider that is not ours: npm's `oidc-provider` (installed into
//! .tools/node by `make tools`) issues JWT access tokens for our resource by client credentials;
//! the verifier accepts them and rejects forged, expired and wrong-audience variants.

use base64::Engine;
use changeflow_engine::identity::{TokenError, TokenVerifier, VerifierConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RESOURCE: &str = "https://changeflow.test/mcp";

struct Provider {
    child: Child,
    issuer: String,
    script: PathBuf,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.script);
    }
}

fn node_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/node");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "{} lacks oidc-provider: run `make tools`",
        dir.display()
    );
    dir
}

/// Starts the provider; the script is copied next to node_modules so its import resolves.
fn start_provider(ttl_secs: u64, alg: &str) -> Provider {
    let dir = node_dir();
    let script = dir.join(format!("interop-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc/provider.mjs"),
        &script,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("node")
        .arg(&script)
        .env("PORT", port.to_string())
        .env("RESOURCE", RESOURCE)
        .env("TTL", ttl_secs.to_string())
        .env("ALG", alg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let provider = Provider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
        script,
    };
    // Ready once discovery answers 200: a listening socket alone was seen answering the first
    // request with a failure on a cold start.
    let discovery_answers = || {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = b"GET /.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut head = [0u8; 12];
        stream.write_all(request).is_ok()
            && stream.read_exact(&mut head).is_ok()
            && head.ends_with(b" 200")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !discovery_answers() {
        assert!(Instant::now() < deadline, "oidc-provider did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    provider
}

async fn access_token(provider: &Provider, resource: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "interop"),
            ("client_secret", "interop-secret"),
            ("scope", "mcp"),
            ("resource", resource),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(status.is_success(), "token request failed: {body}");
    body["access_token"]
        .as_str()
        .expect("a JWT access token")
        .to_string()
}

async fn verifier(provider: &Provider, leeway: Duration) -> TokenVerifier {
    let mut config = VerifierConfig::new(provider.issuer.clone(), RESOURCE);
    config.leeway = leeway;
    TokenVerifier::discover(config, reqwest::Client::new())
        .await
        .expect("discovery of oidc-provider")
}

#[tokio::test]
async fn tokens_from_oidc_provider_verify_and_their_variants_do_not() {
    for alg in ["RS256", "ES256"] {
        let provider = start_provider(300, alg);
        let verifier = verifier(&provider, Duration::from_secs(5)).await;
        let token = access_token(&provider, RESOURCE).await;
        let identity = verifier
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg} token refused: {e}"));
        assert_eq!(
            identity.subject, "interop",
            "client-credentials tokens name the client"
        );
        assert_eq!(identity.client_id.as_deref(), Some("interop"));

        let other = access_token(&provider, "https://other.example/api").await;
        assert_eq!(
            verifier.verify(&other).await.unwrap_err(),
            TokenError::Audience,
            "{alg}"
        );

        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        claims["sub"] = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err(),
            TokenError::Signature,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn an_expired_oidc_provider_token_is_refused() {
    let provider = start_provider(1, "RS256");
    let verifier = verifier(&provider, Duration::ZERO).await;
    let token = access_token(&provider, RESOURCE).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::Expired
    );
}
