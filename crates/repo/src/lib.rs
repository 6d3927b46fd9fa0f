#![doc = include_str!("../README.md")]

mod config;
mod database;
mod error;
pub mod migrations;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::DatabaseConfig;
pub use database::{Database, DbConnection};
pub use error::DbError;
