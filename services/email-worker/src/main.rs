//! Sends the waitlist's emails in reaction to its domain events, and the account messages in
//! reaction to account events.
//!
//! Consumer group `email-workers` on `domain-events` and `user-events`,
//! `KAFKA_WORKER_POOL_SIZE` (10) handlers. Account events (`accounts`): `user.registered` and
//! `user.verification_requested` → a verification link by email and a six-digit code by text,
//! `user.password_reset_requested` → a reset link, `user.password_changed` → a notice,
//! `user.email_change_requested` → a confirmation link to the new address (while the asking
//! session is live) and a heads-up to the current one, `user.identifier_changed` → a code to a
//! new phone and a notice to the old address or number, `user.deleted` → a restore link.
//! Domain events:
//! `user.signed_up` → welcome and verification link, `user.verified` → confirmation,
//! `referral.verified` → position update to the referrer, `reward.earned` → reward
//! notification, `campaign.milestone_reached` → announcement to the campaign's `notify_email`.
//! Each (event, template, recipient) is claimed in `sent_emails` before sending and marked sent
//! after, so a replayed event sends nothing twice. Templates and transports: `waitlist`.

mod accounts;
mod config;
mod handler;

use std::process::ExitCode;

use anyhow::Context as _;
use events::{Backoff, RetryPolicy};
use repo::{Accounts, PgUserRepository, Waitlist};
use waitlist::TextSender as _;
use waitlist::{Mailer, Templates, VerificationTokens};

use crate::accounts::AccountMessages;
use crate::config::EmailWorkerConfig;
use crate::handler::EmailHandler;

fn main() -> ExitCode {
    service_runtime::run_service("email-worker", |ctx| async move {
        let config = EmailWorkerConfig::from_env(&ctx.env)?;
        let mailer = Mailer::new(&config.mailer).context("setting up email sending")?;
        tracing::info!(?config, transport = mailer.kind(), "configured");
        let texts =
            waitlist::FileTextSender::from_env(&ctx.env).context("setting up text messages")?;
        // No SMS provider is wired in: say so where operators look.
        tracing::warn!(
            transport = texts.kind(),
            "text messages (phone codes) are written to SMS_OUTBOX_DIR, not sent; plug a provider into waitlist::texts::TextSender to deliver them"
        );
        let handler = EmailHandler {
            waitlist: Waitlist::new(ctx.database.clone()),
            accounts: AccountMessages {
                users: PgUserRepository::new(ctx.database.clone()),
                accounts: Accounts::new(ctx.database.clone()),
                texts: std::sync::Arc::new(texts),
                config: config.accounts.clone(),
            },
            mailer,
            templates: Templates::load(config.mailer.templates_dir.as_deref())
                .context("loading the email templates")?,
            tokens: VerificationTokens::new(config.verification_secret.clone()),
            participant_tokens: waitlist::ParticipantTokens::new(
                config.verification_secret.clone(),
            ),
            public_url: config.mailer.public_url.clone(),
        };
        let retry = RetryPolicy {
            max_attempts: config.max_attempts,
            backoff: Backoff::new(
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(60),
            ),
        };
        waitlist::worker::consume_also(
            &ctx,
            &config.worker,
            &[config.accounts.topic.as_str()],
            retry,
            handler,
        )
        .await
        .context("consuming domain and account events")
    })
}
