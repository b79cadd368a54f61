//! ServiceNow simulator: the Table API for `change_request` (and read-only `sys_user`) plus the
//! OAuth token endpoint, as `../shared/contracts/servicenow.md` describes them. All values are
//! strings, reference fields are `{link, value}`, and `work_notes`/`comments` are journals.

use crate::Stats;
use crate::credentials::DevCredentials;
use crate::faults::{Faults, InjectedFault};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router, middleware};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OAUTH_TOKEN_TTL_SECS: u64 = 1799;
const REFERENCE_FIELDS: &[(&str, &str)] = &[
    ("requested_by", "sys_user"),
    ("assigned_to", "sys_user"),
    ("opened_by", "sys_user"),
    ("assignment_group", "sys_user_group"),
    ("approver", "sys_user"),
    ("sysapproval", "change_request"),
    ("document_id", "change_request"),
    ("group", "sysapproval_group"),
];
/// The states of an approval record (`sysapproval_approver.state`).
const APPROVAL_STATES: &[&str] = &[
    "requested",
    "approved",
    "rejected",
    "cancelled",
    "not requested",
    "not_required",
];
const JOURNAL_FIELDS: &[&str] = &["work_notes", "comments"];
const READ_ONLY_FIELDS: &[&str] = &[
    "sys_id",
    "number",
    "sys_created_on",
    "sys_updated_on",
    "sys_mod_count",
    "sys_created_by",
    "sys_updated_by",
];

/// A journal entry (`work_notes` or `comments`).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub field: String,
    pub author: String,
    pub value: String,
    /// "YYYY-MM-DD HH:MM:SS" UTC.
    pub created_on: String,
}

/// One stored record: its string fields and its journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub fields: BTreeMap<String, String>,
    pub journal: Vec<JournalEntry>,
}

impl Record {
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Tables {
    change_request: BTreeMap<String, Record>,
    sys_user: BTreeMap<String, Record>,
    sysapproval_approver: BTreeMap<String, Record>,
    next_number: u32,
}

/// Shared state of one ServiceNow simulator.
pub struct ServiceNow {
    tables: Mutex<Tables>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    credentials: DevCredentials,
    faults: Faults,
    stats: Arc<Stats>,
}

impl ServiceNow {
    pub(crate) fn new(credentials: DevCredentials, faults: Faults, stats: Arc<Stats>) -> Arc<Self> {
        let mut tables = Tables {
            next_number: 30001,
            ..Default::default()
        };
        for (user_name, name, email) in crate::seed::USERS {
            let sys_id = sys_id_for(user_name);
            let mut record = Record::default();
            for (k, v) in [
                ("sys_id", sys_id.as_str()),
                ("user_name", user_name),
                ("name", name),
                ("email", email),
                ("active", "true"),
            ] {
                record.fields.insert(k.into(), v.into());
            }
            tables.sys_user.insert(sys_id, record);
        }
        let integration = credentials.servicenow_username.clone();
        let sys_id = sys_id_for(&integration);
        let mut record = Record::default();
        record.fields.insert("sys_id".into(), sys_id.clone());
        record
            .fields
            .insert("user_name".into(), integration.clone());
        record
            .fields
            .insert("name".into(), "changeflow integration".into());
        tables.sys_user.insert(sys_id, record);
        Arc::new(Self {
            tables: Mutex::new(tables),
            tokens: Mutex::new(HashMap::new()),
            credentials,
            faults,
            stats,
        })
    }

    /// All change requests, for tests and the demo to inspect what was written.
    pub fn change_requests(&self) -> Vec<Record> {
        self.tables
            .lock()
            .expect("tables")
            .change_request
            .values()
            .cloned()
            .collect()
    }

    /// All approval records (`sysapproval_approver`), journals included, for tests to inspect.
    pub fn approvals(&self) -> Vec<Record> {
        self.tables
            .lock()
            .expect("tables")
            .sysapproval_approver
            .values()
            .cloned()
            .collect()
    }

    /// The user name of a `sys_user` sys_id (seeded people and the integration user).
    pub fn user_name(&self, sys_id: &str) -> Option<String> {
        let tables = self.tables.lock().expect("tables");
        tables
            .sys_user
            .get(sys_id)
            .map(|u| u.get("user_name").to_string())
    }

    /// Issues an access token for `user` (used by the OAuth endpoint; exposed for tests).
    fn issue_token(&self, user: &str) -> String {
        let token =
            uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string();
        let expiry = Instant::now() + Duration::from_secs(OAUTH_TOKEN_TTL_SECS);
        self.tokens
            .lock()
            .expect("tokens")
            .insert(token.clone(), (user.to_string(), expiry));
        token
    }

    /// Forgets all issued OAuth tokens, as a token revocation would (tests use it).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().expect("tokens").clear();
    }

    fn authenticate(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            let tokens = self.tokens.lock().expect("tokens");
            let (user, expiry) = tokens.get(token.trim())?;
            return (*expiry > Instant::now()).then(|| user.clone());
        }
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        self.password_matches(user, password)
            .then(|| user.to_string())
    }

    /// The integration user's password, or a seeded person's.
    fn password_matches(&self, user: &str, password: &str) -> bool {
        let c = &self.credentials;
        (user == c.servicenow_username && password == c.servicenow_password)
            || (crate::seed::USERS.iter().any(|(name, _, _)| *name == user)
                && password == c.servicenow_people_password)
    }
}

/// The router of the ServiceNow simulator.
pub(crate) fn router(state: Arc<ServiceNow>) -> Router {
    let api = Router::new()
        .route(
            "/api/now/table/{table}",
            get(list_records).post(create_record),
        )
        .route(
            "/api/now/table/{table}/{sys_id}",
            get(get_record)
                .patch(update_record)
                .put(update_record)
                .delete(delete_record),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/oauth_token.do", post(oauth_token))
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::faults::inject::<ServiceNow>,
        ))
        .with_state(state)
}

/// The contract's error envelope.
pub fn error(status: StatusCode, message: &str, detail: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "detail": detail}, "status": "failure"});
    (status, Json(body)).into_response()
}

impl crate::faults::FaultTarget for ServiceNow {
    fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    fn fault_counters(&self) -> (&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64) {
        (&self.stats.servicenow_requests, &self.stats.faults_injected)
    }

    /// An injected fault in ServiceNow's error envelope, with its rate-limit headers.
    fn fault_response(fault: InjectedFault) -> Response {
        match fault {
            InjectedFault::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                Some("simulated failure"),
            ),
            InjectedFault::RateLimited { retry_after_secs } => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded",
                    Some("The maximum number of requests per hour has been exceeded"),
                );
                let reset =
                    time::OffsetDateTime::now_utc().unix_timestamp() + retry_after_secs as i64;
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                headers.insert("X-RateLimit-Limit", HeaderValue::from_static("100"));
                headers.insert("X-RateLimit-Reset", HeaderValue::from(reset));
                response
            }
        }
    }
}

/// The authenticated user, attached by `require_auth`.
#[derive(Clone)]
struct Caller(String);

async fn require_auth(
    State(sn): State<Arc<ServiceNow>>,
    mut request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    match sn.authenticate(request.headers()) {
        Some(user) => {
            request.extensions_mut().insert(Caller(user));
            next.run(request).await
        }
        None => error(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            Some("Required to provide Auth information"),
        ),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

/// Client credentials from the form, or from HTTP Basic auth as RFC 6749 §2.3.1 prefers.
fn client_credentials(
    headers: &HeaderMap,
    form: &TokenRequest,
) -> (Option<String>, Option<String>) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(id, secret)| (id.to_string(), secret.to_string()))
        });
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form.client_id.clone(), form.client_secret.clone()),
    }
}

async fn oauth_token(
    State(sn): State<Arc<ServiceNow>>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    let oauth_error = |description: &str| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error_description": description, "error": "server_error"})),
        )
            .into_response()
    };
    let c = &sn.credentials;
    let (client_id, client_secret) = client_credentials(&headers, &form);
    if client_id.as_deref() != Some(&c.servicenow_client_id)
        || client_secret.as_deref() != Some(&c.servicenow_client_secret)
    {
        return oauth_error("access_denied");
    }
    let user = match form.grant_type.as_str() {
        "password" => {
            let (Some(username), Some(password)) = (&form.username, &form.password) else {
                return oauth_error("access_denied");
            };
            if !sn.password_matches(username, password) {
                return oauth_error("access_denied");
            }
            username.clone()
        }
        "client_credentials" => c.servicenow_username.clone(),
        "refresh_token" => {
            let Some(refresh) = form.refresh_token else {
                return oauth_error("access_denied");
            };
            let tokens = sn.tokens.lock().expect("tokens");
            match tokens.get(&format!("refresh:{refresh}")) {
                Some((user, _)) => user.clone(),
                None => return oauth_error("access_denied"),
            }
        }
        _ => return oauth_error("unsupported_grant_type"),
    };
    let access_token = sn.issue_token(&user);
    let refresh_token = uuid::Uuid::new_v4().simple().to_string();
    sn.tokens.lock().expect("tokens").insert(
        format!("refresh:{refresh_token}"),
        (user, Instant::now() + Duration::from_secs(86_400 * 100)),
    );
    Json(json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "scope": "useraccount",
        "token_type": "Bearer",
        "expires_in": OAUTH_TOKEN_TTL_SECS,
    }))
    .into_response()
}

/// How field values are rendered (`sysparm_display_value`).
#[derive(Clone, Copy, PartialEq)]
enum DisplayMode {
    Value,
    Display,
    All,
}

#[derive(Deserialize, Default)]
struct TableParams {
    sysparm_query: Option<String>,
    sysparm_display_value: Option<String>,
    sysparm_exclude_reference_link: Option<String>,
    sysparm_fields: Option<String>,
    sysparm_limit: Option<String>,
    sysparm_offset: Option<String>,
}

impl TableParams {
    /// How records are rendered for this request.
    fn renderer<'a>(&self, base_url: String, users: &'a BTreeMap<String, Record>) -> Renderer<'a> {
        Renderer {
            base_url,
            mode: self.display_mode(),
            exclude_links: self.exclude_links(),
            fields: self.fields(),
            users,
        }
    }

    fn display_mode(&self) -> DisplayMode {
        match self.sysparm_display_value.as_deref() {
            Some("true") => DisplayMode::Display,
            Some("all") => DisplayMode::All,
            _ => DisplayMode::Value,
        }
    }
    fn exclude_links(&self) -> bool {
        self.sysparm_exclude_reference_link.as_deref() == Some("true")
    }
    fn fields(&self) -> Option<Vec<String>> {
        self.sysparm_fields.as_ref().map(|f| {
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

struct Renderer<'a> {
    base_url: String,
    mode: DisplayMode,
    exclude_links: bool,
    fields: Option<Vec<String>>,
    users: &'a BTreeMap<String, Record>,
}

impl Renderer<'_> {
    fn render(&self, record: &Record) -> Value {
        let mut out = Map::new();
        let names: Vec<String> = match &self.fields {
            Some(fields) => fields.clone(),
            None => record
                .fields
                .keys()
                .cloned()
                .chain(JOURNAL_FIELDS.iter().map(|s| s.to_string()))
                .collect(),
        };
        for name in names {
            let value = record.fields.get(&name).cloned().unwrap_or_default();
            out.insert(name.clone(), self.render_field(&name, &value));
        }
        Value::Object(out)
    }

    fn render_field(&self, name: &str, value: &str) -> Value {
        let display = display_value(name, value, self.users);
        let reference = REFERENCE_FIELDS
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, table)| *table);
        let value_json = match reference {
            Some(table) if !value.is_empty() && !self.exclude_links => json!({
                "link": format!("{}/api/now/table/{table}/{value}", self.base_url),
                "value": value,
            }),
            _ => Value::String(value.to_string()),
        };
        match self.mode {
            DisplayMode::Value => value_json,
            DisplayMode::Display => Value::String(display),
            DisplayMode::All => {
                let mut both = json!({"display_value": display, "value": value});
                if let (Some(table), false, false) =
                    (reference, value.is_empty(), self.exclude_links)
                {
                    both["link"] =
                        json!(format!("{}/api/now/table/{table}/{value}", self.base_url));
                }
                both
            }
        }
    }
}

fn display_value(field: &str, value: &str, users: &BTreeMap<String, Record>) -> String {
    let label = match (field, value) {
        ("state", "-5") => "New",
        ("state", "-4") => "Assess",
        ("state", "-3") => "Authorize",
        ("state", "-2") => "Scheduled",
        ("state", "-1") => "Implement",
        ("state", "0") => "Review",
        ("state", "3") => "Closed",
        ("state", "4") => "Canceled",
        ("type", "normal") => "Normal",
        ("type", "standard") => "Standard",
        ("type", "emergency") => "Emergency",
        ("approval", "not requested") => "Not Yet Requested",
        ("approval", "requested") => "Requested",
        ("approval", "approved") => "Approved",
        ("approval", "rejected") => "Rejected",
        ("state", "requested") => "Requested",
        ("state", "approved") => "Approved",
        ("state", "rejected") => "Rejected",
        ("state", "cancelled") => "Cancelled",
        ("state", "not requested") => "Not Yet Requested",
        ("state", "not_required") => "No Longer Required",
        ("close_code", "successful") => "Successful",
        ("close_code", "successful_issues") => "Successful with issues",
        ("close_code", "unsuccessful") => "Unsuccessful",
        ("risk" | "impact" | "priority" | "urgency", "1") => "1 - High",
        ("risk" | "impact" | "priority" | "urgency", "2") => "2 - Medium",
        ("risk" | "impact" | "priority" | "urgency", "3") => "3 - Moderate",
        ("risk" | "impact" | "priority" | "urgency", "4") => "4 - Low",
        _ => "",
    };
    if !label.is_empty() {
        return label.to_string();
    }
    if field == "group"
        && let Some((name, _, _)) = crate::seed::APPROVAL_GROUPS
            .iter()
            .find(|(name, _, _)| sys_id_for(name) == value)
    {
        return name.to_string();
    }
    if REFERENCE_FIELDS
        .iter()
        .any(|(f, t)| *f == field && *t == "sys_user")
        && let Some(user) = users.get(value)
    {
        return user.get("name").to_string();
    }
    value.to_string()
}

fn base_url(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// Which tables exist, and whether they take writes.
fn check_table(table: &str, write: bool) -> Result<(), Response> {
    match (table, write) {
        ("change_request" | "sysapproval_approver", _)
        | ("sys_user" | "sys_journal_field", false) => Ok(()),
        ("sys_user" | "sys_journal_field", true) => Err(error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            Some("ACL Exception Insert Failed due to security constraints"),
        )),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid table",
            Some(&format!("Invalid table {table}")),
        )),
    }
}

/// `sys_journal_field`, read-only: one record per journal entry (work note or comment) of a
/// change request or an approval record, as ServiceNow keeps them: `element_id` (the record's
/// sys_id), `element` (the field), `name` (the table), `value`, `sys_created_on`,
/// `sys_created_by`.
fn journal_records(tables: &Tables) -> BTreeMap<String, Record> {
    let mut journal = BTreeMap::new();
    let sources = [
        ("change_request", &tables.change_request),
        ("sysapproval_approver", &tables.sysapproval_approver),
    ];
    for (table_name, records) in sources {
        for (sys_id, record) in records {
            for (index, entry) in record.journal.iter().enumerate() {
                let id = format!("{}{index:08x}", &sys_id[..sys_id.len().min(24)]);
                let fields = [
                    ("sys_id", id.as_str()),
                    ("element_id", sys_id.as_str()),
                    ("element", entry.field.as_str()),
                    ("name", table_name),
                    ("value", entry.value.as_str()),
                    ("sys_created_on", entry.created_on.as_str()),
                    ("sys_created_by", entry.author.as_str()),
                ];
                let fields = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                journal.insert(
                    id.clone(),
                    Record {
                        fields,
                        journal: Vec::new(),
                    },
                );
            }
        }
    }
    journal
}

fn table<'a>(tables: &'a mut Tables, name: &str) -> &'a mut BTreeMap<String, Record> {
    match name {
        "sys_user" => &mut tables.sys_user,
        "sysapproval_approver" => &mut tables.sysapproval_approver,
        _ => &mut tables.change_request,
    }
}

async fn list_records(State(sn): State<Arc<ServiceNow>>, read: TableRequest) -> Response {
    let TableRequest {
        table: table_name,
        params,
        base_url: base,
        ..
    } = read;
    let query = match EncodedQuery::parse(params.sysparm_query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(detail) => return error(StatusCode::BAD_REQUEST, "Invalid query", Some(&detail)),
    };
    let parse_number = |value: &Option<String>, default: usize| -> Result<usize, Response> {
        match value {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "Invalid parameter",
                    Some(&format!("not a number: {v}")),
                )
            }),
        }
    };
    let limit = match parse_number(&params.sysparm_limit, 10_000) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let offset = match parse_number(&params.sysparm_offset, 0) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut tables = sn.tables.lock().expect("tables");
    let users = tables.sys_user.clone();
    let journal;
    let records: &BTreeMap<String, Record> = if table_name == "sys_journal_field" {
        journal = journal_records(&tables);
        &journal
    } else {
        table(&mut tables, &table_name)
    };
    let mut matching: Vec<&Record> = records.values().filter(|r| query.matches(r)).collect();
    query.sort(&mut matching);
    let total = matching.len();
    let renderer = params.renderer(base.clone(), &users);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| renderer.render(r))
        .collect();
    let mut response = Json(json!({ "result": page })).into_response();
    let h = response.headers_mut();
    h.insert("X-Total-Count", HeaderValue::from(total));
    if let Ok(link) = HeaderValue::from_str(&pagination_links(
        &base,
        &table_name,
        &params,
        offset,
        limit,
        total,
    )) {
        h.insert(header::LINK, link);
    }
    response
}

fn pagination_links(
    base: &str,
    table: &str,
    params: &TableParams,
    offset: usize,
    limit: usize,
    total: usize,
) -> String {
    let limit = limit.max(1);
    let query = params.sysparm_query.as_deref().unwrap_or("");
    let link = |offset: usize, rel: &str| {
        format!(
            "<{base}/api/now/table/{table}?sysparm_query={query}&sysparm_limit={limit}&sysparm_offset={offset}>;rel=\"{rel}\""
        )
    };
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    let mut links = vec![link(0, "first")];
    if offset > 0 {
        links.push(link(offset.saturating_sub(limit), "prev"));
    }
    if offset + limit < total {
        links.push(link(offset + limit, "next"));
    }
    links.push(link(last, "last"));
    links.join(",")
}

async fn get_record(State(sn): State<Arc<ServiceNow>>, read: TableRequest) -> Response {
    let mut tables = sn.tables.lock().expect("tables");
    let users = tables.sys_user.clone();
    let journal;
    let records: &BTreeMap<String, Record> = if read.table == "sys_journal_field" {
        journal = journal_records(&tables);
        &journal
    } else {
        table(&mut tables, &read.table)
    };
    let Some(record) = records.get(&read.sys_id) else {
        return not_found();
    };
    let renderer = read.params.renderer(read.base_url, &users);
    Json(json!({ "result": renderer.render(record) })).into_response()
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "No Record found",
        Some("Record doesn't exist or ACL restricts the record retrieval"),
    )
}

/// Converts a JSON body into string field values, as ServiceNow coerces them.
fn body_fields(body: &Value) -> Result<BTreeMap<String, String>, Response> {
    let Some(object) = body.as_object() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Exception while reading request",
            Some("The payload is not valid JSON."),
        ));
    };
    let mut fields = BTreeMap::new();
    for (name, value) in object {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Object(o) => match o.get("value") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "Invalid field value",
                        Some(&format!("field {name}")),
                    ));
                }
            },
            Value::Array(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Invalid field value",
                    Some(&format!("field {name}")),
                ));
            }
        };
        fields.insert(name.clone(), text);
    }
    Ok(fields)
}

fn now_text() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::now_utc()
        .format(format)
        .expect("time format")
}

/// Resolves a reference written by user name to the user's sys_id, as ServiceNow resolves
/// display values on write.
fn resolve_reference(field: &str, value: String, users: &BTreeMap<String, Record>) -> String {
    if !REFERENCE_FIELDS
        .iter()
        .any(|(f, t)| *f == field && *t == "sys_user")
        || users.contains_key(&value)
    {
        return value;
    }
    users
        .values()
        .find(|u| u.get("user_name") == value || u.get("name") == value)
        .map(|u| u.get("sys_id").to_string())
        .unwrap_or(value)
}

/// Applies writable fields and journal entries to a record.
fn apply_fields(
    record: &mut Record,
    fields: BTreeMap<String, String>,
    author: &str,
    users: &BTreeMap<String, Record>,
) {
    for (name, value) in fields {
        if READ_ONLY_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if JOURNAL_FIELDS.contains(&name.as_str()) {
            if !value.is_empty() {
                record.journal.push(JournalEntry {
                    field: name,
                    author: author.to_string(),
                    value,
                    created_on: now_text(),
                });
            }
            continue;
        }
        let value = resolve_reference(&name, value, users);
        record.fields.insert(name, value);
    }
}

/// A request to a table: which table (and record), the answer's options, and the instance's
/// URL as the caller reached it (for links). The table must exist, and take writes when
/// `writable`.
struct TableRequest {
    table: String,
    sys_id: String,
    params: TableParams,
    base_url: String,
}

impl TableRequest {
    async fn from_parts(
        parts: &mut axum::http::request::Parts,
        writable: bool,
    ) -> Result<Self, Response> {
        let Path(mut path) = Path::<HashMap<String, String>>::from_request_parts(parts, &())
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(params) = Query::<TableParams>::from_request_parts(parts, &())
            .await
            .map_err(IntoResponse::into_response)?;
        let table = path.remove("table").unwrap_or_default();
        check_table(&table, writable)?;
        let tls = parts.extensions.get::<crate::Tls>().is_some_and(|t| t.0);
        Ok(TableRequest {
            table,
            sys_id: path.remove("sys_id").unwrap_or_default(),
            params,
            base_url: base_url(&parts.headers, tls),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TableRequest {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Response> {
        TableRequest::from_parts(parts, false).await
    }
}

/// A create or update of a table record: the record (for an update), the answer's options,
/// who writes, and the fields, checked (the table takes writes, the body is a JSON object).
struct TableWrite {
    target: TableRequest,
    caller: String,
    fields: BTreeMap<String, String>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for TableWrite {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        // The body is read before anything is refused: answering without reading it would
        // leave unread bytes on a kept-alive connection, and clients (pysnc) reusing it fail.
        let (mut parts, body) = request.into_parts();
        let body = axum::body::Bytes::from_request(axum::extract::Request::new(body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let target = TableRequest::from_parts(&mut parts, true).await?;
        let Some(Caller(caller)) = parts.extensions.get::<Caller>().cloned() else {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "User Not Authenticated",
                None,
            ));
        };
        let Ok(json) = serde_json::from_slice::<Value>(&body) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Exception while reading request",
                Some("The payload is not valid JSON."),
            ));
        };
        Ok(TableWrite {
            target,
            caller,
            fields: body_fields(&json)?,
        })
    }
}

async fn create_record(State(sn): State<Arc<ServiceNow>>, mut write: TableWrite) -> Response {
    if write.target.table != "change_request" {
        return acl_refusal("Insert");
    }
    if let Some(change_type) = write.fields.get("type")
        && !["normal", "standard", "emergency"].contains(&change_type.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid field value",
            Some(&format!("type: {change_type}")),
        );
    }
    let mut tables = sn.tables.lock().expect("tables");
    let users = tables.sys_user.clone();
    let sys_id = uuid::Uuid::new_v4().simple().to_string();
    let number = format!("CHG{:07}", tables.next_number);
    tables.next_number += 1;
    let now = now_text();
    let caller_id = resolve_reference("opened_by", write.caller.clone(), &users);
    let mut record = Record::default();
    for (k, v) in [
        ("sys_id", sys_id.as_str()),
        ("number", number.as_str()),
        ("state", "-5"),
        ("type", "normal"),
        ("approval", "not requested"),
        ("risk", "3"),
        ("impact", "3"),
        ("priority", "4"),
        ("short_description", ""),
        ("description", ""),
        ("close_code", ""),
        ("close_notes", ""),
        ("assignment_group", ""),
        ("assigned_to", ""),
        ("requested_by", caller_id.as_str()),
        ("opened_by", caller_id.as_str()),
        ("correlation_id", ""),
        ("start_date", ""),
        ("end_date", ""),
        ("sys_created_on", now.as_str()),
        ("sys_updated_on", now.as_str()),
        ("sys_created_by", write.caller.as_str()),
        ("sys_updated_by", write.caller.as_str()),
        ("sys_mod_count", "0"),
    ] {
        record.fields.insert(k.into(), v.into());
    }
    write.fields.remove("state"); // new changes always start in New
    write.fields.remove("approval"); // the rollup of its approvals, never written directly
    if write.fields.get("type").map(String::as_str) == Some("standard") {
        // Standard changes are pre-approved.
        record.fields.insert("approval".into(), "approved".into());
    }
    apply_fields(&mut record, write.fields, &write.caller, &users);
    sn.stats
        .change_requests_created
        .fetch_add(1, Ordering::Relaxed);
    let renderer = write
        .target
        .params
        .renderer(write.target.base_url.clone(), &users);
    let rendered = renderer.render(&record);
    tables.change_request.insert(sys_id.clone(), record);
    let mut response = (StatusCode::CREATED, Json(json!({ "result": rendered }))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "{}/api/now/table/change_request/{sys_id}",
        write.target.base_url.clone()
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The normal-change state model: which states may follow which.
fn transition_allowed(change_type: &str, from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    if to == "4" {
        return from != "3" && from != "4";
    }
    let order: &[&str] = match change_type {
        "standard" => &["-5", "-2", "-1", "0", "3"],
        "emergency" => &["-5", "-3", "-2", "-1", "0", "3"],
        _ => &["-5", "-4", "-3", "-2", "-1", "0", "3"],
    };
    let position = |s: &str| order.iter().position(|o| *o == s);
    matches!((position(from), position(to)), (Some(f), Some(t)) if t == f + 1)
}

fn state_label(state: &str) -> String {
    display_value("state", state, &BTreeMap::new())
}

async fn update_record(State(sn): State<Arc<ServiceNow>>, mut write: TableWrite) -> Response {
    if write.target.table == "sysapproval_approver" {
        return decide_approval(&sn, write);
    }
    let sys_id = write.target.sys_id.clone();
    let mut tables = sn.tables.lock().expect("tables");
    let users = tables.sys_user.clone();
    let Some(record) = tables.change_request.get(&sys_id) else {
        return not_found();
    };
    write.fields.remove("approval"); // the rollup of its approvals, never written directly
    let mut entering_authorize = false;
    if let Some(new_state) = write.fields.get("state") {
        let current = record.get("state").to_string();
        if current == "-3" && new_state == "-2" && record.get("approval") != "approved" {
            return error(
                StatusCode::FORBIDDEN,
                "Operation Failed",
                Some(&format!(
                    "Change cannot move to Scheduled: approval is {}",
                    display_value("approval", record.get("approval"), &users)
                )),
            );
        }
        entering_authorize = new_state == "-3" && current != "-3";
        if !transition_allowed(record.get("type"), &current, new_state) {
            let detail = format!(
                "Invalid state transition from {} to {}",
                state_label(&current),
                if state_label(new_state) == *new_state {
                    format!("'{new_state}'")
                } else {
                    state_label(new_state)
                }
            );
            return error(StatusCode::FORBIDDEN, "Operation Failed", Some(&detail));
        }
        if new_state == "3"
            && record.get("close_code").is_empty()
            && write.fields.get("close_code").is_none_or(|c| c.is_empty())
        {
            return error(
                StatusCode::FORBIDDEN,
                "Operation Failed",
                Some("Data Policy Exception: Close code is mandatory when closing a change"),
            );
        }
    }
    if let Some(code) = write.fields.get("close_code")
        && !code.is_empty()
        && !["successful", "successful_issues", "unsuccessful"].contains(&code.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid field value",
            Some(&format!("close_code: {code}")),
        );
    }
    if entering_authorize {
        request_approvals(&mut tables, &sys_id, &write.caller);
    }
    let Some(record) = tables.change_request.get_mut(&sys_id) else {
        return not_found();
    };
    apply_fields(record, write.fields, &write.caller, &users);
    touch(record, &write.caller);
    let renderer = write
        .target
        .params
        .renderer(write.target.base_url.clone(), &users);
    Json(json!({ "result": renderer.render(record) })).into_response()
}

/// Counts a write on a record: modification count, time and author.
fn touch(record: &mut Record, caller: &str) {
    let count: u64 = record.get("sys_mod_count").parse().unwrap_or(0) + 1;
    record
        .fields
        .insert("sys_mod_count".into(), count.to_string());
    record.fields.insert("sys_updated_on".into(), now_text());
    record
        .fields
        .insert("sys_updated_by".into(), caller.to_string());
}

fn acl_refusal(operation: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        "Operation Failed",
        Some(&format!(
            "ACL Exception {operation} Failed due to security constraints"
        )),
    )
}

/// Entering Authorize: one `requested` approval record per member of the change type's
/// approval group, never for the change's requester; the change's `approval` becomes
/// `requested`. Records left by an earlier pass through Authorize are cancelled first.
fn request_approvals(tables: &mut Tables, change_id: &str, caller: &str) {
    let Some(change) = tables.change_request.get(change_id) else {
        return;
    };
    let change_type = change.get("type").to_string();
    let requester = change.get("requested_by").to_string();
    for approval in tables.sysapproval_approver.values_mut() {
        if approval.get("sysapproval") == change_id && approval.get("state") == "requested" {
            approval.fields.insert("state".into(), "cancelled".into());
            touch(approval, caller);
        }
    }
    let now = now_text();
    for (group, group_type, members) in crate::seed::APPROVAL_GROUPS {
        if *group_type != change_type {
            continue;
        }
        for member in *members {
            let approver = sys_id_for(member);
            if approver == requester || !tables.sys_user.contains_key(&approver) {
                continue;
            }
            let sys_id = uuid::Uuid::new_v4().simple().to_string();
            let mut record = Record::default();
            for (k, v) in [
                ("sys_id", sys_id.as_str()),
                ("sysapproval", change_id),
                ("document_id", change_id),
                ("source_table", "change_request"),
                ("approver", approver.as_str()),
                ("group", sys_id_for(group).as_str()),
                ("state", "requested"),
                ("sys_created_on", now.as_str()),
                ("sys_updated_on", now.as_str()),
                ("sys_created_by", caller),
                ("sys_updated_by", caller),
                ("sys_mod_count", "0"),
            ] {
                record.fields.insert(k.into(), v.into());
            }
            tables.sysapproval_approver.insert(sys_id, record);
        }
    }
    if let Some(change) = tables.change_request.get_mut(change_id) {
        change.fields.insert("approval".into(), "requested".into());
    }
}

/// An approver's decision (`PATCH sysapproval_approver/{sys_id}`): by the approver themself or
/// by the integration acting for them; never on a record whose approver requested the change.
/// Updates the change's `approval` rollup.
fn decide_approval(sn: &ServiceNow, write: TableWrite) -> Response {
    let mut tables = sn.tables.lock().expect("tables");
    let users = tables.sys_user.clone();
    let Some(approval) = tables.sysapproval_approver.get(&write.target.sys_id) else {
        return not_found();
    };
    let change_id = approval.get("sysapproval").to_string();
    let approver = approval.get("approver").to_string();
    let requester = tables
        .change_request
        .get(&change_id)
        .map(|c| c.get("requested_by").to_string())
        .unwrap_or_default();
    let caller_id = resolve_reference("approver", write.caller.clone(), &users);
    let acting_for_others =
        write.caller == sn.credentials.servicenow_username || write.caller == "admin";
    if caller_id != approver && !acting_for_others {
        return acl_refusal("Update");
    }
    if approver == requester {
        return error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            Some("The requester of a change cannot approve it"),
        );
    }
    if let Some(state) = write.fields.get("state")
        && !APPROVAL_STATES.contains(&state.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid field value",
            Some(&format!("state: {state}")),
        );
    }
    let mut fields = write.fields;
    for fixed in [
        "sysapproval",
        "document_id",
        "approver",
        "group",
        "source_table",
    ] {
        fields.remove(fixed);
    }
    let Some(approval) = tables.sysapproval_approver.get_mut(&write.target.sys_id) else {
        return not_found();
    };
    apply_fields(approval, fields, &write.caller, &users);
    touch(approval, &write.caller);
    let rendered = write
        .target
        .params
        .renderer(write.target.base_url.clone(), &users)
        .render(approval);
    roll_up(&mut tables, &change_id);
    Json(json!({ "result": rendered })).into_response()
}

/// The change's `approval` from its approval records: any rejected → rejected; emergency
/// changes need one approval, normal changes all of them.
fn roll_up(tables: &mut Tables, change_id: &str) {
    let states: Vec<String> = tables
        .sysapproval_approver
        .values()
        .filter(|a| a.get("sysapproval") == change_id)
        .map(|a| a.get("state").to_string())
        .filter(|s| s != "cancelled" && s != "not_required")
        .collect();
    let Some(change) = tables.change_request.get_mut(change_id) else {
        return;
    };
    let one_suffices = change.get("type") == "emergency";
    let rollup = if states.iter().any(|s| s == "rejected") {
        "rejected"
    } else if !states.is_empty()
        && (states.iter().all(|s| s == "approved")
            || (one_suffices && states.iter().any(|s| s == "approved")))
    {
        "approved"
    } else if states.is_empty() {
        return;
    } else {
        "requested"
    };
    change.fields.insert("approval".into(), rollup.into());
}

async fn delete_record(
    State(sn): State<Arc<ServiceNow>>,
    Path((table_name, sys_id)): Path<(String, String)>,
) -> Response {
    if let Err(response) = check_table(&table_name, true) {
        return response;
    }
    if table_name != "change_request" {
        return acl_refusal("Delete");
    }
    match sn
        .tables
        .lock()
        .expect("tables")
        .change_request
        .remove(&sys_id)
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}

/// Deterministic sys_id for seeded users, so links stay stable across runs.
fn sys_id_for(user_name: &str) -> String {
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, user_name.as_bytes());
    uuid.simple().to_string()
}

/// A parsed `sysparm_query`: AND of OR-groups of conditions, then ordering.
#[derive(Debug, Default)]
struct EncodedQuery {
    groups: Vec<Vec<Condition>>,
    order: Vec<(String, bool)>,
}

#[derive(Debug)]
struct Condition {
    field: String,
    op: Op,
    value: String,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Like,
    StartsWith,
    In,
    IsEmpty,
    IsNotEmpty,
}

impl EncodedQuery {
    fn parse(text: &str) -> Result<Self, String> {
        let mut query = EncodedQuery::default();
        for term in text.split('^').filter(|t| !t.is_empty()) {
            if let Some(field) = term.strip_prefix("ORDERBYDESC") {
                query.order.push((field.to_string(), true));
            } else if let Some(field) = term.strip_prefix("ORDERBY") {
                query.order.push((field.to_string(), false));
            } else if let Some(condition) = term.strip_prefix("OR") {
                let condition = Condition::parse(condition)?;
                match query.groups.last_mut() {
                    Some(group) => group.push(condition),
                    None => query.groups.push(vec![condition]),
                }
            } else {
                query.groups.push(vec![Condition::parse(term)?]);
            }
        }
        Ok(query)
    }

    fn matches(&self, record: &Record) -> bool {
        self.groups
            .iter()
            .all(|group| group.iter().any(|c| c.matches(record)))
    }

    fn sort(&self, records: &mut [&Record]) {
        for (field, descending) in self.order.iter().rev() {
            records.sort_by(|a, b| {
                let ordering = a.get(field).cmp(b.get(field));
                if *descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
    }
}

impl Condition {
    /// Field names are lower case and operators upper case or symbols, so the first of those
    /// starts the operator.
    fn parse(term: &str) -> Result<Self, String> {
        let split = term
            .find(|c: char| c.is_ascii_uppercase() || c == '=' || c == '!')
            .ok_or_else(|| format!("no operator in condition '{term}'"))?;
        let (field, rest) = term.split_at(split);
        if field.is_empty() {
            return Err(format!("no field in condition '{term}'"));
        }
        const OPERATORS: &[(&str, Op)] = &[
            ("ISNOTEMPTY", Op::IsNotEmpty),
            ("ISEMPTY", Op::IsEmpty),
            ("!=", Op::Ne),
            ("=", Op::Eq),
            ("LIKE", Op::Like),
            ("STARTSWITH", Op::StartsWith),
            ("IN", Op::In),
        ];
        OPERATORS
            .iter()
            .find_map(|(token, op)| {
                rest.strip_prefix(token).map(|value| Condition {
                    field: field.to_string(),
                    op: *op,
                    value: value.to_string(),
                })
            })
            .ok_or_else(|| format!("unsupported operator in condition '{term}'"))
    }

    fn matches(&self, record: &Record) -> bool {
        let actual = record.get(&self.field);
        match self.op {
            Op::Eq => actual == self.value,
            Op::Ne => actual != self.value,
            Op::Like => actual.to_lowercase().contains(&self.value.to_lowercase()),
            Op::StartsWith => actual.starts_with(&self.value),
            Op::In => self.value.split(',').any(|v| v == actual),
            Op::IsEmpty => actual.is_empty(),
            Op::IsNotEmpty => !actual.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, &str)]) -> Record {
        Record {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            journal: vec![],
        }
    }

    fn check(query: &str, fields: &[(&str, &str)], expected: bool) {
        let parsed = EncodedQuery::parse(query).unwrap();
        assert_eq!(
            parsed.matches(&record(fields)),
            expected,
            "{query} on {fields:?}"
        );
    }

    #[test]
    fn encoded_queries_match_like_servicenow() {
        check("number=CHG0030001", &[("number", "CHG0030001")], true);
        check("number=CHG0030001", &[("number", "CHG0030002")], false);
        check("state=-5^ORstate=-1", &[("state", "-1")], true);
        check(
            "state=-5^type=normal",
            &[("state", "-5"), ("type", "standard")],
            false,
        );
        check("state!=3", &[("state", "3")], false);
        check(
            "short_descriptionLIKEdeploy",
            &[("short_description", "Deploy NTP")],
            true,
        );
        check("numberSTARTSWITHCHG003", &[("number", "CHG0030001")], true);
        check("stateIN-5,-4", &[("state", "-4")], true);
        check("close_codeISEMPTY", &[("close_code", "")], true);
        check("close_codeISNOTEMPTY", &[("close_code", "")], false);
        check("", &[("state", "3")], true);
        assert!(EncodedQuery::parse("=x").is_err());
        assert!(EncodedQuery::parse("stateBETWEEN1@2").is_err());
    }

    #[test]
    fn ordering_follows_orderby_terms() {
        let q = EncodedQuery::parse("ORDERBYDESCnumber").unwrap();
        let a = record(&[("number", "CHG1")]);
        let b = record(&[("number", "CHG2")]);
        let mut records = vec![&a, &b];
        q.sort(&mut records);
        assert_eq!(records[0].get("number"), "CHG2");
    }

    #[test]
    fn normal_changes_follow_the_state_model() {
        assert!(transition_allowed("normal", "-5", "-4"));
        assert!(
            !transition_allowed("normal", "-5", "-1"),
            "New cannot jump to Implement"
        );
        assert!(
            transition_allowed("normal", "-1", "4"),
            "anything open may be canceled"
        );
        assert!(
            !transition_allowed("normal", "3", "4"),
            "closed changes stay closed"
        );
        assert!(transition_allowed("standard", "-5", "-2"));
    }
}
