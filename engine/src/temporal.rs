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

/// Connects a client to `address` in `namespace`.
pub async fn connect(
    address: &str,
    namespace: &str,
    identity: &str,
) -> Result<Client, TemporalError> {
    let url = address_url(address)?;
    let options = ConnectionOptions::new(url)
        .identity(identity.to_string())
        .connect_timeout(Duration::from_secs(10))
        .build();
    let connection = Connection::connect(options)
        .await
        .map_err(|e| TemporalError::Connect {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
    Client::new(connection, ClientOptions::new(namespace).build()).map_err(|e| {
        TemporalError::Connect {
            address: address.to_string(),
            reason: e.to_string(),
        }
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
