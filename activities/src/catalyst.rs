//! Catalyst Center Intent API client: token login with caching and one refresh on 401,
//! templates, devices, preview, asynchronous deploy and its task and status.

use crate::http::{self, DownstreamError, send_json, with_retries};
use crate::session::Session;
use changeflow_engine::CredentialProvider;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

const SYSTEM: &str = "Catalyst Center";
/// Catalyst Center tokens live an hour.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
static DEPLOYMENT_ID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"Template\s+Deployment\s+Id:\s+([a-f0-9-]+)").expect("deployment id regex")
});

pub struct CatalystClient {
    base_url: String,
    http: reqwest::Client,
    credentials: Arc<dyn CredentialProvider>,
    session: Session,
}

/// The state of a deployment task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub finished: bool,
    pub is_error: bool,
    pub failure_reason: Option<String>,
    pub deployment_id: Option<String>,
}

impl CatalystClient {
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

    /// Basic-auth login; returns the token and its lifetime.
    async fn login(&self) -> Result<(String, Duration), DownstreamError> {
        let creds = self.credentials.catalyst().await?;
        let url = format!("{}/dna/system/api/v1/auth/token", self.base_url);
        let answer = with_retries(|| {
            send_json(
                SYSTEM,
                self.http
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
                    send_json(SYSTEM, request.header("X-Auth-Token", token))
                },
            )
            .await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, DownstreamError> {
        with_retries(|| self.call(Method::GET, path, query, None)).await
    }

    /// Template detail (latest version); `NotFound` when it does not exist.
    pub async fn template(&self, template_id: &str) -> Result<Value, DownstreamError> {
        let path = format!("/dna/intent/api/v1/template-programmer/template/{template_id}");
        self.get(&path, &[("latestVersion", "true")])
            .await
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
    ) -> Result<Vec<Value>, DownstreamError> {
        let query: Vec<(&str, &str)> = project_name
            .map(|p| ("projectNames", p))
            .into_iter()
            .collect();
        let body = self
            .get("/dna/intent/api/v1/template-programmer/template", &query)
            .await?;
        body.as_array()
            .cloned()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "template list is not an array"))
    }

    /// Devices matching all given `(field, value)` filters, at most `limit`.
    pub async fn devices(
        &self,
        filters: &[(&str, &str)],
        limit: u32,
    ) -> Result<Vec<Value>, DownstreamError> {
        let limit = limit.to_string();
        let mut query = filters.to_vec();
        query.push(("limit", &limit));
        let body = self
            .get("/dna/intent/api/v1/network-device", &query)
            .await?;
        body["response"]
            .as_array()
            .cloned()
            .ok_or_else(|| DownstreamError::protocol(SYSTEM, "device list without response array"))
    }

    /// Looks a device up by hostname, then by id.
    pub async fn find_device(&self, name: &str) -> Result<Option<Value>, DownstreamError> {
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
        params: &Value,
        device_id: &str,
    ) -> Result<Value, DownstreamError> {
        let body = json!({"templateId": template_id, "params": params, "deviceId": device_id});
        with_retries(|| {
            self.call(
                Method::PUT,
                "/dna/intent/api/v1/template-programmer/template/preview",
                &[],
                Some(&body),
            )
        })
        .await
    }

    /// Submits a deployment; returns the task id. Never retried in-call: it is not idempotent.
    pub async fn deploy(&self, body: &Value) -> Result<String, DownstreamError> {
        let answer = self
            .call(
                Method::POST,
                "/dna/intent/api/v2/template-programmer/template/deploy",
                &[],
                Some(body),
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
        })
    }

    pub async fn deployment_status(&self, deployment_id: &str) -> Result<Value, DownstreamError> {
        self.get(
            &format!(
                "/dna/intent/api/v1/template-programmer/template/deploy/status/{deployment_id}"
            ),
            &[],
        )
        .await
    }
}

/// The validation errors of a template preview, as messages.
pub fn preview_errors(preview: &Value) -> Vec<String> {
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
