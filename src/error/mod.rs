//! The one error type of wgp2p. Every variant renders as a single line that
//! names the bad value and what is expected; `code()` gives the exit status.

use std::path::Path;

pub mod plan;

use plan::PlanError;

impl From<crate::types::Error> for Error {
    fn from(e: crate::types::Error) -> Error {
        match e {
            crate::types::Error::Invalid(text) => Error::Invalid(text),
            crate::types::Error::System(text) => Error::System(text),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that planning refuses: a conflict with the node's state
    /// (exit 3), or a peer that does not exist (exit 4). Rendered in
    /// src/commands/refusals.rs.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// A value given by the user is malformed (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A well-formed request that clashes with the node's state (exit 3).
    #[error("{0}")]
    Conflict(String),
    /// The request names something that does not exist (exit 4).
    #[error("{0}")]
    NotFound(String),
    /// The command changes the system and needs root (exit 5).
    #[error("{0} needs root: run it with sudo or as root")]
    NeedsRoot(&'static str),
    /// A file of the config dir is unreadable or malformed (exit 6).
    #[error("{0}")]
    BadConfig(String),
    /// `status --check` found a peer that is not ok (exit 7).
    #[error("{0}")]
    Unhealthy(String),
    /// The operating system, WireGuard device or service manager failed (exit 1).
    #[error("{0}")]
    System(String),
    /// A device update did not answer in time: it may still apply, so the
    /// file is kept and the live state is unknown (exit 1).
    #[error("{0}: the live state is unknown: run `wgp2p repair`")]
    LiveUnknown(String),
}

impl Error {
    pub fn code(&self) -> u8 {
        match self {
            Error::System(_) | Error::LiveUnknown(_) => 1,
            Error::Invalid(_) => 2,
            Error::Plan(
                PlanError::NotFound { .. }
                | PlanError::RelayNotFound { .. }
                | PlanError::NotTrusted { .. },
            )
            | Error::NotFound(_) => 4,
            Error::Plan(_) | Error::Conflict(_) => 3,
            Error::NeedsRoot(_) => 5,
            Error::BadConfig(_) => 6,
            Error::Unhealthy(_) => 7,
        }
    }

    /// An I/O failure on a path, phrased as `cannot <action> <path>: <cause>`.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "takes the error it reports, so `map_err(|e| Error::io(.., e))` hands it over"
    )]
    pub fn io(action: &str, path: &Path, err: std::io::Error) -> Error {
        Error::System(format!("cannot {action} {}: {err}", path.display()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
