//! Every method of the `UserRepository` contract, against the real PostgreSQL, each test in a
//! schema of its own.

mod accounts;
mod common;
mod credentials_and_verification;
mod node_leases;
mod oauth2;
mod oauth_accounts;
mod registrations;
mod users;
