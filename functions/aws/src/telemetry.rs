//! Structured JSON logs: one object per line, with the fields of the current
//! span (the job id, the SQS message id) on every line.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `RUST_LOG` as `level` or `target=level,…` (`info` when unset or unreadable).
pub fn filter_from(text: Option<&str>) -> Targets {
    text.and_then(|t| t.parse().ok()).unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

pub fn init() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false);
    // A second call (tests build several handlers in one process) keeps the first.
    let _ = tracing_subscriber::registry().with(format).with(filter).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn rust_log_is_read_as_a_level_or_per_target_levels() {
        assert_eq!(filter_from(None).default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter_from(Some("debug")).default_level(), Some(LevelFilter::DEBUG));
        assert_eq!(filter_from(Some("warn,worker=trace")).default_level(), Some(LevelFilter::WARN));
        assert_eq!(filter_from(Some("===")).default_level(), Some(LevelFilter::INFO));
    }
}
