//! Why a Limine kernel cannot be booted (its own file: the shared loader error wraps it, and
//! depends on nothing else of the Limine loader).

use thiserror::Error;

use super::protocol::MAX_BASE_REVISION;

#[derive(Debug, Error)]
pub enum LimineError {
    #[error("limine: the kernel asks for base revision {0}; gdbvisor implements base revisions 0 to {MAX_BASE_REVISION}")]
    BaseRevision(u64),
    #[error("limine: the kernel has more than one {0} request")]
    Duplicate(&'static str),
    #[error("limine: {0}")]
    Unsupported(String),
    #[error("limine: {0}")]
    Layout(String),
}
