//! The operational figures: what `GET /videos/stats` answers for each role,
//! and the stuck jobs the scheduled check reports.

use crate::model::error::StoreError;
use crate::model::ids::Principal;
use crate::model::job::timestamp;
use crate::model::lifecycle::JobStatus;
use crate::model::stats::*;
use crate::ports::StatsStore;
use crate::services::error::AppError;
use crate::services::jobs::Services;
use time::OffsetDateTime;

impl Services {
    /// The figures for the caller's role.
    pub async fn stats(&self, who: &Principal) -> Result<StatsView, AppError> {
        let now = timestamp::now();
        let counters = self.stats.counters().await?;
        let threshold = self.settings.stuck_after_seconds;
        if who.role == crate::model::ids::Role::Admin {
            let stuck = stuck_jobs(self.stats.as_ref(), threshold, now).await?;
            return Ok(StatsView::Admin(StatsBody::new(&counters, stuck, threshold, now)));
        }
        let figures = StatsBody::new(&counters, StuckPage::default(), threshold, now);
        let (own, complete) = self.own_statuses(who).await?;
        let active = self.accounts.account(&who.user_id).await?.map_or(0, |a| a.active_jobs);
        let mut body = UserStatsBody::new(&figures, &own, complete, active, self.settings.max_active_jobs);
        body.your_paused_endpoints = u32::try_from(self.endpoints.paused_endpoints(&who.user_id).await?.len()).unwrap_or(u32::MAX);
        Ok(StatsView::User(body))
    }

    /// The statuses of the caller's newest jobs, and whether that is all of them.
    async fn own_statuses(&self, who: &Principal) -> Result<(Vec<JobStatus>, bool), AppError> {
        let mut statuses = Vec::new();
        let mut cursor = None;
        while (statuses.len() as u32) < OWN_JOBS_COUNTED {
            let request = crate::ports::PageRequest { limit: OWN_JOBS_PAGE, cursor: cursor.take() };
            let page = self.listings.statuses_of(&who.user_id, &request).await.map_err(|err| match err {
                crate::ports::ListError::Store(err) => AppError::from(err),
                crate::ports::ListError::BadCursor => AppError::Internal("our own cursor was refused".into()),
            })?;
            statuses.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok((statuses, true)),
            }
        }
        statuses.truncate(OWN_JOBS_COUNTED as usize);
        Ok((statuses, false))
    }
}
/// The stuck jobs of every watched status, oldest first.
pub async fn stuck_jobs(store: &dyn StatsStore, threshold_seconds: u64, now: OffsetDateTime) -> Result<StuckPage, StoreError> {
    let before = now - time::Duration::seconds(threshold_seconds.min(i64::MAX as u64) as i64);
    let mut all = StuckPage::default();
    for status in WATCHED_STATUSES {
        let page = store.stuck_jobs(status, before, STUCK_JOBS_LISTED).await?;
        all.count += page.count;
        all.oldest.extend(page.oldest);
    }
    all.oldest.sort_by_key(|job| job.updated_at);
    all.oldest.truncate(STUCK_JOBS_LISTED as usize);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::JobId;
    use async_trait::async_trait;

    struct FakeStuck;

    #[async_trait]
    impl StatsStore for FakeStuck {
        async fn counters(&self) -> Result<Counters, StoreError> {
            Ok(Counters::new())
        }
        async fn stuck_jobs(&self, status: JobStatus, before: OffsetDateTime, limit: u32) -> Result<StuckPage, StoreError> {
            assert_eq!(limit, STUCK_JOBS_LISTED);
            let at = |s: i64| before - time::Duration::seconds(s);
            let job = |s| StuckJob { job_id: JobId::generate(), status, provider: "local".into(), updated_at: at(s) };
            Ok(match status {
                JobStatus::Submitted => StuckPage { count: 7, oldest: vec![job(10), job(5)] },
                JobStatus::Queued => StuckPage { count: 2, oldest: vec![job(30), job(1)] },
                _ => StuckPage { count: 1, oldest: vec![job(20)] },
            })
        }
        async fn count_duplicate_callback(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn stuck_jobs_are_counted_over_every_watched_status_and_listed_oldest_first() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let page = stuck_jobs(&FakeStuck, 1800, now).await.unwrap();
        assert_eq!(page.count, 10);
        let statuses: Vec<JobStatus> = page.oldest.iter().map(|j| j.status).collect();
        assert_eq!(statuses, [JobStatus::Queued, JobStatus::Processing, JobStatus::Submitted, JobStatus::Submitted, JobStatus::Queued]);
        assert!(page.oldest.iter().all(|j| j.updated_at < now - time::Duration::seconds(1800)));
    }
}
