//! Housekeeping: the periodic cleanup and reading the audit trail.
use super::AuthService;
use crate::error::AuthError;
use crate::model::AuditEvent;
use crate::store::{AuditFilter, CleanupReport};

/// Rows deleted per statement by the cleanup.
const CLEANUP_BATCH: u32 = 1000;

impl AuthService {
    /// One cleanup pass: ended sessions past retention, expired single-use tokens, old audit rows.
    /// Also forgets per-client limiter state that has fully recovered (bounded memory).
    pub async fn cleanup(&self) -> Result<CleanupReport, AuthError> {
        self.forgot_limiter.prune();
        let now = self.clock.now();
        let s = &self.settings;
        Ok(self.store.cleanup(now, now - s.session_retention, now - s.audit_retention, CLEANUP_BATCH).await?)
    }

    /// Audit rows, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuthError> {
        Ok(self.store.list_audit(filter).await?)
    }
}
