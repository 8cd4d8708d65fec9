//! Per-key rate limits: each API key may make so many requests a minute, and
//! so many create requests (`POST /videos/generate|animate`) a minute, in
//! fixed one-minute windows counted in the store. Over either, the answer is
//! `429 rate_limited` with `Retry-After` (seconds to the next window) and the
//! IETF `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers). The HTTP API's own throttling
//! (template.yaml) bounds all clients together before any of this runs.

use crate::error::{AppError, StoreError};
use crate::ids::KeyId;
use async_trait::async_trait;

/// The window every limit counts in.
pub const WINDOW_SECONDS: u64 = 60;
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
pub const DEFAULT_CREATES_PER_MINUTE: u32 = 30;

/// What a deployment allows each key (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: u32,
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
    Requests,
    Creates,
}

impl Policy {
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
    pub policy: Policy,
    pub limit: u32,
    pub window_seconds: u64,
    /// Seconds until the window ends.
    pub retry_after_seconds: u64,
}

/// Counts hits in a window.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one hit on `bucket` in the window starting at `window_start`
    /// (Unix seconds), unless `limit` hits are counted already: `false` then.
    async fn take(&self, bucket: &str, window_start: i64, window_seconds: u64, limit: u32) -> Result<bool, StoreError>;
}

/// The window `now` falls in: its start, and the seconds left in it (at least 1).
pub fn window(now: i64, window_seconds: u64) -> (i64, u64) {
    let length = i64::try_from(window_seconds.max(1)).unwrap_or(60);
    let start = now - now.rem_euclid(length);
    (start, u64::try_from(start + length - now).unwrap_or(1).max(1))
}

/// Counts one request of `key` against `policy`; `Err(RateLimited)` over it.
pub async fn check(limiter: &dyn RateLimiter, limits: RateLimits, key: &KeyId, policy: Policy, now: i64) -> Result<(), AppError> {
    let limit = match policy {
        Policy::Requests => limits.requests_per_minute,
        Policy::Creates => limits.creates_per_minute,
    };
    if limit == 0 {
        return Ok(());
    }
    let (start, left) = window(now, WINDOW_SECONDS);
    let bucket = format!("{}#{key}", policy.name());
    if limiter.take(&bucket, start, WINDOW_SECONDS, limit).await? {
        Ok(())
    } else {
        tracing::info!(key_id = %key, policy = policy.name(), limit, "rate limited");
        Err(AppError::RateLimited(Limited { policy, limit, window_seconds: WINDOW_SECONDS, retry_after_seconds: left }))
    }
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
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Counts(Mutex<HashMap<(String, i64), u32>>);

    #[async_trait]
    impl RateLimiter for Counts {
        async fn take(&self, bucket: &str, start: i64, _: u64, limit: u32) -> Result<bool, StoreError> {
            let mut counts = self.0.lock().unwrap();
            let hits = counts.entry((bucket.to_owned(), start)).or_default();
            if *hits >= limit {
                return Ok(false);
            }
            *hits += 1;
            Ok(true)
        }
    }

    #[test]
    fn windows_are_whole_minutes_and_say_how_long_is_left() {
        assert_eq!(window(120, 60), (120, 60));
        assert_eq!(window(179, 60), (120, 1));
        assert_eq!(window(150, 60), (120, 30));
    }

    #[tokio::test]
    async fn each_key_gets_its_limit_per_window_and_then_a_429_that_says_when_to_come_back() {
        let counts = Counts::default();
        let limits = RateLimits { requests_per_minute: 3, creates_per_minute: 1 };
        let (a, b) = (KeyId::generate(), KeyId::generate());
        for _ in 0..3 {
            assert!(check(&counts, limits, &a, Policy::Requests, 150).await.is_ok());
        }
        let Err(AppError::RateLimited(limited)) = check(&counts, limits, &a, Policy::Requests, 151).await else {
            panic!("the fourth request is limited")
        };
        assert_eq!(limited, Limited { policy: Policy::Requests, limit: 3, window_seconds: 60, retry_after_seconds: 29 });
        assert_eq!(headers(&limited)[0].1, "\"requests\";q=3;w=60");
        assert_eq!(headers(&limited)[1].1, "\"requests\";r=0;t=29");
        // Another key, another policy and the next window are counted apart.
        assert!(check(&counts, limits, &b, Policy::Requests, 151).await.is_ok());
        assert!(check(&counts, limits, &a, Policy::Creates, 151).await.is_ok());
        assert!(check(&counts, limits, &a, Policy::Creates, 152).await.is_err());
        assert!(check(&counts, limits, &a, Policy::Requests, 180).await.is_ok());
        // 0 is no limit.
        let off = RateLimits { requests_per_minute: 0, creates_per_minute: 0 };
        for _ in 0..10 {
            assert!(check(&counts, off, &a, Policy::Requests, 151).await.is_ok());
        }
    }
}
