//! Per-key rate limits: each API key may make so many requests a minute, and
//! so many create requests (`POST /videos/generate|animate`) a minute, in
//! fixed one-minute windows counted in the store. Over either, the answer is
//! `429 rate_limited` with `Retry-After` (seconds to the next window) and the
//! IETF `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers). The HTTP API's own throttling
//! (template.yaml) bounds all clients together before any of this runs.

/// The window every limit counts in.
pub const WINDOW_SECONDS: u64 = 60;
/// Requests a key may make a minute unless `RATE_LIMIT_REQUESTS_PER_MINUTE` says otherwise.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
/// Create requests a key may make a minute unless `RATE_LIMIT_CREATES_PER_MINUTE` says otherwise.
pub const DEFAULT_CREATES_PER_MINUTE: u32 = 30;

/// What a deployment allows each key (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests of any kind one key may make a minute.
    pub requests_per_minute: u32,
    /// Create requests (`POST /videos/generate|animate`) one key may make a minute, on top of the request limit.
    pub creates_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE, creates_per_minute: DEFAULT_CREATES_PER_MINUTE }
    }
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every authenticated request.
    Requests,
    /// A request that creates a job.
    Creates,
}

impl Policy {
    /// The limit's name in messages and the `RateLimit-Policy` header: `requests` or `creates`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Requests => "requests",
            Policy::Creates => "creates",
        }
    }
}

/// A request over a limit: what the 429 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which limit was passed.
    pub policy: Policy,
    /// How many requests that limit allows in a window.
    pub limit: u32,
    /// The window's length, in seconds.
    pub window_seconds: u64,
    /// Seconds until the window ends.
    pub retry_after_seconds: u64,
}

/// The window `now` falls in: its start, and the seconds left in it (at least 1).
pub fn window(now: i64, window_seconds: u64) -> (i64, u64) {
    let length = i64::try_from(window_seconds.max(1)).unwrap_or(60);
    let start = now - now.rem_euclid(length);
    (start, u64::try_from(start + length - now).unwrap_or(1).max(1))
}

/// The `RateLimit-Policy` and `RateLimit` header values for a 429.
pub fn headers(limited: &Limited) -> [(&'static str, String); 2] {
    let name = limited.policy.name();
    [
        ("ratelimit-policy", format!("\"{name}\";q={};w={}", limited.limit, limited.window_seconds)),
        ("ratelimit", format!("\"{name}\";r=0;t={}", limited.retry_after_seconds)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_minutes_and_say_how_long_is_left() {
        assert_eq!(window(120, 60), (120, 60));
        assert_eq!(window(179, 60), (120, 1));
        assert_eq!(window(150, 60), (120, 30));
    }
}
