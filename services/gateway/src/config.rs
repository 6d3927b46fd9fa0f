//! The gateway's own variables (the shared ones are in `service_runtime::config`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR` | `0.0.0.0:8080` | where the API listens |

use std::net::SocketAddr;
use std::time::Duration;

use service_runtime::{ConfigError, Env};

#[derive(Debug, Clone)]
pub(crate) struct GatewayConfig {
    pub(crate) http_addr: SocketAddr,
    /// How long requests in flight may take once shutdown starts; under `SHUTDOWN_TIMEOUT`.
    pub(crate) shutdown_grace: Duration,
}

impl GatewayConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http_addr: env.parse("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            shutdown_grace: Duration::from_secs(5),
        })
    }
}
