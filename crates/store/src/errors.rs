//! One place that decides what a `sqlx::Error` means to the service.
use fraise_core::StoreError;

pub(crate) fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if is_transient(db.as_ref()) => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Other(Box::new(e)),
    }
}

/// Whether a database error means "try again shortly" rather than "bug".
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code();
    let Some(code) = code.as_deref() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        sqlite_transient(code)
    } else {
        pg_transient(code)
    }
}

/// SQLite: sqlx reports extended result codes, whose low byte is the primary code; BUSY (5) and
/// LOCKED (6) are transient (e.g. 261 = SQLITE_BUSY_RECOVERY).
fn sqlite_transient(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xFF, 5 | 6))
}

/// PostgreSQL SQLSTATEs: class 08 (connection), class 53 (insufficient resources, e.g. too many
/// connections), 57014 (statement timeout), 57P01-57P03 (shutdown, cannot connect now), 40001 and
/// 40P01 (serialization failure, deadlock).
fn pg_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57014" | "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

/// Wraps a decoding problem (a row that does not fit the model) as a store error.
pub(crate) fn decode(what: &'static str) -> StoreError {
    StoreError::Other(format!("could not decode {what}").into())
}

#[cfg(test)]
mod tests {
    use super::{pg_transient, sqlite_transient};

    #[test]
    fn transient_codes_of_both_backends_are_unavailable() {
        for c in ["08006", "53300", "57014", "57P01", "40P01"] {
            assert!(pg_transient(c), "{c}");
        }
        for c in ["23505", "42P01", "22P02"] {
            assert!(!pg_transient(c), "{c}");
        }
        for c in ["5", "261", "517", "6", "262"] {
            assert!(sqlite_transient(c), "{c}");
        }
        for c in ["2067", "19", "1", "1555"] {
            assert!(!sqlite_transient(c), "{c}");
        }
    }
}
