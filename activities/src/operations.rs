//! The quick tool operations (`changeflow_workflows::operations`): reads of templates, devices
//! and change requests, and the small ServiceNow writes. Results are trimmed to the fields a
//! caller needs, with stable names, whatever the vendor returned around them.

use crate::http::DownstreamError;
use crate::servicenow::{
    ChangeRecord, STATE_CANCELED, STATE_CLOSED, STATE_IMPLEMENT, STATE_REVIEW, state_of,
};
use crate::{DownstreamActivities, catalyst};
use changeflow_workflows::operations::*;
use serde_json::{Value, json};
use std::collections::HashMap;

/// ServiceNow change states by the names callers use.
const STATE_NAMES: &[(&str, &str)] = &[
    ("new", "-5"),
    ("assess", "-4"),
    ("authorize", "-3"),
    ("scheduled", "-2"),
    ("implement", STATE_IMPLEMENT),
    ("review", STATE_REVIEW),
    ("closed", STATE_CLOSED),
    ("canceled", STATE_CANCELED),
];

/// Default and largest page of a list operation.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_string()
}

fn state_name(code: &str) -> &str {
    STATE_NAMES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(name, _)| *name)
        .unwrap_or(code)
}

fn limit(requested: Option<u32>) -> u32 {
    requested.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// A change request as tools return it.
fn change_request(record: &ChangeRecord) -> Value {
    let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or_default();
    json!({
        "number": field("number"),
        "sys_id": field("sys_id"),
        "state": state_name(&state_of(record)),
        "type": field("type"),
        "short_description": field("short_description"),
        "description": field("description"),
        "requested_by": field("requested_by"),
        "correlation_id": field("correlation_id"),
        "close_code": field("close_code"),
        "close_notes": field("close_notes"),
        "opened_at": field("opened_at"),
        "updated_at": field("sys_updated_on"),
    })
}

fn template_summary(template: &Value) -> Value {
    let version = template["versionsInfo"]
        .as_array()
        .and_then(|versions| versions.last())
        .map(|v| text(v, "version"))
        .unwrap_or_default();
    json!({
        "template_id": text(template, "templateId"),
        "name": text(template, "name"),
        "project_name": text(template, "projectName"),
        "version": version,
    })
}

fn template_detail(template: &Value) -> Value {
    let parameters: Vec<Value> = template["templateParams"]
        .as_array()
        .map(|params| {
            params
                .iter()
                .map(|p| {
                    json!({
                        "name": text(p, "parameterName"),
                        "data_type": text(p, "dataType"),
                        "required": p["required"].as_bool().unwrap_or(false),
                        "default": p["defaultValue"].as_str(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "template_id": text(template, "id"),
        "name": text(template, "name"),
        "project_name": text(template, "projectName"),
        "description": text(template, "description"),
        "language": text(template, "language"),
        "version": text(template, "version"),
        "content": text(template, "templateContent"),
        "parameters": parameters,
    })
}

fn device(device: &Value) -> Value {
    json!({
        "device_id": text(device, "id"),
        "hostname": text(device, "hostname"),
        "management_ip": text(device, "managementIpAddress"),
        "platform": text(device, "platformId"),
        "family": text(device, "family"),
        "software_version": text(device, "softwareVersion"),
        "reachability": text(device, "reachabilityStatus"),
        "managed": text(device, "collectionStatus") == "Managed",
    })
}

impl DownstreamActivities {
    /// Runs one operation. `correlation_id` (the workflow id) makes a retried create find the
    /// change request its first attempt opened instead of opening another.
    pub(crate) async fn perform(
        &self,
        request: OperationRequest,
        correlation_id: &str,
    ) -> Result<Value, DownstreamError> {
        match request.operation {
            Operation::ListTemplates(args) => {
                let list = self
                    .catalyst
                    .templates(args.project_name.as_deref())
                    .await?;
                Ok(json!({"templates": list.iter().map(template_summary).collect::<Vec<_>>()}))
            }
            Operation::GetTemplate(args) => Ok(template_detail(
                &self.catalyst.template(&args.template_id).await?,
            )),
            Operation::ListDevices(args) => {
                let filters: Vec<(&str, &str)> = [
                    ("hostname", &args.hostname),
                    ("family", &args.family),
                    ("reachabilityStatus", &args.reachability),
                ]
                .into_iter()
                .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
                .collect();
                let list = self.catalyst.devices(&filters, limit(args.limit)).await?;
                Ok(json!({"devices": list.iter().map(device).collect::<Vec<_>>()}))
            }
            Operation::PreviewTemplate(args) => self.preview(args).await,
            Operation::GetChangeRequest(args) => {
                self.describe_one(&self.change_by_number(&args.number).await?)
                    .await
            }
            Operation::ListChangeRequests(args) => {
                let mut terms = Vec::new();
                if let Some(state) = &args.state {
                    let Some((_, code)) = STATE_NAMES.iter().find(|(name, _)| name == state) else {
                        return Err(DownstreamError::Invalid(format!("unknown state '{state}'")));
                    };
                    terms.push(format!("state={code}"));
                }
                if let Some(requester) = &args.requested_by {
                    // The field holds the user's sys_id; an unknown user requested nothing.
                    let Some(user) = self.servicenow.user(requester).await? else {
                        return Ok(json!({"change_requests": []}));
                    };
                    let sys_id = user
                        .get("sys_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    terms.push(format!("requested_by={sys_id}"));
                }
                terms.push("ORDERBYDESCnumber".into());
                let list = self
                    .servicenow
                    .query(&terms.join("^"), limit(args.limit))
                    .await?;
                Ok(json!({"change_requests": self.describe(&list).await?}))
            }
            Operation::CreateChangeRequest(args) => {
                let record = self
                    .servicenow
                    .open_once(
                        correlation_id,
                        &args.short_description,
                        &args.description.unwrap_or_default(),
                        &request.requested_by,
                    )
                    .await?;
                self.describe_one(&record).await
            }
            Operation::AddWorkNote(args) => {
                let record = self.change_by_number(&args.number).await?;
                let note = format!(
                    "{} (via changeflow, by {})",
                    args.note, request.requested_by
                );
                let sys_id = record
                    .get("sys_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let updated = self
                    .servicenow
                    .update(sys_id, &json!({"work_notes": note}))
                    .await?;
                self.describe_one(&updated).await
            }
            Operation::CloseChangeRequest(args) => self.close_request(args).await,
        }
    }

    /// Change requests as tools return them, with the requester's user name.
    async fn describe(&self, records: &[ChangeRecord]) -> Result<Vec<Value>, DownstreamError> {
        let mut user_names: HashMap<String, String> = HashMap::new();
        let mut described = Vec::with_capacity(records.len());
        for record in records {
            let mut view = change_request(record);
            let requester = text(&view, "requested_by");
            if !requester.is_empty() && !user_names.contains_key(&requester) {
                let name = self
                    .servicenow
                    .user(&requester)
                    .await?
                    .and_then(|user| {
                        user.get("user_name")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| requester.clone());
                user_names.insert(requester.clone(), name);
            }
            if let Some(name) = user_names.get(&requester) {
                view["requested_by"] = json!(name);
            }
            described.push(view);
        }
        Ok(described)
    }

    async fn describe_one(&self, record: &ChangeRecord) -> Result<Value, DownstreamError> {
        let mut described = self.describe(std::slice::from_ref(record)).await?;
        Ok(described.remove(0))
    }

    async fn change_by_number(&self, number: &str) -> Result<ChangeRecord, DownstreamError> {
        let query = format!("number={number}");
        self.servicenow
            .query(&query, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DownstreamError::NotFound {
                system: "ServiceNow",
                message: format!("change request {number} does not exist"),
            })
    }

    async fn preview(&self, args: PreviewTemplate) -> Result<Value, DownstreamError> {
        let Some(target) = self.catalyst.find_device(&args.device).await? else {
            return Err(DownstreamError::NotFound {
                system: "Catalyst Center",
                message: format!("device '{}' is not known to Catalyst Center", args.device),
            });
        };
        // The template must exist: a preview of an unknown id says so instead of rendering nothing.
        self.catalyst.template(&args.template_id).await?;
        let rendered = self
            .catalyst
            .preview(
                &args.template_id,
                &json!(args.parameters),
                &text(&target, "id"),
            )
            .await?;
        let errors = catalyst::preview_errors(&rendered);
        Ok(json!({
            "template_id": args.template_id,
            "device": text(&target, "hostname"),
            "rendered": text(&rendered, "cliPreview"),
            "validation_errors": errors,
        }))
    }

    /// Closes (or cancels) a change request through the state model. Asking for the state it is
    /// already in succeeds without writing, so a retried close is harmless; anything the state
    /// model does not allow is refused and nothing is written.
    async fn close_request(&self, args: CloseChangeRequest) -> Result<Value, DownstreamError> {
        let record = self.change_by_number(&args.number).await?;
        let sys_id = record
            .get("sys_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let current = state_of(&record);
        let recorded_code = record
            .get("close_code")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let code = match args.close_code {
            CloseCode::Successful => "successful",
            CloseCode::SuccessfulIssues => "successful_issues",
            CloseCode::Unsuccessful => "unsuccessful",
            CloseCode::Canceled => "canceled",
        };
        let finished = |state: &str| state == STATE_CLOSED || state == STATE_CANCELED;
        if args.close_code == CloseCode::Canceled {
            if current == STATE_CANCELED {
                return self.describe_one(&record).await;
            }
            if current == STATE_CLOSED {
                return Err(DownstreamError::Invalid(format!(
                    "change request {} is already closed",
                    args.number
                )));
            }
            let fields = json!({"state": STATE_CANCELED, "close_notes": args.close_notes, "work_notes": args.close_notes});
            return self
                .describe_one(&self.servicenow.update(&sys_id, &fields).await?)
                .await;
        }
        if current == STATE_CLOSED && recorded_code == code {
            return self.describe_one(&record).await;
        }
        if finished(&current) {
            return Err(DownstreamError::Invalid(format!(
                "change request {} is already {}",
                args.number,
                state_name(&current)
            )));
        }
        if current != STATE_IMPLEMENT && current != STATE_REVIEW {
            return Err(DownstreamError::Invalid(format!(
                "change request {} is in state {}: only a change in implement or review can be closed (cancel it instead)",
                args.number,
                state_name(&current)
            )));
        }
        if current == STATE_IMPLEMENT {
            self.servicenow
                .update(&sys_id, &json!({"state": STATE_REVIEW}))
                .await?;
        }
        let fields =
            json!({"state": STATE_CLOSED, "close_code": code, "close_notes": args.close_notes});
        self.describe_one(&self.servicenow.update(&sys_id, &fields).await?)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_map_both_ways() {
        assert_eq!(state_name("-1"), "implement");
        assert_eq!(state_name("4"), "canceled");
        assert_eq!(state_name("99"), "99");
        assert_eq!(limit(None), DEFAULT_LIMIT);
        assert_eq!(limit(Some(10_000)), MAX_LIMIT);
        assert_eq!(limit(Some(0)), 1);
    }
}
