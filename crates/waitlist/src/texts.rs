//! Sending text messages (SMS): the [`TextSender`] interface, where an SMS provider plugs in,
//! and its local implementation, [`FileTextSender`], which writes each message as a file in
//! `SMS_OUTBOX_DIR` (no provider is reachable from a development machine; the folder shows what
//! would be sent, like the email outbox).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SMS_OUTBOX_DIR` | `./sms-outbox` | where text messages go, one `.txt` file each |

use std::path::PathBuf;

use async_trait::async_trait;
use service_runtime::Env;

use crate::MailError;

/// One text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// E.164.
    pub to: String,
    pub body: String,
}

/// Sends text messages. `MailError::Permanent` for a message that can never be sent (a number
/// the provider refuses), `Transient` for one worth another try.
#[async_trait]
pub trait TextSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, message: &TextMessage) -> Result<(), MailError>;
    /// For logs: which implementation this is.
    fn kind(&self) -> &'static str;
}

/// Writes each message to `<dir>/<unix millis>-<uuid>.txt`: `To: <number>`, a blank line, the
/// body. Written to a temporary name first and renamed, so a reader never sees half a message.
#[derive(Debug, Clone)]
pub struct FileTextSender {
    dir: PathBuf,
}

impl FileTextSender {
    /// `SMS_OUTBOX_DIR`, created when missing.
    pub fn from_env(env: &Env) -> Result<Self, MailError> {
        Self::new(env.string("SMS_OUTBOX_DIR", "sms-outbox").into())
    }

    pub fn new(dir: PathBuf) -> Result<Self, MailError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| MailError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self { dir })
    }
}

#[async_trait]
impl TextSender for FileTextSender {
    async fn send(&self, message: &TextMessage) -> Result<(), MailError> {
        let name = format!(
            "{}-{}",
            chrono::Utc::now().timestamp_millis(),
            uuid::Uuid::new_v4().simple()
        );
        let partial = self.dir.join(format!(".{name}.tmp"));
        let done = self.dir.join(format!("{name}.txt"));
        let text = format!("To: {}\n\n{}\n", message.to, message.body);
        let transient = |e: std::io::Error| MailError::Transient(e.to_string());
        tokio::fs::write(&partial, text).await.map_err(transient)?;
        tokio::fs::rename(&partial, &done).await.map_err(transient)
    }

    fn kind(&self) -> &'static str {
        "sms-files"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_message_is_one_file_in_the_folder() {
        let dir = std::env::temp_dir().join(format!("sms-{}", uuid::Uuid::new_v4()));
        let sender = FileTextSender::new(dir.clone()).unwrap();
        sender
            .send(&TextMessage {
                to: "+14155550100".into(),
                body: "Your code is 123456".into(),
            })
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        assert_eq!(text, "To: +14155550100\n\nYour code is 123456\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
