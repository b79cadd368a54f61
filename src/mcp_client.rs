//! A minimal MCP client over Streamable HTTP (protocol 2025-11-25): initialize, list tools,
//! call a tool while streaming its progress notifications. Used by `changeflow demo` to drive
//! its change through the front door exactly as an assistant would.

use anyhow::Context;
use serde_json::{Value, json};

pub const PROTOCOL_VERSION: &str = "2025-11-25";

pub struct McpClient {
    http: reqwest::Client,
    url: String,
    token: String,
    session: Option<String>,
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
            next_id: 1,
        };
        let params = json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "changeflow-cli", "version": env!("CARGO_PKG_VERSION")}});
        let init = client.request("initialize", params, |_| {}).await?;
        client.notify("notifications/initialized").await?;
        Ok((client, init))
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
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let exchange = self.post(&body, on_message).await?;
        anyhow::ensure!(
            exchange.status == 200,
            "{method} answered HTTP {}",
            exchange.status
        );
        if self.session.is_none() {
            self.session = exchange.session;
        }
        let response = exchange
            .messages
            .into_iter()
            .find(|m| m["id"] == id)
            .with_context(|| format!("no answer to {method}"))?;
        if let Some(error) = response.get("error") {
            anyhow::bail!(
                "{method} failed: {}",
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
        let mut request = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", PROTOCOL_VERSION)
            .bearer_auth(&self.token)
            .json(body);
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
