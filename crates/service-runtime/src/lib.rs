#![doc = include_str!("../README.md")]

mod alerts;
pub mod config;
mod env;
mod metrics_recorder;
mod ops_server;
mod service;
mod shutdown;
pub mod snowflake_ids;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{CommonConfig, ConsumerConfig};
pub use env::{ConfigError, Env, MIN_SIGNING_KEY_BYTES};
pub use service::{ServiceContext, run_service};
pub use tokio_util::sync::CancellationToken;
