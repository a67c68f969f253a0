//! Errors of the storage layer.

/// A storage failure. Callers map the expected ones (not found, conflicts) to
/// protocol errors; the rest become 500s with the detail in the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The blob store's I/O failed.
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data is not what this version of Kura expects.
    #[error("corrupt stored state: {0}")]
    Corrupt(String),
    /// The caller's input cannot be stored (e.g. a bad storage key).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The blob store's backend (e.g. S3) failed.
    #[error("blob store backend: {0}")]
    Backend(String),
    /// The blob store cannot do this (e.g. S3 cannot read back a multipart upload).
    #[error("unsupported by the blob store: {0}")]
    Unsupported(String),
}

impl StoreError {
    /// Whether the database could not be reached (any I/O error talking to
    /// it, a pool that found no connection in time, a TLS failure) or the
    /// blob store's connection failed, as opposed to a query or a file that
    /// failed. `kura`'s exit code 4.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_),
            ) => true,
            StoreError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            ),
            _ => false,
        }
    }

    /// Whether the database refused a text value it cannot hold (PostgreSQL
    /// takes no NUL character: SQLSTATE 22021, or 22P05 for other
    /// untranslatable characters). The value came from the request, so this
    /// is the client's error, never a server fault.
    pub fn is_unstorable_text(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some("22021" | "22P05")),
            _ => false,
        }
    }
}

/// Result alias for the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
