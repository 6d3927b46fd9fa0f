//! Sending email: SMTP (lettre) to `SMTP_URL`, or, with no `SMTP_URL`, each message as an
//! `.eml` file in `EMAIL_OUTBOX_DIR` (the local default: no mail server needed to see what would
//! be sent).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SMTP_URL` | unset | `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS) or `smtps://…`; user and password in the URL |
//! | `EMAIL_OUTBOX_DIR` | `./email-outbox` | where messages go as `.eml` files when `SMTP_URL` is unset |
//! | `EMAIL_FROM` | `Waitlist <waitlist@example.com>` | the sender |
//! | `SMTP_TIMEOUT` | `10s` | how long one SMTP conversation may take |
//! | `EMAIL_TEMPLATES_DIR` | unset | replacements for the built-in templates (`templates`) |
//! | `WAITLIST_PUBLIC_URL` | `http://127.0.0.1:3000` | the waitlist's web pages, for the links in emails |

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentTransferEncoding;
use lettre::message::header::ContentType;
use lettre::message::{Body, Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use service_runtime::{ConfigError, Env};

use crate::Rendered;

#[derive(Debug, Clone)]
pub struct MailerConfig {
    pub smtp_url: Option<SecretString>,
    pub outbox_dir: PathBuf,
    pub from: String,
    pub smtp_timeout: Duration,
    pub templates_dir: Option<PathBuf>,
    pub public_url: String,
}

impl MailerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let from = env.string("EMAIL_FROM", "Waitlist <waitlist@example.com>");
        if from.parse::<Mailbox>().is_err() {
            return Err(ConfigError::Invalid {
                name: "EMAIL_FROM".into(),
                value: from,
                reason: "not an email address (`Name <user@host>` or `user@host`)".into(),
            });
        }
        Ok(Self {
            smtp_url: env.secret("SMTP_URL"),
            outbox_dir: env.string("EMAIL_OUTBOX_DIR", "email-outbox").into(),
            from,
            smtp_timeout: env.duration("SMTP_TIMEOUT", Duration::from_secs(10))?,
            templates_dir: env.optional("EMAIL_TEMPLATES_DIR").map(PathBuf::from),
            public_url: crate::links::public_url_from_env(env),
        })
    }
}

/// One email to send.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub to: String,
    pub content: Rendered,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message cannot be sent as it is (a bad address, a permanent SMTP refusal).
    #[error("email refused: {0}")]
    Permanent(String),
    /// Worth another try (the server is down, a 4xx reply, a timeout, a full disk).
    #[error("email not sent: {0}")]
    Transient(String),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

/// Sends rendered emails. Cheap to clone: SMTP connections are pooled.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Files(_) => "files",
        };
        f.debug_struct("Mailer")
            .field("transport", &kind)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    pub fn new(config: &MailerConfig) -> Result<Self, MailError> {
        let from = config
            .from
            .parse()
            .map_err(|e| MailError::Permanent(format!("EMAIL_FROM: {e}")))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| MailError::Permanent(format!("SMTP_URL: {e}")))?
                    .timeout(Some(config.smtp_timeout))
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.outbox_dir).map_err(|e| {
                    MailError::Permanent(format!(
                        "cannot create {}: {e}",
                        config.outbox_dir.display()
                    ))
                })?;
                Transport::Files(AsyncFileTransport::new(&config.outbox_dir))
            }
        };
        Ok(Self { transport, from })
    }

    pub fn kind(&self) -> &'static str {
        match self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Files(_) => "eml-files",
        }
    }

    #[tracing::instrument(name = "email.send", skip_all, fields(otel.kind = "client"))]
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| MailError::Permanent(format!("recipient {:?}: {e}", email.to)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.content.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(readable_body(&email.content.body))
            .map_err(|e| MailError::Permanent(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| {
                if e.is_permanent() {
                    MailError::Permanent(e.to_string())
                } else {
                    MailError::Transient(e.to_string())
                }
            }),
            Transport::Files(files) => files
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Transient(e.to_string())),
        }
    }
}

/// The body as it is (7bit) when it is short-lined ASCII, so the raw message reads as written;
/// otherwise whatever encoding lettre picks (quoted-printable for long lines).
fn readable_body(body: &str) -> Body {
    Body::new_with_encoding(
        body.replace('\n', "\r\n"),
        ContentTransferEncoding::SevenBit,
    )
    .unwrap_or_else(|_| Body::new(body.to_owned()))
}

#[cfg(test)]
mod address_tests {
    use super::*;

    /// What the API accepts as an email address the mailer takes as a recipient, and what the
    /// mailer refuses the API refuses too.
    #[test]
    fn every_address_the_api_accepts_is_one_the_mailer_takes() {
        for input in [
            "ann@example.com",
            "First.Last+tag@Example.COM",
            "jose\u{301}@example.com",
            "ann@b\u{fc}cher.example",
            "o'brien@example.ie",
            "a!#$%&'*+/=?^_`{|}~-@example.com",
            "ann.@example.com",
            "a..b@example.com",
            "a(b)@example.com",
            "\"ab\"@example.com",
            "a@[127.0.0.1]",
        ] {
            let accepted = domain::Email::parse(input);
            let mailer = accepted
                .as_ref()
                .map(|e| e.as_str())
                .unwrap_or(input)
                .parse::<Mailbox>();
            match (&accepted, &mailer) {
                (Ok(email), Ok(to)) => {
                    let message = Message::builder()
                        .from("noreply@example.com".parse().unwrap())
                        .to(to.clone())
                        .subject("s")
                        .body(String::from("b"));
                    assert!(message.is_ok(), "{email:?}: {message:?}");
                }
                (Ok(email), Err(error)) => {
                    panic!("accepted {email:?}, the mailer refuses it: {error}")
                }
                (Err(_), _) => {}
            }
        }
        for refused in ["ann.@example.com", "a..b@example.com", "a(b)@example.com"] {
            assert!(domain::Email::parse(refused).is_err(), "{refused}");
            assert!(
                refused.parse::<Mailbox>().is_err(),
                "lettre refuses {refused} too"
            );
        }
    }
}
