//! Catalyst Center Intent API client: token login with caching and one refresh on 401,
//! templates, devices, preview, asynchronous deploy and its task and status.

use crate::http::{DownstreamError, send_json, with_retries};
use crate::session::Api;
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::results::{Device, Template, TemplateParameter, TemplateSummary};
use changeflow_workflows::{DeviceRef, DeviceStatus};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub const SYSTEM: &str = "Catalyst Center";
/// Catalyst Center takes its token in `X-Auth-Token`.
pub fn authorize(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    request.header("X-Auth-Token", token)
}

/// Catalyst Center tokens live an hour.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
static DEPLOYMENT_ID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"Template\s+Deployment\s+Id:\s+([a-f0-9-]+)").expect("deployment id regex")
});

pub struct CatalystClient {
    api: Api,
    credentials: Arc<dyn CredentialProvider>,
}

/// The state of a deployment task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub finished: bool,
    pub is_error: bool,
    pub failure_reason: Option<String>,
    pub deployment_id: Option<String>,
    /// The task's `progress` text (a Command Runner task's names its file).
    pub progress: String,
    /// The task's `data` (an authoring task's: the id it created).
    pub data: String,
}

/// How long a template-programmer task may take.
const AUTHORING_TIMEOUT: Duration = Duration::from_secs(60);

/// A template project: its id and its templates as (name, id).
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub templates: Vec<(String, String)>,
}

/// One committed version of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    pub id: String,
    pub version: u32,
    pub comment: String,
}

/// What a template's draft is set to when it is created or updated.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDraft {
    pub name: String,
    /// VELOCITY or JINJA
    pub language: String,
    pub content: String,
    pub description: String,
}

impl TemplateDraft {
    /// The create/update body (`id` for an update). The parameters are left for Catalyst
    /// Center to derive from the content's variables, as it does when a template is saved.
    fn body(&self, project_id: &str, project_name: &str, id: Option<&str>) -> Value {
        let mut body = json!({
            "name": self.name,
            "projectId": project_id,
            "projectName": project_name,
            "language": self.language,
            "softwareType": "IOS-XE",
            "deviceTypes": [{"productFamily": "Switches and Hubs"}, {"productFamily": "Routers"}],
            "templateContent": self.content,
            "description": self.description,
            "author": "changeflow",
            "composite": false,
        });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        body
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_string()
}

/// A network device as Catalyst Center describes it: what tools show (`Device`) and why it
/// may not take a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDevice {
    pub device: Device,
    /// `Managed` once Catalyst Center has collected the device's inventory.
    pub collection_status: String,
    pub reachability_failure_reason: String,
}

impl NetworkDevice {
    fn from_json(device: &Value) -> Self {
        let collection_status = text(device, "collectionStatus");
        NetworkDevice {
            device: Device {
                device_id: text(device, "id"),
                hostname: text(device, "hostname"),
                management_ip: text(device, "managementIpAddress"),
                platform: text(device, "platformId"),
                family: text(device, "family"),
                role: text(device, "role"),
                software_version: text(device, "softwareVersion"),
                reachability: text(device, "reachabilityStatus"),
                managed: collection_status == "Managed",
            },
            collection_status,
            reachability_failure_reason: text(device, "reachabilityFailureReason"),
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.device.reachability == "Reachable"
    }
}

/// A template (its latest version) from Catalyst Center's answer.
fn template_from_json(template: &Value) -> Template {
    let parameters = template["templateParams"]
        .as_array()
        .map(|params| {
            params
                .iter()
                .map(|p| TemplateParameter {
                    name: text(p, "parameterName"),
                    data_type: p["dataType"].as_str().unwrap_or("STRING").to_string(),
                    required: p["required"].as_bool().unwrap_or(false),
                    default: p["defaultValue"].as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    Template {
        template_id: text(template, "id"),
        name: text(template, "name"),
        project_name: text(template, "projectName"),
        description: text(template, "description"),
        language: text(template, "language"),
        version: text(template, "version"),
        content: text(template, "templateContent"),
        parameters,
    }
}

/// A template rendered for one device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplatePreview {
    pub rendered: String,
    /// Validation errors, as messages; empty when the template rendered cleanly.
    pub errors: Vec<String>,
}

/// Where a deployment stands, device by device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentStatus {
    pub in_progress: bool,
    /// Per-device status, once Catalyst Center reports it.
    pub devices: Option<Vec<DeviceStatus>>,
}

impl CatalystClient {
    /// A client over `api` (made with this module's `SYSTEM`) logging in with `credentials`.
    pub fn new(api: Api, credentials: Arc<dyn CredentialProvider>) -> Self {
        Self { api, credentials }
    }

    /// Basic-auth login; returns the token and its lifetime.
    async fn login(&self) -> Result<(String, Duration), DownstreamError> {
        let creds = self.credentials.catalyst().await?;
        let url = self.api.url("/dna/system/api/v1/auth/token");
        let answer = with_retries(|| {
            send_json(
                SYSTEM,
                self.api
                    .http()
                    .post(&url)
                    .basic_auth(&creds.username, Some(creds.password.expose())),
            )
        })
        .await?;
        let token = answer["Token"]
            .as_str()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "token response without Token"))?;
        Ok((token.to_string(), TOKEN_LIFETIME))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, DownstreamError> {
        with_retries(|| {
            self.api
                .call(|| self.login(), Method::GET, path, query, None)
        })
        .await
    }

    /// Template detail (latest version); `NotFound` when it does not exist.
    pub async fn template(&self, template_id: &str) -> Result<Template, DownstreamError> {
        let path = format!("/dna/intent/api/v1/template-programmer/template/{template_id}");
        self.get(&path, &[("latestVersion", "true")])
            .await
            .map(|template| template_from_json(&template))
            .map_err(|err| match err {
                DownstreamError::NotFound { system, .. } => DownstreamError::NotFound {
                    system,
                    message: format!("template {template_id} does not exist"),
                },
                other => other,
            })
    }

    /// Template summaries, optionally of one project.
    pub async fn templates(
        &self,
        project_name: Option<&str>,
    ) -> Result<Vec<TemplateSummary>, DownstreamError> {
        let query: Vec<(&str, &str)> = project_name
            .map(|p| ("projectNames", p))
            .into_iter()
            .collect();
        let body = self
            .get("/dna/intent/api/v1/template-programmer/template", &query)
            .await?;
        let list = body
            .as_array()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "template list is not an array"))?;
        Ok(list
            .iter()
            .map(|t| TemplateSummary {
                template_id: text(t, "templateId"),
                name: text(t, "name"),
                project_name: text(t, "projectName"),
                version: t["versionsInfo"]
                    .as_array()
                    .and_then(|versions| versions.last())
                    .map(|v| text(v, "version"))
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Devices matching all given `(field, value)` filters, at most `limit`.
    pub async fn devices(
        &self,
        filters: &[(&str, &str)],
        limit: u32,
    ) -> Result<Vec<NetworkDevice>, DownstreamError> {
        let limit = limit.to_string();
        let mut query = filters.to_vec();
        query.push(("limit", &limit));
        let body = self
            .get("/dna/intent/api/v1/network-device", &query)
            .await?;
        body["response"]
            .as_array()
            .map(|list| list.iter().map(NetworkDevice::from_json).collect())
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "device list without response array"))
    }

    /// Looks a device up by hostname, then by id.
    pub async fn find_device(&self, name: &str) -> Result<Option<NetworkDevice>, DownstreamError> {
        for key in ["hostname", "id"] {
            if let Some(device) = self.devices(&[(key, name)], 1).await?.into_iter().next() {
                return Ok(Some(device));
            }
        }
        Ok(None)
    }

    /// Renders the template for one device without deploying (a PUT, as the real API and SDK use).
    pub async fn preview(
        &self,
        template_id: &str,
        params: &BTreeMap<String, String>,
        device_id: &str,
    ) -> Result<TemplatePreview, DownstreamError> {
        let body = json!({"templateId": template_id, "params": params, "deviceId": device_id});
        let preview = with_retries(|| {
            self.api.call(
                || self.login(),
                Method::PUT,
                "/dna/intent/api/v1/template-programmer/template/preview",
                &[],
                Some(&body),
            )
        })
        .await?;
        Ok(TemplatePreview {
            rendered: text(&preview, "cliPreview"),
            errors: preview_errors(&preview),
        })
    }

    /// Submits a deployment of `template_id` with `params` to `devices`; returns the task id.
    /// Never retried in-call: it is not idempotent.
    pub async fn deploy(
        &self,
        template_id: &str,
        params: &BTreeMap<String, String>,
        devices: &[DeviceRef],
    ) -> Result<String, DownstreamError> {
        let targets: Vec<Value> = devices
            .iter()
            .map(|d| json!({"id": d.id, "type": "MANAGED_DEVICE_UUID", "hostName": d.hostname, "params": params}))
            .collect();
        let body = json!({
            "templateId": template_id,
            "forcePushTemplate": false,
            "isComposite": false,
            "targetInfo": targets,
        });
        let answer = self
            .api
            .call(
                || self.login(),
                Method::POST,
                "/dna/intent/api/v2/template-programmer/template/deploy",
                &[],
                Some(&body),
            )
            .await?;
        answer["response"]["taskId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                DownstreamError::protocol(SYSTEM, "deploy response without response.taskId")
            })
    }

    pub async fn task(&self, task_id: &str) -> Result<TaskState, DownstreamError> {
        let body = self
            .get(&format!("/dna/intent/api/v1/task/{task_id}"), &[])
            .await?;
        let task = &body["response"];
        if !task.is_object() {
            return Err(DownstreamError::protocol(
                SYSTEM,
                "task response without response object",
            ));
        }
        let progress = task["progress"].as_str().unwrap_or_default();
        Ok(TaskState {
            finished: !task["endTime"].is_null(),
            is_error: task["isError"].as_bool().unwrap_or(false),
            failure_reason: task["failureReason"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            deployment_id: DEPLOYMENT_ID.captures(progress).map(|c| c[1].to_string()),
            progress: progress.to_string(),
            data: text(task, "data"),
        })
    }

    /// A template-programmer write, answered with a task: waits for the task and returns its
    /// `data` (the id it created). A failed task is a rejection naming its reason.
    async fn authoring(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<String, DownstreamError> {
        let answer = self
            .api
            .call(|| self.login(), method, path, &[], Some(body))
            .await?;
        let task_id = answer["response"]["taskId"]
            .as_str()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "authoring call without taskId"))?
            .to_string();
        let deadline = tokio::time::Instant::now() + AUTHORING_TIMEOUT;
        loop {
            let task = self.task(&task_id).await?;
            if task.is_error {
                return Err(DownstreamError::Rejected {
                    system: SYSTEM,
                    status: 200,
                    message: task
                        .failure_reason
                        .unwrap_or_else(|| format!("template task {task_id} failed")),
                });
            }
            if task.finished {
                return Ok(task.data);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DownstreamError::Transport {
                    system: SYSTEM,
                    message: format!("template task {task_id} did not finish in time"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The project named exactly `name` (the API matches substrings): its id and its
    /// templates as (name, id).
    pub async fn project(&self, name: &str) -> Result<Option<Project>, DownstreamError> {
        let list = self
            .get(
                "/dna/intent/api/v1/template-programmer/project",
                &[("name", name)],
            )
            .await?;
        let list = list
            .as_array()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "project list is not an array"))?;
        Ok(list.iter().find(|p| p["name"] == name).map(|p| Project {
            id: text(p, "id"),
            templates: p["templates"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| (text(t, "name"), text(t, "id")))
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    /// Creates a project; returns its id.
    pub async fn create_project(
        &self,
        name: &str,
        description: &str,
    ) -> Result<String, DownstreamError> {
        self.authoring(
            Method::POST,
            "/dna/intent/api/v1/template-programmer/project",
            &json!({"name": name, "description": description}),
        )
        .await
    }

    /// Creates a template in a project (its draft holds `draft`); returns its id.
    pub async fn create_template(
        &self,
        project_id: &str,
        project_name: &str,
        draft: &TemplateDraft,
    ) -> Result<String, DownstreamError> {
        let body = draft.body(project_id, project_name, None);
        self.authoring(
            Method::POST,
            &format!("/dna/intent/api/v1/template-programmer/project/{project_id}/template"),
            &body,
        )
        .await
    }

    /// Overwrites a template's draft.
    pub async fn update_template(
        &self,
        template_id: &str,
        project_id: &str,
        project_name: &str,
        draft: &TemplateDraft,
    ) -> Result<(), DownstreamError> {
        let body = draft.body(project_id, project_name, Some(template_id));
        self.authoring(
            Method::PUT,
            "/dna/intent/api/v1/template-programmer/template",
            &body,
        )
        .await
        .map(|_| ())
    }

    /// Commits a template's draft as its next version, with a comment.
    pub async fn commit_template(
        &self,
        template_id: &str,
        comment: &str,
    ) -> Result<(), DownstreamError> {
        self.authoring(
            Method::POST,
            "/dna/intent/api/v1/template-programmer/template/version",
            &json!({"templateId": template_id, "comments": comment}),
        )
        .await
        .map(|_| ())
    }

    /// A template's committed versions, oldest first.
    pub async fn template_versions(
        &self,
        template_id: &str,
    ) -> Result<Vec<TemplateVersion>, DownstreamError> {
        let list = self
            .get(
                &format!("/dna/intent/api/v1/template-programmer/template/version/{template_id}"),
                &[],
            )
            .await?;
        let mut versions: Vec<TemplateVersion> = list
            .as_array()
            .and_then(|l| l.first())
            .and_then(|t| t["versionsInfo"].as_array())
            .map(|infos| {
                infos
                    .iter()
                    .map(|v| TemplateVersion {
                        id: text(v, "id"),
                        version: text(v, "version").parse().unwrap_or(0),
                        comment: text(v, "versionComment"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    pub async fn deployment_status(
        &self,
        deployment_id: &str,
    ) -> Result<DeploymentStatus, DownstreamError> {
        let status = self
            .get(
                &format!(
                    "/dna/intent/api/v1/template-programmer/template/deploy/status/{deployment_id}"
                ),
                &[],
            )
            .await?;
        let devices = status["devices"].as_array().map(|list| {
            list.iter()
                .map(|d| DeviceStatus {
                    device: text(d, "name"),
                    status: text(d, "status"),
                    message: text(d, "detailedStatusMessage"),
                })
                .collect()
        });
        Ok(DeploymentStatus {
            in_progress: status["status"].as_str() == Some("IN_PROGRESS"),
            devices,
        })
    }
}

/// How one command fared on one device, as Command Runner files it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Success,
    Failure,
    Blacklisted,
}

/// One command's answer on one device: its status and its output (or error text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandOutput {
    pub status: CommandStatus,
    pub text: String,
}

/// Every command's answer on one device, by command.
pub type DeviceOutputs = BTreeMap<String, CommandOutput>;

/// Longest Command Runner is given per request, in seconds (its `timeout`).
const COMMAND_TIMEOUT_SECS: u64 = 60;

impl CatalystClient {
    /// Runs read-only `commands` on the devices with Command Runner (read-request → task →
    /// file); returns each device's outputs by device id. The caller has checked that the
    /// commands are read-only; Command Runner refuses the others itself (`BLACKLISTED`).
    pub async fn run_commands(
        &self,
        device_ids: &[String],
        commands: &[String],
        name: &str,
    ) -> Result<BTreeMap<String, DeviceOutputs>, DownstreamError> {
        let body = json!({
            "name": name,
            "description": "changeflow read-only commands",
            "commands": commands,
            "deviceUuids": device_ids,
            "timeout": COMMAND_TIMEOUT_SECS,
        });
        let answer = self
            .api
            .call(
                || self.login(),
                Method::POST,
                "/dna/intent/api/v1/network-device-poller/cli/read-request",
                &[],
                Some(&body),
            )
            .await?;
        let task_id = answer["response"]["taskId"]
            .as_str()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "read-request without taskId"))?
            .to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(COMMAND_TIMEOUT_SECS + 30);
        let file_id = loop {
            let task = self.task(&task_id).await?;
            if task.is_error {
                return Err(DownstreamError::Unavailable {
                    system: SYSTEM,
                    status: 200,
                    message: format!(
                        "Command Runner task failed: {}",
                        task.failure_reason.as_deref().unwrap_or("no reason given")
                    ),
                });
            }
            let progress: Value = serde_json::from_str(&task.progress).unwrap_or(Value::Null);
            if let Some(file) = progress["fileId"].as_str() {
                break file.to_string();
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DownstreamError::Transport {
                    system: SYSTEM,
                    message: format!("Command Runner task {task_id} did not finish in time"),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let file = self
            .get(&format!("/dna/intent/api/v1/file/{file_id}"), &[])
            .await?;
        let entries = file.as_array().ok_or_else(|| {
            DownstreamError::protocol(SYSTEM, "Command Runner file is not an array")
        })?;
        let mut outputs = BTreeMap::new();
        for entry in entries {
            let mut device = DeviceOutputs::new();
            for (key, status) in [
                ("SUCCESS", CommandStatus::Success),
                ("FAILURE", CommandStatus::Failure),
                ("BLACKLISTED", CommandStatus::Blacklisted),
            ] {
                if let Some(answers) = entry["commandResponses"][key].as_object() {
                    for (command, text) in answers {
                        device.insert(
                            command.clone(),
                            CommandOutput {
                                status,
                                text: text.as_str().unwrap_or_default().to_string(),
                            },
                        );
                    }
                }
            }
            outputs.insert(text(entry, "deviceUuid"), device);
        }
        Ok(outputs)
    }
}

/// The validation errors of a template preview, as messages.
fn preview_errors(preview: &Value) -> Vec<String> {
    preview["validationErrors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    e["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_id_is_read_from_task_progress() {
        let captures = DEPLOYMENT_ID
            .captures("Template Deployment Id: 4f1c2e9a-0b7d-4c1e-9a55-2b6f0e1d3c7a")
            .unwrap();
        assert_eq!(&captures[1], "4f1c2e9a-0b7d-4c1e-9a55-2b6f0e1d3c7a");
        assert!(DEPLOYMENT_ID.captures("Provisioning started").is_none());
    }
}
