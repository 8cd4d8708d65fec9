//! A storage or AWS failure, as the domain sees it.

/// A storage or AWS failure: the detail is for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Throttling, a network fault, a service hiccup: trying again may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a record that does not parse.
    #[error("storage failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether trying again may work: true only for [`StoreError::Unavailable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
