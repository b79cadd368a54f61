//! ServiceNow Table API client for `change_request`: OAuth password grant with a cached token,
//! one refresh on 401, and the state-model walk a normal change needs.

use crate::http::{self, DownstreamError, send_json, with_retries};
use crate::session::Session;
use changeflow_engine::CredentialProvider;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

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
    session: Session,
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
            session: Session::default(),
        }
    }

    /// OAuth password grant; returns the access token and its lifetime.
    async fn login(&self) -> Result<(String, Duration), DownstreamError> {
        let creds = self.credentials.servicenow().await?;
        let form = [
            ("grant_type", "password"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose()),
            ("username", creds.username.as_str()),
            ("password", creds.password.expose()),
        ];
        let url = format!("{}/oauth_token.do", self.base_url);
        let answer = with_retries(|| send_json(SYSTEM, self.http.post(&url).form(&form))).await?;
        let token = answer["access_token"].as_str().ok_or_else(|| {
            DownstreamError::protocol(SYSTEM, "token response without access_token")
        })?;
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(1799));
        Ok((token.to_string(), lifetime))
    }

    /// One authenticated call (the session renews the token once on 401).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, DownstreamError> {
        let url = format!("{}{path}", self.base_url);
        self.session
            .authorized(
                || self.login(),
                |token| {
                    let request = http::request(&self.http, method.clone(), &url, query, body);
                    send_json(
                        SYSTEM,
                        request
                            .bearer_auth(token)
                            .header("Accept", "application/json"),
                    )
                },
            )
            .await
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
        Ok(self.query(&query, 1).await?.into_iter().next())
    }

    /// Change requests matching an encoded query (`sysparm_query`), at most `limit`.
    pub async fn query(
        &self,
        encoded_query: &str,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>, DownstreamError> {
        self.query_table("change_request", encoded_query, limit)
            .await
    }

    /// A `sys_user` by sys_id or user name; `None` if there is no such user.
    pub async fn user(
        &self,
        sys_id_or_name: &str,
    ) -> Result<Option<ChangeRecord>, DownstreamError> {
        for field in ["sys_id", "user_name"] {
            let query = format!("{field}={sys_id_or_name}");
            let found = self.query_table("sys_user", &query, 1).await?;
            if let Some(user) = found.into_iter().next() {
                return Ok(Some(user));
            }
        }
        Ok(None)
    }

    async fn query_table(
        &self,
        table: &str,
        encoded_query: &str,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>, DownstreamError> {
        let path = format!("/api/now/table/{table}");
        let limit = limit.to_string();
        let params = [
            ("sysparm_query", encoded_query),
            ("sysparm_limit", limit.as_str()),
            ("sysparm_exclude_reference_link", "true"),
        ];
        let result = with_retries(|| self.call(Method::GET, &path, &params, None)).await?;
        match result.get("result") {
            Some(Value::Array(list)) => {
                Ok(list.iter().filter_map(Value::as_object).cloned().collect())
            }
            _ => Err(DownstreamError::protocol(
                SYSTEM,
                "list response without a result array",
            )),
        }
    }

    /// The normal change request this correlation id opened, opening it if there is none yet,
    /// so a retried open never opens a second one.
    pub async fn open_once(
        &self,
        correlation_id: &str,
        short_description: &str,
        description: &str,
        requested_by: &str,
    ) -> Result<ChangeRecord, DownstreamError> {
        if let Some(existing) = self.find_by_correlation(correlation_id).await? {
            return Ok(existing);
        }
        let fields = json!({
            "type": "normal",
            "short_description": short_description,
            "description": description,
            "requested_by": requested_by,
            "correlation_id": correlation_id,
            "correlation_display": "changeflow",
        });
        self.create(&fields).await
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
