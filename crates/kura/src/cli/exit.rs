//! Exit codes. A command that fails prints `Error: …` (with its causes) on
//! stderr and exits with a code that says what kind of failure it was:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | any other error |
//! | 2 | usage: an unknown flag, a missing or malformed value (clap), or a value checked later (`jobs list --state bogus`) |
//! | 3 | not found: the named thing does not exist (a job id, an input file) |
//! | 4 | unavailable: the database or blob store cannot be reached, the listen address is taken |
//! | 5 | conflict: the thing exists but its state refuses the request (`jobs retry` of a job that is not dead) |
//!
//! Code 2 for clap's own errors is clap's; the others come from [`code`],
//! which looks through the error's chain for a [`Failure`] a command raised
//! on purpose, then for the store and I/O errors that mean 3 or 4.

use std::process::ExitCode;

use kura_store::StoreError;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const UNAVAILABLE: u8 = 4;
pub const CONFLICT: u8 = 5;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Self::with_code(USAGE, message)
    }

    pub fn not_found(message: impl Into<String>) -> anyhow::Error {
        Self::with_code(NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> anyhow::Error {
        Self::with_code(CONFLICT, message)
    }

    fn with_code(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            code,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error (see the module docs).
pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
    }
    for cause in err.chain() {
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            if s.is_unavailable() {
                return UNAVAILABLE;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                NotFound => return NOT_FOUND,
                ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | AddrInUse | AddrNotAvailable
                | HostUnreachable | NetworkUnreachable => return UNAVAILABLE,
                _ => {}
            }
        }
    }
    ERROR
}

/// Print a command's error the way `main` returning `Err` would (`Error: …`
/// and its causes) and turn the outcome into the process's exit code.
pub fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::from(OK),
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_by_cause() {
        let nf: anyhow::Result<()> = Err(std::io::Error::from(std::io::ErrorKind::NotFound).into());
        assert_eq!(code(&nf.context("opening the input").unwrap_err()), NOT_FOUND);
        let refused = anyhow::Error::new(StoreError::Io(std::io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(code(&refused.context("connecting")), UNAVAILABLE);
        assert_eq!(code(&Failure::usage("unknown job state")), USAGE);
        assert_eq!(code(&Failure::conflict("not dead").context("jobs retry")), CONFLICT);
        assert_eq!(code(&anyhow::anyhow!("anything else")), ERROR);
        let denied: anyhow::Error = std::io::Error::from(std::io::ErrorKind::PermissionDenied).into();
        assert_eq!(code(&denied), ERROR);
    }
}
