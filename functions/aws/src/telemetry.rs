//! Structured JSON logs: one object per line, with the fields of the current
//! span (the job id, the SQS message id) on every line. Every line passes
//! through `videojobs_core::model::redact::text` on its way out, so no URL's path,
//! query or credentials (a client's token, a presigned signature) is ever
//! printed, whoever logged it.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `RUST_LOG` as `level` or `target=level,…` (`info` when unset or unreadable).
pub fn filter_from(text: Option<&str>) -> Targets {
    text.and_then(|t| t.parse().ok()).unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

pub fn init() {
    // A second call (tests build several handlers in one process) keeps the first.
    let _ = subscriber(Redacting(std::io::stdout)).try_init();
}

/// The functions' log subscriber, writing to `writer` (stdout in a function;
/// tests capture it). Wrap the writer in [`Redacting`].
pub fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer);
    tracing_subscriber::registry().with(format).with(filter)
}

/// A writer that redacts the URLs of each log line before it reaches `W`.
pub struct Redacting<W>(pub W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactedLine<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine { buffer: Vec::new(), inner: self.0.make_writer() }
    }
}

/// One event's text, held until it is complete, then redacted and written.
pub struct RedactedLine<W: Write> {
    buffer: Vec<u8>,
    inner: W,
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buffer);
        let _ = self.inner.write_all(videojobs_core::model::redact::text(&line).as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_carry_no_token_no_signature_and_no_credentials() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = subscriber(Redacting(move || sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let url = "https://hooks.example.com/in?token=s3cret";
            tracing::info!(url, "posting");
            tracing::warn!(error = "error sending request for url (http://u:pw@10.0.0.1/x?X-Amz-Signature=abc)", "failed");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("https://hooks.example.com/…"), "{text}");
        for secret in ["s3cret", "pw", "X-Amz-Signature", "/in"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn rust_log_is_read_as_a_level_or_per_target_levels() {
        assert_eq!(filter_from(None).default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter_from(Some("debug")).default_level(), Some(LevelFilter::DEBUG));
        assert_eq!(filter_from(Some("warn,worker=trace")).default_level(), Some(LevelFilter::WARN));
        assert_eq!(filter_from(Some("===")).default_level(), Some(LevelFilter::INFO));
    }
}
