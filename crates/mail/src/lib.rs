//! fraise-mail: how fraise-auth's emails leave the process.
//!
//! - [`Outbox`] (the default): each message is written as an `.eml` file under
//!   `DATA_DIR/outbox/` (the log names the file), so reset and verification work, and are testable,
//!   without a mail server.
//! - [`Smtp`]: `SMTP_URL` such as `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465`
//!   (implicit TLS) or `smtp://host:25?tls=none` (plain, for a relay on localhost), via lettre.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use async_trait::async_trait;
use fraise_core::mail::{MailError, Mailer, Message};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use lettre::message::Mailbox as Address;

/// Parses `Name <addr@example.com>` or a bare address.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn build(from: &Mailbox, m: &Message) -> Result<lettre::Message, MailError> {
    let to: Mailbox = m.to.parse().map_err(|e| MailError(format!("bad recipient: {e}")))?;
    // 7bit when the text allows it (ASCII, lines under 998 bytes): the link then stays readable
    // and greppable in the raw message. Otherwise lettre picks quoted-printable or base64.
    let body = Body::new_with_encoding(m.text.clone(), ContentTransferEncoding::SevenBit).unwrap_or_else(Body::new);
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(m.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError(format!("cannot build message: {e}")))
}

/// Writes messages to a folder, one `.eml` file each.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    from: Mailbox,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl Outbox {
    /// Creates the folder readable by its owner only: the messages hold live reset links.
    pub fn new(dir: PathBuf, from: Mailbox) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { transport: AsyncFileTransport::new(&dir), dir, from })
    }
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, m: Message) -> Result<(), MailError> {
        let email = build(&self.from, &m)?;
        let id = self.transport.send(email).await.map_err(|e| MailError(e.to_string()))?;
        // The link carries a single-use token: it stays in the file, never in the log.
        tracing::info!(to = %m.to, subject = %m.subject, file = %self.dir.join(format!("{id}.eml")).display(), "email written to the outbox (the link is in the file)");
        Ok(())
    }

    fn transport(&self) -> &'static str {
        "outbox"
    }
}

/// Sends through an SMTP server.
#[derive(Clone)]
pub struct Smtp {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Smtp {
    /// Parses `SMTP_URL`: scheme `smtp` (STARTTLS, required unless `?tls=none`) or `smtps`
    /// (implicit TLS); user and password in the URL are used for AUTH.
    pub fn from_url(url: &str, from: Mailbox) -> Result<Self, String> {
        let u = url::Url::parse(url).map_err(|e| format!("SMTP_URL is not a URL: {e}"))?;
        let host = u.host_str().ok_or("SMTP_URL has no host")?.to_owned();
        let plain = u.query_pairs().any(|(k, v)| k == "tls" && v == "none");
        let tls_params = || TlsParameters::new(host.clone()).map_err(|e| format!("TLS setup for {host}: {e}"));
        let (tls, default_port) = match u.scheme() {
            "smtps" => (Tls::Wrapper(tls_params()?), 465),
            "smtp" if plain => (Tls::None, 25),
            "smtp" => (Tls::Required(tls_params()?), 587),
            other => return Err(format!("SMTP_URL scheme must be smtp or smtps, not {other}")),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(u.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(20)));
        if !u.username().is_empty() {
            let user = percent_decode(u.username());
            let pass = percent_decode(u.password().unwrap_or(""));
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(Self { from, transport: builder.build() })
    }

    /// Opens a connection and says hello: for `doctor` and start-up checks.
    pub async fn check(&self) -> Result<bool, MailError> {
        self.transport.test_connection().await.map_err(|e| MailError(e.to_string()))
    }
}

/// URL userinfo decoding (`%40` → `@`); unlike form decoding, `+` stays `+`.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[async_trait]
impl Mailer for Smtp {
    async fn send(&self, m: Message) -> Result<(), MailError> {
        let email = build(&self.from, &m)?;
        self.transport.send(email).await.map_err(|e| MailError(e.to_string()))?;
        tracing::info!(to = %m.to, subject = %m.subject, "email sent over SMTP");
        Ok(())
    }

    fn transport(&self) -> &'static str {
        "smtp"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "fraise-auth <noreply@example.com>".parse().unwrap_or_else(|e| panic!("{e}"))
    }

    // A tokio runtime: lettre's pooled transport starts a task when built.
    #[tokio::test]
    async fn smtp_urls_are_parsed_or_refused_with_a_reason() {
        assert!(Smtp::from_url("smtp://user:p%40ss@mail.example.com:587", from()).is_ok());
        assert!(Smtp::from_url("smtps://mail.example.com", from()).is_ok());
        assert!(Smtp::from_url("smtp://127.0.0.1:2525?tls=none", from()).is_ok());
        assert!(Smtp::from_url("http://mail.example.com", from()).err().is_some_and(|e| e.contains("scheme")));
        assert!(Smtp::from_url("not a url", from()).is_err());
    }

    #[test]
    fn percent_encoded_credentials_are_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("a+b&c"), "a+b&c");
    }
}
