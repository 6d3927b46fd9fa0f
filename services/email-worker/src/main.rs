//! Sends the waitlist's emails in reaction to domain events (seed 003).
//!
//! Consumer group `email-workers` on `domain-events`, `KAFKA_WORKER_POOL_SIZE` (10) handlers:
//! `user.signed_up` → welcome and verification link, `user.verified` → confirmation,
//! `referral.verified` → position update to the referrer, `reward.earned` → reward
//! notification, `campaign.milestone_reached` → announcement to the campaign's `notify_email`.
//! Each (event, template, recipient) is claimed in `sent_emails` before sending and marked sent
//! after, so a replayed event sends nothing twice. Templates and transports: `waitlist`.

mod config;
mod handler;

use std::process::ExitCode;

use anyhow::Context as _;
use events::{Backoff, RetryPolicy};
use repo::Waitlist;
use waitlist::{Mailer, Templates, VerificationTokens};

use crate::config::EmailWorkerConfig;
use crate::handler::EmailHandler;

fn main() -> ExitCode {
    service_runtime::run_service("email-worker", |ctx| async move {
        let config = EmailWorkerConfig::from_env(&ctx.env)?;
        let mailer = Mailer::new(&config.mailer).context("setting up email sending")?;
        tracing::info!(?config, transport = mailer.kind(), "configured");
        let handler = EmailHandler {
            waitlist: Waitlist::new(ctx.database.clone()),
            mailer,
            templates: Templates::load(config.mailer.templates_dir.as_deref())
                .context("loading the email templates")?,
            tokens: VerificationTokens::new(config.verification_secret.clone()),
            public_url: config.mailer.public_url.clone(),
        };
        let retry = RetryPolicy {
            max_attempts: config.max_attempts,
            backoff: Backoff::new(
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(60),
            ),
        };
        waitlist::worker::consume(&ctx, &config.worker, retry, handler)
            .await
            .context("consuming domain events")
    })
}
