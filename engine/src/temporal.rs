//! Connecting to a Temporal server.

use std::time::Duration;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};

/// Errors reaching Temporal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemporalError {
    /// The address is not a valid URL or host:port.
    #[error("invalid Temporal address '{0}': expected host:port or http(s)://host:port")]
    InvalidAddress(String),
    /// The server could not be reached.
    #[error("cannot connect to Temporal at {address}: {reason}")]
    Connect { address: String, reason: String },
}

/// Turns `host:port` or a URL into the URL the client wants.
pub fn address_url(address: &str) -> Result<url::Url, TemporalError> {
    let text = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    url::Url::parse(&text)
        .ok()
        .filter(|u| u.host().is_some() && u.port_or_known_default().is_some())
        .ok_or_else(|| TemporalError::InvalidAddress(address.to_string()))
}

/// How long a server that answers but is still starting ("Frontend is not healthy yet", or a
/// reset connection) is waited for.
const STARTING_SERVER_WAIT: Duration = Duration::from_secs(30);

/// Connects a client to `address` in `namespace`. A server that is up but still starting is
/// waited for (up to `STARTING_SERVER_WAIT`); anything else fails at once.
pub async fn connect(
    address: &str,
    namespace: &str,
    identity: &str,
) -> Result<Client, TemporalError> {
    let url = address_url(address)?;
    let deadline = tokio::time::Instant::now() + STARTING_SERVER_WAIT;
    let connection = loop {
        let options = ConnectionOptions::new(url.clone())
            .identity(identity.to_string())
            .connect_timeout(Duration::from_secs(10))
            .build();
        match Connection::connect(options).await {
            Ok(connection) => break connection,
            Err(e) => {
                let reason = e.to_string();
                // A server still starting refuses ("Unavailable") or resets the connection.
                let starting =
                    reason.contains("code: Unavailable") || reason.contains("transport error");
                if starting && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                return Err(TemporalError::Connect {
                    address: address.to_string(),
                    reason,
                });
            }
        }
    };
    // The SDK's OpenTelemetry plugin: workflow starts, workflows and activities become spans of
    // the caller's trace, carried in Temporal headers (a no-op without a tracer provider, see
    // `telemetry::init`). Workers made from this client inherit it.
    let options = ClientOptions::new(namespace)
        .plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build())
        .build();
    Client::new(connection, options).map_err(|e| TemporalError::Connect {
        address: address.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_accept_host_port_and_urls() {
        assert_eq!(
            address_url("127.0.0.1:7233").unwrap().as_str(),
            "http://127.0.0.1:7233/"
        );
        assert_eq!(
            address_url("https://temporal.example.com:7233")
                .unwrap()
                .port(),
            Some(7233)
        );
        assert!(address_url("not a url").is_err());
    }
}
