//! Outgoing email, as the domain sees it: a message and something that delivers it.
//!
//! Transports (the data-folder outbox, SMTP) live in `fraise-mail`; the service only builds
//! messages and links.
use async_trait::async_trait;

/// A plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The action link inside `text`, kept apart so transports can log it (outbox) and tests can
    /// follow it.
    pub link: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    async fn send(&self, message: Message) -> Result<(), MailError>;
    /// "outbox" or "smtp", for health and logs.
    fn transport(&self) -> &'static str;
}

/// Where emailed links point. Templates hold `{token}`; the default is
/// `{APP_BASE_URL}/reset-password?token={token}` and `{APP_BASE_URL}/verify-email?token={token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    pub reset_template: String,
    pub verify_template: String,
}

impl Links {
    pub fn from_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            reset_template: format!("{base}/reset-password?token={{token}}"),
            verify_template: format!("{base}/verify-email?token={{token}}"),
        }
    }

    /// The links of tenant `name`: `{tenant}` in a template becomes the name; a template without
    /// it gets a `tenant=` query parameter, so the page that receives the link knows which tenant
    /// to send the token to (tenant names need no URL escaping).
    pub fn for_tenant(&self, name: &str) -> Self {
        let bind = |t: &str| {
            if t.contains("{tenant}") {
                t.replace("{tenant}", name)
            } else {
                // Before any fragment, so a page reading `#token=...` still gets the token alone.
                let (base, fragment) = t.split_once('#').map_or((t, None), |(b, f)| (b, Some(f)));
                let sep = if base.contains('?') { '&' } else { '?' };
                match fragment {
                    Some(f) => format!("{base}{sep}tenant={name}#{f}"),
                    None => format!("{base}{sep}tenant={name}"),
                }
            }
        };
        Self { reset_template: bind(&self.reset_template), verify_template: bind(&self.verify_template) }
    }

    pub fn reset(&self, token: &str) -> String {
        self.reset_template.replace("{token}", token)
    }

    pub fn verify(&self, token: &str) -> String {
        self.verify_template.replace("{token}", token)
    }
}

impl Default for Links {
    fn default() -> Self {
        Self::from_base("http://localhost:8000")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fill_the_token_into_the_template() {
        let l = Links::from_base("https://app.example.com/");
        assert_eq!(l.reset("abc"), "https://app.example.com/reset-password?token=abc");
        let custom = Links { reset_template: "myapp://reset/{token}".into(), ..l.clone() };
        assert_eq!(custom.reset("t"), "myapp://reset/t");
        assert_eq!(l.for_tenant("acme").reset("abc"), "https://app.example.com/reset-password?token=abc&tenant=acme");
        assert_eq!(custom.for_tenant("acme").reset("t"), "myapp://reset/t?tenant=acme");
        let frag = Links { reset_template: "https://app/r#t={token}".into(), ..Links::default() };
        assert_eq!(frag.for_tenant("acme").reset("abc"), "https://app/r?tenant=acme#t=abc");
        let sub = Links { reset_template: "https://{tenant}.example.com/r?t={token}".into(), ..Links::default() };
        assert_eq!(sub.for_tenant("acme").reset("t"), "https://acme.example.com/r?t=t");
    }
}
