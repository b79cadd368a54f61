//! The quick tool operations (`changeflow_workflows::operations`): reads of templates, devices
//! and change requests, and the small ServiceNow writes. Results are trimmed to the fields a
//! caller needs, with stable names, whatever the vendor returned around them.

use crate::DownstreamActivities;
use crate::catalyst::CommandStatus;
use crate::http::DownstreamError;
use crate::servicenow::{ChangeRecord, CloseMode, field, state_code, state_of};
use changeflow_workflows::NewChangeTicket;
use changeflow_workflows::arguments::{ChangeType, Reachability};
use changeflow_workflows::limits::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use changeflow_workflows::operations::*;
use changeflow_workflows::results::*;
use serde_json::{Value, json};
use std::collections::HashMap;

fn limit(requested: Option<u32>) -> u32 {
    requested
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT)
}

/// A change request as tools return it (the requester still as ServiceNow's sys_id).
fn change_request(record: &ChangeRecord) -> ChangeRequest {
    let text_of = |name: &str| field(record, name).to_string();
    ChangeRequest {
        number: text_of("number"),
        sys_id: text_of("sys_id"),
        state: state_of(record),
        kind: text_of("type"),
        short_description: text_of("short_description"),
        description: text_of("description"),
        requested_by: text_of("requested_by"),
        correlation_id: text_of("correlation_id"),
        close_code: text_of("close_code"),
        close_notes: text_of("close_notes"),
        opened_at: text_of("opened_at"),
        updated_at: text_of("sys_updated_on"),
        journal: Vec::new(),
        approvals: Vec::new(),
    }
}

/// A typed result as the workflow carries it.
fn value(result: impl serde::Serialize) -> Result<Value, DownstreamError> {
    serde_json::to_value(result)
        .map_err(|e| DownstreamError::Configuration(format!("unserialisable result: {e}")))
}

impl DownstreamActivities {
    /// `run_show_commands`: the devices by hostname or id, their answers in command order.
    async fn show_commands(
        &self,
        args: RunShowCommands,
    ) -> Result<CommandResults, DownstreamError> {
        use crate::checks::DeviceCli;
        use changeflow_workflows::DeviceRef;
        let mut devices = Vec::new();
        let mut unknown = Vec::new();
        for name in &args.devices {
            match self.catalyst.find_device(name).await? {
                Some(found) => devices.push(DeviceRef {
                    id: found.device.device_id,
                    hostname: found.device.hostname,
                    management_ip: found.device.management_ip,
                }),
                None => unknown.push(format!("device '{name}' is not known to Catalyst Center")),
            }
        }
        if !unknown.is_empty() {
            unknown.dedup();
            return Err(DownstreamError::NotFound {
                system: crate::catalyst::SYSTEM,
                message: unknown.join("; "),
            });
        }
        let mut outputs = self
            .catalyst
            .run(&devices, &args.commands, "changeflow run_show_commands")
            .await?;
        Ok(CommandResults {
            devices: devices
                .iter()
                .map(|d| {
                    let mut answers = outputs.remove(&d.hostname).unwrap_or_default();
                    DeviceCommands {
                        device: d.hostname.clone(),
                        results: args
                            .commands
                            .iter()
                            .map(|command| {
                                let answer = answers.remove(command);
                                CommandResult {
                                    command: command.clone(),
                                    status: match answer.as_ref().map(|a| a.status) {
                                        Some(CommandStatus::Success) => "success",
                                        Some(CommandStatus::Blacklisted) => "blacklisted",
                                        _ => "failure",
                                    }
                                    .into(),
                                    output: answer.map(|a| a.text).unwrap_or_default(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
    }

    /// Runs one operation and returns its typed result as JSON. `correlation_id` (the workflow
    /// id) makes a retried create find the change request its first attempt opened instead of
    /// opening another.
    pub(crate) async fn perform(
        &self,
        request: OperationRequest,
        correlation_id: &str,
    ) -> Result<Value, DownstreamError> {
        // The arguments' shape was checked by the workflow (`Operation::validate`).
        // GitHub calls are made as the caller, with their own token.
        let user = request.requested_by.as_str();
        match request.operation {
            Operation::ListTemplates(args) => {
                let list = self
                    .catalyst
                    .templates(args.project_name.as_deref())
                    .await?;
                value(TemplateList { templates: list })
            }
            Operation::GetTemplate(args) => value(self.catalyst.template(&args.template_id).await?),
            Operation::ListDevices(args) => {
                let filters: Vec<(&str, &str)> = [
                    ("hostname", args.hostname.as_deref()),
                    ("family", args.family.as_deref()),
                    (
                        "reachabilityStatus",
                        args.reachability.map(Reachability::as_str),
                    ),
                ]
                .into_iter()
                .filter_map(|(field, value)| value.map(|v| (field, v)))
                .collect();
                let list = self.catalyst.devices(&filters, limit(args.limit)).await?;
                value(DeviceList {
                    devices: list.into_iter().map(|d| d.device).collect(),
                })
            }
            Operation::PreviewTemplate(args) => value(self.preview(args).await?),
            Operation::RunShowCommands(args) => value(self.show_commands(args).await?),
            Operation::GetChangeRequest(args) => {
                let record = self.change_by_number(&args.number).await?;
                let sys_id = field(&record, "sys_id").to_string();
                let mut described = self.describe_one(record).await?;
                if args.details {
                    described.journal = self.journal(&sys_id).await?;
                    for approval in self.servicenow.approvals(&sys_id).await? {
                        described.approvals.push(ApprovalRecord {
                            comments: self.journal(&approval.sys_id).await?,
                            approver: approval.approver,
                            state: approval.state,
                            created_at: approval.created_on,
                            updated_at: approval.updated_on,
                        });
                    }
                }
                value(described)
            }
            Operation::SignEvidence(args) => {
                let digest = hex::decode(&args.manifest_sha256)
                    .map_err(|e| DownstreamError::Invalid(format!("manifest_sha256: {e}")))?;
                let signed = self.signer.sign_evidence(&digest).await?;
                value(EvidenceSignature {
                    key: signed.key,
                    key_version: signed.version,
                    signature: signed.signature,
                })
            }
            Operation::GetEvidenceKey(args) => {
                let key = self.signer.evidence_key(args.version).await?;
                value(EvidenceKey {
                    key: key.key,
                    key_version: key.version,
                    public_key: key.public_key,
                })
            }
            Operation::ListChangeRequests(args) => {
                let mut terms = Vec::new();
                if let Some(state) = args.state {
                    terms.push(format!("state={}", state_code(state)));
                }
                if let Some(requester) = &args.requested_by {
                    // The field holds the user's sys_id; an unknown user requested nothing.
                    let Some(user) = self.servicenow.user(requester).await? else {
                        return value(ChangeRequestList {
                            change_requests: Vec::new(),
                        });
                    };
                    terms.push(format!("requested_by={}", field(&user, "sys_id")));
                }
                terms.push("ORDERBYDESCnumber".into());
                let list = self
                    .servicenow
                    .query(&terms.join("^"), limit(args.limit))
                    .await?;
                value(ChangeRequestList {
                    change_requests: self.describe(&list).await?,
                })
            }
            Operation::CreateChangeRequest(args) => {
                let record = self
                    .servicenow
                    .open_once(&NewChangeTicket {
                        correlation_id: correlation_id.to_string(),
                        short_description: args.short_description,
                        description: args.description.unwrap_or_default(),
                        requested_by: request.requested_by.clone(),
                        change_type: ChangeType::Normal,
                        justification: None,
                        window: None,
                        work_note: None,
                    })
                    .await?;
                value(self.describe_one(record).await?)
            }
            Operation::AddWorkNote(args) => {
                let record = self.change_by_number(&args.number).await?;
                let note = format!(
                    "{} (via changeflow, by {})",
                    args.note, request.requested_by
                );
                let updated = self
                    .servicenow
                    .update(field(&record, "sys_id"), &json!({"work_notes": note}))
                    .await?;
                value(self.describe_one(updated).await?)
            }
            Operation::GetFileContents(args) => {
                value(self.github.file_contents(user, &args).await?)
            }
            Operation::ListBranches(args) => value(self.github.branches(user, &args).await?),
            Operation::CreateBranch(args) => value(self.github.create_branch(user, &args).await?),
            Operation::ListCommits(args) => value(self.github.commits(user, &args).await?),
            Operation::GetCommit(args) => value(self.github.commit(user, &args).await?),
            Operation::CreateOrUpdateFile(args) => value(self.github.put_file(user, &args).await?),
            Operation::CreatePullRequest(args) => {
                value(self.github.create_pull(user, &args).await?)
            }
            Operation::ListPullRequests(args) => value(self.github.pulls(user, &args).await?),
            Operation::PullRequestRead(args) => value(self.github.read_pull(user, &args).await?),
            Operation::PullRequestReviewWrite(args) => {
                value(self.github.review(user, &args).await?)
            }
            Operation::MergePullRequest(args) => value(self.github.merge(user, &args).await?),
            Operation::GetMergeFacts(args) => value(self.github.merge_facts(user, &args).await?),
            Operation::ResolveSource(args) => value(self.github.resolve(user, &args.source).await?),
            Operation::CloseChangeRequest(args) => {
                let record = self.change_by_number(&args.number).await?;
                let closed = self
                    .servicenow
                    .close(
                        record,
                        args.close_code,
                        &args.close_notes,
                        CloseMode::Refuse,
                    )
                    .await?;
                value(self.describe_one(closed).await?)
            }
        }
    }

    /// A record's journal entries (work notes, comments), oldest first.
    async fn journal(&self, sys_id: &str) -> Result<Vec<JournalEntry>, DownstreamError> {
        Ok(self
            .servicenow
            .journal(sys_id)
            .await?
            .iter()
            .map(|entry| JournalEntry {
                field: field(entry, "element").to_string(),
                author: field(entry, "sys_created_by").to_string(),
                created_at: field(entry, "sys_created_on").to_string(),
                text: field(entry, "value").to_string(),
            })
            .collect())
    }

    /// Change requests as tools return them, with the requester's user name.
    async fn describe(
        &self,
        records: &[ChangeRecord],
    ) -> Result<Vec<ChangeRequest>, DownstreamError> {
        let mut user_names: HashMap<String, String> = HashMap::new();
        let mut described = Vec::with_capacity(records.len());
        for record in records {
            let mut view = change_request(record);
            let requester = view.requested_by.clone();
            if !requester.is_empty() && !user_names.contains_key(&requester) {
                let name = self
                    .servicenow
                    .user(&requester)
                    .await?
                    .map(|user| field(&user, "user_name").to_string())
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| requester.clone());
                user_names.insert(requester.clone(), name);
            }
            if let Some(name) = user_names.get(&requester) {
                view.requested_by = name.clone();
            }
            described.push(view);
        }
        Ok(described)
    }

    async fn describe_one(&self, record: ChangeRecord) -> Result<ChangeRequest, DownstreamError> {
        let mut described = self.describe(std::slice::from_ref(&record)).await?;
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

    async fn preview(&self, args: PreviewTemplate) -> Result<Preview, DownstreamError> {
        let Some(target) = self.catalyst.find_device(&args.device).await? else {
            return Err(DownstreamError::NotFound {
                system: "Catalyst Center",
                message: format!("device '{}' is not known to Catalyst Center", args.device),
            });
        };
        // The template must exist: a preview of an unknown id says so instead of rendering nothing.
        self.catalyst.template(&args.template_id).await?;
        let preview = self
            .catalyst
            .preview(
                &args.template_id,
                &args.parameters,
                &target.device.device_id,
            )
            .await?;
        Ok(Preview {
            template_id: args.template_id,
            device: target.device.hostname,
            rendered: preview.rendered,
            validation_errors: preview.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicenow::state_name;
    use changeflow_workflows::arguments::TicketState;

    #[test]
    fn states_map_both_ways_and_limits_are_clamped() {
        assert_eq!(state_name("-1"), Some(TicketState::Implement));
        assert_eq!(state_name("4"), Some(TicketState::Canceled));
        assert_eq!(state_name("99"), None);
        for (state, code) in crate::servicenow::STATE_CODES {
            assert_eq!(state_name(state_code(state)), Some(state));
            assert_eq!(state_code(state), code);
        }
        assert_eq!(limit(None), DEFAULT_LIST_LIMIT);
        assert_eq!(limit(Some(10_000)), MAX_LIST_LIMIT);
        assert_eq!(limit(Some(0)), 1);
    }
}
