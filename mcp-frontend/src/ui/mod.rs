//! The NOC web view under `/ui/`: changes live, a change's timeline, approvals, cancel and
//! evidence, for people signed in with OpenID Connect. Every page and action is a tool call
//! through `FrontDoor::invoke` (the same identity, policy and audit as MCP and REST); the live
//! updates are server-sent events whose stream is authorized and audited once when it opens,
//! checks the session's token and the policy again before each look, and ends with the
//! session. Pages are rendered on the server (minijinja, templates compiled
//! into the binary); the one script, served from here, applies the streamed fragments. Nothing
//! is loaded from anywhere else, and the Content-Security-Policy says so.

mod session;

use crate::front_door::FrontDoor;
use crate::outcome::{AuditUnavailable, Outcome, Wait};
use crate::results::ChangeHistory;
use crate::tools;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_engine::login::OidcLogin;
use serde::Deserialize;
use serde_json::{Value, json};
use session::{LOGIN_COOKIE, SESSION_COOKIE, Sessions, cookie, same_secret, set_cookie};
use std::sync::Arc;
use std::time::Duration;

/// How often an open stream looks for changes (server side; the page never polls).
const STREAM_EVERY: Duration = Duration::from_secs(1);

/// Where the web view links to besides itself.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Temporal's Web UI (e.g. `http://127.0.0.1:8233`), for a change's run.
    pub temporal_ui: Option<String>,
    pub temporal_namespace: String,
    /// ServiceNow's base URL, for a change's ticket.
    pub servicenow: Option<String>,
}

/// The web view: its sign-in client, sessions, templates and links.
pub struct WebView {
    login: OidcLogin,
    sessions: Sessions,
    templates: minijinja::Environment<'static>,
    links: Links,
    /// Cookies marked Secure (the front door is served over HTTPS).
    secure: bool,
}

impl WebView {
    pub fn new(login: OidcLogin, links: Links, secure: bool) -> Self {
        let mut templates = minijinja::Environment::new();
        for (name, text) in TEMPLATES {
            templates
                .add_template(name, text)
                .expect("the web view's templates compile");
        }
        Self {
            login,
            sessions: Sessions::default(),
            templates,
            links,
            secure,
        }
    }

    fn render(&self, name: &str, context: Value) -> Result<String, UiError> {
        self.templates
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| UiError::Unavailable(format!("rendering {name}: {e}")))
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("changes.html", include_str!("templates/changes.html")),
    ("rows.html", include_str!("templates/rows.html")),
    ("change.html", include_str!("templates/change.html")),
    ("live.html", include_str!("templates/live.html")),
    ("actions.html", include_str!("templates/actions.html")),
    ("approvals.html", include_str!("templates/approvals.html")),
    ("message.html", include_str!("templates/message.html")),
];

#[derive(Clone)]
struct Ui {
    front: Arc<FrontDoor>,
    web: Arc<WebView>,
}

/// The web view's routes, with its security headers. Not behind bearer authentication: its
/// own session extractor redirects to sign-in instead.
pub fn router(front: Arc<FrontDoor>, web: Arc<WebView>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(changes_page))
        .route("/ui/events", get(changes_events))
        .route("/ui/approvals", get(approvals_page))
        .route("/ui/changes/{id}", get(change_page))
        .route("/ui/changes/{id}/events", get(change_events))
        .route("/ui/changes/{id}/cancel", post(cancel))
        .route("/ui/changes/{id}/{decision}", post(decide))
        .route("/ui/changes/{id}/evidence", get(evidence))
        .route("/ui/login", get(login))
        .route("/ui/callback", get(callback))
        .route("/ui/logout", post(logout))
        .route("/ui/signed-out", get(signed_out))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/assets/app.css", get(style))
        .with_state(Ui { front, web })
        .layer(axum::middleware::from_fn(security_headers))
}

/// No resource from elsewhere, no inline script or style, no framing, no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// What a page cannot show, as the person sees it.
#[derive(Debug)]
enum UiError {
    SignIn(String),
    Denied(String),
    NotFound(String),
    Invalid(String),
    Conflict(String),
    Unavailable(String),
}

impl UiError {
    fn from_outcome(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Denied { reason, .. } => {
                UiError::Denied(format!("Permission denied: {reason}"))
            }
            Outcome::NotFound(m) => UiError::NotFound(m),
            Outcome::Invalid(m) => UiError::Invalid(m),
            Outcome::Conflict(m) => UiError::Conflict(m),
            Outcome::Overloaded { retry_after_secs } => {
                UiError::Unavailable(crate::outcome::overloaded_message(retry_after_secs))
            }
            Outcome::Failed(m) | Outcome::ProtocolError(m) => UiError::Unavailable(m),
            other => UiError::Unavailable(format!("unexpected answer: {}", other.word())),
        }
    }
}

impl From<AuditUnavailable> for UiError {
    fn from(e: AuditUnavailable) -> Self {
        UiError::Unavailable(format!("{e}; retrying is safe"))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            UiError::SignIn(next) => {
                let target = format!("/ui/login?next={}", url_escape(&next));
                return Redirect::to(&target).into_response();
            }
            UiError::Denied(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            UiError::Invalid(m) => (StatusCode::BAD_REQUEST, "Invalid request", m),
            UiError::Conflict(m) => (StatusCode::CONFLICT, "Refused", m),
            UiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m),
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · changeflow</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head><body><main><h1>{title}</h1><p role=\"alert\" class=\"error\">{}</p><p><a href=\"/ui/\">Changes</a></p></main></body></html>",
            html_escape(&message)
        );
        (status, Html(body)).into_response()
    }
}

fn html_escape(text: &str) -> String {
    minijinja::HtmlEscape(text).to_string()
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A signed-in person: their verified identity and session.
struct Viewer {
    identity: VerifiedIdentity,
    session_id: String,
    csrf: String,
}

impl FromRequestParts<Ui> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, UiError> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ui/".into());
        let sign_in = || UiError::SignIn(next.clone());
        let session_id = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(sign_in)?;
        let (session, identity) = ui.signed_in(&session_id).await.ok_or_else(sign_in)?;
        Ok(Viewer {
            identity,
            session_id,
            csrf: session.csrf,
        })
    }
}

impl Ui {
    /// The token verifier sessions are checked with (the web view is served only with OpenID
    /// Connect).
    fn verifier(&self) -> Result<&changeflow_engine::identity::TokenVerifier, UiError> {
        match &self.front.authentication {
            crate::front_door::Authentication::Bearer(verifier) => Ok(verifier),
            _ => Err(UiError::Unavailable(
                "the web view needs OpenID Connect".into(),
            )),
        }
    }

    /// A live session and who it is, its access token verified again (expiry included); a
    /// session whose token no longer verifies is ended.
    async fn signed_in(&self, session_id: &str) -> Option<(session::Session, VerifiedIdentity)> {
        let session = self.web.sessions.get(session_id)?;
        match self.verifier().ok()?.verify(&session.access_token).await {
            Ok(identity) => Some((session, identity)),
            Err(e) => {
                tracing::info!(error = %e, "web session's token no longer valid; signing in again");
                self.web.sessions.end(session_id);
                None
            }
        }
    }
}

impl Viewer {
    fn context(&self) -> Value {
        json!({
            "subject": self.identity.subject,
            "name": self.identity.name.as_deref().unwrap_or(&self.identity.subject),
            "groups": self.identity.groups,
            "csrf": self.csrf,
        })
    }

    /// A state-changing form must carry this session's CSRF token.
    fn check_csrf(&self, presented: Option<&str>) -> Result<(), UiError> {
        match presented {
            Some(token) if same_secret(token, &self.csrf) => Ok(()),
            _ => Err(UiError::Denied(
                "the form's CSRF token is missing or wrong; reload the page and try again".into(),
            )),
        }
    }
}

/// One tool call as the viewer; its `Done` value, or the outcome as an error.
async fn call(ui: &Ui, viewer: &Viewer, tool: &str, arguments: Value) -> Result<Value, UiError> {
    let spec =
        tools::find(None, tool).ok_or_else(|| UiError::Unavailable(format!("no tool {tool}")))?;
    match ui
        .front
        .invoke(
            &viewer.identity,
            spec,
            arguments,
            Wait::ForResult,
            |_, _| {},
        )
        .await?
    {
        Outcome::Done(value) | Outcome::ChangeFailed(value) => Ok(value),
        other => Err(UiError::from_outcome(other)),
    }
}

// ---------------------------------------------------------------- the list of changes

/// The list's filters, as the page's form sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize, Clone)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    requested_by: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    ticket_number: String,
    /// What the page already shows (see `seen`).
    #[serde(default)]
    seen: String,
}

/// The statuses the filter offers, each a `list_changes` status: running changes, and the
/// steps a person watches for (names from their one definition, `ChangeStep::as_str`).
fn statuses() -> Vec<&'static str> {
    use changeflow_workflows::ChangeStep::*;
    let steps = [
        AwaitingApproval,
        Scheduled,
        WaitingForDevice,
        Deploying,
        Verifying,
        BackingOut,
        Completed,
        Failed,
        Rejected,
        Canceled,
        BackoutFailed,
    ];
    std::iter::once("running")
        .chain(steps.iter().map(|s| s.as_str()))
        .collect()
}

impl ListQuery {
    /// The filters given, trimmed.
    fn filters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("status", &self.status),
            ("requested_by", &self.requested_by),
            ("device", &self.device),
            ("ticket_number", &self.ticket_number),
        ]
        .into_iter()
        .map(|(field, value)| (field, value.trim()))
        .filter(|(_, value)| !value.is_empty())
    }

    fn arguments(&self) -> Value {
        let mut arguments: serde_json::Map<String, Value> = self
            .filters()
            .map(|(field, value)| (field.to_string(), json!(value)))
            .collect();
        arguments.insert("limit".into(), json!(100));
        Value::Object(arguments)
    }

    fn query_string(&self) -> String {
        self.filters()
            .map(|(field, value)| format!("{field}={}", url_escape(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

async fn changes_page(
    State(ui): State<Ui>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, UiError> {
    let listed = call(&ui, &viewer, "list_changes", query.arguments()).await?;
    let rows = ui
        .web
        .render("rows.html", json!({"changes": listed["changes"]}))?;
    let page = ui.web.render(
        "changes.html",
        json!({
            "viewer": viewer.context(),
            "rows": rows,
            "filter": {"status": query.status, "requested_by": query.requested_by, "device": query.device, "ticket_number": query.ticket_number},
            "statuses": statuses(),
            "stream": format!("/ui/events?{}&seen={}", query.query_string(), seen(&[("rows", &rows)])),
        }),
    )?;
    Ok(Html(page))
}

/// `GET /ui/events`: the table's rows whenever the list changes.
async fn changes_events(
    State(ui): State<Ui>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    // Authorized and audited once, as the list it streams.
    call(&ui, &viewer, "list_changes", query.arguments()).await?;
    let filter: crate::changes::ChangeFilter =
        serde_json::from_value(query.arguments()).map_err(|e| UiError::Invalid(e.to_string()))?;
    let render = move |ui: Ui| {
        let filter = filter.clone();
        async move {
            let changes = ui
                .front
                .temporal
                .list(&filter)
                .await
                .map_err(|e| e.to_string())?;
            let html = ui
                .web
                .render("rows.html", json!({"changes": changes}))
                .map_err(|e| format!("{e:?}"))?;
            Ok(Regions {
                regions: vec![("rows", html)],
                ended: false,
            })
        }
    };
    let permission = ("list_changes", query.arguments());
    Ok(stream(
        ui,
        viewer.session_id,
        permission,
        &query.seen,
        render,
    ))
}

async fn approvals_page(State(ui): State<Ui>, viewer: Viewer) -> Result<Html<String>, UiError> {
    let pending = call(&ui, &viewer, "list_pending_approvals", json!({})).await?;
    let page = ui.web.render(
        "approvals.html",
        json!({"viewer": viewer.context(), "changes": pending["changes"]}),
    )?;
    Ok(Html(page))
}

// ---------------------------------------------------------------- one change

/// A change's page context and its live regions (`live`, `actions`), from its workflow's
/// state and step timeline (`history`) and what else the page shows.
async fn change_regions(
    ui: &Ui,
    viewer: &Viewer,
    history: ChangeHistory,
) -> Result<(Value, Regions), UiError> {
    let ChangeHistory {
        change_id,
        status,
        timeline,
    } = history;
    let id = change_id.as_str();
    let temporal = &ui.front.temporal;
    let progress = temporal.progress(id).await;
    let requester = temporal.requester(id).await;
    let running = status == crate::results::ExecutionState::Running;
    let step = progress.as_ref().map(|p| p.step.as_str());
    let is_requester = requester.as_deref() == Some(viewer.identity.subject.as_str());
    let may_decide = running
        && step == Some("awaiting_approval")
        && !is_requester
        && progress
            .as_ref()
            .is_some_and(|p| p.approvers.contains(&viewer.identity.subject))
        && ui
            .front
            .permits(&viewer.identity, "approve_change", json!({"change_id": id}))
            .await;
    let may_cancel = running
        && ui
            .front
            .permits(&viewer.identity, "cancel_change", json!({"change_id": id}))
            .await;
    let may_export = ui
        .front
        .permits(
            &viewer.identity,
            "get_change_evidence",
            json!({"change_id": id}),
        )
        .await;
    let links = &ui.web.links;
    let ticket = progress.as_ref().and_then(|p| p.ticket_number.clone());
    let view = json!({
            "change_id": id,
            "status": status,
            "running": running,
            "step": step.unwrap_or(if running { "starting" } else { "ended" }),
            "progress": progress,
            "requester": requester,
            "timeline": timeline,
            "ticket": ticket,
            "ticket_url": links.servicenow.as_ref().zip(ticket.as_ref()).map(|(base, number)| {
                format!("{}/nav_to.do?uri=change_request.do?sysparm_query=number={number}", base.trim_end_matches('/'))
            }),
            "temporal_url": links.temporal_ui.as_ref().map(|base| {
                format!("{}/namespaces/{}/workflows/{}", base.trim_end_matches('/'), links.temporal_namespace, url_escape(id))
            }),
            "may_decide": may_decide,
            "may_cancel": may_cancel,
            "may_export": may_export,
            "viewer": viewer.context(),
    });
    let regions = Regions {
        regions: vec![
            ("live", ui.web.render("live.html", view.clone())?),
            ("actions", ui.web.render("actions.html", view.clone())?),
        ],
        ended: !running,
    };
    Ok((view, regions))
}

async fn change_page(
    State(ui): State<Ui>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    // Authorized and audited as reading the change's history, which the page then shows.
    let history = call(&ui, &viewer, "get_change_history", json!({"change_id": id})).await?;
    let history: ChangeHistory = serde_json::from_value(history)
        .map_err(|e| UiError::Unavailable(format!("a change's history: {e}")))?;
    let (mut context, regions) = change_regions(&ui, &viewer, history).await?;
    let shown: Vec<(&str, &str)> = regions
        .regions
        .iter()
        .map(|(region, html)| (*region, html.as_str()))
        .collect();
    context["stream"] = json!(format!(
        "/ui/changes/{}/events?seen={}",
        url_escape(&id),
        seen(&shown)
    ));
    for (region, html) in &regions.regions {
        context[*region] = json!(html);
    }
    Ok(Html(ui.web.render("change.html", context)?))
}

/// `GET /ui/changes/{id}/events`: the change's live regions whenever they change, and `end`
/// once it has ended and the last state was sent.
#[derive(Deserialize)]
struct SeenQuery {
    #[serde(default)]
    seen: String,
}

async fn change_events(
    State(ui): State<Ui>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<SeenQuery>,
) -> Result<Response, UiError> {
    call(&ui, &viewer, "get_change_history", json!({"change_id": id})).await?;
    let id_for_policy = id.clone();
    let viewer = Arc::new(viewer);
    let session_id = viewer.session_id.clone();
    let render = move |ui: Ui| {
        let viewer = viewer.clone();
        let id = id.clone();
        async move {
            let temporal = &ui.front.temporal;
            let history = ChangeHistory {
                status: temporal.status(&id).await.map_err(|e| e.to_string())?,
                timeline: temporal.history(&id).await.map_err(|e| e.to_string())?,
                change_id: id,
            };
            let (_, regions) = change_regions(&ui, &viewer, history)
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok(regions)
        }
    };
    let permission = ("get_change_history", json!({"change_id": id_for_policy}));
    Ok(stream(ui, session_id, permission, &query.seen, render))
}

/// Fragments of a page by element id, and whether nothing more will change.
struct Regions {
    regions: Vec<(&'static str, String)>,
    ended: bool,
}

/// A short digest of a region's HTML.
fn digest(html: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(html.as_bytes())[..12])
}

/// What a page shows, for its stream's URL: `region:digest,...`. The stream sends a region
/// only once it differs, so nothing the person is typing into is replaced by the same HTML.
fn seen(regions: &[(&str, &str)]) -> String {
    regions
        .iter()
        .map(|(id, html)| format!("{id}:{}", digest(html)))
        .collect::<Vec<_>>()
        .join(",")
}

/// An SSE stream sending each region whose HTML changed since the last event, or since what
/// the page showed (`seen`), as `regions`: `[{id, html}]`; `end` once `render` says nothing
/// more will change. Before each look the session's token is verified again and policy asked
/// again (`permission`: the tool and arguments the stream was opened as); the stream stops
/// when the session ended, its token expired or policy no longer allows it. A failed render
/// is retried at the next tick.
fn stream<F, Fut>(
    ui: Ui,
    session_id: String,
    permission: (&'static str, Value),
    seen: &str,
    render: F,
) -> Response
where
    F: Fn(Ui) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Regions, String>> + Send,
{
    struct State<F> {
        ui: Ui,
        session_id: String,
        permission: (&'static str, Value),
        render: F,
        sent: std::collections::HashMap<String, String>,
        first: bool,
        done: bool,
    }
    let state = State {
        ui,
        session_id,
        permission,
        render,
        sent: seen
            .split(',')
            .filter_map(|pair| pair.split_once(':'))
            .map(|(id, digest)| (id.to_string(), digest.to_string()))
            .collect(),
        first: true,
        done: false,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            if !s.first {
                tokio::time::sleep(STREAM_EVERY).await;
            }
            s.first = false;
            // A session that ended (signed out, token expired) ends its streams, and so does
            // a policy that no longer allows what the stream shows.
            let (_, identity) = s.ui.signed_in(&s.session_id).await?;
            let (tool, arguments) = &s.permission;
            if !s.ui.front.permits(&identity, tool, arguments.clone()).await {
                return None;
            }
            let regions = match (s.render)(s.ui.clone()).await {
                Ok(regions) => regions,
                Err(e) => {
                    tracing::debug!(error = %e, "web view stream: render failed; retrying");
                    continue;
                }
            };
            let mut changed = Vec::new();
            for (id, html) in regions.regions {
                let hash = digest(&html);
                if s.sent.get(id) != Some(&hash) {
                    changed.push(json!({"id": id, "html": html}));
                    s.sent.insert(id.to_string(), hash);
                }
            }
            if regions.ended {
                s.done = true;
                let mut event = Event::default().event("end").data("{}");
                if !changed.is_empty() {
                    event = Event::default()
                        .event("regions")
                        .data(json!({"regions": changed, "end": true}).to_string());
                }
                return Some((Ok::<_, std::convert::Infallible>(event), s));
            }
            if !changed.is_empty() {
                let event = Event::default()
                    .event("regions")
                    .data(json!({"regions": changed}).to_string());
                return Some((Ok(event), s));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------- actions

#[derive(Deserialize)]
struct DecisionForm {
    csrf: Option<String>,
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: Option<String>,
    confirm: Option<String>,
}

fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/ui/changes/{}", url_escape(id))).into_response()
}

/// `POST /ui/changes/{id}/approve` or `/reject`: `approve_change` or `reject_change` (whose
/// own check refuses a rejection without a comment).
async fn decide(
    State(ui): State<Ui>,
    viewer: Viewer,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(form.csrf.as_deref())?;
    let tool = match decision.as_str() {
        "approve" => "approve_change",
        "reject" => "reject_change",
        other => return Err(UiError::NotFound(format!("no decision '{other}'"))),
    };
    let mut arguments = json!({"change_id": id});
    let comment = form.comment.trim();
    if !comment.is_empty() || tool == "reject_change" {
        arguments["comment"] = json!(comment);
    }
    call(&ui, &viewer, tool, arguments).await?;
    Ok(back_to(&id))
}

async fn cancel(
    State(ui): State<Ui>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(form.csrf.as_deref())?;
    if form.confirm.as_deref() != Some("yes") {
        return Err(UiError::Invalid(
            "confirm the cancellation (tick the box) to cancel the change".into(),
        ));
    }
    call(&ui, &viewer, "cancel_change", json!({"change_id": id})).await?;
    Ok(back_to(&id))
}

/// The change's evidence bundle as a tar.gz download (`get_change_evidence`).
async fn evidence(
    State(ui): State<Ui>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let spec = tools::find(None, "get_change_evidence")
        .ok_or_else(|| UiError::Unavailable("no evidence tool".into()))?;
    let outcome = ui
        .front
        .invoke(
            &viewer.identity,
            spec,
            json!({"change_id": id}),
            Wait::ForResult,
            |_, _| {},
        )
        .await?;
    match outcome {
        Outcome::Evidence(bundle) => {
            crate::rest::bundle_download(&bundle).map_err(UiError::Unavailable)
        }
        other => Err(UiError::from_outcome(other)),
    }
}

// ---------------------------------------------------------------- signing in and out

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Only a path of this view is a place to return to after signing in.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".into(),
    }
}

async fn login(State(ui): State<Ui>, Query(query): Query<LoginQuery>) -> Result<Response, UiError> {
    let (url, state, pending) = ui
        .web
        .login
        .begin()
        .await
        .map_err(|e| UiError::Unavailable(e.to_string()))?;
    let browser = ui
        .web
        .sessions
        .begin(state, pending, local_next(query.next.as_deref()));
    let mut response = Redirect::to(&url).into_response();
    // Lax: it must come back with the provider's top-level redirect to the callback.
    set_cookie(
        &mut response,
        (LOGIN_COOKIE, &browser),
        "Lax",
        ui.web.secure,
        Some(600),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(ui): State<Ui>,
    headers: axum::http::HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, UiError> {
    if let Some(error) = query.error {
        return Err(UiError::Denied(format!(
            "the identity provider refused the sign-in: {error} {}",
            query.error_description.unwrap_or_default()
        )));
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return Err(UiError::Invalid("the callback lacks code or state".into()));
    };
    let browser = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let Some((pending, next)) = ui.web.sessions.take_pending(&state, &browser) else {
        return Err(UiError::Invalid(
            "this sign-in was not started here, was used already or took too long; sign in again"
                .into(),
        ));
    };
    let signed_in = ui
        .web
        .login
        .finish(&code, pending)
        .await
        .map_err(|e| UiError::Denied(e.to_string()))?;
    let identity = ui
        .verifier()?
        .verify(&signed_in.access_token)
        .await
        .map_err(|e| UiError::Denied(format!("the access token was refused: {e}")))?;
    if identity.subject != signed_in.subject {
        return Err(UiError::Denied(
            "the access token and the ID token name different people".into(),
        ));
    }
    tracing::info!(user.name = %identity.subject, "signed in to the web view");
    let session = ui.web.sessions.create(signed_in.access_token);
    // A page, not a redirect: a cookie that is SameSite=Strict is not sent on a redirect that
    // a cross-site provider started, but is on this page's own navigation.
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={next}\"><title>Signed in · changeflow</title></head><body><main><p>Signed in as {}. <a href=\"{next}\">Continue</a></p></main></body></html>",
        html_escape(&identity.subject),
        next = html_escape(&next),
    );
    let mut response = Html(body).into_response();
    let secure = ui.web.secure;
    set_cookie(
        &mut response,
        (SESSION_COOKIE, &session),
        "Strict",
        secure,
        None,
    );
    set_cookie(&mut response, (LOGIN_COOKIE, ""), "Lax", secure, Some(0));
    Ok(response)
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

async fn logout(
    State(ui): State<Ui>,
    viewer: Viewer,
    Form(form): Form<LogoutForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(form.csrf.as_deref())?;
    ui.web.sessions.end(&viewer.session_id);
    let mut response = Redirect::to("/ui/signed-out").into_response();
    set_cookie(
        &mut response,
        (SESSION_COOKIE, ""),
        "Strict",
        ui.web.secure,
        Some(0),
    );
    Ok(response)
}

async fn signed_out(State(ui): State<Ui>) -> Result<Html<String>, UiError> {
    Ok(Html(ui.web.render(
        "message.html",
        json!({"title": "Signed out", "message": "You are signed out of changeflow."}),
    )?))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/app.css"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_status_the_filter_offers_is_one_list_changes_takes() {
        for status in super::statuses() {
            let filter =
                serde_json::from_value::<crate::changes::ChangeFilter>(json!({"status": status}));
            assert!(filter.is_ok(), "{status}: {filter:?}");
        }
    }
}
