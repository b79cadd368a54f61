//! Fault injection shared by both simulators: added latency, 500s, 429s with Retry-After, a
//! device whose deployment fails, and devices a change leaves unhealthy or unreachable.
//! Configured per run and changeable while running.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the simulators do wrong on purpose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every API response.
    pub latency_ms: u64,
    /// Share of API requests (0.0–1.0) answered with a 500.
    pub error_rate: f64,
    /// Share of API requests (0.0–1.0) answered with a 429.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds sent with 429s (the contract's clients default to 15 when absent).
    pub retry_after_secs: u64,
    /// Hostname of a device whose template deployment fails.
    pub failing_device: Option<String>,
    /// Hostname of a device whose deployment succeeds but leaves it unhealthy: while it
    /// carries deployed configuration, its port Gi1/0/2 is down.
    pub unhealthy_device: Option<String>,
    /// Hostname of a device whose CLI does not answer (Command Runner: "Device is not
    /// reachable"; deployments to it fail), although the inventory still lists it reachable.
    pub unreachable_device: Option<String>,
    /// Hostname of a device that stops answering once it carries deployed configuration.
    pub unreachable_after_change: Option<String>,
}

impl FaultConfig {
    /// Rejects rates outside 0..=1, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// What the fault layer decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    ServerError,
    RateLimited { retry_after_secs: u64 },
}

/// Shared, live-adjustable fault configuration.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<RwLock<FaultConfig>>);

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self(Arc::new(RwLock::new(config)))
    }

    pub fn get(&self) -> FaultConfig {
        self.0.read().expect("fault lock").clone()
    }

    pub fn set(&self, config: FaultConfig) {
        *self.0.write().expect("fault lock") = config;
    }

    /// Sleeps the configured latency, then draws whether this request fails.
    pub async fn apply(&self) -> Option<InjectedFault> {
        let config = self.get();
        if config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(config.latency_ms)).await;
        }
        let draw: f64 = rand::random();
        if draw < config.rate_limit_rate {
            Some(InjectedFault::RateLimited {
                retry_after_secs: config.retry_after_secs,
            })
        } else if draw < config.rate_limit_rate + config.error_rate {
            Some(InjectedFault::ServerError)
        } else {
            None
        }
    }
}

/// A simulator that faults can be injected into.
pub trait FaultTarget: Send + Sync + 'static {
    fn faults(&self) -> &Faults;
    /// Counters of requests seen and of faults injected.
    fn fault_counters(&self) -> (&AtomicU64, &AtomicU64);
    /// An injected fault in the vendor's own error envelope.
    fn fault_response(fault: InjectedFault) -> Response;
}

/// The fault middleware both simulators run in front of their API: counts the request, applies
/// the configured latency, and answers an injected fault instead of passing the request on.
pub async fn inject<T: FaultTarget>(
    State(target): State<Arc<T>>,
    request: Request,
    next: Next,
) -> Response {
    let (requests, injected) = target.fault_counters();
    requests.fetch_add(1, Ordering::Relaxed);
    match target.faults().apply().await {
        None => next.run(request).await,
        Some(fault) => {
            injected.fetch_add(1, Ordering::Relaxed);
            T::fault_response(fault)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn certain_faults_always_fire_and_none_never() {
        let faults = Faults::new(FaultConfig {
            rate_limit_rate: 1.0,
            retry_after_secs: 3,
            ..Default::default()
        });
        assert_eq!(
            faults.apply().await,
            Some(InjectedFault::RateLimited {
                retry_after_secs: 3
            })
        );
        faults.set(FaultConfig {
            error_rate: 1.0,
            ..Default::default()
        });
        assert_eq!(faults.apply().await, Some(InjectedFault::ServerError));
        faults.set(FaultConfig::default());
        for _ in 0..100 {
            assert_eq!(faults.apply().await, None);
        }
    }

    #[test]
    fn rates_out_of_range_are_rejected() {
        let bad = FaultConfig {
            error_rate: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("error_rate"));
    }
}
