//! The caller's sessions: list, revoke one, revoke the others, and the per-user cap.
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{AuthService, ClientInfo, Principal};
use crate::error::AuthError;
use crate::model::{RevokeReason, Session, SessionId};

impl AuthService {
    /// The caller's live sessions, most recently active first.
    pub async fn list_sessions(&self, p: &Principal) -> Result<Vec<Session>, AuthError> {
        let now = self.clock.now();
        let live = self.liveness(now);
        let sessions = self.store.live_sessions(p.user.id, now).await?;
        Ok(sessions.into_iter().filter(|s| live.admits(s)).collect())
    }

    /// Revokes one of the caller's other sessions. `id` is the public form (`sess_<uuid>`);
    /// anything that is not one of the caller's live sessions is "not found", so the answer
    /// never tells whether someone else's session exists.
    pub async fn revoke_own_session(&self, p: &Principal, id: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let id: SessionId = id.parse().map_err(|()| AuthError::SessionNotFound)?;
        if id == p.session.id {
            return Err(AuthError::CannotRevokeCurrentSession);
        }
        let now = self.clock.now();
        if !self.store.revoke_user_session(p.user.id, id, RevokeReason::Revoked, now).await? {
            return Err(AuthError::SessionNotFound);
        }
        self.audit(
            "session_revoked",
            Some(p.user.id),
            Some(id),
            client,
            json!({"by_session": p.session.id.to_string()}),
        )
        .await;
        Ok(())
    }

    /// Revokes every session of the caller except the current one; returns how many.
    pub async fn revoke_other_sessions(&self, p: &Principal, client: &ClientInfo) -> Result<u64, AuthError> {
        let now = self.clock.now();
        let n = self.store.revoke_user_sessions(p.user.id, Some(p.session.id), RevokeReason::Revoked, now).await?;
        let details = json!({"all_but": p.session.id.to_string(), "sessions_revoked": n});
        self.audit("session_revoked", Some(p.user.id), None, client, details).await;
        Ok(n)
    }

    /// After a login: beyond `max_sessions_per_user` live sessions, the least recently active
    /// ones (never the new one) are revoked.
    pub(super) async fn enforce_session_cap(
        &self,
        user: Uuid,
        newest: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let max = self.settings.max_sessions_per_user.max(1);
        let live = self.liveness(now);
        let sessions: Vec<_> =
            self.store.live_sessions(user, now).await?.into_iter().filter(|s| live.admits(s)).collect();
        if sessions.len() <= max {
            return Ok(());
        }
        // Most recently active first: keep the newest session and the next max-1.
        let mut kept = 1;
        for s in sessions.iter().filter(|s| s.id != newest) {
            if kept < max {
                kept += 1;
                continue;
            }
            self.store.revoke_session(s.id, RevokeReason::Revoked, now).await?;
            self.audit(
                "session_revoked",
                Some(user),
                Some(s.id),
                &ClientInfo::default(),
                json!({"reason": "session_limit"}),
            )
            .await;
        }
        Ok(())
    }
}
