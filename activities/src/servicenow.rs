//! ServiceNow Table API client for `change_request`: OAuth password grant with a cached token,
//! one refresh on 401, and the state-model walk a normal change needs.

use crate::http::{DownstreamError, send_json, with_retries};
use crate::session::Api;
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::arguments::{CloseCode, TicketState};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const SYSTEM: &str = "ServiceNow";

/// ServiceNow takes an OAuth bearer token.
pub fn authorize(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    request
        .bearer_auth(token)
        .header("Accept", "application/json")
}

/// The change state model's codes (`state` field), by state.
pub const STATE_CODES: [(TicketState, &str); 8] = [
    (TicketState::New, "-5"),
    (TicketState::Assess, "-4"),
    (TicketState::Authorize, "-3"),
    (TicketState::Scheduled, "-2"),
    (TicketState::Implement, "-1"),
    (TicketState::Review, "0"),
    (TicketState::Closed, "3"),
    (TicketState::Canceled, "4"),
];

/// The normal-change path from New to Implement, in order.
const TO_IMPLEMENT: [TicketState; 5] = [
    TicketState::New,
    TicketState::Assess,
    TicketState::Authorize,
    TicketState::Scheduled,
    TicketState::Implement,
];

/// A state's code.
pub fn state_code(state: TicketState) -> &'static str {
    STATE_CODES
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, code)| *code)
        .unwrap_or_default()
}

/// The state of a code; `None` for a code outside the model.
pub fn state_name(code: &str) -> Option<TicketState> {
    STATE_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(state, _)| *state)
}

/// How a close treats a change request the state model will not close as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseMode {
    /// A caller's request (`close_change_request`): refused, and nothing is written.
    Refuse,
    /// A change's own ticket at the end of its workflow: closed however the model allows (a
    /// ticket that never reached Implement is canceled, one already ended is left as it is).
    BestEffort,
}

/// A change request as read back: string fields by name.
pub type ChangeRecord = serde_json::Map<String, Value>;

pub struct ServiceNowClient {
    api: Api,
    credentials: Arc<dyn CredentialProvider>,
}

impl ServiceNowClient {
    /// A client over `api` (made with this module's `SYSTEM`) logging in with `credentials`.
    pub fn new(api: Api, credentials: Arc<dyn CredentialProvider>) -> Self {
        Self { api, credentials }
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
        let url = self.api.url("/oauth_token.do");
        let answer =
            with_retries(|| send_json(SYSTEM, self.api.http().post(&url).form(&form))).await?;
        let token = answer["access_token"].as_str().ok_or_else(|| {
            DownstreamError::protocol(SYSTEM, "token response without access_token")
        })?;
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(1799));
        Ok((token.to_string(), lifetime))
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
        let result = with_retries(|| {
            self.api
                .call(|| self.login(), Method::GET, &path, &params, None)
        })
        .await?;
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
            .api
            .call(
                || self.login(),
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
            self.api.call(
                || self.login(),
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
            self.api.call(
                || self.login(),
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
        let record = self.get(sys_id).await?;
        let Some(position) =
            state_of(&record).and_then(|current| TO_IMPLEMENT.iter().position(|s| *s == current))
        else {
            return Err(DownstreamError::Invalid(format!(
                "change request is in state {}, which cannot move to Implement",
                field(&record, "state")
            )));
        };
        for state in &TO_IMPLEMENT[position + 1..] {
            self.update(sys_id, &json!({ "state": state_code(*state) }))
                .await?;
        }
        Ok(())
    }

    /// Closes (or, with `canceled`, cancels) a change request through the state model: from
    /// Implement by way of Review. Asking for the state it is already in succeeds without
    /// writing, so a retried close is harmless; what the model does not allow is handled as
    /// `mode` says.
    pub async fn close(
        &self,
        record: ChangeRecord,
        code: CloseCode,
        notes: &str,
        mode: CloseMode,
    ) -> Result<ChangeRecord, DownstreamError> {
        let sys_id = field(&record, "sys_id").to_string();
        let number = field(&record, "number").to_string();
        let current = state_of(&record);
        let code_name = close_code_name(code);
        let refuse = |why: String| match mode {
            CloseMode::Refuse => Err(DownstreamError::Invalid(format!(
                "change request {number} {why}"
            ))),
            CloseMode::BestEffort => Ok(record.clone()),
        };
        if code == CloseCode::Canceled {
            return match current {
                Some(TicketState::Canceled) => Ok(record.clone()),
                Some(TicketState::Closed) => refuse("is already closed".into()),
                _ => {
                    let fields = json!({"state": state_code(TicketState::Canceled), "close_notes": notes, "work_notes": notes});
                    self.update(&sys_id, &fields).await
                }
            };
        }
        match current {
            Some(TicketState::Closed) if field(&record, "close_code") == code_name => Ok(record),
            Some(state @ (TicketState::Closed | TicketState::Canceled)) => {
                refuse(format!("is already {}", state_label(state)))
            }
            Some(TicketState::Implement | TicketState::Review) => {
                if current == Some(TicketState::Implement) {
                    let fields =
                        json!({"state": state_code(TicketState::Review), "work_notes": notes});
                    self.update(&sys_id, &fields).await?;
                }
                let fields = json!({"state": state_code(TicketState::Closed), "close_code": code_name, "close_notes": notes});
                self.update(&sys_id, &fields).await
            }
            _ if mode == CloseMode::BestEffort => {
                // Ended before Implement: the model only allows canceling from here.
                let fields = json!({"state": state_code(TicketState::Canceled), "close_code": code_name, "close_notes": notes});
                self.update(&sys_id, &fields).await
            }
            other => refuse(format!(
                "is in state {}: only a change in implement or review can be closed (cancel it instead)",
                other.map_or_else(
                    || field(&record, "state").to_string(),
                    |s| state_label(s).to_string()
                )
            )),
        }
    }
}

/// A text field of a record (empty when absent).
pub fn field<'a>(record: &'a ChangeRecord, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The state of a record; `None` when its code is outside the model.
pub fn state_of(record: &ChangeRecord) -> Option<TicketState> {
    state_name(field(record, "state"))
}

/// A state's name as callers write it (`implement`, `closed`, ...).
pub fn state_label(state: TicketState) -> &'static str {
    match state {
        TicketState::New => "new",
        TicketState::Assess => "assess",
        TicketState::Authorize => "authorize",
        TicketState::Scheduled => "scheduled",
        TicketState::Implement => "implement",
        TicketState::Review => "review",
        TicketState::Closed => "closed",
        TicketState::Canceled => "canceled",
    }
}

/// ServiceNow's `close_code` value.
pub fn close_code_name(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Successful => "successful",
        CloseCode::SuccessfulIssues => "successful_issues",
        CloseCode::Unsuccessful => "unsuccessful",
        CloseCode::Canceled => "canceled",
    }
}
