//! `/api/v1/admin/…`: what only platform admins may read (the `admin` scope; see
//! `access::ROUTES`).

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use domain::OAuth2AuditLog;
use repo::UserRepository as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::access::Principal;
use crate::accounts::AccountsApi;
use crate::errors::{ApiError, ErrorBody};
use crate::json::QueryParams;
use crate::reply::Reply;

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config.service(audit_log);
}

/// A page of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditLogParams {
    /// 1 to 1000 (100 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Entries to skip, newest first (0 by default).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// One entry of the OAuth2 audit log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntryResponse {
    id: i64,
    /// `client_created`, `token_issued`, `consent_granted`, `signed_in`, …
    event_type: String,
    client_id: Option<String>,
    /// The user's ID, a decimal string.
    user_id: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    success: bool,
    /// What the event's kind records (scopes, grant type, reason); never a secret.
    #[schema(value_type = Object)]
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<OAuth2AuditLog> for AuditEntryResponse {
    fn from(entry: OAuth2AuditLog) -> Self {
        Self {
            id: entry.id,
            event_type: entry.event_type,
            client_id: entry.client_id,
            user_id: entry.user_id.map(|id| id.to_string()),
            ip_address: entry.ip_address,
            user_agent: entry.user_agent,
            success: entry.success,
            details: entry.details,
            created_at: entry.created_at,
        }
    }
}

/// Audit log entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditLogResponse {
    entries: Vec<AuditEntryResponse>,
}

/// The OAuth2 audit log: clients, consents, tokens and sign-ins, newest first.
#[utoipa::path(
    tag = "admin",
    operation_id = "getAuditLog",
    params(AuditLogParams),
    responses(
        (status = 200, description = "A page of the log", body = AuditLogResponse),
        (status = 400, description = "A query parameter is unknown or does not parse (`invalid_query`)", body = ErrorBody),
        (status = 422, description = "`limit` or `offset` is out of range", body = ErrorBody),
    )
)]
#[get("/api/v1/admin/oauth2/audit-log")]
async fn audit_log(
    api: web::Data<AccountsApi>,
    caller: Principal,
    params: QueryParams<AuditLogParams>,
) -> Result<Reply<AuditLogResponse>, ApiError> {
    // Established by `access::enforce` for this route's class; checked here too.
    if !caller.is_admin() {
        return Err(crate::access::forbidden(
            "this route is for platform admins",
        ));
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1 to 1000"));
    }
    let offset = params.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset", "offset must be 0 or more"));
    }
    let entries = api.users.get_oauth2_audit_logs(limit, offset).await?;
    Ok(Reply::ok(AuditLogResponse {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}
