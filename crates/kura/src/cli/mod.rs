//! The command line's shared conventions: `kura --version` with the commit,
//! `--output json|table` for the commands that print reports, exit codes that
//! mean something (`exit.rs`), and progress on stderr for long commands
//! (`progress.rs`).

pub mod exit;
pub mod output;
pub mod progress;

pub use exit::Failure;
pub use output::{Output, OutputArgs};

/// What `kura --version` prints after the name: the crate version and the
/// commit it was built from (`build.rs`; "unknown" outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KURA_GIT_COMMIT"), ")");
