#![doc = include_str!("../README.md")]

mod broker;
mod config;
mod error;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

pub use broker::{Broker, ClusterInfo};
pub use config::{KafkaConfig, KafkaSecurity};
pub use error::EventsError;
pub use rdkafka;
