//! The Vault credential provider against a real OpenBao dev server.

use changeflow_credentials::vault::{VaultAuth, VaultCredentials, VaultSettings, admin};
use changeflow_credentials::{CredentialError, CredentialProvider, Secret};
use changeflow_devstack::{EmbeddedVault, EmbeddedVaultOptions};
use std::collections::BTreeMap;
use std::time::Duration;

struct Fixture {
    vault: EmbeddedVault,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.vault.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn seeded_vault() -> Fixture {
    let dir = std::env::temp_dir().join(format!("cf-vault-{}", uuid::Uuid::new_v4().simple()));
    let options = EmbeddedVaultOptions::new(&dir);
    let vault = tokio::task::spawn_blocking(move || EmbeddedVault::start(&options))
        .await
        .unwrap()
        .expect("OpenBao starts");
    let sn = BTreeMap::from([
        ("username".to_string(), "sn-user".to_string()),
        ("password".to_string(), "sn-pass-from-vault".to_string()),
        ("client_id".to_string(), "sn-client".to_string()),
        (
            "client_secret".to_string(),
            "sn-secret-from-vault".to_string(),
        ),
    ]);
    let cc = BTreeMap::from([
        ("username".to_string(), "cc-user".to_string()),
        ("password".to_string(), "cc-pass-from-vault".to_string()),
    ]);
    write_as_root(&vault, "changeflow/servicenow", &sn).await;
    write_as_root(&vault, "changeflow/catalyst-center", &cc).await;
    Fixture { vault, dir }
}

/// Writes `value` at `path` in the `secret` mount with the server's root token.
async fn write_as_root(vault: &EmbeddedVault, path: &str, value: &BTreeMap<String, String>) {
    admin::write_secret(
        &vault.address(),
        vault.root_token().expose(),
        "secret",
        path,
        value,
    )
    .await
    .unwrap();
}

fn settings(f: &Fixture, auth: VaultAuth) -> VaultSettings {
    let mut s = VaultSettings::new(f.vault.address(), auth);
    s.cache_ttl = Duration::ZERO;
    s
}

#[tokio::test]
async fn token_auth_reads_both_secrets_and_caches_them() {
    changeflow_engine::metrics::prometheus();
    let f = seeded_vault().await;
    let mut s = settings(&f, VaultAuth::Token(f.vault.root_token().clone()));
    s.cache_ttl = Duration::from_secs(60);
    let provider = VaultCredentials::new(s).unwrap();
    let sn = provider.servicenow().await.unwrap();
    assert_eq!(sn.username, "sn-user");
    assert_eq!(sn.password.expose(), "sn-pass-from-vault");
    assert_eq!(sn.client_secret.expose(), "sn-secret-from-vault");
    assert_eq!(
        provider.catalyst().await.unwrap().password.expose(),
        "cc-pass-from-vault"
    );

    let rotated = BTreeMap::from([
        ("username".to_string(), "cc-user".to_string()),
        ("password".to_string(), "rotated".to_string()),
    ]);
    write_as_root(&f.vault, "changeflow/catalyst-center", &rotated).await;
    assert_eq!(
        provider.catalyst().await.unwrap().password.expose(),
        "cc-pass-from-vault",
        "served from the cache"
    );
    provider.clear_cache().await;
    assert_eq!(
        provider.catalyst().await.unwrap().password.expose(),
        "rotated",
        "read again after the cache"
    );

    // Vault operations are counted (no secret in the metrics, only operations and results).
    let metrics = changeflow_engine::metrics::render();
    for series in [
        r#"changeflow_vault_operations_total{operation="login",result="success"}"#,
        r#"changeflow_vault_operations_total{operation="read",result="success"}"#,
        r#"changeflow_vault_operations_total{operation="read",result="cached"}"#,
        r#"changeflow_vault_operation_duration_seconds_count{operation="read"}"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    assert!(!metrics.contains("from-vault") && !metrics.contains("rotated"));
}

#[tokio::test]
async fn approle_login_reads_only_what_its_policy_grants() {
    let f = seeded_vault().await;
    let root = f.vault.root_token().expose().to_string();
    let (role_id, secret_id) = admin::provision_approle(
        &f.vault.address(),
        &root,
        "changeflow-worker",
        "changeflow/",
        None,
        "1h",
    )
    .await
    .unwrap();
    let provider = VaultCredentials::new(settings(
        &f,
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: role_id.clone(),
            secret_id: secret_id.clone(),
        },
    ))
    .unwrap();
    assert_eq!(provider.servicenow().await.unwrap().client_id, "sn-client");

    let mut elsewhere = settings(
        &f,
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id,
        },
    );
    elsewhere.catalyst_path = "other-team/catalyst".into();
    let err = VaultCredentials::new(elsewhere)
        .unwrap()
        .catalyst()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CredentialError::Refused(_)),
        "a policy refusal is not retryable: {err}"
    );

    let bad = VaultCredentials::new(settings(
        &f,
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: "nope".into(),
            secret_id: Secret::new("wrong-secret-id"),
        },
    ))
    .unwrap();
    let err = bad.servicenow().await.unwrap_err();
    assert!(err.to_string().contains("AppRole login"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-id"));
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let f = seeded_vault().await;
    let root = f.vault.root_token().expose().to_string();
    admin::provision_approle(
        &f.vault.address(),
        &root,
        "reader",
        "changeflow/",
        None,
        "1h",
    )
    .await
    .unwrap();
    // Six seconds: Vault reports TTLs in whole seconds, so a shorter one leaves too little
    // margin on a loaded machine (with three, the remaining TTL was read as 0 once).
    let token = admin::create_token(&f.vault.address(), &root, &["reader"], "6s")
        .await
        .unwrap();
    let provider = VaultCredentials::new(settings(&f, VaultAuth::Token(token.clone()))).unwrap();
    assert!(provider.catalyst().await.is_ok());
    // Past two thirds of the TTL, the next use renews; past the original TTL it still works.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert!(provider.catalyst().await.is_ok());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        provider.catalyst().await.is_ok(),
        "the token outlived its first TTL because it was renewed"
    );
    assert!(
        admin::token_ttl(&f.vault.address(), token.expose())
            .await
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn an_unreachable_vault_is_a_retryable_error_without_secrets() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = VaultSettings::new(
        format!("http://127.0.0.1:{port}"),
        VaultAuth::Token(Secret::new("s.very-secret-token")),
    );
    s.request_timeout = Duration::from_secs(2);
    let err = VaultCredentials::new(s)
        .unwrap()
        .servicenow()
        .await
        .unwrap_err();
    assert!(matches!(err, CredentialError::Unavailable(_)), "{err}");
    assert!(!err.to_string().contains("very-secret-token"));
    assert!(
        VaultCredentials::new(VaultSettings::new(
            "not a url",
            VaultAuth::Token(Secret::new("t"))
        ))
        .is_err()
    );
}

#[tokio::test]
async fn a_secret_missing_a_field_names_the_field_not_the_values() {
    let f = seeded_vault().await;
    let partial = BTreeMap::from([
        ("username".to_string(), "cc-user".to_string()),
        ("passwd".to_string(), "typo-value".to_string()),
    ]);
    write_as_root(&f.vault, "changeflow/catalyst-center", &partial).await;
    let provider =
        VaultCredentials::new(settings(&f, VaultAuth::Token(f.vault.root_token().clone())))
            .unwrap();
    let err = provider.catalyst().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "credential store: secret changeflow/catalyst-center has no 'password' field"
    );
}

#[tokio::test]
async fn the_evidence_key_signs_in_transit_only_for_a_role_granted_it() {
    use base64::Engine as _;
    use changeflow_credentials::vault::{DEFAULT_EVIDENCE_KEY, DEFAULT_TRANSIT_MOUNT};
    let f = seeded_vault().await;
    let root = f.vault.root_token().expose().to_string();
    let address = f.vault.address();
    admin::create_evidence_key(&address, &root, DEFAULT_TRANSIT_MOUNT, DEFAULT_EVIDENCE_KEY)
        .await
        .unwrap();
    // A second start keeps the key.
    admin::create_evidence_key(&address, &root, DEFAULT_TRANSIT_MOUNT, DEFAULT_EVIDENCE_KEY)
        .await
        .unwrap();
    let approle = |role: &'static str, signing| {
        let (address, root) = (address.clone(), root.clone());
        async move {
            let (role_id, secret_id) =
                admin::provision_approle(&address, &root, role, "changeflow/", signing, "1h")
                    .await
                    .unwrap();
            VaultCredentials::new(VaultSettings::new(
                address,
                VaultAuth::AppRole {
                    mount: "approle".into(),
                    role_id,
                    secret_id,
                },
            ))
            .unwrap()
        }
    };
    let signer = approle(
        "signer",
        Some((DEFAULT_TRANSIT_MOUNT, DEFAULT_EVIDENCE_KEY)),
    )
    .await;
    let message = [42u8; 32];
    let signed = signer.sign_evidence(&message).await.unwrap();
    assert_eq!(
        (signed.key.as_str(), signed.version),
        (DEFAULT_EVIDENCE_KEY, 1)
    );
    let key = signer.evidence_key(None).await.unwrap();
    assert_eq!(key.version, 1);
    let public = base64::engine::general_purpose::STANDARD
        .decode(&key.public_key)
        .unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&signed.signature)
        .unwrap();
    let ed25519 =
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &public);
    ed25519.verify(&message, &signature).unwrap();
    assert!(ed25519.verify(&[0u8; 32], &signature).is_err());
    let missing = signer.evidence_key(Some(7)).await.unwrap_err();
    assert!(missing.to_string().contains("no version 7"), "{missing}");

    // A role that may only read credentials cannot sign, and it is not worth retrying.
    let reader = approle("reader-only", None).await;
    let refused = reader.sign_evidence(&message).await.unwrap_err();
    assert!(matches!(refused, CredentialError::Refused(_)), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_server_whose_port_another_holds_does_not_pass_for_started() {
    // The dev server also listens on its port plus one (its cluster port). A second one asked
    // for that port must not take the first one's cluster listener for itself.
    let first = seeded_vault().await;
    let taken = first.vault.port();
    let dir = std::env::temp_dir().join(format!("cf-vault-{}", uuid::Uuid::new_v4().simple()));
    let mut options = EmbeddedVaultOptions::new(&dir);
    options.port = taken + 1;
    let second = tokio::task::spawn_blocking(move || EmbeddedVault::start(&options))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let problem = second
        .err()
        .expect("a server on a taken port is not started");
    assert!(problem.port_taken(), "{problem}");
    // The first one is untouched.
    let value = BTreeMap::from([("k".to_string(), "v".to_string())]);
    write_as_root(&first.vault, "still/here", &value).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_written_to_a_kv_mount_being_upgraded_waits_for_the_upgrade() {
    // A KV mount refuses writes while it is upgraded to version 2 ("Upgrading from
    // non-versioned to versioned data", a 400). The dev server's `secret/` is upgraded like
    // that just after the server starts, and the dev stack's seeding once failed on it. Here a
    // version 1 mount holding data is switched to version 2, and written to at once.
    let f = seeded_vault().await;
    let (address, root) = (f.vault.address(), f.vault.root_token().expose().to_string());
    let http = reqwest::Client::new();
    let send = |request: reqwest::RequestBuilder| async {
        let answer = request.header("X-Vault-Token", &root).send().await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        answer
    };
    send(
        http.post(format!("{address}/v1/sys/mounts/upgraded"))
            .json(&serde_json::json!({"type": "kv", "options": {"version": "1"}})),
    )
    .await;
    // Enough data that the upgrade outlasts a few requests.
    for batch in 0..100 {
        futures::future::join_all((0..50).map(|n| {
            send(
                http.post(format!("{address}/v1/upgraded/old/{batch}/{n}"))
                    .json(&serde_json::json!({"v": n})),
            )
        }))
        .await;
    }
    send(
        http.post(format!("{address}/v1/sys/mounts/upgraded/tune"))
            .json(&serde_json::json!({"options": {"version": "2"}})),
    )
    .await;
    let refused_meanwhile = http
        .post(format!("{address}/v1/upgraded/data/probe"))
        .header("X-Vault-Token", &root)
        .json(&serde_json::json!({"data": {"v": 1}}))
        .send()
        .await
        .unwrap();
    let body = refused_meanwhile.text().await.unwrap();
    assert!(
        body.contains("Upgrading from non-versioned to versioned data"),
        "the upgrade was over before a write: {body}"
    );

    let value = BTreeMap::from([("token".to_string(), "t-1".to_string())]);
    admin::write_secret(&address, &root, "upgraded", "team/alice", &value)
        .await
        .unwrap();
    let read: serde_json::Value = send(http.get(format!("{address}/v1/upgraded/data/team/alice")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["data"]["data"]["token"], "t-1", "{read}");
    // Any other refusal is not waited for.
    let started = std::time::Instant::now();
    let refused = admin::write_secret(&address, "not-a-token", "secret", "x", &value).await;
    assert!(refused.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
