//! Credentials from Vault / OpenBao KV v2, read when an activity needs them: token or AppRole
//! login, renewal before the token expires, and a short in-process cache. When Vault cannot be
//! reached the error is retryable and nothing falls back to anything else. No error message
//! carries a secret value: they name paths and fields only.

use crate::{
    CatalystCredentials, CredentialError, CredentialProvider, EvidenceKey, EvidenceSignature,
    Secret, ServiceNowCredentials,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// How the provider logs in.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    Token(Secret),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: Secret,
    },
}

/// Where the secrets are and how to reach them.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub address: String,
    pub auth: VaultAuth,
    /// KV v2 mount, `secret` by default.
    pub mount: String,
    pub servicenow_path: String,
    pub catalyst_path: String,
    /// Where each person's GitHub token is: `<github_path>/<user>`, field `token`.
    pub github_path: String,
    /// Transit mount and the name of the ed25519 key that signs evidence bundles.
    pub transit_mount: String,
    pub evidence_key: String,
    /// How long a read secret is reused before Vault is asked again.
    pub cache_ttl: Duration,
    pub request_timeout: Duration,
}

impl VaultSettings {
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            auth,
            mount: "secret".into(),
            servicenow_path: "changeflow/servicenow".into(),
            catalyst_path: "changeflow/catalyst-center".into(),
            github_path: DEFAULT_GITHUB_PATH.into(),
            transit_mount: DEFAULT_TRANSIT_MOUNT.into(),
            evidence_key: DEFAULT_EVIDENCE_KEY.into(),
            cache_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Where people's GitHub tokens live by default (KV v2, one secret per person).
pub const DEFAULT_GITHUB_PATH: &str = "changeflow/github/users";

/// Where the evidence key lives by default.
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";
pub const DEFAULT_EVIDENCE_KEY: &str = "changeflow-evidence";

struct Session {
    client: Arc<VaultClient>,
    /// When to renew (two thirds into the token's life); `None` for tokens that do not expire.
    renew_at: Option<Instant>,
}

/// A secret's fields and when they were read.
type CachedSecret = (BTreeMap<String, String>, Instant);

/// A `CredentialProvider` backed by Vault.
pub struct VaultCredentials {
    settings: VaultSettings,
    session: Mutex<Option<Session>>,
    cache: Mutex<HashMap<String, CachedSecret>>,
}

impl VaultCredentials {
    pub fn new(settings: VaultSettings) -> Result<Self, CredentialError> {
        url::Url::parse(&settings.address).map_err(|e| {
            CredentialError::Refused(format!("invalid Vault address '{}': {e}", settings.address))
        })?;
        Ok(Self {
            settings,
            session: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A logged-in client, renewing or logging in again when the token is due.
    async fn client(&self) -> Result<Arc<VaultClient>, CredentialError> {
        let mut session = self.session.lock().await;
        match session.as_ref() {
            Some(s) if s.renew_at.is_none_or(|at| Instant::now() < at) => {
                return Ok(s.client.clone());
            }
            Some(s) => match vaultrs::token::renew_self(s.client.as_ref(), None).await {
                Ok(auth) if auth.lease_duration > 0 => {
                    let renewed = Session {
                        client: s.client.clone(),
                        renew_at: renew_at(auth.lease_duration),
                    };
                    tracing::debug!("vault token renewed");
                    let client = renewed.client.clone();
                    *session = Some(renewed);
                    return Ok(client);
                }
                // Not renewable (or renewal refused): log in afresh below.
                _ => {}
            },
            None => {}
        }
        let fresh = self.login().await?;
        let client = fresh.client.clone();
        *session = Some(fresh);
        Ok(client)
    }

    async fn login(&self) -> Result<Session, CredentialError> {
        let started = Instant::now();
        let session = self.login_once().await;
        observe("login", started, session.is_ok());
        session
    }

    async fn login_once(&self) -> Result<Session, CredentialError> {
        let token = match &self.settings.auth {
            VaultAuth::Token(token) => token.expose().to_string(),
            VaultAuth::AppRole { .. } => String::new(),
        };
        let mut client = self.new_client(&token)?;
        let renew = match &self.settings.auth {
            VaultAuth::Token(_) => {
                let info = vaultrs::token::lookup_self(&client)
                    .await
                    .map_err(|e| classify(e, "token lookup"))?;
                if info.ttl == 0 {
                    None
                } else {
                    renew_at(info.ttl)
                }
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let auth =
                    vaultrs::auth::approle::login(&client, mount, role_id, secret_id.expose())
                        .await
                        .map_err(|e| classify(e, "AppRole login"))?;
                client.set_token(&auth.client_token);
                renew_at(auth.lease_duration)
            }
        };
        Ok(Session {
            client: Arc::new(client),
            renew_at: renew,
        })
    }

    fn new_client(&self, token: &str) -> Result<VaultClient, CredentialError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.settings.address)
            .token(token)
            .timeout(Some(self.settings.request_timeout))
            .build()
            .map_err(|e| CredentialError::Refused(format!("Vault client settings: {e}")))?;
        VaultClient::new(settings)
            .map_err(|e| CredentialError::Refused(format!("Vault client: {e}")))
    }

    /// The secret at `path`, from the cache while it is fresh.
    async fn read(&self, path: &str) -> Result<BTreeMap<String, String>, CredentialError> {
        if let Some((value, read_at)) = self.cache.lock().await.get(path)
            && read_at.elapsed() < self.settings.cache_ttl
        {
            metrics::counter!(VAULT_OPERATIONS, "operation" => "read", "result" => "cached")
                .increment(1);
            return Ok(value.clone());
        }
        let client = self.client().await?;
        let started = Instant::now();
        let read = vaultrs::kv2::read(client.as_ref(), &self.settings.mount, path).await;
        observe("read", started, read.is_ok());
        let value: BTreeMap<String, String> =
            read.map_err(|e| classify(e, &format!("reading {}/{path}", self.settings.mount)))?;
        self.cache
            .lock()
            .await
            .insert(path.to_string(), (value.clone(), Instant::now()));
        Ok(value)
    }

    /// Forgets cached secrets (they are read again on next use).
    pub async fn clear_cache(&self) {
        self.cache.lock().await.clear();
    }
}

/// Vault operations by `operation` (`login`, `read`) and `result` (`success`, `failure`, and
/// `cached` for reads answered from the cache).
pub const VAULT_OPERATIONS: &str = "changeflow_vault_operations_total";
/// Vault operation latency in seconds, by `operation`.
pub const VAULT_SECONDS: &str = "changeflow_vault_operation_duration_seconds";

fn observe(operation: &'static str, started: Instant, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    metrics::counter!(VAULT_OPERATIONS, "operation" => operation, "result" => result).increment(1);
    metrics::histogram!(VAULT_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

fn renew_at(ttl_secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(ttl_secs) * 2 / 3)
}

/// Transport problems and server errors are retryable; refusals and missing secrets are not.
fn classify(err: ClientError, doing: &str) -> CredentialError {
    match err {
        ClientError::APIError { code, .. } if code >= 500 || code == 429 => {
            CredentialError::Unavailable(format!("{doing}: Vault answered {code}"))
        }
        ClientError::APIError { code: 404, .. } => {
            CredentialError::Refused(format!("{doing}: no secret there (404)"))
        }
        ClientError::APIError { code, .. } => {
            CredentialError::Refused(format!("{doing}: Vault refused ({code})"))
        }
        ClientError::RestClientError { .. } => {
            CredentialError::Unavailable(format!("{doing}: Vault is unreachable"))
        }
        other => CredentialError::Unavailable(format!("{doing}: {other}")),
    }
}

fn field(
    secret: &BTreeMap<String, String>,
    path: &str,
    name: &str,
) -> Result<String, CredentialError> {
    secret
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| CredentialError::Refused(format!("secret {path} has no '{name}' field")))
}

#[async_trait]
impl CredentialProvider for VaultCredentials {
    async fn servicenow(&self) -> Result<ServiceNowCredentials, CredentialError> {
        let path = &self.settings.servicenow_path;
        let s = self.read(path).await?;
        Ok(ServiceNowCredentials {
            username: field(&s, path, "username")?,
            password: Secret::new(field(&s, path, "password")?),
            client_id: field(&s, path, "client_id")?,
            client_secret: Secret::new(field(&s, path, "client_secret")?),
        })
    }

    async fn catalyst(&self) -> Result<CatalystCredentials, CredentialError> {
        let path = &self.settings.catalyst_path;
        let s = self.read(path).await?;
        Ok(CatalystCredentials {
            username: field(&s, path, "username")?,
            password: Secret::new(field(&s, path, "password")?),
        })
    }

    async fn github(&self, user: &str) -> Result<Secret, CredentialError> {
        // The user is a verified subject, but it becomes part of a path: nothing but a name.
        let plain = !user.is_empty()
            && user.len() <= 128
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
            && !user.starts_with('.');
        if !plain {
            return Err(CredentialError::Refused(format!(
                "no GitHub token can be looked up for user '{user}'"
            )));
        }
        let path = format!("{}/{user}", self.settings.github_path);
        match self.read(&path).await {
            Ok(s) => Ok(Secret::new(field(&s, &path, "token")?)),
            Err(CredentialError::Refused(message)) if message.contains("(404)") => {
                Err(CredentialError::Refused(format!(
                    "{user} has no GitHub token in Vault ({}/{path}, field token)",
                    self.settings.mount
                )))
            }
            Err(other) => Err(other),
        }
    }

    async fn sign_evidence(&self, message: &[u8]) -> Result<EvidenceSignature, CredentialError> {
        use base64::Engine as _;
        let (mount, key) = (&self.settings.transit_mount, &self.settings.evidence_key);
        let client = self.client().await?;
        let started = Instant::now();
        let signed = vaultrs::transit::data::sign(
            client.as_ref(),
            mount,
            key,
            &base64::engine::general_purpose::STANDARD.encode(message),
            None,
        )
        .await;
        observe("sign", started, signed.is_ok());
        let signed = signed.map_err(|e| classify(e, &format!("signing with {mount}/{key}")))?;
        // "vault:v<version>:<base64 signature>"
        let malformed = || {
            CredentialError::Refused(format!(
                "Transit answered a signature of an unexpected form from {mount}/{key}"
            ))
        };
        let mut parts = signed.signature.splitn(3, ':');
        let (Some("vault"), Some(version), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let version = version
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .ok_or_else(malformed)?;
        Ok(EvidenceSignature {
            key: key.clone(),
            version,
            signature: signature.to_string(),
        })
    }

    async fn evidence_key(&self, version: Option<u64>) -> Result<EvidenceKey, CredentialError> {
        use vaultrs::api::transit::responses::ReadKeyData;
        let (mount, key) = (&self.settings.transit_mount, &self.settings.evidence_key);
        let client = self.client().await?;
        let started = Instant::now();
        let read = vaultrs::transit::key::read(client.as_ref(), mount, key).await;
        observe("read_key", started, read.is_ok());
        let read = read.map_err(|e| classify(e, &format!("reading key {mount}/{key}")))?;
        let ReadKeyData::Asymmetric(versions) = read.keys else {
            return Err(CredentialError::Refused(format!(
                "{mount}/{key} is not an asymmetric key (create it with type=ed25519)"
            )));
        };
        let mut versions: Vec<(u64, String)> = versions
            .into_iter()
            .filter_map(|(v, entry)| Some((v.parse().ok()?, entry.public_key)))
            .collect();
        versions.sort();
        let found = match version {
            Some(wanted) => versions.into_iter().find(|(v, _)| *v == wanted),
            None => versions.pop(),
        };
        let (version, public_key) = found.ok_or_else(|| {
            CredentialError::Refused(format!(
                "{mount}/{key} has no version {}",
                version.map_or_else(|| "at all".to_string(), |v| v.to_string())
            ))
        })?;
        Ok(EvidenceKey {
            key: key.clone(),
            version,
            public_key,
        })
    }
}

/// Administrative helpers for the embedded dev server and tests (root token).
pub mod admin {
    use super::*;

    fn client(address: &str, token: &str) -> Result<VaultClient, CredentialError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(address)
            .token(token)
            .build()
            .map_err(|e| CredentialError::Refused(e.to_string()))?;
        VaultClient::new(settings).map_err(|e| CredentialError::Refused(e.to_string()))
    }

    /// Writes a KV v2 secret.
    pub async fn write_secret(
        address: &str,
        token: &str,
        mount: &str,
        path: &str,
        value: &BTreeMap<String, String>,
    ) -> Result<(), CredentialError> {
        let client = client(address, token)?;
        // A KV mount made at the server's start (the dev server's `secret/`) is upgraded to
        // version 2 in the background, and refuses writes with a 400 saying so until it is
        // done: wait for that (seen to take up to a second), and only for that.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match vaultrs::kv2::set(&client, mount, path, value).await {
                Ok(_) => return Ok(()),
                Err(ClientError::APIError { code: 400, errors })
                    if Instant::now() < deadline
                        && errors.iter().any(|e| e.contains(KV_UPGRADING)) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(classify(e, &format!("writing {mount}/{path}"))),
            }
        }
    }

    /// What Vault and OpenBao answer while a KV mount is being upgraded to version 2.
    const KV_UPGRADING: &str = "Upgrading from non-versioned to versioned data";

    /// Enables the Transit engine at `mount` (if it is not already) and creates the ed25519
    /// evidence key `key` there (kept if it exists).
    pub async fn create_evidence_key(
        address: &str,
        token: &str,
        mount: &str,
        key: &str,
    ) -> Result<(), CredentialError> {
        let client = client(address, token)?;
        // Already enabled (a second start) is fine.
        let _ = vaultrs::sys::mount::enable(&client, mount, "transit", None).await;
        let mut options = vaultrs::api::transit::requests::CreateKeyRequest::builder();
        options.key_type(vaultrs::api::transit::KeyType::Ed25519);
        vaultrs::transit::key::create(&client, mount, key, Some(&mut options))
            .await
            .map_err(|e| classify(e, &format!("creating key {mount}/{key}")))
    }

    /// Enables AppRole, grants read on `secret/data/<prefix>*` (and, with `signing`, signing
    /// with that Transit key and reading its public half), and returns (role_id, secret_id).
    pub async fn provision_approle(
        address: &str,
        token: &str,
        role: &str,
        prefix: &str,
        signing: Option<(&str, &str)>,
        token_ttl: &str,
    ) -> Result<(String, Secret), CredentialError> {
        let client = client(address, token)?;
        // Already enabled (a second call) is fine.
        let _ = vaultrs::sys::auth::enable(&client, "approle", "approle", None).await;
        let mut policy = format!("path \"secret/data/{prefix}*\" {{ capabilities = [\"read\"] }}");
        if let Some((mount, key)) = signing {
            policy.push_str(&format!(
                "\npath \"{mount}/sign/{key}\" {{ capabilities = [\"update\"] }}\n\
                 path \"{mount}/keys/{key}\" {{ capabilities = [\"read\"] }}"
            ));
        }
        vaultrs::sys::policy::set(&client, role, &policy)
            .await
            .map_err(|e| classify(e, "writing policy"))?;
        let mut options = vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder();
        options
            .token_policies(vec![role.to_string()])
            .token_ttl(token_ttl)
            .token_max_ttl("24h");
        vaultrs::auth::approle::role::set(&client, "approle", role, Some(&mut options))
            .await
            .map_err(|e| classify(e, "creating AppRole"))?;
        let role_id = vaultrs::auth::approle::role::read_id(&client, "approle", role)
            .await
            .map_err(|e| classify(e, "reading role id"))?
            .role_id;
        let secret_id =
            vaultrs::auth::approle::role::secret::generate(&client, "approle", role, None)
                .await
                .map_err(|e| classify(e, "generating secret id"))?
                .secret_id;
        Ok((role_id, Secret::new(secret_id)))
    }

    /// Creates a renewable token with the given policies and TTL (tests of renewal use it).
    pub async fn create_token(
        address: &str,
        token: &str,
        policies: &[&str],
        ttl: &str,
    ) -> Result<Secret, CredentialError> {
        let client = client(address, token)?;
        let mut options = vaultrs::api::token::requests::CreateTokenRequest::builder();
        options
            .policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .ttl(ttl)
            .renewable(true);
        let auth = vaultrs::token::new(&client, Some(&mut options))
            .await
            .map_err(|e| classify(e, "creating token"))?;
        Ok(Secret::new(auth.client_token))
    }

    /// The remaining TTL of a token, in seconds.
    pub async fn token_ttl(address: &str, token: &str) -> Result<u64, CredentialError> {
        let client = client(address, token)?;
        Ok(vaultrs::token::lookup_self(&client)
            .await
            .map_err(|e| classify(e, "token lookup"))?
            .ttl)
    }
}
