//! ServiceNow Table API client for `change_request`: OAuth password grant with a cached token,
//! one refresh on 401, and the state-model walk a normal change needs.

use crate::http::{DownstreamError, send_json, with_retries};
use crate::session::Api;
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::arguments::{ChangeType, CloseCode, TicketState, Window};
use changeflow_workflows::{
    ApprovalDecision, ApprovalRollup, DecisionSource, NewChangeTicket, Verdict,
};
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

/// A change type's path from New to Implement, in order (the contract's state model).
fn path_to_implement(change_type: ChangeType) -> &'static [TicketState] {
    match change_type {
        ChangeType::Standard => &[
            TicketState::New,
            TicketState::Scheduled,
            TicketState::Implement,
        ],
        ChangeType::Normal => &[
            TicketState::New,
            TicketState::Assess,
            TicketState::Authorize,
            TicketState::Scheduled,
            TicketState::Implement,
        ],
        ChangeType::Emergency => &[
            TicketState::New,
            TicketState::Authorize,
            TicketState::Scheduled,
            TicketState::Implement,
        ],
    }
}

/// ServiceNow's date-time text ("YYYY-MM-DD HH:MM:SS", UTC) of seconds since the epoch.
fn glide_time(secs: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// An approval record (`sysapproval_approver`) as the workflow needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub sys_id: String,
    /// The approver's user name.
    pub approver: String,
    /// requested, approved, rejected, cancelled, ...
    pub state: String,
    /// ServiceNow's times ("YYYY-MM-DD HH:MM:SS" UTC): created, and last changed.
    pub created_on: String,
    pub updated_on: String,
}

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

    /// The change request this correlation id opened, opening it if there is none yet, so a
    /// retried open never opens a second one. Its type, justification and planned window
    /// (`start_date`/`end_date`) are the ticket's.
    pub async fn open_once(
        &self,
        ticket: &NewChangeTicket,
    ) -> Result<ChangeRecord, DownstreamError> {
        if let Some(existing) = self.find_by_correlation(&ticket.correlation_id).await? {
            return Ok(existing);
        }
        let mut fields = json!({
            "type": ticket.change_type.as_str(),
            "short_description": ticket.short_description,
            "description": ticket.description,
            "requested_by": ticket.requested_by,
            "correlation_id": ticket.correlation_id,
            "correlation_display": "changeflow",
        });
        let mut notes = Vec::new();
        if let Some(justification) = &ticket.justification {
            fields["justification"] = json!(justification);
            notes.push(format!("Justification: {justification}"));
        }
        notes.extend(ticket.work_note.clone());
        if !notes.is_empty() {
            fields["work_notes"] = json!(notes.join("\n\n"));
        }
        if let Some(Window { start, end }) = ticket.window {
            fields["start_date"] = json!(glide_time(start));
            fields["end_date"] = json!(glide_time(end));
        }
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

    /// Moves a change from wherever it is along its type's path up to `to`, one state at a
    /// time; a change already there (or past it) is left alone, so a retry is harmless.
    pub async fn advance(
        &self,
        sys_id: &str,
        change_type: ChangeType,
        to: TicketState,
    ) -> Result<(), DownstreamError> {
        let path = path_to_implement(change_type);
        let record = self.get(sys_id).await?;
        let current = state_of(&record).and_then(|c| path.iter().position(|s| *s == c));
        let Some(target) = path.iter().position(|s| *s == to) else {
            return Err(DownstreamError::Invalid(format!(
                "a {} change never passes {}",
                change_type.as_str(),
                state_label(to)
            )));
        };
        let Some(position) = current else {
            return Err(DownstreamError::Conflict(format!(
                "change request {} is in state {}, which cannot move to {}",
                field(&record, "number"),
                field(&record, "state"),
                state_label(to)
            )));
        };
        for state in path.iter().take(target + 1).skip(position + 1) {
            self.update(sys_id, &json!({ "state": state_code(*state) }))
                .await?;
        }
        Ok(())
    }

    /// The approval records of a change, with their approvers' user names.
    pub async fn approvals(&self, change_sys_id: &str) -> Result<Vec<Approval>, DownstreamError> {
        let query = format!("sysapproval={change_sys_id}^ORDERBYsys_created_on");
        let records = self
            .query_table("sysapproval_approver", &query, 100)
            .await?;
        let mut approvals = Vec::new();
        for record in records {
            let approver = field(&record, "approver");
            let name = match self.user(approver).await? {
                Some(user) => field(&user, "user_name").to_string(),
                None => approver.to_string(),
            };
            approvals.push(Approval {
                sys_id: field(&record, "sys_id").to_string(),
                approver: name,
                state: field(&record, "state").to_string(),
                created_on: field(&record, "sys_created_on").to_string(),
                updated_on: field(&record, "sys_updated_on").to_string(),
            });
        }
        Ok(approvals)
    }

    /// A record's journal entries (`sys_journal_field`: work notes and comments), oldest
    /// first.
    pub async fn journal(&self, sys_id: &str) -> Result<Vec<ChangeRecord>, DownstreamError> {
        let query = format!("element_id={sys_id}^ORDERBYsys_created_on");
        self.query_table("sys_journal_field", &query, 1000).await
    }

    /// The change's decision once its approval rollup is decided: the decisive approver (the
    /// one who rejected, or the last who approved). `None` while it is still requested.
    pub async fn decided(
        &self,
        change_sys_id: &str,
    ) -> Result<Option<ApprovalDecision>, DownstreamError> {
        let record = self.get(change_sys_id).await?;
        let verdict = match field(&record, "approval") {
            "approved" => Verdict::Approved,
            "rejected" => Verdict::Rejected,
            _ => return Ok(None),
        };
        let wanted = match verdict {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        };
        let approvals = self.approvals(change_sys_id).await?;
        let approver = approvals
            .iter()
            .rev()
            .find(|a| a.state == wanted)
            .map_or_else(|| "ServiceNow".to_string(), |a| a.approver.clone());
        Ok(Some(ApprovalDecision {
            approver,
            verdict,
            comment: format!("{wanted} in ServiceNow"),
            source: DecisionSource::ServiceNow,
        }))
    }

    /// Writes an approver's decision on their approval record, with the comment, and a work
    /// note on the change; returns the change's rollup afterwards. A record already showing
    /// the decision is not written again (a retry is harmless).
    pub async fn record_decision(
        &self,
        change_sys_id: &str,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalRollup, DownstreamError> {
        let approvals = self.approvals(change_sys_id).await?;
        let state = match decision.verdict {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        };
        let Some(approval) = approvals
            .iter()
            .filter(|a| a.approver == decision.approver)
            .find(|a| a.state == "requested" || a.state == state)
        else {
            return Err(DownstreamError::Invalid(format!(
                "{} has no approval request on this change in ServiceNow",
                decision.approver
            )));
        };
        if approval.state == "requested" {
            let comment = format!(
                "{} by {} through changeflow: {}",
                if state == "approved" {
                    "Approved"
                } else {
                    "Rejected"
                },
                decision.approver,
                if decision.comment.is_empty() {
                    "no comment"
                } else {
                    decision.comment.as_str()
                }
            );
            let path = format!("/api/now/table/sysapproval_approver/{}", approval.sys_id);
            let body = json!({"state": state, "comments": comment});
            with_retries(|| {
                self.api.call(
                    || self.login(),
                    Method::PATCH,
                    &path,
                    &[("sysparm_exclude_reference_link", "true")],
                    Some(&body),
                )
            })
            .await?;
            self.update(change_sys_id, &json!({"work_notes": comment}))
                .await?;
        }
        let record = self.get(change_sys_id).await?;
        Ok(match field(&record, "approval") {
            "approved" => ApprovalRollup::Approved,
            "rejected" => ApprovalRollup::Rejected,
            _ => ApprovalRollup::Requested,
        })
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
            CloseMode::Refuse => Err(DownstreamError::Conflict(format!(
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
