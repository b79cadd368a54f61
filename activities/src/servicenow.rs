//! ServiceNow Table API client for `change_request`: OAuth password grant with a cached token,
//! one refresh on 401, and the state-model walk a normal change needs.

use crate::http::{DownstreamError, classify, with_retries};
use changeflow_engine::CredentialProvider;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const SYSTEM: &str = "ServiceNow";
/// The normal-change path from New to Implement, in order.
const TO_IMPLEMENT: &[&str] = &["-5", "-4", "-3", "-2", "-1"];
pub const STATE_IMPLEMENT: &str = "-1";
pub const STATE_REVIEW: &str = "0";
pub const STATE_CLOSED: &str = "3";
pub const STATE_CANCELED: &str = "4";

/// A change request as read back: string fields by name.
pub type ChangeRecord = serde_json::Map<String, Value>;

pub struct ServiceNowClient {
    base_url: String,
    http: reqwest::Client,
    credentials: Arc<dyn CredentialProvider>,
    token: Mutex<Option<(String, Instant)>>,
}

impl ServiceNowClient {
    pub fn new(
        base_url: &str,
        http: reqwest::Client,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            credentials,
            token: Mutex::new(None),
        }
    }

    /// A valid access token, logging in when there is none, it expired, or `refresh` is set.
    async fn token(&self, refresh: bool) -> Result<String, DownstreamError> {
        let mut cached = self.token.lock().await;
        if let (false, Some((token, expiry))) = (refresh, cached.as_ref())
            && *expiry > Instant::now()
        {
            return Ok(token.clone());
        }
        let creds = self.credentials.servicenow().await?;
        let form = [
            ("grant_type", "password"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose()),
            ("username", creds.username.as_str()),
            ("password", creds.password.expose()),
        ];
        let response = with_retries(|| async {
            let response = self
                .http
                .post(format!("{}/oauth_token.do", self.base_url))
                .form(&form)
                .send()
                .await
                .map_err(|e| DownstreamError::transport(SYSTEM, e))?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json::<Value>()
                    .await
                    .map_err(|e| DownstreamError::protocol(SYSTEM, e.to_string()));
            }
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            Err(classify(SYSTEM, status, &headers, &body))
        })
        .await?;
        let token = response["access_token"]
            .as_str()
            .ok_or_else(|| {
                DownstreamError::protocol(SYSTEM, "token response without access_token")
            })?
            .to_string();
        let lifetime = response["expires_in"].as_u64().unwrap_or(1799);
        // Renew a minute early so a token never expires mid-call.
        let expiry = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60));
        *cached = Some((token.clone(), expiry));
        Ok(token)
    }

    /// One authenticated call; a 401 triggers one fresh login and one more try.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, DownstreamError> {
        let mut refreshed = false;
        loop {
            let token = self.token(refreshed).await?;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base_url))
                .bearer_auth(token)
                .header("Accept", "application/json")
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DownstreamError::transport(SYSTEM, e))?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json()
                    .await
                    .map_err(|e| DownstreamError::protocol(SYSTEM, e.to_string()));
            }
            if status.as_u16() == 401 && !refreshed {
                refreshed = true;
                continue;
            }
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            return Err(classify(SYSTEM, status, &headers, &text));
        }
    }

    fn record(result: Value) -> Result<ChangeRecord, DownstreamError> {
        match result.get("result") {
            Some(Value::Object(record)) => Ok(record.clone()),
            _ => Err(DownstreamError::protocol(
                SYSTEM,
                "response without a result record",
            )),
        }
    }

    /// The change request this correlation id opened earlier, if any.
    pub async fn find_by_correlation(
        &self,
        correlation_id: &str,
    ) -> Result<Option<ChangeRecord>, DownstreamError> {
        let query = format!("correlation_id={correlation_id}");
        let params = [
            ("sysparm_query", query.as_str()),
            ("sysparm_limit", "1"),
            ("sysparm_exclude_reference_link", "true"),
        ];
        let result =
            with_retries(|| self.call(Method::GET, "/api/now/table/change_request", &params, None))
                .await?;
        match result.get("result") {
            Some(Value::Array(list)) => Ok(list.first().and_then(Value::as_object).cloned()),
            _ => Err(DownstreamError::protocol(
                SYSTEM,
                "list response without a result array",
            )),
        }
    }

    /// Opens a normal change request.
    pub async fn create(&self, fields: &Value) -> Result<ChangeRecord, DownstreamError> {
        // Not retried in-call: a lost answer to a create is resolved by the correlation lookup.
        let result = self
            .call(
                Method::POST,
                "/api/now/table/change_request",
                &[("sysparm_exclude_reference_link", "true")],
                Some(fields),
            )
            .await?;
        Self::record(result)
    }

    pub async fn get(&self, sys_id: &str) -> Result<ChangeRecord, DownstreamError> {
        let path = format!("/api/now/table/change_request/{sys_id}");
        let result = with_retries(|| {
            self.call(
                Method::GET,
                &path,
                &[("sysparm_exclude_reference_link", "true")],
                None,
            )
        })
        .await?;
        Self::record(result)
    }

    /// Sets fields (a PATCH is idempotent, so it is retried in-call).
    pub async fn update(
        &self,
        sys_id: &str,
        fields: &Value,
    ) -> Result<ChangeRecord, DownstreamError> {
        let path = format!("/api/now/table/change_request/{sys_id}");
        let result = with_retries(|| {
            self.call(
                Method::PATCH,
                &path,
                &[("sysparm_exclude_reference_link", "true")],
                Some(fields),
            )
        })
        .await?;
        Self::record(result)
    }

    /// Moves a normal change from wherever it is on the way to Implement, one state at a time.
    pub async fn move_to_implement(&self, sys_id: &str) -> Result<(), DownstreamError> {
        let current = state_of(&self.get(sys_id).await?);
        let Some(position) = TO_IMPLEMENT.iter().position(|s| *s == current) else {
            return Err(DownstreamError::Invalid(format!(
                "change request is in state {current}, which cannot move to Implement"
            )));
        };
        for state in &TO_IMPLEMENT[position + 1..] {
            self.update(sys_id, &json!({ "state": state })).await?;
        }
        Ok(())
    }
}

/// The `state` field of a record.
pub fn state_of(record: &ChangeRecord) -> String {
    record
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
