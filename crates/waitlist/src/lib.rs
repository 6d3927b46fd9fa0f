#![doc = include_str!("../README.md")]

pub mod encoder;
pub mod links;
pub mod mailer;
pub mod relay;
pub mod templates;
pub mod texts;
pub mod tokens;
pub mod webhook;
pub mod worker;

pub use encoder::DomainEventEncoder;
pub use mailer::{MailError, Mailer, MailerConfig, OutgoingEmail};
pub use relay::{OutboxRelay, RelayConfig};
pub use templates::{Rendered, TemplateError, Templates};
pub use texts::{FileTextSender, TextMessage, TextSender};
pub use tokens::{ParticipantTokens, VerificationTokens};
