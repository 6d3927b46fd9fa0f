//! `/api/v1/auth/register-*` and `/api/v1/auth/registrations/{request_id}` (seed 000).
//!
//! The asynchronous endpoints validate, hash the password (on the bounded pool of `hashing`),
//! put seed 000's message on `user.registration` keyed by the request ID, and answer 202; the
//! registration-batcher writes it and records the outcome the status endpoint reads. The
//! synchronous one writes straight to the repository.

pub(crate) mod validation;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, get, post, web};
use chrono::Utc;
use domain::{NewUser, RegistrationMessage, RegistrationStatus};
use events::rdkafka::message::OwnedHeaders;
use events::{Delivery, OutgoingRecord, Producer};
use repo::{PgUserRepository, Registrations, RepoError, UserRepository as _};
use serde::Serialize;
use service_runtime::snowflake_ids::IdGenerator;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::access::{Limit, count_identifier};
use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::hashing::{HashError, PasswordHasher};
use crate::json::Json;
use crate::reply::Reply;
use validation::{BulkRegistrationRequest, PasswordRules, RegistrationInput, RegistrationRequest};

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
    /// Builds the `user.registered` event of `register-sync`.
    pub(crate) events: events::EventBuilder,
    /// How long an accepted request without a stored outcome counts as `processing`: the
    /// retention of `user.registration`, after which it cannot still be on its way.
    pub(crate) pending_window: Duration,
}

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(register_async)
        .service(register_async_bulk)
        .service(register_sync)
        .service(registration_status);
}

/// Where a queued request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestStatus {
    /// Accepted, not yet written (or waiting for a retry).
    Processing,
    /// The user exists: `user_id` says who.
    Completed,
    /// Refused for good: `error` says why.
    Failed,
}

impl From<RegistrationStatus> for RequestStatus {
    fn from(status: RegistrationStatus) -> Self {
        match status {
            RegistrationStatus::Processing => Self::Processing,
            RegistrationStatus::Completed => Self::Completed,
            RegistrationStatus::Failed => Self::Failed,
        }
    }
}

/// A registration queued for the registration-batcher.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"message": "registration request accepted", "request_id": "01935f4e-8a2b-7cc1-9d1e-2f3a4b5c6d7e", "status": "processing"}))]
pub(crate) struct RegistrationAccepted {
    pub(crate) message: &'static str,
    /// Poll `/api/v1/auth/registrations/{request_id}` with it.
    pub(crate) request_id: Uuid,
    pub(crate) status: RequestStatus,
}

/// Registrations queued, in the order of `users`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkRegistrationAccepted {
    pub(crate) message: &'static str,
    pub(crate) count: usize,
    /// One per user, in the order of the request.
    pub(crate) request_ids: Vec<Uuid>,
    pub(crate) status: RequestStatus,
}

/// A user created by `register-sync`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegisteredUser {
    /// The Snowflake ID, as a decimal string (it does not fit a JavaScript number).
    #[schema(example = "7285873432158208001")]
    pub(crate) user_id: String,
    /// The canonical form of the address, as stored.
    pub(crate) email: Option<String>,
}

/// Why a registration failed for good.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegistrationFailure {
    /// `already_registered`, `validation_failed`, `retries_exhausted`, …
    pub(crate) code: String,
    pub(crate) message: String,
}

/// Where a queued registration stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegistrationStatusResponse {
    pub(crate) request_id: Uuid,
    pub(crate) status: RequestStatus,
    /// Once `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    /// Once `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<RegistrationFailure>,
}

/// Queue one registration.
///
/// The password is hashed here; the registration-batcher writes the user and records the
/// outcome, which `GET /api/v1/auth/registrations/{request_id}` reads.
#[utoipa::path(
    tag = "registration",
    operation_id = "registerAsync",
    request_body = RegistrationRequest,
    responses(
        (status = 202, description = "Accepted; poll the status endpoint with `request_id`", body = RegistrationAccepted),
        (status = 422, description = "A field is missing, wrong or unknown", body = ErrorBody),
        (status = 503, description = "Too many hashes in progress (`busy`) or the broker is down (`queue_unavailable`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/register-async")]
async fn register_async(
    api: web::Data<RegistrationApi>,
    request: HttpRequest,
    body: Json<RegistrationRequest>,
) -> Result<Reply<RegistrationAccepted>, ApiError> {
    let input = body.into_inner().validate(api.password_rules, "")?;
    count_identifier(&request, Limit::Registration, &input.identifier()).await?;
    let request_ids = api.accept(vec![input], Lane::Single).await?;
    Ok(Reply::accepted(RegistrationAccepted {
        message: "registration request accepted",
        request_id: request_ids[0],
        status: RequestStatus::Processing,
    }))
}

/// Queue up to `BULK_MAX_USERS` registrations, all or nothing.
#[utoipa::path(
    tag = "registration",
    operation_id = "registerAsyncBulk",
    request_body = BulkRegistrationRequest,
    responses(
        (status = 202, description = "All accepted", body = BulkRegistrationAccepted),
        (status = 422, description = "A user is invalid (`users[i].field`) or there are too many (`bulk_too_large`)", body = ErrorBody),
        (status = 503, description = "Overloaded or the broker is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/register-async-bulk")]
async fn register_async_bulk(
    api: web::Data<RegistrationApi>,
    // Fails closed (500) unless `access::enforce` admitted a caller for this route.
    _caller: crate::access::Principal,
    body: Json<BulkRegistrationRequest>,
) -> Result<Reply<BulkRegistrationAccepted>, ApiError> {
    let inputs = body
        .into_inner()
        .validate(api.password_rules, api.bulk_max_users)?;
    let request_ids = api.accept(inputs, Lane::Bulk).await?;
    Ok(Reply::accepted(BulkRegistrationAccepted {
        message: "registration requests accepted",
        count: request_ids.len(),
        request_ids,
        status: RequestStatus::Processing,
    }))
}
/// Register one user now, without the queue.
#[utoipa::path(
    tag = "registration",
    operation_id = "registerSync",
    request_body = RegistrationRequest,
    responses(
        (status = 201, description = "The user exists", body = RegisteredUser),
        (status = 409, description = "The email or phone is taken (`already_registered`)", body = ErrorBody),
        (status = 422, description = "A field is missing, wrong or unknown", body = ErrorBody),
        (status = 503, description = "Overloaded or the database is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/register-sync")]
async fn register_sync(
    api: web::Data<RegistrationApi>,
    request: HttpRequest,
    body: Json<RegistrationRequest>,
) -> Result<Reply<RegisteredUser>, ApiError> {
    let input = body.into_inner().validate(api.password_rules, "")?;
    count_identifier(&request, Limit::Registration, &input.identifier()).await?;
    let hash = api
        .hash(vec![input.password.clone()], Lane::Single)
        .await?
        .remove(0);
    let id = api.ids.generate().ok_or_else(|| {
        ApiError::new(
            ErrorCode::DatabaseUnavailable,
            "the database is unavailable; try again",
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
        .await?
        .remove(0);
    match created {
        Ok(user) => {
            api.user_registered(&user).await;
            Ok(Reply::created(RegisteredUser {
                user_id: user.id.to_string(),
                email: user.email.map(|e| e.as_str().to_owned()),
            })
            .for_user(user.id.to_string()))
        }
        Err(RepoError::Conflict(reason)) => {
            Err(ApiError::new(ErrorCode::AlreadyRegistered, reason))
        }
        Err(other) => Err(other.into()),
    }
}

/// Where a queued registration stands.
#[utoipa::path(
    tag = "registration",
    operation_id = "registrationStatus",
    params(("request_id" = Uuid, Path, description = "The `request_id` of the 202 answer")),
    responses(
        (status = 200, description = "`processing`, `completed` (with `user_id`) or `failed` (with `error`)", body = RegistrationStatusResponse),
        (status = 404, description = "No such request (`registration_not_found`), or not a UUID (`not_found`)", body = ErrorBody),
    )
)]
#[get("/api/v1/auth/registrations/{request_id}")]
async fn registration_status(
    api: web::Data<RegistrationApi>,
    request_id: web::Path<Uuid>,
) -> Result<Reply<RegistrationStatusResponse>, ApiError> {
    let request_id = request_id.into_inner();
    let Some(record) = api.registrations.find(request_id).await? else {
        if api.may_still_be_queued(request_id) {
            return Ok(Reply::ok(RegistrationStatusResponse {
                request_id,
                status: RequestStatus::Processing,
                user_id: None,
                error: None,
            }));
        }
        return Err(ApiError::new(
            ErrorCode::RegistrationNotFound,
            format!("no registration request {request_id}"),
        ));
    };
    Ok(Reply::ok(RegistrationStatusResponse {
        request_id,
        status: record.status.into(),
        user_id: record.user_id.map(|id| id.to_string()),
        error: record
            .error_code
            .zip(record.error_message)
            .map(|(code, message)| RegistrationFailure { code, message }),
    }))
}

/// Where a registration's passwords are hashed: bulk requests in their own share of the pool.
#[derive(Debug, Clone, Copy)]
enum Lane {
    Single,
    Bulk,
}

impl RegistrationApi {
    /// Hashes the passwords (in `lane`) and queues the requests; their request IDs, in order.
    async fn accept(
        &self,
        inputs: Vec<RegistrationInput>,
        lane: Lane,
    ) -> Result<Vec<Uuid>, ApiError> {
        let hashes = self
            .hash(inputs.iter().map(|i| i.password.clone()).collect(), lane)
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
                // The batcher's work continues this request's trace.
                headers: events::headers::with_traceparent(OwnedHeaders::new()),
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
            return Err(ApiError::new(
                ErrorCode::QueueUnavailable,
                "registrations cannot be queued right now; try again",
            ));
        }
        metrics::counter!("gateway_registrations_accepted_total").increment(messages.len() as u64);
        Ok(messages.into_iter().map(|m| m.request_id).collect())
    }

    /// Publishes `user.registered` for a user `register-sync` created, as the batcher does for
    /// queued ones (the email-worker sends the verification message). The user exists either
    /// way, so the answer is 201 even when the broker refuses the event: the failure is logged
    /// and counted, and the user can ask for the verification message again.
    pub(crate) async fn user_registered(&self, user: &domain::User) {
        let event = self
            .events
            .build(events::envelope::UserRegistered::through_api(
                user.id.to_string(),
                user.email.as_ref().map(|e| e.as_str().to_owned()),
                user.phone.as_ref().map(|p| p.as_str().to_owned()),
                user.is_email_verified,
                user.created_at,
            ));
        if !matches!(
            self.producer.deliver_event(&event).await,
            Ok(Delivery::Published { .. })
        ) {
            metrics::counter!("gateway_user_registered_unpublished_total").increment(1);
            tracing::error!(user_id = %user.id, "user.registered of a register-sync user not published");
        }
    }

    async fn hash(&self, passwords: Vec<String>, lane: Lane) -> Result<Vec<String>, ApiError> {
        match lane {
            Lane::Single => self.hasher.hash_all(passwords).await,
            Lane::Bulk => self.hasher.hash_bulk(passwords).await,
        }
        .map_err(|error| match error {
            HashError::Busy => ApiError::new(
                ErrorCode::Busy,
                "too many registrations in progress; try again shortly",
            )
            .retry_after(1),
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
