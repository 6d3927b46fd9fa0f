#![doc = include_str!("../README.md")]

pub mod accounts;
pub mod activity_logs;
mod config;
mod database;
mod error;
pub mod migrations;
pub mod node_lease;
mod pg_user_repository;
mod queries;
pub mod registrations;
mod rows;
mod schema;
pub mod signing_keys;
#[cfg(feature = "testing")]
pub mod testing;
mod user_repository;
pub mod waitlist;

pub use accounts::Accounts;
pub use activity_logs::{ActivityCursor, ActivityLogs, ActivityPage, ActivityQuery};
pub use config::DatabaseConfig;
pub use database::{Database, DbConnection};
pub use error::{DbError, RepoError};
pub use pg_user_repository::PgUserRepository;
pub use registrations::{PendingRegistration, Refusal, RegistrationOutcome, Registrations};
pub use signing_keys::{SigningKeys, StoredSigningKey};
pub use user_repository::{RepoResult, UserRepository};
pub use waitlist::Waitlist;
