#![doc = include_str!("../README.md")]

mod snowflake;

pub use snowflake::{NodeId, NodeIdError, SnowflakeGenerator, SnowflakeId};
