//! Email over SMTP (lettre): multipart alternative, plain text and HTML. The Message-ID is
//! derived from the idempotency key, so every attempt of one delivery carries the same id.

use crate::notice::Notice;
use crate::{Notifier, NotifyError};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use meetbot_core::model::DeliveryChannel;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a local relay or a test server only).
    None,
    /// STARTTLS on the submission port (587).
    StartTls,
    /// Implicit TLS (465).
    Tls,
}

#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The sender, e.g. `meetbot <summaries@example.com>`.
    pub from: String,
    pub timeout: Duration,
}

pub struct SmtpNotifier {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpNotifier {
    pub fn new(s: &SmtpSettings) -> Result<SmtpNotifier, NotifyError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            NotifyError::Permanent(format!("SMTP settings: {what}: {e}"))
        };
        let mut b = match s.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            }
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                .map_err(|e| bad("host", &e))?,
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(|e| bad("host", &e))?
            }
        }
        .port(s.port)
        .timeout(Some(s.timeout));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose_secret().to_string()));
        }
        let from: Mailbox = s.from.parse().map_err(|e| bad("from", &e))?;
        Ok(SmtpNotifier {
            mailer: b.build(),
            from,
        })
    }
}

/// Whether `s` is an email address SMTP can send to.
pub fn is_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

/// `<hex of SHA-256(key)>@meetbot` (32 hex digits): stable per delivery, reveals nothing.
pub fn message_id(idempotency_key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, idempotency_key.as_bytes());
    format!("<{}@meetbot>", &hex::encode(d.as_ref())[..32])
}

/// The email of `notice` to `to`: plain text and HTML, its Message-ID from the idempotency key.
fn message(
    from: &Mailbox,
    to: &str,
    notice: &Notice,
    idempotency_key: &str,
) -> Result<Message, NotifyError> {
    let to: Mailbox = to
        .parse()
        .map_err(|_| NotifyError::Permanent("the address is not an email address".into()))?;
    let subject: String = format!("Meeting summary: {}", notice.title)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id(idempotency_key)))
        .multipart(MultiPart::alternative_plain_html(
            notice.text(),
            notice.html(),
        ))
        .map_err(|e| NotifyError::Permanent(format!("cannot build the email: {e}")))
}

/// Email written as `.eml` files (RFC 5322, what an SMTP server would get) into a folder
/// instead of sent: `meetbot dev`'s outbox folder, for one machine without a mail relay.
pub struct FileNotifier {
    transport: AsyncFileTransport<Tokio1Executor>,
    from: Mailbox,
}

impl FileNotifier {
    /// Writes into `dir` (created if missing, readable by its owner only).
    pub fn new(dir: &std::path::Path, from: &str) -> Result<FileNotifier, NotifyError> {
        let bad = |e: &dyn std::fmt::Display| {
            NotifyError::Permanent(format!("email folder {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| bad(&e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| bad(&e))?;
        }
        let from: Mailbox = from
            .parse()
            .map_err(|e| NotifyError::Permanent(format!("delivery.from: {e}")))?;
        Ok(FileNotifier {
            transport: AsyncFileTransport::new(dir),
            from,
        })
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn channel(&self) -> DeliveryChannel {
        DeliveryChannel::Email
    }

    async fn send(
        &self,
        to: &str,
        notice: &Notice,
        idempotency_key: &str,
    ) -> Result<(), NotifyError> {
        let msg = message(&self.from, to, notice, idempotency_key)?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Retry {
                reason: format!("cannot write the email file: {e}"),
                after: None,
            })
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    fn channel(&self) -> DeliveryChannel {
        DeliveryChannel::Email
    }

    async fn send(
        &self,
        to: &str,
        notice: &Notice,
        idempotency_key: &str,
    ) -> Result<(), NotifyError> {
        let msg = message(&self.from, to, notice, idempotency_key)?;
        match self.mailer.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(NotifyError::Permanent(format!(
                "the SMTP server refused the email ({})",
                e.status().map(|c| c.to_string()).unwrap_or_default()
            ))),
            Err(e) => Err(NotifyError::Retry {
                reason: if e.is_transient() {
                    format!(
                        "the SMTP server deferred the email ({})",
                        e.status().map(|c| c.to_string()).unwrap_or_default()
                    )
                } else {
                    "cannot reach the SMTP server".into()
                },
                after: None,
            }),
        }
    }
}
