//! Query functions, grouped by table. Each takes `&mut AsyncPgConnection`, so callers can run
//! several inside one `conn.transaction(…)`.

pub(crate) mod credentials;
pub(crate) mod oauth2;
pub(crate) mod oauth_accounts;
pub(crate) mod users;
