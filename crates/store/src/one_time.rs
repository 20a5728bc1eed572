//! What both backends share about single-use tokens: which table holds which kind.
use fraise_core::store::OneTimeKind;

/// `(table, primary key column)` of a kind. Static names only: nothing here comes from input.
pub(crate) fn table(kind: OneTimeKind) -> (&'static str, &'static str) {
    match kind {
        OneTimeKind::PasswordReset => ("tb_password_reset", "pk_password_reset"),
        OneTimeKind::EmailVerification => ("tb_email_verification", "pk_email_verification"),
    }
}
