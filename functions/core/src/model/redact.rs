//! Redaction of URLs before they reach a log line or an event. A URL may be
//! a capability: a client's `webhook_url?token=…`, a presigned S3 link (its
//! signature is in the query), a provider's output link, `user:password@`.
//! One rule for all of them: only the scheme, the host and the port are
//! kept; a path, a query, a fragment or credentials become `…`.
//!
//! [`url`] redacts one URL, [`text`] every URL inside free text (an error
//! message from reqwest prints the URL it failed on); the functions' JSON
//! log writer passes every line through [`text`] (`videojobs_aws::telemetry`).

/// What stands for anything removed.
pub const REDACTED: &str = "…";

/// `https://host:port/…` for any URL; `…` for text that does not parse as one.
pub fn url(text: &str) -> String {
    let Ok(parsed) = url::Url::parse(text) else { return REDACTED.to_owned() };
    let Some(host) = parsed.host_str() else { return format!("{}:{REDACTED}", parsed.scheme()) };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(REDACTED);
        out.push('@');
    }
    out.push_str(host);
    if let Some(port) = parsed.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let has_more = parsed.path() != "/" && !parsed.path().is_empty()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty();
    if has_more {
        out.push('/');
        out.push_str(REDACTED);
    }
    out
}

/// `text` with every `scheme://…` URL in it redacted by [`url`].
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` right before `://`, starting with a letter.
        let before = &rest[..found];
        let scheme_len = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(0, |(i, _)| before.len() - i);
        let scheme_start = found - scheme_len;
        let scheme_ok = rest[scheme_start..found].chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        let tail = &rest[found + 3..];
        let end = tail.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\')).unwrap_or(tail.len());
        // Punctuation after a URL (a closing parenthesis, a colon) stays outside it.
        let whole = &rest[scheme_start..found + 3 + end];
        let candidate = whole.trim_end_matches([')', ',', '.', ':', ';', ']', '}']);
        let trailing = &whole[candidate.len()..];
        if scheme_ok {
            out.push_str(&rest[..scheme_start]);
            out.push_str(&url(candidate));
            out.push_str(trailing);
        } else {
            out.push_str(&rest[..found + 3 + end]);
        }
        rest = &rest[found + 3 + end..];
    }
    out.push_str(rest);
    out
}

/// An error's text with its URLs redacted (a reqwest error names the URL it failed on).
pub fn error(err: &dyn std::fmt::Display) -> String {
    text(&err.to_string())
}

/// A provider's own words (an error's detail, which may quote the prompt
/// back) as a log line may hold them: a leading `HTTP nnn` that we wrote is
/// kept, the rest becomes its length.
pub fn provider_words(words: &str) -> String {
    let (ours, theirs) =
        match words.strip_prefix("HTTP ").and_then(|rest| rest.get(..3)).filter(|code| code.bytes().all(|b| b.is_ascii_digit())) {
            Some(code) => (format!("HTTP {code}"), words[8..].trim_start_matches(':').trim_start()),
            None => (String::new(), words),
        };
    let length = theirs.chars().count();
    match (ours.is_empty(), length) {
        (_, 0) if !ours.is_empty() => ours,
        (true, _) => format!("{length} characters from the provider"),
        (false, _) => format!("{ours} and {length} characters from the provider"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_words_are_kept_as_their_length_and_our_status_line_stays() {
        assert_eq!(provider_words("HTTP 503: busy with a cat on a skateboard"), "HTTP 503 and 31 characters from the provider");
        assert_eq!(provider_words("HTTP 429"), "HTTP 429");
        assert_eq!(provider_words("Your prompt 'a secret plan' was flagged"), "39 characters from the provider");
        assert_eq!(provider_words(""), "0 characters from the provider");
        assert_eq!(provider_words("HTTP 5x: odd"), "12 characters from the provider");
    }

    #[test]
    fn a_url_keeps_its_scheme_host_and_port_only() {
        assert_eq!(url("https://hooks.example.com/in?token=s3cret"), "https://hooks.example.com/…");
        assert_eq!(url("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000/…");
        assert_eq!(url("https://user:pw@example.com/"), "https://…@example.com/…");
        assert_eq!(url("https://example.com"), "https://example.com");
        assert_eq!(url("https://example.com/#frag"), "https://example.com/…");
        assert_eq!(url("not a url"), "…");
        assert_eq!(url("mailto:someone@example.com"), "mailto:…");
    }

    #[test]
    fn a_presigned_link_loses_its_signature_and_key() {
        let presigned = "https://bucket.s3.amazonaws.com/uploads/ann/upl_1?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F&X-Amz-Signature=abcdef";
        let redacted = url(presigned);
        assert_eq!(redacted, "https://bucket.s3.amazonaws.com/…");
        assert!(!redacted.contains("Signature"));
    }

    #[test]
    fn every_url_in_free_text_is_redacted_and_the_rest_kept() {
        let message = "error sending request for url (http://127.0.0.1:1/hook?token=s3cret): connection refused";
        assert_eq!(text(message), "error sending request for url (http://127.0.0.1:1/…): connection refused");
        let two = "tried https://a.example/x?sig=1, then \"https://b.example/y?sig=2\"";
        assert_eq!(text(two), "tried https://a.example/…, then \"https://b.example/…\"");
        assert_eq!(text("plain text"), "plain text");
        assert_eq!(text("ratio 16://9"), "ratio 16://9");
        let json = r#"{"fields":{"error":"GET https://x.example/v?X-Amz-Signature=abc failed"}}"#;
        assert_eq!(text(json), r#"{"fields":{"error":"GET https://x.example/… failed"}}"#);
        assert!(!error(&"http://u:p@h.example/".to_owned()).contains("u:p"));
    }
}
