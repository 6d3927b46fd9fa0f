//! `/api/v1/auth/register-*` and `/api/v1/auth/registrations/{request_id}` (seed 000).
//!
//! The asynchronous endpoints validate, hash the password (on the bounded pool of `hashing`),
//! put seed 000's message on `user.registration` keyed by the request ID, and answer 202; the
//! registration-batcher writes it and records the outcome the status endpoint reads. The
//! synchronous one writes straight to the repository.

pub(crate) mod validation;

use crate::json::Json;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use domain::{NewUser, RegistrationMessage};
use events::{Delivery, OutgoingRecord, Producer};
use repo::{PgUserRepository, Registrations, RepoError, UserRepository as _};
use serde_json::{Value, json};
use service_runtime::snowflake_ids::IdGenerator;
use uuid::Uuid;

use crate::errors::{ApiError, repo_error};
use crate::hashing::{HashError, PasswordHasher};
use validation::{PasswordRules, RegistrationInput};

/// What the registration endpoints work with.
#[derive(Debug, Clone)]
pub(crate) struct RegistrationApi {
    pub(crate) producer: Producer,
    pub(crate) topic: String,
    pub(crate) hasher: PasswordHasher,
    pub(crate) password_rules: PasswordRules,
    pub(crate) bulk_max_users: usize,
    pub(crate) registrations: Registrations,
    pub(crate) users: PgUserRepository,
    pub(crate) ids: Arc<IdGenerator>,
    /// How long an accepted request without a stored outcome counts as `processing`: the
    /// retention of `user.registration`, after which it cannot still be on its way.
    pub(crate) pending_window: Duration,
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/api/v1/auth/register-async",
            web::post().to(register_async),
        )
        .route(
            "/api/v1/auth/register-async-bulk",
            web::post().to(register_async_bulk),
        )
        .route("/api/v1/auth/register-sync", web::post().to(register_sync))
        .route(
            "/api/v1/auth/registrations/{request_id}",
            web::get().to(registration_status),
        );
}

async fn register_async(
    api: web::Data<RegistrationApi>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let input = validation::registration(&body, api.password_rules, "")?;
    let request_ids = api.accept(vec![input]).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "message": "registration request accepted",
        "request_id": request_ids[0],
        "status": "processing",
    })))
}

async fn register_async_bulk(
    api: web::Data<RegistrationApi>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let inputs = validation::bulk(&body, api.password_rules, api.bulk_max_users)?;
    let request_ids = api.accept(inputs).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "message": "registration requests accepted",
        "count": request_ids.len(),
        "request_ids": request_ids,
        "status": "processing",
    })))
}

async fn register_sync(
    api: web::Data<RegistrationApi>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let input = validation::registration(&body, api.password_rules, "")?;
    let hash = api.hash(vec![input.password.clone()]).await?.remove(0);
    let id = api.ids.generate().ok_or_else(|| {
        ApiError::unavailable(
            "database_unavailable",
            "the database is unavailable; try again",
            5,
        )
    })?;
    let new_user = NewUser {
        id,
        email: input.email,
        phone: input.phone,
        is_email_verified: false,
        is_phone_verified: false,
        consent: input.consent,
        password_hash: hash,
    };
    let created = api
        .users
        .create_users(std::slice::from_ref(&new_user))
        .await
        .map_err(repo_error)?
        .remove(0);
    match created {
        Ok(user) => Ok(HttpResponse::Created().json(json!({
            "user_id": user.id.to_string(),
            "email": user.email,
        }))),
        Err(RepoError::Conflict(reason)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_registered",
            reason,
        )),
        Err(other) => Err(repo_error(other)),
    }
}

async fn registration_status(
    api: web::Data<RegistrationApi>,
    request_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id.into_inner();
    let record = api
        .registrations
        .find(request_id)
        .await
        .map_err(repo_error)?;
    let Some(record) = record else {
        if api.may_still_be_queued(request_id) {
            return Ok(
                HttpResponse::Ok().json(json!({"request_id": request_id, "status": "processing"}))
            );
        }
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "registration_not_found",
            format!("no registration request {request_id}"),
        ));
    };
    let mut body = json!({"request_id": request_id, "status": record.status.as_str()});
    if let Some(user_id) = record.user_id {
        body["user_id"] = json!(user_id.to_string());
    }
    if let (Some(code), Some(message)) = (&record.error_code, &record.error_message) {
        body["error"] = json!({"code": code, "message": message});
    }
    Ok(HttpResponse::Ok().json(body))
}

impl RegistrationApi {
    /// Hashes the passwords and queues the requests; their request IDs, in order.
    async fn accept(&self, inputs: Vec<RegistrationInput>) -> Result<Vec<Uuid>, ApiError> {
        let hashes = self
            .hash(inputs.iter().map(|i| i.password.clone()).collect())
            .await?;
        let messages: Vec<RegistrationMessage> = inputs
            .into_iter()
            .zip(hashes)
            .map(|(input, hash)| RegistrationMessage {
                email: input.email.map(|e| e.as_str().to_owned()),
                phone: input.phone.map(|p| p.as_str().to_owned()),
                password: hash,
                consent: input.consent,
                is_email_verified: false,
                is_phone_verified: false,
                request_id: Uuid::now_v7(),
                retry_count: 0,
                failure_reason: None,
            })
            .collect();
        let sends = messages.iter().map(|message| {
            self.producer.deliver(OutgoingRecord {
                topic: self.topic.clone(),
                partition: None,
                key: Some(message.request_id.to_string().into_bytes()),
                payload: serde_json::to_vec(message).expect("registration messages serialize"),
                headers: Default::default(),
            })
        });
        let deliveries = futures::future::join_all(sends).await;
        let failed = deliveries
            .iter()
            .filter(|d| !matches!(d, Ok(Delivery::Published { .. })))
            .count();
        if failed > 0 {
            tracing::error!(
                failed,
                of = messages.len(),
                "registration requests could not be queued"
            );
            return Err(ApiError::unavailable(
                "queue_unavailable",
                "registrations cannot be queued right now; try again",
                5,
            ));
        }
        metrics::counter!("gateway_registrations_accepted_total").increment(messages.len() as u64);
        Ok(messages.into_iter().map(|m| m.request_id).collect())
    }

    async fn hash(&self, passwords: Vec<String>) -> Result<Vec<String>, ApiError> {
        self.hasher
            .hash_all(passwords)
            .await
            .map_err(|error| match error {
                HashError::Busy => ApiError::unavailable(
                    "busy",
                    "too many registrations in progress; try again shortly",
                    1,
                ),
                HashError::Failed(reason) => ApiError::internal(reason),
            })
    }

    /// Whether a request ID without a stored outcome may still be on its way: a UUIDv7 (the
    /// gateway's kind) from within `pending_window`. Anything else was never accepted here.
    fn may_still_be_queued(&self, request_id: Uuid) -> bool {
        let Some((seconds, _)) = request_id.get_timestamp().map(|t| t.to_unix()) else {
            return false;
        };
        let age = Utc::now().timestamp() - i64::try_from(seconds).unwrap_or(i64::MAX);
        (-60..i64::try_from(self.pending_window.as_secs()).unwrap_or(i64::MAX)).contains(&age)
    }
}
