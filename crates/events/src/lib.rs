#![doc = include_str!("../README.md")]

pub mod admin;
mod backoff;
mod config;
pub mod consumer;
pub mod envelope;
mod error;
pub mod headers;
pub mod producer;
pub mod redrive;
pub mod routing;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

pub use backoff::Backoff;
pub use config::{KafkaConfig, KafkaSecurity, ProducerSettings};
pub use consumer::{
    BatchHandler, BatchPolicy, ConsumerHealth, ConsumerSettings, DlqLimit, EventConsumer,
    FailureKind, HOLD_BEFORE_PAUSE, Handler, HandlerError, RetryPolicy, StartFrom,
};
pub use envelope::{Decoded, EVENT_TYPES, Event, EventBuilder, EventPayload};
pub use error::EventsError;
pub use producer::{
    ClusterInfo, Delivery, DeliveryError, OutgoingRecord, Producer, ProducerClientContext,
    ProducerStats, PublishError,
};
pub use rdkafka;
