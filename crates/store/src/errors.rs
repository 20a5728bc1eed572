//! One place that decides what a `sqlx::Error` means to the service.
use fraise_core::StoreError;

pub(crate) fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Other(Box::new(e)),
    }
}

/// PostgreSQL SQLSTATEs that mean "the server is going away or not there yet" (class 08, and
/// 57P01-57P03 admin/crash shutdown, cannot connect now), and SQLite's BUSY/LOCKED (5, 6).
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "5" | "6"),
        None => false,
    }
}

/// Wraps a decoding problem (a row that does not fit the model) as a store error.
pub(crate) fn decode(what: &'static str) -> StoreError {
    StoreError::Other(format!("could not decode {what}").into())
}
