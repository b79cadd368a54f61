//! A minimal MCP client over Streamable HTTP: 2025-11-25 sessions (initialize, then requests)
//! or stateless 2026-07-28 requests (protocol version, client info and capabilities in every
//! request's `_meta`). Lists tools and calls them while streaming progress notifications. Used
//! by `changeflow demo` to drive its change through the front door exactly as an assistant would.

use anyhow::Context;
use serde_json::{Value, json};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The stateless protocol revision.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

pub struct McpClient {
    http: reqwest::Client,
    url: String,
    token: String,
    session: Option<String>,
    /// Stateless mode: the capabilities every request declares in `_meta`.
    stateless_capabilities: Option<Value>,
    next_id: u64,
}

/// The HTTP status, session header and JSON-RPC messages of one POST.
pub struct Exchange {
    pub status: u16,
    pub session: Option<String>,
    pub messages: Vec<Value>,
}

impl McpClient {
    /// Connects and initializes a session at `url` (an `/mcp` endpoint) with a bearer token.
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<(Self, Value)> {
        let mut client = Self {
            http: reqwest::Client::new(),
            url: url.to_string(),
            token: token.to_string(),
            session: None,
            stateless_capabilities: None,
            next_id: 1,
        };
        let params = json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "changeflow-cli", "version": env!("CARGO_PKG_VERSION")}});
        let init = client.request("initialize", params, |_| {}).await?;
        client.notify("notifications/initialized").await?;
        Ok((client, init))
    }

    /// A stateless (2026-07-28) client declaring `capabilities` on every request; no handshake.
    pub fn stateless(url: &str, token: &str, capabilities: Value) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_string(),
            token: token.to_string(),
            session: None,
            stateless_capabilities: Some(capabilities),
            next_id: 1,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    async fn notify(&self, method: &str) -> anyhow::Result<()> {
        let exchange = self
            .post(&json!({"jsonrpc": "2.0", "method": method}), |_| {})
            .await?;
        anyhow::ensure!(
            exchange.status < 300,
            "{method} answered HTTP {}",
            exchange.status
        );
        Ok(())
    }

    /// Sends a request and returns its result; notifications before it go to `on_message`.
    pub async fn request(
        &mut self,
        method: &str,
        params: Value,
        on_message: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut params = params;
        if let (Some(capabilities), Some(map)) =
            (&self.stateless_capabilities, params.as_object_mut())
        {
            let meta = map.entry("_meta").or_insert_with(|| json!({}));
            meta["io.modelcontextprotocol/protocolVersion"] = json!(STATELESS_PROTOCOL_VERSION);
            meta["io.modelcontextprotocol/clientInfo"] =
                json!({"name": "changeflow-cli", "version": env!("CARGO_PKG_VERSION")});
            meta["io.modelcontextprotocol/clientCapabilities"] = capabilities.clone();
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let exchange = self.post(&body, on_message).await?;
        if self.session.is_none() {
            self.session = exchange.session;
        }
        // An error may come with an HTTP error status (e.g. 400 for a missing capability).
        let response = exchange.messages.into_iter().find(|m| m["id"] == id);
        let response = match response {
            Some(response) if exchange.status == 200 || response.get("error").is_some() => response,
            _ => anyhow::bail!(
                "{method} answered HTTP {} without a result",
                exchange.status
            ),
        };
        if let Some(error) = response.get("error") {
            anyhow::bail!(
                "{method} failed ({}): {}",
                error["code"],
                error["message"].as_str().unwrap_or("unknown error")
            );
        }
        Ok(response["result"].clone())
    }

    /// Calls a tool with a progress token; `on_progress(percent, message)` sees each notification.
    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
        mut on_progress: impl FnMut(f64, &str),
    ) -> anyhow::Result<Value> {
        let token = format!("progress-{}", self.next_id);
        let params =
            json!({"name": name, "arguments": arguments, "_meta": {"progressToken": token}});
        self.request("tools/call", params, |message| {
            if message["method"] == "notifications/progress"
                && message["params"]["progressToken"] == token.as_str()
            {
                on_progress(
                    message["params"]["progress"].as_f64().unwrap_or(0.0),
                    message["params"]["message"].as_str().unwrap_or(""),
                );
            }
        })
        .await
    }

    /// POSTs one message, reading a JSON body or an SSE stream event by event as it arrives.
    pub async fn post(
        &self,
        body: &Value,
        mut on_message: impl FnMut(&Value),
    ) -> anyhow::Result<Exchange> {
        let version = if self.stateless_capabilities.is_some() {
            STATELESS_PROTOCOL_VERSION
        } else {
            PROTOCOL_VERSION
        };
        let mut request = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", version)
            .bearer_auth(&self.token)
            .json(body);
        if self.stateless_capabilities.is_some() {
            // The routing headers the stateless revision requires, mirroring the body.
            if let Some(method) = body["method"].as_str() {
                request = request.header("Mcp-Method", method);
            }
            let params = &body["params"];
            if let Some(name) = params["name"].as_str().or(params["taskId"].as_str()) {
                request = request.header("Mcp-Name", name);
            }
        }
        if let Some(session) = &self.session {
            request = request.header("Mcp-Session-Id", session);
        }
        let mut response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = response.status().as_u16();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut messages = Vec::new();
        if is_json {
            let text = response.text().await?;
            if !text.trim().is_empty() {
                let value: Value = serde_json::from_str(&text).context("JSON answer")?;
                on_message(&value);
                messages.push(value);
            }
        } else {
            let mut buffer = String::new();
            while let Some(chunk) = response.chunk().await? {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:")
                        && let Ok(value) = serde_json::from_str::<Value>(data.trim())
                    {
                        on_message(&value);
                        messages.push(value);
                    }
                }
            }
        }
        Ok(Exchange {
            status,
            session,
            messages,
        })
    }
}
