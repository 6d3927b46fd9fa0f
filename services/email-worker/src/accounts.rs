//! The account events of `user-events` → the emails and text messages they call for. Tokens
//! and codes are issued here, just before sending, and stored only as hashes: no secret is on
//! a topic. Each message is claimed per (event, template, recipient) like the waitlist's, so a
//! replayed event sends nothing twice; a message whose send failed is retried with a new token
//! (the first was never delivered).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::accounts::{SecretToken, TokenPurpose, code_hash, six_digit_code};
use domain::{UserId, UserProfile};
use events::envelope::{
    UserDeleted, UserEmailChangeRequested, UserIdentifierChanged, UserPasswordChanged,
    UserPasswordResetRequested, UserRegistered, UserVerificationRequested,
};
use events::{Event, EventPayload, HandlerError};
use repo::{Accounts, PgUserRepository, RepoError, UserRepository as _};
use uuid::Uuid;
use waitlist::worker::repo_failure;
use waitlist::{MailError, TextMessage, TextSender};

use crate::config::AccountEmailConfig;
use crate::handler::EmailHandler;

/// What account messages need beside the mailer.
#[derive(Debug, Clone)]
pub(crate) struct AccountMessages {
    pub(crate) users: PgUserRepository,
    pub(crate) accounts: Accounts,
    pub(crate) texts: Arc<dyn TextSender>,
    pub(crate) config: AccountEmailConfig,
}

fn user_id(text: &str) -> Result<UserId, HandlerError> {
    text.parse::<i64>().map(UserId::from_i64).map_err(|_| {
        HandlerError::reject(
            "invalid_event",
            format!("user_id {text:?} is not a user ID"),
        )
    })
}

/// A time as the emails show it: `2026-12-01T09:30:00Z`.
fn when(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn expiry(ttl: std::time::Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default()
}

fn text_failure(error: MailError) -> HandlerError {
    match error {
        MailError::Permanent(_) => HandlerError::reject("text_refused", error),
        MailError::Transient(_) => HandlerError::retry("text_not_sent", error),
    }
}

impl EmailHandler {
    /// Handles an account event; other events need nothing.
    pub(crate) async fn account_event(&self, event: &Event) -> Result<(), HandlerError> {
        match &event.payload {
            EventPayload::UserRegistered(UserRegistered { user_id: id, .. }) => {
                let Some(user) = self.live_user(id).await? else {
                    return Ok(());
                };
                self.verify_email(event.id, &user).await?;
                self.verify_phone(event.id, &user).await
            }
            EventPayload::UserVerificationRequested(UserVerificationRequested {
                user_id: id,
                channel,
                ..
            }) => {
                let Some(user) = self.live_user(id).await? else {
                    return Ok(());
                };
                match channel.as_str() {
                    "email" => self.verify_email(event.id, &user).await,
                    "phone" => self.verify_phone(event.id, &user).await,
                    other => Err(HandlerError::reject(
                        "invalid_event",
                        format!("channel {other:?} is neither email nor phone"),
                    )),
                }
            }
            EventPayload::UserPasswordResetRequested(UserPasswordResetRequested {
                user_id: id,
                ..
            }) => {
                let Some(user) = self.live_user(id).await? else {
                    return Ok(());
                };
                self.password_reset(event.id, &user).await
            }
            EventPayload::UserPasswordChanged(UserPasswordChanged {
                email: Some(email),
                method,
                changed_at,
                ..
            }) => {
                let values = vec![("method", method.clone()), ("changed_at", when(changed_at))];
                self.send(event.id, "password_changed", email, &values)
                    .await
            }
            EventPayload::UserEmailChangeRequested(request) => {
                self.email_change_requested(event.id, request).await
            }
            EventPayload::UserIdentifierChanged(change) => {
                self.identifier_changed(event.id, change).await
            }
            EventPayload::UserDeleted(deleted) => self.deleted(event.id, deleted).await,
            _ => Ok(()),
        }
    }

    /// The live user an event is about; `None` when they are gone (deleted since), so the
    /// message is moot.
    async fn live_user(&self, id: &str) -> Result<Option<UserProfile>, HandlerError> {
        match self.accounts.users.get_user_by_id(user_id(id)?).await {
            Ok(user) => Ok(Some(user)),
            Err(RepoError::NotFound { .. }) => Ok(None),
            Err(other) => Err(repo_failure(other)),
        }
    }

    /// A verification link to the user's current email, unless it is verified.
    async fn verify_email(&self, event_id: Uuid, user: &UserProfile) -> Result<(), HandlerError> {
        let Some(email) = user.email.as_ref().filter(|_| !user.is_email_verified) else {
            return Ok(());
        };
        self.verification_link(event_id, user.id, email.as_str(), "verify_email")
            .await
    }

    /// A verification link for `email`: the current address (`verify_email`), or the new one
    /// of a change (`confirm_email_change`).
    async fn verification_link(
        &self,
        event_id: Uuid,
        user_id: UserId,
        email: &str,
        template: &'static str,
    ) -> Result<(), HandlerError> {
        if !self.claim(event_id, template, email).await? {
            return Ok(());
        }
        let token = SecretToken::generate();
        let expires_at = expiry(self.accounts.config.email_verification_ttl);
        self.accounts
            .accounts
            .issue_account_token(
                &token.hash(),
                user_id,
                TokenPurpose::VerifyEmail,
                Some(email),
                expires_at,
            )
            .await
            .map_err(repo_failure)?;
        let values = vec![
            (
                "verification_link",
                format!(
                    "{}/verify-email?token={}",
                    self.accounts.config.public_url,
                    token.expose()
                ),
            ),
            ("verification_token", token.expose().to_owned()),
            ("expires_at", when(&expires_at)),
        ];
        self.deliver(event_id, template, email, &values).await
    }

    /// A six-digit code texted to the user's current phone, unless it is verified.
    async fn verify_phone(&self, event_id: Uuid, user: &UserProfile) -> Result<(), HandlerError> {
        let Some(phone) = user.phone.as_ref().filter(|_| !user.is_phone_verified) else {
            return Ok(());
        };
        let phone = phone.as_str();
        if !self.claim(event_id, "verify_phone", phone).await? {
            return Ok(());
        }
        let code = six_digit_code();
        let ttl = self.accounts.config.phone_code_ttl;
        // One live code at a time: every code more would be another guess that fits.
        self.accounts
            .accounts
            .retire_account_tokens(user.id, TokenPurpose::VerifyPhone)
            .await
            .map_err(repo_failure)?;
        self.accounts
            .accounts
            .issue_account_token(
                &code_hash(user.id, TokenPurpose::VerifyPhone, &code),
                user.id,
                TokenPurpose::VerifyPhone,
                Some(phone),
                expiry(ttl),
            )
            .await
            .map_err(repo_failure)?;
        let minutes = (ttl.as_secs() / 60).max(1);
        self.text(
            event_id,
            "verify_phone",
            phone,
            format!("Your verification code is {code}. It expires in {minutes} minutes."),
        )
        .await
    }

    async fn password_reset(&self, event_id: Uuid, user: &UserProfile) -> Result<(), HandlerError> {
        let Some(email) = user.email.as_ref() else {
            return Ok(());
        };
        let email = email.as_str();
        if !self.claim(event_id, "password_reset", email).await? {
            return Ok(());
        }
        let token = SecretToken::generate();
        let expires_at = expiry(self.accounts.config.password_reset_ttl);
        self.accounts
            .accounts
            .issue_account_token(
                &token.hash(),
                user.id,
                TokenPurpose::ResetPassword,
                Some(email),
                expires_at,
            )
            .await
            .map_err(repo_failure)?;
        let values = vec![
            (
                "reset_link",
                format!(
                    "{}/reset-password?token={}",
                    self.accounts.config.public_url,
                    token.expose()
                ),
            ),
            ("reset_token", token.expose().to_owned()),
            ("expires_at", when(&expires_at)),
        ];
        self.deliver(event_id, "password_reset", email, &values)
            .await
    }

    /// A link to the new address of a requested change, made only while the session that
    /// asked is live (a sign-out everywhere, a password reset or a change of password ends it,
    /// and with it the change), and a heads-up to the current address (or phone).
    async fn email_change_requested(
        &self,
        event_id: Uuid,
        request: &UserEmailChangeRequested,
    ) -> Result<(), HandlerError> {
        let Some(user) = self.live_user(&request.user_id).await? else {
            return Ok(());
        };
        let session = request
            .session_id
            .as_deref()
            .map(|id| {
                Uuid::try_parse(id).map_err(|_| {
                    HandlerError::reject(
                        "invalid_event",
                        format!("session_id {id:?} is not a UUID"),
                    )
                })
            })
            .transpose()?;
        if !self.session_is_live(session).await? {
            tracing::info!(%event_id, "email change asked by a session that has ended; no link");
            return Ok(());
        }
        self.verification_link(
            event_id,
            user.id,
            &request.new_email,
            "confirm_email_change",
        )
        .await?;
        // Ended while the link was made: the sessions' end has spent the links made before
        // it; this one is spent here.
        if !self.session_is_live(session).await? {
            self.accounts
                .accounts
                .retire_account_tokens(user.id, TokenPurpose::VerifyEmail)
                .await
                .map_err(repo_failure)?;
            return Ok(());
        }
        match (&user.email, &user.phone) {
            (Some(current), _) => {
                let values = vec![
                    ("new_email", request.new_email.clone()),
                    ("requested_at", when(&request.requested_at)),
                ];
                self.send(
                    event_id,
                    "email_change_requested",
                    current.as_str(),
                    &values,
                )
                .await
            }
            (None, Some(phone)) => {
                if !self
                    .claim(event_id, "email_change_requested", phone.as_str())
                    .await?
                {
                    return Ok(());
                }
                let body = format!(
                    "Someone signed in to your account asked to add the email address {}. If \
                     this was not you, reset your password.",
                    request.new_email
                );
                self.text(event_id, "email_change_requested", phone.as_str(), body)
                    .await
            }
            (None, None) => Ok(()),
        }
    }

    /// Whether the session is live; an event without one (an older gateway's) counts as live.
    async fn session_is_live(&self, session: Option<Uuid>) -> Result<bool, HandlerError> {
        let Some(id) = session else {
            return Ok(true);
        };
        Ok(self
            .accounts
            .accounts
            .session(id)
            .await
            .map_err(repo_failure)?
            .is_some_and(|s| s.is_live(Utc::now())))
    }

    /// A new phone number gets its code (if it is still the user's; a new email address was
    /// verified by the link that made the change); the old address or number is told.
    async fn identifier_changed(
        &self,
        event_id: Uuid,
        change: &UserIdentifierChanged,
    ) -> Result<(), HandlerError> {
        if let Some(user) = self.live_user(&change.user_id).await? {
            match change.channel.as_str() {
                "phone"
                    if user
                        .phone
                        .as_ref()
                        .is_some_and(|p| p.as_str() == change.new_value) =>
                {
                    self.verify_phone(event_id, &user).await?;
                }
                _ => {}
            }
        }
        match (&change.old_value, change.channel.as_str()) {
            (Some(old), "email") => {
                let values = vec![
                    ("new_email", change.new_value.clone()),
                    ("changed_at", when(&change.changed_at)),
                ];
                self.send(event_id, "email_changed", old, &values).await
            }
            (Some(old), "phone") => {
                if !self.claim(event_id, "phone_changed", old).await? {
                    return Ok(());
                }
                let body = format!(
                    "The phone number of your account was changed at {}. If you did not do \
                     this, reset your password.",
                    when(&change.changed_at)
                );
                self.text(event_id, "phone_changed", old, body).await
            }
            _ => Ok(()),
        }
    }

    /// A restore link, valid until the end of the grace period, by email (or by text when the
    /// account had no email). Nothing when the account was restored or purged since.
    async fn deleted(&self, event_id: Uuid, deleted: &UserDeleted) -> Result<(), HandlerError> {
        let id = user_id(&deleted.user_id)?;
        let user = match self.accounts.users.get_user_with_credentials(id).await {
            Ok((user, _)) => user,
            Err(RepoError::NotFound { .. }) => return Ok(()),
            Err(other) => return Err(repo_failure(other)),
        };
        if user.deleted_at.is_none() || deleted.restore_until <= Utc::now() {
            return Ok(());
        }
        let (template, to) = match (&deleted.email, &user.phone) {
            (Some(email), _) => ("account_deleted", email.clone()),
            (None, Some(phone)) => ("restore_text", phone.as_str().to_owned()),
            (None, None) => return Ok(()),
        };
        if !self.claim(event_id, template, &to).await? {
            return Ok(());
        }
        let token = SecretToken::generate();
        self.accounts
            .accounts
            .issue_account_token(
                &token.hash(),
                id,
                TokenPurpose::RestoreAccount,
                None,
                deleted.restore_until,
            )
            .await
            .map_err(repo_failure)?;
        let link = format!(
            "{}/restore-account?token={}",
            self.accounts.config.public_url,
            token.expose()
        );
        if template == "restore_text" {
            let body = format!(
                "Your account was deleted. Restore it until {} at {link}",
                deleted.restore_until.date_naive()
            );
            return self.text(event_id, template, &to, body).await;
        }
        let values = vec![
            ("deleted_at", when(&deleted.deleted_at)),
            ("restore_until", when(&deleted.restore_until)),
            ("restore_link", link),
            ("restore_token", token.expose().to_owned()),
        ];
        self.deliver(event_id, template, &to, &values).await
    }

    /// Sends a claimed text message and records it sent.
    async fn text(
        &self,
        event_id: Uuid,
        template: &'static str,
        to: &str,
        body: String,
    ) -> Result<(), HandlerError> {
        self.accounts
            .texts
            .send(&TextMessage {
                to: to.to_owned(),
                body,
            })
            .await
            .map_err(text_failure)?;
        self.waitlist
            .mark_email_sent(event_id, template, to)
            .await
            .map_err(repo_failure)?;
        metrics::counter!("texts_sent_total", "template" => template).increment(1);
        tracing::info!(%event_id, template, "text message sent");
        Ok(())
    }
}
