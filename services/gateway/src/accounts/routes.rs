//! `/api/v1/auth/*` (sign-in, tokens, verification, recovery, restore) and `/api/v1/me*`
//! (the signed-in user). Every answer carrying tokens or personal data has
//! `Cache-Control: no-store`.

use actix_web::{HttpRequest, get, post, put, web};
use chrono::{DateTime, Utc};
use domain::accounts::{SecretToken, TokenPurpose, code_hash};
use domain::{Email, Identifier, Phone, TokenHash, UserId};
use repo::{RepoError, UserRepository as _};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{AccountsApi, IssuedTokens, SignedIn, account_gone};
use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::json::Json;
use crate::reply::Reply;

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(sign_in)
        .service(refresh)
        .service(sign_out)
        .service(sign_out_everywhere)
        .service(me)
        .service(verify_email)
        .service(verify_phone)
        .service(resend_verification)
        .service(request_password_reset)
        .service(confirm_password_reset)
        .service(change_password)
        .service(change_email)
        .service(change_phone)
        .service(delete_account)
        .service(restore_account);
}

/// The identifier of a body: exactly one of `email` and `phone`, valid.
fn identifier(email: Option<&str>, phone: Option<&str>) -> Result<Identifier, ApiError> {
    match (email, phone) {
        (Some(email), None) => Ok(Identifier::Email(Email::parse(email)?)),
        (None, Some(phone)) => Ok(Identifier::Phone(Phone::parse(phone)?)),
        (Some(_), Some(_)) => Err(ApiError::invalid("phone", "give email or phone, not both")),
        (None, None) => Err(ApiError::invalid(
            "email",
            "one of email and phone is required",
        )),
    }
}

/// A token as mailed: 64 hexadecimal characters; anything else is no token this API issued.
fn mailed_token(token: &str) -> Result<TokenHash, ApiError> {
    SecretToken::parse(token)
        .map(|token| token.hash())
        .ok_or_else(invalid_token)
}

fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidOrExpiredToken,
        "the token or code is unknown, used or expired; ask for a new one",
    )
}

/// Sign in with an email address or a phone number, and the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub(crate) struct SignInRequest {
    /// One of `email` and `phone`.
    #[schema(format = Email)]
    email: Option<String>,
    /// E.164 (`+14155550100`); one of `email` and `phone`.
    phone: Option<String>,
    #[schema(format = Password)]
    password: String,
}

/// Tokens of a session (the names of RFC 6749 section 5.1).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "4f1c…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "9a0b…", "refresh_token_expires_in": 2592000, "session_id": "01935f4e-8a2b-7cc1-9d1e-2f3a4b5c6d7e", "user_id": "7285873432158208001"}))]
pub(crate) struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`. 64 hexadecimal characters.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds the access token lives (`ACCESS_TOKEN_TTL`).
    expires_in: u64,
    /// Exchange at `/api/v1/auth/refresh` for new tokens; single use.
    refresh_token: String,
    /// Seconds the refresh token lives.
    refresh_token_expires_in: u64,
    session_id: uuid::Uuid,
    /// The Snowflake ID, as a decimal string.
    pub(crate) user_id: String,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(tokens: IssuedTokens) -> Self {
        Self {
            access_token: tokens.access_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
            refresh_token_expires_in: tokens.refresh_token_expires_in,
            session_id: tokens.session_id,
            user_id: tokens.user_id.to_string(),
        }
    }
}

fn tokens_reply(tokens: IssuedTokens) -> Reply<TokenResponse> {
    let user = tokens.user_id.to_string();
    Reply::ok(TokenResponse::from(tokens))
        .no_store()
        .for_user(user)
}

/// Sign in.
///
/// An unknown identifier and a wrong password get the same answer in the same time. Failed
/// attempts count per identifier and per client IP; past `SIGN_IN_MAX_FAILURES` (or
/// `SIGN_IN_MAX_FAILURES_PER_IP`) in the window the answer is 429 until it ends.
#[utoipa::path(
    tag = "accounts",
    operation_id = "signIn",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in: a new session and its tokens", body = TokenResponse),
        (status = 401, description = "Wrong identifier or password (`invalid_credentials`)", body = ErrorBody),
        (status = 403, description = "The password is right, but the account is deleted (`account_deleted`), suspended (`account_suspended`), unverified while `SIGN_IN_REQUIRES_VERIFIED` (`identifier_not_verified`), or must reset its password (`password_reset_required`)", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/sign-in")]
async fn sign_in(
    api: web::Data<AccountsApi>,
    request: HttpRequest,
    body: Json<SignInRequest>,
) -> Result<Reply<TokenResponse>, ApiError> {
    let body = body.into_inner();
    let identifier = identifier(body.email.as_deref(), body.phone.as_deref())?;
    if body.password.is_empty() || body.password.chars().count() > api.password_rules.max_length {
        return Err(ApiError::invalid(
            "password",
            "password is empty or too long",
        ));
    }
    let caller = api.caller(&request);
    let tokens = api.sign_in(&identifier, &body.password, &caller).await?;
    Ok(tokens_reply(tokens))
}

/// A refresh token to exchange.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    /// The `refresh_token` of the last sign-in or refresh.
    refresh_token: String,
}

/// Exchange a refresh token for new tokens (rotation).
///
/// The refresh token given is spent. Presenting a spent one again revokes the whole session
/// (every token of that sign-in), since someone else may hold a copy.
#[utoipa::path(
    tag = "accounts",
    operation_id = "refreshTokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens of the same session", body = TokenResponse),
        (status = 400, description = "Unknown, expired, revoked or already used (`invalid_grant`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/refresh")]
async fn refresh(
    api: web::Data<AccountsApi>,
    request: HttpRequest,
    body: Json<RefreshRequest>,
) -> Result<Reply<TokenResponse>, ApiError> {
    let token = SecretToken::parse(&body.into_inner().refresh_token)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidGrant, "the refresh token is not valid"))?;
    let caller = api.caller(&request);
    let tokens = api.refresh(&token, &caller).await?;
    Ok(tokens_reply(tokens))
}

/// A plain acknowledgement.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Done {
    message: String,
}

fn done(message: &str) -> Done {
    Done {
        message: message.to_owned(),
    }
}

/// Sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionsEnded {
    /// How many sessions were live and are not any more.
    sessions_ended: u64,
}

/// Sign out: end this session (its access and refresh tokens stop working at once).
#[utoipa::path(
    tag = "accounts",
    operation_id = "signOut",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Signed out", body = Done),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/sign-out")]
async fn sign_out(api: web::Data<AccountsApi>, who: SignedIn) -> Result<Reply<Done>, ApiError> {
    api.sign_out(who).await?;
    Ok(Reply::ok(done("signed out")).for_user(who.user_id.to_string()))
}

/// Sign out everywhere: end every session of the signed-in user.
#[utoipa::path(
    tag = "accounts",
    operation_id = "signOutEverywhere",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every session ended, this one too", body = SessionsEnded),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/sign-out-everywhere")]
async fn sign_out_everywhere(
    api: web::Data<AccountsApi>,
    who: SignedIn,
) -> Result<Reply<SessionsEnded>, ApiError> {
    let sessions_ended = api
        .revoke_everything(who.user_id, "sign_out_everywhere")
        .await?;
    api.publish(events::envelope::UserLoggedOut {
        user_id: who.user_id.to_string(),
        session_id: who.session_id.to_string(),
        logout_time: Utc::now(),
    });
    Ok(Reply::ok(SessionsEnded { sessions_ended }).for_user(who.user_id.to_string()))
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Profile {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    email_verified: bool,
    phone_verified: bool,
    /// `active`, `pending` or `suspended`.
    status: String,
    created_at: DateTime<Utc>,
    /// The session of the token this was asked with.
    session_id: uuid::Uuid,
}

async fn profile(api: &AccountsApi, who: SignedIn) -> Result<Reply<Profile>, ApiError> {
    let user = api
        .users
        .get_user_by_id(who.user_id)
        .await
        .map_err(account_gone)?;
    Ok(Reply::ok(Profile {
        user_id: user.id.to_string(),
        email: user.email.map(String::from),
        phone: user.phone.map(String::from),
        email_verified: user.is_email_verified,
        phone_verified: user.is_phone_verified,
        status: user.status.as_str().to_owned(),
        created_at: user.created_at,
        session_id: who.session_id,
    })
    .no_store()
    .for_user(who.user_id.to_string()))
}

/// The signed-in user's profile and verification statuses.
#[utoipa::path(
    tag = "accounts",
    operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
    )
)]
#[get("/api/v1/me")]
async fn me(api: web::Data<AccountsApi>, who: SignedIn) -> Result<Reply<Profile>, ApiError> {
    profile(&api, who).await
}

/// The token of an email-verification link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyEmailRequest {
    /// The `token` of the link in the verification email (64 hexadecimal characters).
    token: String,
}

/// What a verification confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Verified {
    user_id: String,
    /// `email` or `phone`.
    verified: &'static str,
}

/// Confirm an email address with the token of its verification link (single use). A link
/// mailed for a requested change of address (`PUT /api/v1/me/email`) makes the change: the
/// account's address becomes the one the link was mailed to, verified, and the old address is
/// told. Any confirmation spends every other link of the account, a pending change's too.
#[utoipa::path(
    tag = "accounts",
    operation_id = "verifyEmail",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The address is verified", body = Verified),
        (status = 400, description = "Unknown, used or expired (`invalid_or_expired_token`)", body = ErrorBody),
        (status = 409, description = "The new address of a change was taken by another account meanwhile (`already_registered`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/verify-email")]
async fn verify_email(
    api: web::Data<AccountsApi>,
    body: Json<VerifyEmailRequest>,
) -> Result<Reply<Verified>, ApiError> {
    let hash = mailed_token(&body.into_inner().token)?;
    let redeemed = api
        .accounts
        .redeem_account_token(&hash, TokenPurpose::VerifyEmail)
        .await?
        .ok_or_else(invalid_token)?;
    let user = live_user(&api, redeemed.user_id).await?;
    let target = redeemed
        .target
        .as_deref()
        .map(Email::parse)
        .transpose()
        .map_err(|_| invalid_token())?
        .ok_or_else(invalid_token)?;
    let current = user.email.clone();
    if current.as_ref() != Some(&target) {
        // Every verification token is spent when the address changes, so a live one for
        // another address is the link of a requested change.
        api.users
            .update_email(user.id, &target)
            .await
            .map_err(taken)?;
        api.accounts
            .retire_account_tokens(user.id, TokenPurpose::ResetPassword)
            .await?;
    }
    api.users
        .update_email_verification_status(user.id, true)
        .await
        .map_err(taken)?;
    ignore_missing(api.users.mark_credential_as_verified(user.id).await)?;
    // Every other link is spent, a pending change's among them: following the link of the
    // current address ends a change to another one.
    api.accounts
        .retire_account_tokens(user.id, TokenPurpose::VerifyEmail)
        .await?;
    if current.as_ref() != Some(&target) {
        api.publish(events::envelope::UserIdentifierChanged {
            user_id: user.id.to_string(),
            channel: "email".into(),
            old_value: current.map(String::from),
            new_value: target.as_str().to_owned(),
            changed_at: Utc::now(),
        });
    }
    Ok(Reply::ok(Verified {
        user_id: user.id.to_string(),
        verified: "email",
    })
    .for_user(user.id.to_string()))
}

/// `Ok` when the record is missing: what the call would change is not there (a user who has
/// no password credential).
fn ignore_missing(result: Result<(), RepoError>) -> Result<(), ApiError> {
    match result {
        Ok(()) | Err(RepoError::NotFound { .. }) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

async fn live_user(api: &AccountsApi, user_id: UserId) -> Result<domain::UserProfile, ApiError> {
    match api.users.get_user_by_id(user_id).await {
        Ok(user) => Ok(user),
        Err(RepoError::NotFound { .. }) => Err(invalid_token()),
        Err(other) => Err(other.into()),
    }
}

/// A phone number and the code texted to it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+14155550100", "code": "123456"}))]
pub(crate) struct VerifyPhoneRequest {
    /// E.164, as registered.
    phone: String,
    /// The six digits of the text message.
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
}

/// Confirm a phone number with the six-digit code texted to it (single use). Attempts count
/// per number: past `PHONE_CODE_MAX_FAILURES` in the window the answer is 429; the right code
/// clears the count.
#[utoipa::path(
    tag = "accounts",
    operation_id = "verifyPhone",
    request_body = VerifyPhoneRequest,
    responses(
        (status = 200, description = "The number is verified", body = Verified),
        (status = 400, description = "Wrong, used or expired code (`invalid_or_expired_token`)", body = ErrorBody),
        (status = 429, description = "Too many wrong codes for this number (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/verify-phone")]
async fn verify_phone(
    api: web::Data<AccountsApi>,
    body: Json<VerifyPhoneRequest>,
) -> Result<Reply<Verified>, ApiError> {
    let body = body.into_inner();
    let phone = Phone::parse(&body.phone)?;
    if body.code.len() != 6 || !body.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("code", "code must be six digits"));
    }
    let identifier = Identifier::Phone(phone.clone());
    api.count_code_attempt(&identifier).await?;
    let user = match api.users.get_user_by_identifier(&identifier).await {
        Ok(found) => found.user,
        Err(RepoError::NotFound { .. }) => return Err(invalid_token()),
        Err(other) => return Err(other.into()),
    };
    let hash = code_hash(user.id, TokenPurpose::VerifyPhone, &body.code);
    let redeemed = api
        .accounts
        .redeem_account_token(&hash, TokenPurpose::VerifyPhone)
        .await?
        .ok_or_else(invalid_token)?;
    if redeemed.target.as_deref() != Some(phone.as_str()) {
        return Err(invalid_token());
    }
    api.users
        .update_phone_verification_status(user.id, true)
        .await
        .map_err(taken)?;
    ignore_missing(api.users.mark_credential_as_verified(user.id).await)?;
    api.accounts
        .retire_account_tokens(user.id, TokenPurpose::VerifyPhone)
        .await?;
    api.code_accepted(&identifier).await?;
    Ok(Reply::ok(Verified {
        user_id: user.id.to_string(),
        verified: "phone",
    })
    .for_user(user.id.to_string()))
}

/// An email address or phone number to send something to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub(crate) struct IdentifierRequest {
    /// One of `email` and `phone`.
    #[schema(format = Email)]
    email: Option<String>,
    /// E.164; one of `email` and `phone`.
    phone: Option<String>,
}

const RESEND_ANSWER: &str =
    "if an account with an unverified address like this exists, a new message is on its way";

/// Ask for a new verification email or code.
///
/// The answer is the same whether or not such an account exists. At most
/// `ACCOUNT_MESSAGES_PER_WINDOW` per address and `ACCOUNT_MESSAGES_PER_IP` per client per
/// window (429 past that, for any address).
#[utoipa::path(
    tag = "accounts",
    operation_id = "resendVerification",
    request_body = IdentifierRequest,
    responses(
        (status = 202, description = "Noted; a message is sent if there is anyone to send it to", body = Done),
        (status = 429, description = "Too many messages asked (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/resend-verification")]
async fn resend_verification(
    api: web::Data<AccountsApi>,
    request: HttpRequest,
    body: Json<IdentifierRequest>,
) -> Result<Reply<Done>, ApiError> {
    let body = body.into_inner();
    let identifier = identifier(body.email.as_deref(), body.phone.as_deref())?;
    api.count_message(&identifier, &api.caller(&request), None)
        .await?;
    match api.users.get_user_by_identifier(&identifier).await {
        Ok(found) => {
            let (channel, verified) = match identifier {
                Identifier::Email(_) => ("email", found.user.is_email_verified),
                Identifier::Phone(_) => ("phone", found.user.is_phone_verified),
            };
            if !verified {
                api.publish(events::envelope::UserVerificationRequested {
                    user_id: found.user.id.to_string(),
                    channel: channel.into(),
                    requested_at: Utc::now(),
                });
            }
        }
        Err(RepoError::NotFound { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(Reply::accepted(done(RESEND_ANSWER)))
}

/// The address to mail a reset link to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub(crate) struct PasswordResetRequest {
    #[schema(format = Email)]
    email: String,
}

/// Ask for a password reset link by email.
///
/// The answer is the same whether or not the address belongs to an account. At most
/// `ACCOUNT_MESSAGES_PER_WINDOW` per address and `ACCOUNT_MESSAGES_PER_IP` per client per
/// window.
#[utoipa::path(
    tag = "accounts",
    operation_id = "requestPasswordReset",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Noted; a link is mailed if the address belongs to an account", body = Done),
        (status = 429, description = "Too many messages asked (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/password-reset")]
async fn request_password_reset(
    api: web::Data<AccountsApi>,
    request: HttpRequest,
    body: Json<PasswordResetRequest>,
) -> Result<Reply<Done>, ApiError> {
    let identifier = Identifier::Email(Email::parse(&body.into_inner().email)?);
    api.count_message(&identifier, &api.caller(&request), None)
        .await?;
    match api.users.get_user_by_identifier(&identifier).await {
        Ok(found) => api.publish(events::envelope::UserPasswordResetRequested {
            user_id: found.user.id.to_string(),
            requested_at: Utc::now(),
        }),
        Err(RepoError::NotFound { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(Reply::accepted(done(
        "if the address belongs to an account, a reset link is on its way",
    )))
}

/// A reset token and the new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordResetConfirmation {
    /// The `token` of the link in the reset email.
    token: String,
    /// The password policy of registration; not the current one nor one of the last
    /// `PASSWORD_HISTORY`.
    #[schema(format = Password)]
    new_password: String,
}

/// Set a new password with the token of a reset link.
///
/// Every session and token of the user ends: whoever knew the old password is signed out.
/// The address the link went to counts as verified, and its failed sign-ins are forgotten.
#[utoipa::path(
    tag = "accounts",
    operation_id = "confirmPasswordReset",
    request_body = PasswordResetConfirmation,
    responses(
        (status = 200, description = "The password is set; sign in with it", body = Done),
        (status = 400, description = "Unknown, used or expired token (`invalid_or_expired_token`)", body = ErrorBody),
        (status = 422, description = "The password breaks the policy (`validation_failed`) or was used before (`password_reused`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/password-reset/confirm")]
async fn confirm_password_reset(
    api: web::Data<AccountsApi>,
    body: Json<PasswordResetConfirmation>,
) -> Result<Reply<Done>, ApiError> {
    let body = body.into_inner();
    let hash = mailed_token(&body.token)?;
    api.password_rules
        .check("new_password", &body.new_password)?;
    // Looked at first, spent only once the password is acceptable and hashed: a reused
    // password or a full hashing pool does not cost the user their link.
    let holder = api
        .accounts
        .account_token_holder(&hash, TokenPurpose::ResetPassword)
        .await?
        .ok_or_else(invalid_token)?;
    let user = live_user(&api, holder).await?;
    api.check_new_password(user.id, "new_password", &body.new_password)
        .await
        .map_err(|e| {
            if e.code == ErrorCode::InvalidToken {
                invalid_token()
            } else {
                e
            }
        })?;
    let new_hash = api.hash_password(&body.new_password).await?;
    let redeemed = api
        .accounts
        .redeem_account_token(&hash, TokenPurpose::ResetPassword)
        .await?
        .ok_or_else(invalid_token)?;
    if redeemed.user_id != user.id {
        return Err(invalid_token());
    }
    // Fail safe: the old password stops working first, then every session and token of the
    // user ends; only then is the new password set (which lifts the invalidation). A failure
    // in between leaves the account locked to a new reset, never open to the old password.
    ignore_missing(api.users.invalidate_all_credentials(user.id).await)?;
    api.revoke_everything(user.id, "password_reset").await?;
    // A client registered with a stolen password keeps no way in: its secret is void until the
    // owner rotates it (POST /api/v1/oauth2/clients/{client_id}/secret).
    api.accounts.retire_client_secrets(user.id).await?;
    api.users
        .update_password(user.id, &new_hash)
        .await
        .map_err(taken)?;
    api.accounts
        .retire_account_tokens(user.id, TokenPurpose::ResetPassword)
        .await?;
    let mailed_to = redeemed
        .target
        .as_deref()
        .and_then(|t| Email::parse(t).ok());
    if let Some(email) = &mailed_to {
        // The link proved the mailbox: the address is verified if it is still the account's,
        // and the failed sign-ins counted against it are forgotten.
        if user.email.as_ref() == Some(email) && !user.is_email_verified {
            api.users
                .update_email_verification_status(user.id, true)
                .await?;
        }
        api.forget_failed_sign_ins(&Identifier::Email(email.clone()))
            .await?;
    }
    api.publish(events::envelope::UserPasswordChanged {
        user_id: user.id.to_string(),
        email: user.email.map(String::from),
        method: "reset".into(),
        changed_at: Utc::now(),
    });
    Ok(
        Reply::ok(done("password set; every session has ended, sign in again"))
            .for_user(user.id.to_string()),
    )
}

/// The current password and the new one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    #[schema(format = Password)]
    current_password: String,
    #[schema(format = Password)]
    new_password: String,
}

/// Change the password (signed in, with the current one). Every other session ends.
#[utoipa::path(
    tag = "accounts",
    operation_id = "changePassword",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; this session goes on, the others ended", body = Done),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
        (status = 403, description = "The current password is wrong (`wrong_password`)", body = ErrorBody),
        (status = 422, description = "The new password breaks the policy (`validation_failed`) or was used before (`password_reused`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/me/password")]
async fn change_password(
    api: web::Data<AccountsApi>,
    who: SignedIn,
    request: HttpRequest,
    body: Json<PasswordChange>,
) -> Result<Reply<Done>, ApiError> {
    let body = body.into_inner();
    api.password_rules
        .check("new_password", &body.new_password)?;
    let user = api
        .reauthenticate(who, &body.current_password, &api.caller(&request))
        .await
        .map_err(|e| match e.field {
            Some(_) => e.with_field("current_password"),
            None => e,
        })?;
    api.check_new_password(who.user_id, "new_password", &body.new_password)
        .await?;
    let new_hash = api.hash_password(&body.new_password).await?;
    api.users
        .update_password(who.user_id, &new_hash)
        .await
        .map_err(account_gone)?;
    api.accounts
        .revoke_sessions_of(who.user_id, "password_changed", Some(who.session_id))
        .await?;
    // Links asked for before the change (a reset, an email change) are spent with it.
    for purpose in [TokenPurpose::ResetPassword, TokenPurpose::VerifyEmail] {
        api.accounts
            .retire_account_tokens(who.user_id, purpose)
            .await?;
    }
    api.publish(events::envelope::UserPasswordChanged {
        user_id: who.user_id.to_string(),
        email: user.email.map(String::from),
        method: "change".into(),
        changed_at: Utc::now(),
    });
    Ok(
        Reply::ok(done("password changed; your other sessions have ended"))
            .for_user(who.user_id.to_string()),
    )
}

/// A new email address, confirmed by the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailChange {
    #[schema(format = Email)]
    email: String,
    #[schema(format = Password)]
    password: String,
}

/// A new phone number, confirmed by the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhoneChange {
    /// E.164 (`+14155550100`).
    phone: String,
    #[schema(format = Password)]
    password: String,
}

/// A taken email or phone: 409 `already_registered`; a user gone since their token was
/// issued: 400 `invalid_or_expired_token`.
fn taken(error: RepoError) -> ApiError {
    match error {
        RepoError::Conflict(_) => ApiError::new(
            ErrorCode::AlreadyRegistered,
            "another account has this email or phone",
        ),
        RepoError::NotFound { .. } => invalid_token(),
        other => other.into(),
    }
}

/// A change of email address waiting for its confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailChangePending {
    message: &'static str,
    /// The address the confirmation link was mailed to.
    pending_email: String,
}

/// Ask to change the email address. Nothing changes until the link mailed to the new address
/// is followed (`POST /api/v1/auth/verify-email`): then the new address is the account's,
/// verified, and the old one is told. The current address is told of the request at once; a
/// password reset, a password change or a sign-out everywhere cancels it.
#[utoipa::path(
    tag = "accounts",
    operation_id = "changeEmail",
    security(("bearer" = [])),
    request_body = EmailChange,
    responses(
        (status = 202, description = "A confirmation link is on its way to the new address", body = EmailChangePending),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
        (status = 403, description = "The password is wrong (`wrong_password`)", body = ErrorBody),
        (status = 409, description = "Another account has this address (`already_registered`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords or messages (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[put("/api/v1/me/email")]
async fn change_email(
    api: web::Data<AccountsApi>,
    who: SignedIn,
    request: HttpRequest,
    body: Json<EmailChange>,
) -> Result<Reply<EmailChangePending>, ApiError> {
    let body = body.into_inner();
    let email = Email::parse(&body.email)?;
    let caller = api.caller(&request);
    let current = api.reauthenticate(who, &body.password, &caller).await?;
    if current.email.as_ref() == Some(&email) {
        return Err(ApiError::invalid(
            "email",
            "email is already this account's address",
        ));
    }
    // Counted before the check that says whether another account has it.
    let identifier = Identifier::Email(email.clone());
    api.count_message(&identifier, &caller, Some(who.user_id))
        .await?;
    if api
        .users
        .identifier_exists(&identifier)
        .await
        .map_err(account_gone)?
    {
        return Err(taken(RepoError::Conflict("email".into())));
    }
    api.publish(events::envelope::UserEmailChangeRequested {
        user_id: who.user_id.to_string(),
        new_email: email.as_str().to_owned(),
        session_id: Some(who.session_id.to_string()),
        requested_at: Utc::now(),
    });
    Ok(Reply::accepted(EmailChangePending {
        message: "follow the link mailed to the new address to make the change",
        pending_email: email.as_str().to_owned(),
    })
    .no_store()
    .for_user(who.user_id.to_string()))
}

/// Change the phone number. The new one is unverified until the code texted to it is given;
/// the old one is told by text. Counted like the messages it sends: `ACCOUNT_MESSAGES_PER_WINDOW`
/// per number and per account, `ACCOUNT_MESSAGES_PER_IP` per client.
#[utoipa::path(
    tag = "accounts",
    operation_id = "changePhone",
    security(("bearer" = [])),
    request_body = PhoneChange,
    responses(
        (status = 200, description = "Changed; the profile as it is now", body = Profile),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
        (status = 403, description = "The password is wrong (`wrong_password`)", body = ErrorBody),
        (status = 409, description = "Another account has this number (`already_registered`)", body = ErrorBody),
        (status = 429, description = "Too many password checks or messages (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[put("/api/v1/me/phone")]
async fn change_phone(
    api: web::Data<AccountsApi>,
    who: SignedIn,
    request: HttpRequest,
    body: Json<PhoneChange>,
) -> Result<Reply<Profile>, ApiError> {
    let body = body.into_inner();
    let phone = Phone::parse(&body.phone)?;
    let caller = api.caller(&request);
    let before = api.reauthenticate(who, &body.password, &caller).await?;
    if before.phone.as_ref() != Some(&phone) {
        // Texts go to the new number and the old one: counted like every message asked for.
        api.count_message(
            &Identifier::Phone(phone.clone()),
            &caller,
            Some(who.user_id),
        )
        .await?;
        api.users
            .update_phone(who.user_id, &phone, false)
            .await
            .map_err(|e| match e {
                RepoError::Conflict(_) => taken(e),
                other => account_gone(other),
            })?;
        api.accounts
            .retire_account_tokens(who.user_id, TokenPurpose::VerifyPhone)
            .await?;
        api.publish(events::envelope::UserIdentifierChanged {
            user_id: who.user_id.to_string(),
            channel: "phone".into(),
            old_value: before.phone.map(String::from),
            new_value: phone.as_str().to_owned(),
            changed_at: Utc::now(),
        });
    }
    profile(&api, who).await
}

/// The password, to confirm a deletion.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeletionRequest {
    #[schema(format = Password)]
    password: String,
}

/// A deletion, and until when it can be undone.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletionAccepted {
    message: &'static str,
    /// After this, `platform-admin purge-accounts` deletes the account for good.
    restore_until: DateTime<Utc>,
}

/// Delete the account: it is hidden at once (every token revoked, the email and phone free
/// again) and can be restored through the link mailed to it until `restore_until`
/// (`ACCOUNT_DELETION_GRACE`).
#[utoipa::path(
    tag = "accounts",
    operation_id = "deleteAccount",
    security(("bearer" = [])),
    request_body = DeletionRequest,
    responses(
        (status = 202, description = "Deleted; restorable until `restore_until`", body = DeletionAccepted),
        (status = 403, description = "The password is wrong (`wrong_password`), or the account is suspended (`account_suspended`)", body = ErrorBody),
        (status = 401, description = "No bearer token (`unauthenticated`) or not a live one (`invalid_token`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`too_many_requests`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/me/deletion")]
async fn delete_account(
    api: web::Data<AccountsApi>,
    who: SignedIn,
    request: HttpRequest,
    body: Json<DeletionRequest>,
) -> Result<Reply<DeletionAccepted>, ApiError> {
    let user = api
        .reauthenticate(who, &body.into_inner().password, &api.caller(&request))
        .await?;
    if user.status == domain::UserStatus::Suspended {
        // A restore makes an account active again: deleting is no way out of a suspension.
        return Err(ApiError::new(
            ErrorCode::AccountSuspended,
            "a suspended account cannot be deleted by its user",
        ));
    }
    api.users
        .soft_delete_user(who.user_id)
        .await
        .map_err(account_gone)?;
    api.revoke_everything(who.user_id, "account_deleted")
        .await?;
    for purpose in [
        TokenPurpose::VerifyEmail,
        TokenPurpose::VerifyPhone,
        TokenPurpose::ResetPassword,
    ] {
        api.accounts
            .retire_account_tokens(who.user_id, purpose)
            .await?;
    }
    let deleted_at = Utc::now();
    let restore_until =
        deleted_at + chrono::Duration::from_std(api.config.deletion_grace).unwrap_or_default();
    api.publish(events::envelope::UserDeleted {
        user_id: who.user_id.to_string(),
        email: user.email.map(String::from),
        deleted_at,
        restore_until,
    });
    Ok(Reply::accepted(DeletionAccepted {
        message: "account deleted; the link mailed to you restores it until restore_until",
        restore_until,
    })
    .for_user(who.user_id.to_string()))
}

/// The token of a restore link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreRequest {
    /// The `token` of the link in the deletion email.
    token: String,
}

/// Restore a deleted account with the token of the link mailed at its deletion.
#[utoipa::path(
    tag = "accounts",
    operation_id = "restoreAccount",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored; sign in again", body = Done),
        (status = 400, description = "Unknown, used or expired token, or the account is gone (`invalid_or_expired_token`)", body = ErrorBody),
        (status = 409, description = "Another account took the email or phone meanwhile (`already_registered`)", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/restore")]
async fn restore_account(
    api: web::Data<AccountsApi>,
    body: Json<RestoreRequest>,
) -> Result<Reply<Done>, ApiError> {
    let hash = mailed_token(&body.into_inner().token)?;
    let holder = api
        .accounts
        .account_token_holder(&hash, TokenPurpose::RestoreAccount)
        .await?
        .ok_or_else(invalid_token)?;
    match api.users.restore_user(holder).await {
        Ok(()) => {}
        Err(RepoError::NotFound { .. }) => return Err(invalid_token()),
        Err(RepoError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::AlreadyRegistered,
                "another account has taken this email or phone since the deletion",
            ));
        }
        Err(other) => return Err(other.into()),
    }
    api.accounts
        .redeem_account_token(&hash, TokenPurpose::RestoreAccount)
        .await?;
    Ok(Reply::ok(done("account restored; sign in again")).for_user(holder.to_string()))
}
