//! Per-key rate limits, the rule: one hit counted per request in a fixed
//! window; over the limit is a 429 with the window's remaining seconds.

use crate::model::ids::KeyId;
use crate::model::ratelimit::{window, Limited, Policy, RateLimits, WINDOW_SECONDS};
use crate::ports::RateLimiter;
use crate::services::error::AppError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::StoreError;
    use crate::model::ratelimit::headers;
    use async_trait::async_trait;
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
