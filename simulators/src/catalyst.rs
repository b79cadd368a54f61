//! Catalyst Center simulator: the Intent API subset of `../shared/contracts/catalyst-center.md`
//! (auth token, projects, templates, preview, devices, asynchronous template deploy, tasks,
//! deploy status, Command Runner and file download) with the same envelopes, field names and
//! status codes. A device's running configuration is its base plus the lines of every
//! deployment that succeeded on it so far (`device_cli`).

use crate::Stats;
use crate::credentials::DevCredentials;
use crate::faults::{Faults, InjectedFault};
use crate::seed;
use crate::templates::{self, Body, Template};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shared state of one Catalyst Center simulator.
pub struct CatalystCenter {
    pub(crate) credentials: DevCredentials,
    faults: Faults,
    stats: Arc<Stats>,
    token_ttl: Duration,
    deploy_duration: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
    deployments: Mutex<Vec<Deployment>>,
    /// Command Runner tasks, by task id: when they started and the file they produced.
    command_tasks: Mutex<HashMap<String, (i64, String)>>,
    /// Files Command Runner produced, by file id.
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// Projects and templates (seeded; the authoring calls change them).
    pub(crate) templates: Mutex<templates::Store>,
    /// Authoring tasks (project and template writes), by task id: their task record.
    pub(crate) authoring_tasks: Mutex<HashMap<String, Value>>,
}

/// One template deployment and its task. Device progress is derived from elapsed time, so it is
/// the same whoever asks and however often.
#[derive(Clone)]
struct Deployment {
    task_id: String,
    deployment_id: String,
    template_name: String,
    project_name: String,
    started: Instant,
    started_ms: i64,
    targets: Vec<Target>,
}

#[derive(Clone)]
struct Target {
    device: Value,
    /// Why this device will fail, decided when the deployment was submitted.
    failure: Option<String>,
    /// The configuration rendered for it, applied when it succeeds.
    rendered: String,
}

impl CatalystCenter {
    pub(crate) fn new(
        credentials: DevCredentials,
        faults: Faults,
        stats: Arc<Stats>,
        token_ttl: Duration,
        deploy_duration: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            faults,
            stats,
            token_ttl,
            deploy_duration,
            tokens: Mutex::new(HashMap::new()),
            deployments: Mutex::new(Vec::new()),
            command_tasks: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            templates: Mutex::new(templates::Store::seeded()),
            authoring_tasks: Mutex::new(HashMap::new()),
        })
    }

    /// A device's running configuration now: its base plus every deployment that has succeeded
    /// on it, in order (`None` for an unknown hostname).
    pub fn running_config(&self, hostname: &str) -> Option<Vec<String>> {
        let device = find_device("MANAGED_DEVICE_HOSTNAME", hostname)?;
        Some(self.config_of(&device))
    }

    /// The committed versions (number, comment) of the template named `template_name`.
    pub fn versions_of(&self, template_name: &str) -> Vec<(u32, String)> {
        self.templates
            .lock()
            .expect("templates")
            .templates
            .iter()
            .filter(|t| t.name == template_name)
            .flat_map(|t| t.versions.iter().map(|v| (v.number, v.comment.clone())))
            .collect()
    }

    /// How many deployments of the template named `template_name` were submitted.
    pub fn deployments_of(&self, template_name: &str) -> usize {
        self.deployments
            .lock()
            .expect("deployments")
            .iter()
            .filter(|d| d.template_name == template_name)
            .count()
    }

    fn config_of(&self, device: &Value) -> Vec<String> {
        let mut config = crate::device_cli::base_config(device);
        let deployments = self.deployments.lock().expect("deployments");
        for deployment in deployments.iter() {
            let elapsed = deployment.started.elapsed();
            let count = deployment.targets.len();
            for (i, target) in deployment.targets.iter().enumerate() {
                if target.device["id"] == device["id"]
                    && target.failure.is_none()
                    && device_state(i, count, elapsed, self.deploy_duration).0
                {
                    crate::device_cli::apply(&mut config, &target.rendered);
                }
            }
        }
        config
    }

    /// Whether the device's CLI answers now, and whether a change left it unhealthy.
    fn cli_state(&self, device: &Value, config: &[String]) -> (bool, bool) {
        let faults = self.faults.get();
        let hostname = device["hostname"].as_str();
        let changed = config != crate::device_cli::base_config(device).as_slice();
        let named = |fault: &Option<String>| fault.as_deref() == hostname;
        let reachable = device["reachabilityStatus"] == "Reachable"
            && !named(&faults.unreachable_device)
            && !(changed && named(&faults.unreachable_after_change));
        (reachable, changed && named(&faults.unhealthy_device))
    }

    /// Forgets all issued tokens, as a restart of the real system would (tests use it).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().expect("tokens").clear();
    }

    fn token_valid(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        self.tokens
            .lock()
            .expect("tokens")
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

pub(crate) fn router(state: Arc<CatalystCenter>) -> Router {
    let intent = Router::new()
        .route(
            "/dna/intent/api/v1/template-programmer/project",
            get(projects_v1).post(templates::create_project),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/project/{id}/template",
            post(templates::create_template),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template/version",
            post(templates::version_template),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template/version/{id}",
            get(templates::versions_of),
        )
        .route(
            "/dna/intent/api/v1/templates/{id}/versions/commit",
            post(templates::commit_version),
        )
        .route(
            "/dna/intent/api/v2/template-programmer/project",
            get(projects_v2),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template",
            get(template_list).put(templates::update_template),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template/{id}",
            get(template_detail),
        )
        .route(
            "/dna/intent/api/v1/templates/{id}/versions",
            get(templates::template_versions),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template/preview",
            post(preview).put(preview),
        )
        .route(
            "/dna/intent/api/v2/template-programmer/template/deploy",
            post(deploy),
        )
        .route(
            "/dna/intent/api/v1/template-programmer/template/deploy/status/{id}",
            get(deploy_status),
        )
        .route("/dna/intent/api/v1/task/{id}", get(task))
        .route("/api/v1/task/{id}", get(task))
        .route("/dna/intent/api/v1/network-device", get(devices))
        .route("/dna/intent/api/v1/network-device/count", get(device_count))
        .route(
            "/dna/intent/api/v1/network-device-poller/cli/legit-reads",
            get(legit_reads),
        )
        .route(
            "/dna/intent/api/v1/network-device-poller/cli/read-request",
            post(read_request),
        )
        .route("/dna/intent/api/v1/file/{id}", get(file))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/dna/system/api/v1/auth/token", post(auth_token))
        .merge(intent)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::faults::inject::<CatalystCenter>,
        ))
        .with_state(state)
}

/// `{"response": {errorCode, message, detail}, "version": "1.0"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str, detail: &str) -> Response {
    let body = json!({"response": {"errorCode": code, "message": message, "detail": detail}, "version": "1.0"});
    (status, Json(body)).into_response()
}

/// Business-API 400: `{"status": "failed", "description": ..., "taskId": null}`.
fn business_error(description: &str) -> Response {
    let body = json!({"status": "failed", "description": description, "taskId": null, "executionId": null, "executionStatusUrl": null});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

pub(crate) fn envelope(response: Value) -> Response {
    Json(json!({"response": response, "version": "1.0"})).into_response()
}

impl crate::faults::FaultTarget for CatalystCenter {
    fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    fn fault_counters(&self) -> (&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64) {
        (&self.stats.catalyst_requests, &self.stats.faults_injected)
    }

    /// An injected fault in Catalyst Center's error envelopes.
    fn fault_response(fault: InjectedFault) -> Response {
        match fault {
            InjectedFault::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "NCND00500",
                "Internal server error",
                "simulated failure",
            ),
            InjectedFault::RateLimited { retry_after_secs } => {
                let body = json!({
                    "error": "Rate Limit exceeded; please retry after some time",
                    "bapiExtendedStatusCode": "REJECTED_ABOVE_MAX_CONCURRENCY_LIMIT",
                });
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
        }
    }
}

async fn require_token(
    State(cc): State<Arc<CatalystCenter>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if cc.token_valid(request.headers()) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            "Token is missing, invalid or expired",
        )
    }
}

async fn auth_token(State(cc): State<Arc<CatalystCenter>>, headers: HeaderMap) -> Response {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok());
    let expected = format!(
        "{}:{}",
        cc.credentials.catalyst_username, cc.credentials.catalyst_password
    );
    if credentials.as_deref() != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Authentication failed",
            "Bad credentials",
        );
    }
    let now = epoch_secs();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
    let payload = b64(&json!({
        "sub": seed::id("user", &cc.credentials.catalyst_username),
        "authSource": "internal",
        "tenantName": "TNT0",
        "roles": ["SUPER-ADMIN-ROLE"],
        "username": cc.credentials.catalyst_username,
        "iat": now,
        "exp": now + 3600,
    }));
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    let token = format!("{header}.{payload}.{signature}");
    cc.tokens
        .lock()
        .expect("tokens")
        .insert(token.clone(), Instant::now() + cc.token_ttl);
    Json(json!({ "Token": token })).into_response()
}

fn epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn projects_v1(
    State(cc): State<Arc<CatalystCenter>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let name = param(&query, "name");
    let store = cc.templates.lock().expect("templates");
    let projects: Vec<Value> = store
        .projects
        .iter()
        .filter(|p| name.is_none_or(|wanted| wanted == p.name))
        .map(|p| templates::project_json(&store, p))
        .collect();
    Json(projects).into_response()
}

async fn projects_v2(
    State(cc): State<Arc<CatalystCenter>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let name = param(&query, "name");
    let (offset, limit) = match paging(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let store = cc.templates.lock().expect("templates");
    let projects: Vec<Value> = store
        .projects
        .iter()
        .filter(|p| name.is_none_or(|wanted| wanted == p.name))
        .skip(offset - 1)
        .take(limit)
        .map(|p| templates::project_json(&store, p))
        .collect();
    envelope(json!(projects))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn params<'a>(query: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    query
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .collect()
}

/// 1-based `offset` and `limit` ≤ 500, as the Intent API takes them.
fn paging(query: &[(String, String)]) -> Result<(usize, usize), Response> {
    let parse = |name: &str, default: usize| -> Result<usize, Response> {
        match param(query, name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "NCND01001",
                    "Invalid input",
                    &format!("{name} must be a number"),
                )
            }),
        }
    };
    let offset = parse("offset", 1)?;
    let limit = parse("limit", 500)?;
    if offset < 1 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "NCND01001",
            "Invalid input",
            "offset starts at 1",
        ));
    }
    if limit == 0 || limit > 500 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "NCND01001",
            "Invalid input",
            "limit must be between 1 and 500",
        ));
    }
    Ok((offset, limit))
}

async fn template_list(
    State(cc): State<Arc<CatalystCenter>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let project_id = param(&query, "projectId");
    let project_names = params(&query, "projectNames");
    let store = cc.templates.lock().expect("templates");
    let mut list: Vec<Value> = store
        .templates
        .iter()
        .filter(|t| project_id.is_none_or(|p| p == t.project_id))
        .filter(|t| project_names.is_empty() || project_names.contains(&t.project.as_str()))
        .filter(|t| {
            param(&query, "unCommitted").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || !t.versions.is_empty()
        })
        .map(templates::summary_json)
        .collect();
    if param(&query, "sortOrder") == Some("des") {
        list.reverse();
    }
    Json(list).into_response()
}

impl CatalystCenter {
    /// A template by id, as it stands now; or, by a committed version's id, the template as
    /// that version left it (Catalyst Center gives every committed version an id of its own,
    /// which previews and deployments accept).
    fn template(&self, id: &str) -> Option<Template> {
        let store = self.templates.lock().expect("templates");
        if let Some(t) = store.template(id) {
            return Some(t.clone());
        }
        let t = store
            .templates
            .iter()
            .find(|t| t.versions.iter().any(|v| v.id == id))?;
        let mut pinned = t.clone();
        let at = pinned.versions.iter().position(|v| v.id == id)?;
        pinned.versions.truncate(at + 1);
        pinned.draft = pinned.versions[at].body.clone();
        pinned.id = id.to_string();
        Some(pinned)
    }
}

async fn template_detail(
    State(cc): State<Arc<CatalystCenter>>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    match cc.template(&id) {
        Some(t) => {
            let latest =
                param(&query, "latestVersion").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Json(templates::detail_json(&t, latest)).into_response()
        }
        None => templates::not_found(&id),
    }
}

static MAC_ADDRESS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$",
    )
    .expect("mac regex")
});

/// Checks parameters against the template's declared types; returns the problems found.
pub fn validate_params(t: &Body, values: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, data_type, required, default) in &t.params {
        match values.get(name) {
            None if *required && default.is_empty() => {
                problems.push(format!("Missing required parameter '{name}'"))
            }
            None => {}
            Some(value) => {
                let ok = match data_type.as_str() {
                    "INTEGER" => value.trim().parse::<i64>().is_ok(),
                    "IPADDRESS" => value.trim().parse::<std::net::IpAddr>().is_ok(),
                    "MACADDRESS" => MAC_ADDRESS.is_match(value.trim()),
                    _ => true,
                };
                if !ok {
                    problems.push(format!(
                        "Parameter '{name}' value '{value}' is not a valid {data_type}"
                    ));
                }
            }
        }
    }
    for name in values.keys() {
        if !t.params.iter().any(|(p, ..)| p == name) {
            problems.push(format!("Unknown parameter '{name}'"));
        }
    }
    problems
}

/// Renders a template the way its language does (Velocity `$x`/`${x}`, Jinja `{{ x }}`).
pub fn render(
    language: &str,
    t: &Body,
    values: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut all: BTreeMap<String, String> = t
        .params
        .iter()
        .filter(|(_, _, _, d)| !d.is_empty())
        .map(|(n, _, _, d)| (n.clone(), d.clone()))
        .collect();
    all.extend(values.clone());
    if language == "JINJA" {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.render_str(&t.content, &all).map_err(|e| e.to_string())
    } else {
        let variable = regex::Regex::new(r"\$\{(\w+)\}|\$(\w+)").expect("velocity regex");
        let mut missing = None;
        let rendered = variable.replace_all(&t.content, |c: &regex::Captures| {
            let name = c
                .get(1)
                .or(c.get(2))
                .map(|m| m.as_str())
                .unwrap_or_default();
            all.get(name).cloned().unwrap_or_else(|| {
                missing = Some(name.to_string());
                String::new()
            })
        });
        match missing {
            Some(name) => Err(format!("Variable ${name} is not defined")),
            None => Ok(rendered.into_owned()),
        }
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn preview(
    State(cc): State<Arc<CatalystCenter>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return business_error("Request body is not valid JSON");
    };
    let Some(id) = body.get("templateId").and_then(Value::as_str) else {
        return business_error("templateId is required");
    };
    let Some(t) = cc.template(id) else {
        return templates::not_found(id);
    };
    // The latest committed version (a template not yet committed previews its draft).
    let version = t.committed().unwrap_or(&t.draft);
    let values = string_map(body.get("params"));
    let mut problems = validate_params(version, &values);
    let cli = if problems.is_empty() {
        render(&t.language, version, &values).unwrap_or_else(|e| {
            problems.push(e);
            String::new()
        })
    } else {
        String::new()
    };
    let errors: Vec<Value> = problems
        .iter()
        .map(|p| json!({"type": "PARAMETER_ERROR", "message": p}))
        .collect();
    Json(json!({
        "cliPreview": cli,
        "templateId": id,
        "deviceId": body.get("deviceId").cloned().unwrap_or(Value::Null),
        "validationErrors": errors,
        "variables": values,
    }))
    .into_response()
}

fn all_devices() -> Vec<Value> {
    (0..seed::DEVICES.len()).map(seed::device_json).collect()
}

async fn devices(Query(query): Query<Vec<(String, String)>>) -> Response {
    let (offset, limit) = match paging(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filters: Vec<(&str, Vec<&str>)> = [
        ("hostname", "hostname"),
        ("managementIpAddress", "managementIpAddress"),
        ("id", "id"),
        ("family", "family"),
        ("reachabilityStatus", "reachabilityStatus"),
    ]
    .iter()
    .map(|(q, field)| (*field, params(&query, q)))
    .filter(|(_, values)| !values.is_empty())
    .collect();
    let list: Vec<Value> = all_devices()
        .into_iter()
        .filter(|d| {
            filters
                .iter()
                .all(|(field, values)| values.iter().any(|v| d[*field].as_str() == Some(*v)))
        })
        .skip(offset - 1)
        .take(limit)
        .collect();
    envelope(json!(list))
}

async fn device_count() -> Response {
    envelope(json!(seed::DEVICES.len()))
}

fn find_device(kind: &str, id: &str) -> Option<Value> {
    let field = match kind {
        "MANAGED_DEVICE_UUID" | "DEFAULT" => "id",
        "MANAGED_DEVICE_IP" => "managementIpAddress",
        "MANAGED_DEVICE_HOSTNAME" => "hostname",
        _ => return None,
    };
    all_devices()
        .into_iter()
        .find(|d| d[field].as_str() == Some(id))
}

async fn deploy(
    State(cc): State<Arc<CatalystCenter>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return business_error("Request body is not valid JSON");
    };
    let Some(template_id) = body.get("templateId").and_then(Value::as_str) else {
        return business_error("templateId is required");
    };
    let Some(t) = cc.template(template_id) else {
        return business_error(&format!("Template with id {template_id} does not exist"));
    };
    // Catalyst Center deploys committed templates only: the latest committed version.
    let Some(version) = t.committed() else {
        return business_error(&format!(
            "Template {} has no committed version; commit it before deploying",
            t.name
        ));
    };
    let Some(target_info) = body
        .get("targetInfo")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return business_error("targetInfo must name at least one target");
    };
    let failing = cc.faults.get().failing_device;
    let mut targets = Vec::new();
    for info in target_info {
        let kind = info
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("MANAGED_DEVICE_UUID");
        let id = info
            .get("id")
            .and_then(Value::as_str)
            .or_else(|| info.get("hostName").and_then(Value::as_str))
            .unwrap_or("");
        let Some(device) = find_device(kind, id) else {
            return business_error(&format!("Target {id} ({kind}) is not a managed device"));
        };
        let params = string_map(info.get("params"));
        let hostname = device["hostname"].as_str().unwrap_or_default().to_string();
        let (answers, _) = cc.cli_state(&device, &cc.config_of(&device));
        let failure = if device["reachabilityStatus"] != "Reachable" {
            Some("Device is unreachable: SNMP Connectivity Failed".to_string())
        } else if !answers {
            Some("Device is unreachable: SSH connection timed out".to_string())
        } else if failing.as_deref() == Some(hostname.as_str()) {
            Some("Configuration push failed: % Invalid input detected at '^' marker.".to_string())
        } else {
            validate_params(version, &params)
                .into_iter()
                .next()
                .map(|problem| format!("Template provisioning failed: {problem}"))
        };
        let rendered = render(&t.language, version, &params).unwrap_or_default();
        targets.push(Target {
            device,
            failure,
            rendered,
        });
    }
    let deployment = Deployment {
        task_id: uuid::Uuid::new_v4().to_string(),
        deployment_id: uuid::Uuid::new_v4().to_string(),
        template_name: t.name.clone(),
        project_name: t.project.clone(),
        started: Instant::now(),
        started_ms: epoch_ms(),
        targets,
    };
    let task_id = deployment.task_id.clone();
    cc.deployments.lock().expect("deployments").push(deployment);
    cc.stats.deploy_requests.fetch_add(1, Ordering::Relaxed);
    let body = json!({"response": {"taskId": task_id, "url": format!("/api/v1/task/{task_id}")}, "version": "1.0"});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Where one device stands `elapsed` into a deployment lasting `total`: devices finish one after
/// another, evenly spread.
fn device_state(
    index: usize,
    count: usize,
    elapsed: Duration,
    total: Duration,
) -> (bool, Duration) {
    let finish = total.mul_f64((index + 1) as f64 / count as f64);
    (elapsed >= finish, finish)
}

impl Deployment {
    fn finished(&self, total: Duration) -> bool {
        self.started.elapsed() >= total
    }

    fn status_json(&self, total: Duration) -> Value {
        let elapsed = self.started.elapsed();
        let count = self.targets.len();
        let devices: Vec<Value> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let (done, finish) = device_state(i, count, elapsed, total);
                let start = total.mul_f64(i as f64 / count as f64);
                let (status, message) = match (done, &target.failure) {
                    (false, _) => ("IN_PROGRESS", "Provisioning in progress".to_string()),
                    (true, None) => ("SUCCESS", "Provisioning success for template".to_string()),
                    (true, Some(reason)) => ("FAILURE", reason.clone()),
                };
                json!({
                    "deviceId": target.device["id"],
                    "name": target.device["hostname"],
                    "status": status,
                    "detailedStatusMessage": message,
                    "startTime": (self.started_ms + start.as_millis() as i64).to_string(),
                    "endTime": if done { (self.started_ms + finish.as_millis() as i64).to_string() } else { String::new() },
                    "ipAddress": target.device["managementIpAddress"],
                    "identifier": target.device["serialNumber"],
                    "targetType": "MANAGED_DEVICE_UUID",
                    "duration": if done { format!("{}", (finish - start).as_millis()) } else { String::new() },
                })
            })
            .collect();
        let finished = self.finished(total);
        let any_failed = self.targets.iter().any(|t| t.failure.is_some());
        let status = match (finished, any_failed) {
            (false, _) => "IN_PROGRESS",
            (true, false) => "SUCCESS",
            (true, true) => "FAILURE",
        };
        json!({
            "deploymentId": self.deployment_id,
            "deploymentName": format!("{} deployment", self.template_name),
            "templateName": self.template_name,
            "templateVersion": "1",
            "projectName": self.project_name,
            "status": status,
            "statusMessage": match status { "SUCCESS" => "Provisioning success", "FAILURE" => "Provisioning failed on one or more devices", _ => "Provisioning in progress" },
            "startTime": self.started_ms.to_string(),
            "endTime": if finished { (self.started_ms + total.as_millis() as i64).to_string() } else { String::new() },
            "duration": if finished { total.as_millis().to_string() } else { String::new() },
            "devices": devices,
        })
    }
}

async fn task(State(cc): State<Arc<CatalystCenter>>, Path(id): Path<String>) -> Response {
    if let Some(task) = cc.authoring_task_json(&id) {
        return envelope(task);
    }
    if let Some((started_ms, file_id)) = cc.command_tasks.lock().expect("tasks").get(&id).cloned() {
        return envelope(json!({
            "id": id,
            "rootId": id,
            "serviceType": "Command Runner Service",
            "progress": json!({"fileId": file_id}).to_string(),
            "isError": false,
            "startTime": started_ms,
            "endTime": started_ms + 1,
            "lastUpdate": started_ms + 1,
            "version": started_ms + 1,
            "username": cc.credentials.catalyst_username,
            "instanceTenantId": "5e8e896e4d4add00ca2b6487",
        }));
    }
    let deployments = cc.deployments.lock().expect("deployments");
    let Some(d) = deployments.iter().find(|d| d.task_id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NCND01404",
            "Task not found",
            &format!("Task {id} does not exist"),
        );
    };
    let finished = d.finished(cc.deploy_duration);
    let mut response = json!({
        "id": d.task_id,
        "parentId": null,
        "rootId": d.task_id,
        "serviceType": "NCTP",
        "progress": format!("Template Deployment Id: {}", d.deployment_id),
        "isError": false,
        "failureReason": null,
        "errorCode": null,
        "data": "workflow_id=".to_string() + &d.deployment_id,
        "startTime": d.started_ms,
        "lastUpdate": epoch_ms(),
        "version": epoch_ms(),
        "username": cc.credentials.catalyst_username,
        "instanceTenantId": "5e8e896e4d4add00ca2b6487",
    });
    if finished {
        response["endTime"] = json!(d.started_ms + cc.deploy_duration.as_millis() as i64);
    }
    envelope(response)
}

async fn deploy_status(State(cc): State<Arc<CatalystCenter>>, Path(id): Path<String>) -> Response {
    let deployments = cc.deployments.lock().expect("deployments");
    match deployments.iter().find(|d| d.deployment_id == id) {
        Some(d) => Json(d.status_json(cc.deploy_duration)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NCTP10404",
            "Deployment not found",
            &format!("Deployment {id} does not exist"),
        ),
    }
}

async fn legit_reads() -> Response {
    envelope(json!(crate::device_cli::LEGIT_READS))
}

/// Command Runner: runs read-only commands on devices at once and leaves the outputs in a
/// file, one entry per device, named by the task's `progress`.
async fn read_request(
    State(cc): State<Arc<CatalystCenter>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return business_error("Request body is not valid JSON");
    };
    let strings = |field: &str| -> Option<Vec<String>> {
        body.get(field)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let (Some(commands), Some(uuids)) = (strings("commands"), strings("deviceUuids")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "NCND01001",
            "Invalid input",
            "commands and deviceUuids must be arrays of strings",
        );
    };
    if commands.is_empty() || uuids.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "NCND01001",
            "Invalid input",
            "commands and deviceUuids must not be empty",
        );
    }
    let mut entries = Vec::new();
    for uuid in &uuids {
        let Some(device) = find_device("MANAGED_DEVICE_UUID", uuid) else {
            return error(
                StatusCode::BAD_REQUEST,
                "NCND01001",
                "Invalid input",
                &format!("deviceUuids: {uuid} is not a managed device"),
            );
        };
        let config = cc.config_of(&device);
        let (answers, unhealthy) = cc.cli_state(&device, &config);
        let view = crate::device_cli::DeviceView {
            device: &device,
            config: &config,
            unhealthy,
        };
        let (mut success, mut failure, mut blacklisted) = (
            serde_json::Map::new(),
            serde_json::Map::new(),
            serde_json::Map::new(),
        );
        for command in &commands {
            if !crate::device_cli::is_legit_read(command) {
                blacklisted.insert(command.clone(), json!(""));
            } else if !answers {
                failure.insert(command.clone(), json!("Device is not reachable"));
            } else {
                match crate::device_cli::run(&view, command) {
                    Ok(output) => success.insert(command.clone(), json!(output)),
                    Err(text) => failure.insert(command.clone(), json!(text)),
                };
            }
        }
        entries.push(json!({
            "deviceUuid": uuid,
            "commandResponses": {"SUCCESS": success, "FAILURE": failure, "BLACKLISTED": blacklisted},
        }));
    }
    let task_id = uuid::Uuid::new_v4().to_string();
    let file_id = uuid::Uuid::new_v4().to_string();
    let bytes = serde_json::to_vec(&entries).unwrap_or_default();
    cc.files
        .lock()
        .expect("files")
        .insert(file_id.clone(), bytes);
    cc.command_tasks
        .lock()
        .expect("tasks")
        .insert(task_id.clone(), (epoch_ms(), file_id));
    let body = json!({"response": {"taskId": task_id, "url": format!("/api/v1/task/{task_id}")}, "version": "1.0"});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// A file's bytes, as an attachment.
async fn file(State(cc): State<Arc<CatalystCenter>>, Path(id): Path<String>) -> Response {
    match cc.files.lock().expect("files").get(&id) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=cli-output-{id}.json"),
                ),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NCND01404",
            "File not found",
            &format!("File {id} does not exist"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> Template {
        templates::Store::seeded()
            .templates
            .into_iter()
            .find(|t| t.name == name)
            .unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_against_their_types() {
        let ntp = template("NTP Servers");
        assert!(
            validate_params(
                &ntp.draft,
                &values(&[("ntp_primary", "10.0.0.1"), ("ntp_secondary", "10.0.0.2")])
            )
            .is_empty()
        );
        let problems = validate_params(
            &ntp.draft,
            &values(&[("ntp_primary", "not-an-ip"), ("extra", "x")]),
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("ntp_secondary")));
        assert!(problems.iter().any(|p| p.contains("IPADDRESS")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("Unknown parameter 'extra'"))
        );
        let vlan = template("Access VLAN");
        let problems = validate_params(
            &vlan.draft,
            &values(&[
                ("vlan_id", "ten"),
                ("vlan_name", "x"),
                ("interface", "Gi1/0/1"),
            ]),
        );
        assert_eq!(
            problems,
            vec!["Parameter 'vlan_id' value 'ten' is not a valid INTEGER"]
        );
    }

    #[test]
    fn velocity_and_jinja_render_with_defaults() {
        let ntp = render(
            "VELOCITY",
            &template("NTP Servers").draft,
            &values(&[("ntp_primary", "10.0.0.1"), ("ntp_secondary", "10.0.0.2")]),
        )
        .unwrap();
        assert_eq!(
            ntp,
            "ntp server 10.0.0.1 prefer\nntp server 10.0.0.2\nclock timezone UTC 0\n"
        );
        let vlan = render(
            "JINJA",
            &template("Access VLAN").draft,
            &values(&[
                ("vlan_id", "20"),
                ("vlan_name", "voice"),
                ("interface", "Gi1/0/5"),
            ]),
        )
        .unwrap();
        assert!(vlan.starts_with("vlan 20\n name voice\n"));
        assert!(render("JINJA", &template("Login Banner").draft, &BTreeMap::new()).is_err());
    }

    #[test]
    fn devices_finish_one_after_another() {
        let total = Duration::from_secs(4);
        assert!(!device_state(0, 2, Duration::from_secs(1), total).0);
        assert!(device_state(0, 2, Duration::from_secs(2), total).0);
        assert!(!device_state(1, 2, Duration::from_secs(3), total).0);
        assert!(device_state(1, 2, Duration::from_secs(4), total).0);
    }
}
