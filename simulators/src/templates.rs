//! Catalyst Center's configuration templates as the simulator keeps them: the seed's, and those
//! created, updated and committed through the template-programmer authoring calls
//! (`../shared/contracts/catalyst-center.md`, "Template authoring"). `update_template` writes
//! a template's draft; committing makes the draft a new numbered version; previews and
//! deployments use the latest committed version, as Catalyst Center deploys committed
//! templates only.

use crate::catalyst::{CatalystCenter, envelope, epoch_ms, error};
use crate::seed::{self, SEED_EPOCH_MS};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// A template parameter: (name, dataType, required, default).
pub type Param = (String, String, bool, String);

/// What a version (or the draft) holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub content: String,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone)]
pub struct Version {
    pub id: String,
    pub number: u32,
    pub time_ms: i64,
    pub author: String,
    pub comment: String,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub project: String,
    pub project_id: String,
    pub language: String,
    pub description: String,
    pub software_type: String,
    pub device_types: Value,
    pub draft: Body,
    pub versions: Vec<Version>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Template {
    /// What previews and deployments use: the latest committed version.
    pub fn committed(&self) -> Option<&Body> {
        self.versions.last().map(|v| &v.body)
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_ms: i64,
}

/// Every project and template.
pub struct Store {
    pub projects: Vec<Project>,
    pub templates: Vec<Template>,
}

impl Store {
    /// The seed's projects, and its templates each with one committed version.
    pub fn seeded() -> Store {
        let projects = seed::PROJECTS
            .iter()
            .map(|(name, description)| Project {
                id: seed::id("project", name),
                name: name.to_string(),
                description: description.to_string(),
                created_ms: SEED_EPOCH_MS,
            })
            .collect();
        let templates = seed::TEMPLATES
            .iter()
            .map(|t| {
                let body = Body {
                    content: t.content.to_string(),
                    params: t
                        .params
                        .iter()
                        .map(|(n, d, r, v)| (n.to_string(), d.to_string(), *r, v.to_string()))
                        .collect(),
                };
                Template {
                    id: seed::id("template", t.name),
                    name: t.name.to_string(),
                    project: t.project.to_string(),
                    project_id: seed::id("project", t.project),
                    language: t.language.to_string(),
                    description: t.description.to_string(),
                    software_type: "IOS-XE".into(),
                    device_types: json!([{"productFamily": "Switches and Hubs"}, {"productFamily": "Routers"}]),
                    draft: body.clone(),
                    versions: vec![Version {
                        id: seed::id("template-version", t.name),
                        number: 1,
                        time_ms: SEED_EPOCH_MS,
                        author: "admin".into(),
                        comment: "Initial version".into(),
                        body,
                    }],
                    created_ms: SEED_EPOCH_MS,
                    updated_ms: SEED_EPOCH_MS,
                }
            })
            .collect();
        Store {
            projects,
            templates,
        }
    }

    pub fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }
}

pub fn summary_json(t: &Template) -> Value {
    json!({
        "name": t.name,
        "projectName": t.project,
        "projectId": t.project_id,
        "templateId": t.id,
        "composite": false,
        "versionsInfo": t.versions.iter().map(|v| json!({
            "id": v.id,
            "author": v.author,
            "description": t.description,
            "version": v.number.to_string(),
            "versionComment": v.comment,
            "versionTime": v.time_ms,
        })).collect::<Vec<_>>(),
    })
}

fn params_json(t: &Template, body: &Body) -> Vec<Value> {
    body.params
        .iter()
        .enumerate()
        .map(|(order, (name, data_type, required, default))| {
            json!({
                "id": seed::id("param", &format!("{}/{name}", t.name)),
                "parameterName": name,
                "dataType": data_type,
                "defaultValue": if default.is_empty() { Value::Null } else { json!(default) },
                "description": null,
                "required": required,
                "notParam": false,
                "paramArray": false,
                "displayName": null,
                "instructionText": null,
                "group": null,
                "order": order + 1,
                "customOrder": 0,
                "key": null,
                "provider": null,
                "binding": "",
                "selection": null,
                "range": [],
                "minLength": 0,
                "maxLength": 0,
            })
        })
        .collect()
}

/// The full template: its latest committed version (`latest`), or else its draft.
pub fn detail_json(t: &Template, latest: bool) -> Value {
    let body = if latest {
        t.committed().unwrap_or(&t.draft)
    } else {
        &t.draft
    };
    let latest_version = t.versions.last();
    json!({
        "id": t.id,
        "name": t.name,
        "projectName": t.project,
        "projectId": t.project_id,
        "description": t.description,
        "templateContent": body.content,
        "language": t.language,
        "templateParams": params_json(t, body),
        "rollbackTemplateParams": [],
        "rollbackTemplateContent": "",
        "deviceTypes": t.device_types,
        "softwareType": t.software_type,
        "softwareVariant": "XE",
        "composite": false,
        "containingTemplates": [],
        "customParamsOrder": false,
        "version": latest_version.map(|v| v.number.to_string()),
        "author": "admin",
        "createTime": t.created_ms,
        "lastUpdateTime": t.updated_ms,
        "latestVersionTime": latest_version.map(|v| v.time_ms),
        "parentTemplateId": t.id,
        "failurePolicy": null,
        "tags": [],
        "validationErrors": {"templateErrors": [], "rollbackTemplateErrors": [], "templateId": t.id, "templateVersion": null},
        "documentDatabase": false,
    })
}

pub fn project_json(store: &Store, p: &Project) -> Value {
    let templates: Vec<Value> = store
        .templates
        .iter()
        .filter(|t| t.project_id == p.id)
        .map(|t| json!({"name": t.name, "id": t.id, "composite": false, "language": t.language}))
        .collect();
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "createTime": p.created_ms,
        "lastUpdateTime": p.created_ms,
        "tags": [],
        "templates": templates,
        "isDeletable": true,
    })
}

/// A template id Catalyst Center does not know, in its envelope.
pub(crate) fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NCTP10404",
        "Template not found",
        &format!("Template with id {id} does not exist"),
    )
}

fn invalid(detail: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "NCTP10400",
        "Invalid input",
        detail,
    )
}

/// The parameters a body declares, or, when it declares none, the variables its content uses
/// (as Catalyst Center derives them when a template is saved): required strings.
fn params_of(body: &Value, language: &str, content: &str) -> Vec<Param> {
    if let Some(declared) = body["templateParams"].as_array().filter(|p| !p.is_empty()) {
        return declared
            .iter()
            .filter_map(|p| {
                let name = p["parameterName"].as_str()?;
                Some((
                    name.to_string(),
                    p["dataType"].as_str().unwrap_or("STRING").to_string(),
                    p["required"].as_bool().unwrap_or(true),
                    p["defaultValue"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
    }
    let pattern = if language == "JINJA" {
        r"\{\{\s*(\w+)[^}]*\}\}"
    } else {
        r"\$\{(\w+)\}|\$(\w+)"
    };
    let variable = regex::Regex::new(pattern).expect("variable regex");
    let mut names: Vec<String> = Vec::new();
    for captures in variable.captures_iter(content) {
        if let Some(name) = captures.get(1).or(captures.get(2)) {
            let name = name.as_str().to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|n| (n, "STRING".into(), true, String::new()))
        .collect()
}

impl CatalystCenter {
    /// A finished authoring task (the simulator applies writes at once); its id as the API
    /// answers a write.
    fn authoring_task(&self, failure: Option<String>, progress: &str, data: &str) -> Response {
        let id = uuid::Uuid::new_v4().to_string();
        let now = epoch_ms();
        let mut task = json!({
            "id": id, "rootId": id, "serviceType": "NCTP",
            "isError": failure.is_some(),
            "progress": progress, "data": data,
            "startTime": now, "endTime": now + 1, "lastUpdate": now + 1, "version": now + 1,
            "username": self.credentials.catalyst_username,
            "instanceTenantId": "5e8e896e4d4add00ca2b6487",
        });
        if let Some(reason) = failure {
            task["failureReason"] = json!(reason);
            task["errorCode"] = json!("NCTP10409");
        }
        self.authoring_tasks
            .lock()
            .expect("tasks")
            .insert(id.clone(), task);
        let body = json!({"response": {"taskId": id, "url": format!("/api/v1/task/{id}")}, "version": "1.0"});
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }

    /// An authoring task by id, if it is one.
    pub(crate) fn authoring_task_json(&self, id: &str) -> Option<Value> {
        self.authoring_tasks.lock().expect("tasks").get(id).cloned()
    }
}

/// A write's JSON body; anything else is refused in Catalyst Center's envelope.
pub struct Posted(Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        Json::<Value>::from_request(request, state)
            .await
            .map(|Json(body)| Posted(body))
            .map_err(|_| invalid("Request body is not valid JSON"))
    }
}

/// `POST /template-programmer/project`: `{name*, description}`.
pub async fn create_project(
    State(cc): State<Arc<CatalystCenter>>,
    Posted(body): Posted,
) -> Response {
    let Some(name) = body["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return invalid("name is required");
    };
    let mut store = cc.templates.lock().expect("templates");
    if store.projects.iter().any(|p| p.name == name) {
        drop(store);
        return cc.authoring_task(
            Some(format!("Project with name {name} already exists")),
            "Project creation failed",
            "",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    store.projects.push(Project {
        id: id.clone(),
        name: name.to_string(),
        description: body["description"].as_str().unwrap_or_default().to_string(),
        created_ms: epoch_ms(),
    });
    drop(store);
    cc.authoring_task(None, "Successfully created project", &id)
}

/// What a create or update must name (Cisco's own tooling treats these as mandatory).
fn required_fields(body: &Value) -> Result<(), Response> {
    for field in ["name", "language", "softwareType"] {
        if body[field].as_str().is_none_or(|v| v.trim().is_empty()) {
            return Err(invalid(&format!("{field} is required")));
        }
    }
    if !matches!(body["language"].as_str(), Some("JINJA" | "VELOCITY")) {
        return Err(invalid("language must be JINJA or VELOCITY"));
    }
    let families = body["deviceTypes"].as_array().is_some_and(|types| {
        !types.is_empty()
            && types
                .iter()
                .all(|t| t["productFamily"].as_str().is_some_and(|f| !f.is_empty()))
    });
    if !families {
        return Err(invalid("deviceTypes must name a productFamily"));
    }
    Ok(())
}

/// `POST /template-programmer/project/{projectId}/template`.
pub async fn create_template(
    State(cc): State<Arc<CatalystCenter>>,
    Path(project_id): Path<String>,
    Posted(body): Posted,
) -> Response {
    if let Err(r) = required_fields(&body) {
        return r;
    }
    let mut store = cc.templates.lock().expect("templates");
    let Some(project) = store.projects.iter().find(|p| p.id == project_id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "NCTP10404",
            "Project not found",
            &format!("Project with id {project_id} does not exist"),
        );
    };
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if store
        .templates
        .iter()
        .any(|t| t.project_id == project.id && t.name == name)
    {
        drop(store);
        return cc.authoring_task(
            Some(format!(
                "Template with name {name} already exists in project {}",
                project.name
            )),
            "Template creation failed",
            "",
        );
    }
    let language = body["language"].as_str().unwrap_or("VELOCITY").to_string();
    let content = body["templateContent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let now = epoch_ms();
    store.templates.push(Template {
        id: id.clone(),
        name,
        project: project.name.clone(),
        project_id: project.id.clone(),
        language: language.clone(),
        description: body["description"].as_str().unwrap_or_default().to_string(),
        software_type: body["softwareType"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        device_types: body["deviceTypes"].clone(),
        draft: Body {
            params: params_of(&body, &language, &content),
            content,
        },
        versions: Vec::new(),
        created_ms: now,
        updated_ms: now,
    });
    drop(store);
    cc.authoring_task(None, "Successfully created template", &id)
}

/// `PUT /template-programmer/template`: the create body plus `id`; overwrites the draft.
pub async fn update_template(
    State(cc): State<Arc<CatalystCenter>>,
    Posted(body): Posted,
) -> Response {
    let Some(id) = body["id"].as_str().map(str::to_string) else {
        return invalid("id is required");
    };
    if let Err(r) = required_fields(&body) {
        return r;
    }
    let mut store = cc.templates.lock().expect("templates");
    let Some(t) = store.templates.iter_mut().find(|t| t.id == id) else {
        return not_found(&id);
    };
    t.language = body["language"].as_str().unwrap_or(&t.language).to_string();
    if let Some(content) = body["templateContent"].as_str() {
        t.draft = Body {
            params: params_of(&body, &t.language, content),
            content: content.to_string(),
        };
    }
    if let Some(description) = body["description"].as_str() {
        t.description = description.to_string();
    }
    t.software_type = body["softwareType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.device_types = body["deviceTypes"].clone();
    t.updated_ms = epoch_ms();
    drop(store);
    cc.authoring_task(None, "Successfully updated template", &id)
}

impl CatalystCenter {
    /// Commits a template's draft as its next version.
    fn commit(&self, id: &str, comment: &str) -> Response {
        let mut store = self.templates.lock().expect("templates");
        let Some(t) = store.templates.iter_mut().find(|t| t.id == id) else {
            return not_found(id);
        };
        let number = t.versions.last().map_or(1, |v| v.number + 1);
        let version_id = uuid::Uuid::new_v4().to_string();
        t.versions.push(Version {
            id: version_id.clone(),
            number,
            time_ms: epoch_ms(),
            author: self.credentials.catalyst_username.clone(),
            comment: comment.to_string(),
            body: t.draft.clone(),
        });
        let name = t.name.clone();
        drop(store);
        self.authoring_task(
            None,
            &format!("Successfully committed template {name} version {number}"),
            &version_id,
        )
    }
}

/// `POST /template-programmer/template/version`: `{templateId*, comments}`.
pub async fn version_template(
    State(cc): State<Arc<CatalystCenter>>,
    Posted(body): Posted,
) -> Response {
    let Some(id) = body["templateId"].as_str() else {
        return invalid("templateId is required");
    };
    cc.commit(id, body["comments"].as_str().unwrap_or_default())
}

/// `POST /templates/{templateId}/versions/commit`: `{commitNote}` (at most 255 characters).
pub async fn commit_version(
    State(cc): State<Arc<CatalystCenter>>,
    Path(id): Path<String>,
    Posted(body): Posted,
) -> Response {
    let note = body["commitNote"].as_str().unwrap_or_default();
    if note.chars().count() > 255 {
        return invalid("commitNote must be at most 255 characters");
    }
    cc.commit(&id, note)
}

/// `GET /template-programmer/template/version/{templateId}`: a bare array with the template's
/// versions.
pub async fn versions_of(
    State(cc): State<Arc<CatalystCenter>>,
    Path(id): Path<String>,
) -> Response {
    let store = cc.templates.lock().expect("templates");
    match store.template(&id) {
        Some(t) => Json(json!([summary_json(t)])).into_response(),
        None => not_found(&id),
    }
}

/// `GET /templates/{templateId}/versions`: the versions, newest first unless `order=asc`,
/// one (`versionNumber`) or the latest (`latestVersion=true`).
pub async fn template_versions(
    State(cc): State<Arc<CatalystCenter>>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let store = cc.templates.lock().expect("templates");
    let Some(t) = store.template(&id) else {
        return not_found(&id);
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut versions: Vec<&Version> = t.versions.iter().collect();
    if param("order") != Some("asc") {
        versions.reverse();
    }
    if let Some(number) = param("versionNumber").and_then(|v| v.parse::<u32>().ok()) {
        versions.retain(|v| v.number == number);
    }
    if param("latestVersion").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        versions.truncate(1);
    }
    let items: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            json!({
                "versionId": v.id, "version": v.number, "versionTime": v.time_ms,
                "templateId": t.id, "commitNote": v.comment,
                "RegularTemplate": {"templateId": t.id, "name": t.name, "projectId": t.project_id,
                    "projectName": t.project, "language": t.language, "templateContent": v.body.content,
                    "softwareFamily": t.software_type},
            })
        })
        .collect();
    envelope(json!(items))
}
