//! Operational figures (`GET /videos/stats`): what the counters count, and how
//! the figures are computed from them.
//!
//! Counters are kept as things happen, in the same storage transaction as the
//! change they count (see [`creation_deltas`] and [`change_deltas`]): a job's
//! creation adds one `queued`; a change of status moves one job from its old
//! status to its new one, and a change to `completed`, `failed`, `approved`
//! or `rejected` also counts what the figures need. Reading the figures is a
//! handful of reads of counter items, never a scan of the jobs.
//!
//! Time from queued to completed: the count and the sum (exact average) and a
//! histogram over fixed log-scale buckets, four per doubling. The p95 is the
//! upper bound of the bucket the 95th percentile falls in: never below the true
//! value and at most 19 % (2^¼) above it; times under a second share one
//! bucket, whose bound is 1 s.

use crate::model::change::{StatusChange, StoredBytes};
use crate::model::ids::JobId;
use crate::model::job::{timestamp, Job};
use crate::model::lifecycle::JobStatus;
use crate::model::request::WorkflowType;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// The statuses the `stuck_watch` index holds a job in.
pub const WATCHED_STATUSES: [JobStatus; 3] = [JobStatus::Queued, JobStatus::Submitted, JobStatus::Processing];

/// How many stuck jobs the figures list (all of them are counted).
pub const STUCK_JOBS_LISTED: u32 = 50;

/// Buckets per doubling of the time to complete.
const BUCKETS_PER_DOUBLING: f64 = 4.0;
/// The last bucket holds everything from about 12 days up.
const LAST_BUCKET: u32 = 80;

/// The names of the counters: one namespace, read back by [`StatsBody::new`].
pub mod counter {
    use crate::model::lifecycle::JobStatus;

    /// Jobs that reached `completed`: the count behind the average time to complete.
    pub const COMPLETED_COUNT: &str = "ttc.count";
    /// Their times from creation to `completed` added up, in milliseconds.
    pub const COMPLETED_MS_SUM: &str = "ttc.ms_sum";
    /// Jobs approved or rejected.
    pub const REVIEWED: &str = "reviewed";
    /// Jobs rejected.
    pub const REJECTED: &str = "rejected";
    /// Provider callbacks delivered again after they were applied.
    pub const DUPLICATE_CALLBACKS: &str = "duplicate_callbacks";
    /// Bytes of stored videos.
    pub const VIDEO_BYTES: &str = "bytes.video";
    /// Bytes of stored thumbnails.
    pub const THUMBNAIL_BYTES: &str = "bytes.thumbnail";

    /// Jobs now in `status`.
    pub fn jobs(status: JobStatus) -> String {
        format!("jobs.{status}")
    }
    /// Completions whose time to complete fell in histogram bucket `index` (see [`super::bucket_of`]).
    pub fn bucket(index: u32) -> String {
        format!("ttc.bucket.{index}")
    }
    /// Jobs of `provider` that completed or failed.
    pub fn finished_by_provider(provider: &str) -> String {
        format!("finished.provider.{provider}")
    }
    /// Jobs of `provider` that failed.
    pub fn failed_by_provider(provider: &str) -> String {
        format!("failed.provider.{provider}")
    }
    /// Jobs of a workflow type that completed or failed.
    pub fn finished_by_workflow(workflow: &str) -> String {
        format!("finished.workflow.{workflow}")
    }
    /// Jobs of a workflow type that failed.
    pub fn failed_by_workflow(workflow: &str) -> String {
        format!("failed.workflow.{workflow}")
    }
    /// Rejections for the review reason `reason`.
    pub fn rejected_for(reason: &str) -> String {
        format!("rejected.reason.{reason}")
    }
}

/// Amounts to add to named counters, each name once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas(BTreeMap<String, i64>);

impl Deltas {
    /// Adds `amount` to the counter `name`, on top of what it already has here.
    pub fn add(&mut self, name: impl Into<String>, amount: i64) {
        *self.0.entry(name.into()).or_insert(0) += amount;
    }

    /// The non-zero amounts, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether every amount is zero: nothing to write.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The amount for `name`; 0 when it has none.
    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

/// What creating `job` adds: one job in its first status.
pub fn creation_deltas(job: &Job) -> Deltas {
    let mut d = Deltas::default();
    d.add(counter::jobs(job.status), 1);
    d
}

/// What `change` adds, given that it is applied.
pub fn change_deltas(change: &StatusChange) -> Deltas {
    let t = &change.transition;
    let facts = &change.facts;
    let workflow = facts.workflow_type.as_str();
    let mut d = Deltas::default();
    d.add(counter::jobs(t.from), -1);
    d.add(counter::jobs(t.to), 1);
    match t.to {
        JobStatus::Completed => {
            d.add(counter::finished_by_provider(&facts.provider), 1);
            d.add(counter::finished_by_workflow(workflow), 1);
            let completed_at = change.update.completed_at.unwrap_or(change.at);
            let ms = (completed_at - facts.created_at).whole_milliseconds().max(0) as i64;
            d.add(counter::COMPLETED_COUNT, 1);
            d.add(counter::COMPLETED_MS_SUM, ms);
            d.add(counter::bucket(bucket_of(ms as f64 / 1000.0)), 1);
        }
        JobStatus::Failed => {
            d.add(counter::finished_by_provider(&facts.provider), 1);
            d.add(counter::failed_by_provider(&facts.provider), 1);
            d.add(counter::finished_by_workflow(workflow), 1);
            d.add(counter::failed_by_workflow(workflow), 1);
        }
        JobStatus::Approved => d.add(counter::REVIEWED, 1),
        JobStatus::Rejected => {
            d.add(counter::REVIEWED, 1);
            d.add(counter::REJECTED, 1);
            let reason = change.error.as_ref().map(|e| e.code.as_str()).unwrap_or("unspecified");
            d.add(counter::rejected_for(reason), 1);
        }
        _ => {}
    }
    if let Some(output) = &change.update.output {
        let added = StoredBytes::of(Some(output));
        d.add(counter::VIDEO_BYTES, added.video as i64);
        d.add(counter::THUMBNAIL_BYTES, added.thumbnail as i64);
    }
    if change.update.remove_output {
        let removed = removal_deltas(facts.stored);
        for (name, amount) in removed.iter() {
            d.add(name, amount);
        }
    }
    d
}

/// What forgetting a stored output takes away.
pub fn removal_deltas(stored: StoredBytes) -> Deltas {
    let mut d = Deltas::default();
    d.add(counter::VIDEO_BYTES, -(stored.video as i64));
    d.add(counter::THUMBNAIL_BYTES, -(stored.thumbnail as i64));
    d
}

/// The histogram bucket of a time to complete: 0 below one second, then four
/// per doubling (bucket `i` holds `[2^((i-1)/4), 2^(i/4))` seconds).
pub fn bucket_of(seconds: f64) -> u32 {
    if seconds.is_nan() || seconds < 1.0 {
        return 0;
    }
    let index = (seconds.log2() * BUCKETS_PER_DOUBLING).floor() as u32 + 1;
    index.min(LAST_BUCKET)
}

/// The largest time a bucket holds (what the p95 reports).
pub fn bucket_upper_bound(index: u32) -> f64 {
    2f64.powf(f64::from(index) / BUCKETS_PER_DOUBLING)
}

/// The p95 of a histogram (`bucket → count`), as its bucket's upper bound.
pub fn p95_of(buckets: &BTreeMap<u32, i64>) -> Option<f64> {
    percentile_of(buckets, 95)
}

/// The `pct`th percentile of a histogram, as its bucket's upper bound.
pub fn percentile_of(buckets: &BTreeMap<u32, i64>, pct: i64) -> Option<f64> {
    let total: i64 = buckets.values().filter(|c| **c > 0).sum();
    if total <= 0 {
        return None;
    }
    // The smallest value with at least pct % of the observations at or below it.
    let rank = (total * pct + 99) / 100;
    let mut seen = 0;
    for (index, count) in buckets {
        seen += (*count).max(0);
        if seen >= rank {
            return Some(round(bucket_upper_bound(*index), 2));
        }
    }
    None
}

fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

fn rate(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        round(part as f64 / whole as f64, 4)
    }
}

/// The counters summed over their shards, by name.
pub type Counters = HashMap<String, i64>;

/// A job sitting in `submitted` or `processing`, as the index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckJob {
    /// The job.
    pub job_id: JobId,
    /// The watched status it sits in.
    pub status: JobStatus,
    /// Its provider's name.
    pub provider: String,
    /// When it last changed: how long it has sat there.
    pub updated_at: OffsetDateTime,
}

/// How many jobs sit in a status since before a time, and the oldest of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StuckPage {
    /// How many jobs there are, listed or not.
    pub count: u64,
    /// The oldest of them, oldest first, up to the limit asked for.
    pub oldest: Vec<StuckJob>,
}

/// Messages a schedule puts on the work queue (no job of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduledMessage {
    /// Count the stuck jobs and report them as a metric.
    CheckStuck,
}

/// `GET /videos/stats` for an admin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsBody {
    /// `admin`: the full figures (a user's answer says `user`).
    pub scope: &'static str,
    /// When these figures were read (RFC 3339).
    pub generated_at: String,
    /// How many jobs are in each status now.
    pub jobs_by_status: JobsByStatus,
    /// How long jobs took from creation to `completed`.
    pub time_to_complete_seconds: TimeToComplete,
    /// How often each provider's finished jobs failed, by provider name.
    pub failure_rate_by_provider: Vec<ProviderFailures>,
    /// How often finished jobs of each workflow type failed.
    pub failure_rate_by_workflow_type: Vec<WorkflowFailures>,
    /// How many reviewed videos were rejected, and why.
    pub rejections: Rejections,
    /// Provider callbacks delivered again after they were applied.
    pub duplicate_callbacks: i64,
    /// Jobs in a watched status unchanged for longer than the threshold.
    pub stuck_jobs: StuckJobsView,
    /// Bytes the stored outputs take now.
    pub stored_bytes_by_artifact_type: StoredBytesView,
}

/// Every status, in lifecycle order, with its count.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsByStatus(pub Vec<(JobStatus, i64)>);

impl Serialize for JobsByStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (status, count) in &self.0 {
            map.serialize_entry(status.as_str(), count)?;
        }
        map.end()
    }
}

/// Times from creation to `completed`, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToComplete {
    /// How many jobs completed.
    pub count: i64,
    /// The exact mean, in seconds (3 decimals); absent before any job completed.
    pub average: Option<f64>,
    /// The median, as the upper bound of its histogram bucket; absent before any job completed.
    pub p50: Option<f64>,
    /// The 95th percentile, as the upper bound of its bucket (at most 19 % above the true value); absent before any job completed.
    pub p95: Option<f64>,
}

/// One provider's finished jobs and how many failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderFailures {
    /// The provider's name.
    pub provider: String,
    /// Its jobs that completed or failed.
    pub finished: i64,
    /// Its jobs that failed.
    pub failed: i64,
    /// `failed / finished`, 0 to 1 (4 decimals); 0 when none finished.
    pub rate: f64,
}

/// One workflow type's finished jobs and how many failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowFailures {
    /// `text_to_video` or `image_to_video`.
    pub workflow_type: String,
    /// Its jobs that completed or failed.
    pub finished: i64,
    /// Its jobs that failed.
    pub failed: i64,
    /// `failed / finished`, 0 to 1 (4 decimals); 0 when none finished.
    pub rate: f64,
}

/// Reviews and rejections, with the reasons given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejections {
    /// Jobs approved or rejected.
    pub reviewed: i64,
    /// Jobs rejected.
    pub rejected: i64,
    /// `rejected / reviewed`, 0 to 1 (4 decimals); 0 before any review.
    pub rate: f64,
    /// Rejections by reason, the most frequent first.
    pub by_reason: Vec<ReasonCount>,
}

/// How many rejections gave one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    /// The review reason's code, such as `off_brief`.
    pub reason: String,
    /// Rejections that gave it.
    pub count: i64,
    /// Share of the reviewed jobs rejected for this reason.
    pub rate: f64,
}

/// Jobs that sit in a watched status longer than they should.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StuckJobsView {
    /// How long without a change makes a job stuck (`STUCK_AFTER_SECONDS`).
    pub threshold_seconds: u64,
    /// How many jobs are stuck, listed or not.
    pub count: u64,
    /// The oldest of them, oldest first, at most [`STUCK_JOBS_LISTED`].
    pub jobs: Vec<StuckJobView>,
}

/// One stuck job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StuckJobView {
    /// The job's id.
    pub job_id: JobId,
    /// The status it sits in.
    pub status: JobStatus,
    /// Its provider's name.
    pub provider: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// Bytes the stored outputs take, by artifact type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredBytesView {
    /// Bytes of videos.
    pub video: i64,
    /// Bytes of thumbnails.
    pub thumbnail: i64,
}

impl StatsBody {
    /// The figures from summed `counters` and the `stuck` jobs, as of `now`.
    pub fn new(counters: &Counters, stuck: StuckPage, threshold_seconds: u64, now: OffsetDateTime) -> Self {
        let get = |name: &str| counters.get(name).copied().unwrap_or(0);
        let with_prefix = |prefix: &str| -> BTreeMap<String, i64> {
            counters.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest.to_owned(), *v))).collect()
        };

        let completed = get(counter::COMPLETED_COUNT);
        let buckets: BTreeMap<u32, i64> =
            with_prefix("ttc.bucket.").into_iter().filter_map(|(k, v)| k.parse().ok().map(|i| (i, v))).collect();
        let average = (completed > 0).then(|| round(get(counter::COMPLETED_MS_SUM) as f64 / completed as f64 / 1000.0, 3));

        let providers = with_prefix("finished.provider.");
        let failure_rate_by_provider = providers
            .iter()
            .map(|(provider, finished)| {
                let failed = get(&counter::failed_by_provider(provider));
                ProviderFailures { provider: provider.clone(), finished: *finished, failed, rate: rate(failed, *finished) }
            })
            .collect();
        let failure_rate_by_workflow_type = [WorkflowType::TextToVideo, WorkflowType::ImageToVideo]
            .into_iter()
            .map(|w| {
                let finished = get(&counter::finished_by_workflow(w.as_str()));
                let failed = get(&counter::failed_by_workflow(w.as_str()));
                WorkflowFailures { workflow_type: w.as_str().to_owned(), finished, failed, rate: rate(failed, finished) }
            })
            .collect();

        let reviewed = get(counter::REVIEWED);
        let rejected = get(counter::REJECTED);
        let mut by_reason: Vec<ReasonCount> = with_prefix("rejected.reason.")
            .into_iter()
            .filter(|(_, count)| *count != 0)
            .map(|(reason, count)| ReasonCount { reason, count, rate: rate(count, reviewed) })
            .collect();
        by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));

        Self {
            scope: "admin",
            generated_at: timestamp::format(now),
            jobs_by_status: JobsByStatus(JobStatus::ALL.iter().map(|s| (*s, get(&counter::jobs(*s)))).collect()),
            time_to_complete_seconds: TimeToComplete { count: completed, average, p50: percentile_of(&buckets, 50), p95: p95_of(&buckets) },
            failure_rate_by_provider,
            failure_rate_by_workflow_type,
            rejections: Rejections { reviewed, rejected, rate: rate(rejected, reviewed), by_reason },
            duplicate_callbacks: get(counter::DUPLICATE_CALLBACKS),
            stuck_jobs: StuckJobsView {
                threshold_seconds,
                count: stuck.count,
                jobs: stuck
                    .oldest
                    .into_iter()
                    .map(|j| StuckJobView {
                        job_id: j.job_id,
                        status: j.status,
                        provider: j.provider,
                        updated_at: timestamp::format(j.updated_at),
                    })
                    .collect(),
            },
            stored_bytes_by_artifact_type: StoredBytesView { video: get(counter::VIDEO_BYTES), thumbnail: get(counter::THUMBNAIL_BYTES) },
        }
    }
}

/// How many of a user's own jobs `GET /videos/stats` counts, newest first
/// (pages of [`OWN_JOBS_PAGE`]): enough for what a frontend shows, and a
/// bounded read.
pub const OWN_JOBS_COUNTED: u32 = 500;
/// How many of the user's own jobs one page of the count reads.
pub const OWN_JOBS_PAGE: u32 = 100;

/// `GET /videos/stats` for any key but an admin's: what a frontend may show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserStatsBody {
    /// `user`.
    pub scope: &'static str,
    /// When these figures were read (RFC 3339).
    pub generated_at: String,
    /// How many jobs of every user wait or are being generated now.
    pub queue: QueueDepth,
    /// How long jobs of every user take from creation to `completed`.
    pub time_to_complete_seconds: TypicalTime,
    /// The caller's own jobs.
    pub your_jobs: OwnJobs,
    /// How many of the caller's notification endpoints are paused (`GET /videos/account` lists them).
    pub your_paused_endpoints: u32,
}

/// Jobs of every user waiting to start, and being generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueDepth {
    /// Jobs in `queued`.
    pub waiting: i64,
    /// Jobs in `submitted`, `retrying` or `processing`.
    pub generating: i64,
}

/// Typical times from creation to `completed`, in seconds, over every user's jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypicalTime {
    /// How many jobs completed.
    pub count: i64,
    /// The median, as the upper bound of its histogram bucket; absent before any job completed.
    pub p50: Option<f64>,
    /// The 95th percentile, as the upper bound of its histogram bucket; absent before any job completed.
    pub p95: Option<f64>,
}

/// The caller's own jobs, by status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnJobs {
    /// How many of the counted jobs are in each status.
    pub by_status: JobsByStatus,
    /// How many were counted (the newest [`OWN_JOBS_COUNTED`] at most).
    pub counted: u32,
    /// Whether every one of the caller's jobs was counted.
    pub complete: bool,
    /// The caller's jobs in flight now.
    pub active: u32,
    /// The caller's cap on jobs in flight.
    pub max_active: u32,
}

impl UserStatsBody {
    /// A user's figures: the shared ones from `admin`, with their `own` job statuses and in-flight count.
    pub fn new(admin: &StatsBody, own: &[JobStatus], complete: bool, active: u32, max_active: u32) -> Self {
        let count = |status: JobStatus| admin.jobs_by_status.0.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| (*n).max(0));
        let ttc = &admin.time_to_complete_seconds;
        Self {
            scope: "user",
            generated_at: admin.generated_at.clone(),
            queue: QueueDepth {
                waiting: count(JobStatus::Queued),
                generating: count(JobStatus::Submitted) + count(JobStatus::Retrying) + count(JobStatus::Processing),
            },
            time_to_complete_seconds: TypicalTime { count: ttc.count, p50: ttc.p50, p95: ttc.p95 },
            your_jobs: OwnJobs {
                by_status: JobsByStatus(JobStatus::ALL.iter().map(|s| (*s, own.iter().filter(|o| *o == s).count() as i64)).collect()),
                counted: own.len() as u32,
                complete,
                active,
                max_active,
            },
            your_paused_endpoints: 0,
        }
    }
}

/// What `GET /videos/stats` answers: everything for an admin, the frontend's
/// figures for anyone else.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StatsView {
    /// The full figures, for an admin.
    Admin(StatsBody),
    /// The figures any other caller may see.
    User(UserStatsBody),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::change::JobUpdate;
    use crate::model::job::{Artifact, EventSource, JobError, JobParams};
    use crate::model::lifecycle::transition;
    use crate::model::request::{AspectRatio, Resolution};

    fn job(status: JobStatus) -> Job {
        let created = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let params = JobParams::TextToVideo { duration_seconds: 2, aspect_ratio: AspectRatio::Square, resolution: Resolution::Sd };
        Job { status, ..Job::accepted(JobId::generate(), "u".parse().unwrap(), params, "local".parse().unwrap(), 2, created) }
    }

    fn artifact(video: u64, thumbnail: Option<u64>) -> Artifact {
        Artifact {
            video_key: "v".into(),
            thumbnail_key: thumbnail.map(|_| "t".into()),
            thumbnail_size_bytes: thumbnail,
            mime_type: "video/mp4".into(),
            size_bytes: video,
            duration_seconds: 2.0,
            width: 480,
            height: 480,
        }
    }

    fn change(job: &Job, to: JobStatus, error: Option<JobError>, update: JobUpdate) -> StatusChange {
        let t = transition(job.status, to).unwrap();
        StatusChange::new(job, t, EventSource::Worker, "m", error, update)
    }

    #[test]
    fn creating_a_job_counts_one_queued() {
        let d = creation_deltas(&job(JobStatus::Queued));
        assert_eq!(d.iter().collect::<Vec<_>>(), [("jobs.queued", 1)]);
    }

    #[test]
    fn a_change_moves_one_job_between_statuses_and_nothing_else() {
        let d = change_deltas(&change(&job(JobStatus::Queued), JobStatus::Submitted, None, JobUpdate::default()));
        assert_eq!(d.iter().collect::<Vec<_>>(), [("jobs.queued", -1), ("jobs.submitted", 1)]);
    }

    #[test]
    fn completing_counts_the_finish_the_time_and_the_stored_bytes() {
        let j = job(JobStatus::Processing);
        let update = JobUpdate {
            output: Some(artifact(1_000, Some(50))),
            completed_at: Some(j.created_at + time::Duration::milliseconds(12_345)),
            ..JobUpdate::default()
        };
        let d = change_deltas(&change(&j, JobStatus::Completed, None, update));
        assert_eq!(d.get("jobs.processing"), -1);
        assert_eq!(d.get("jobs.completed"), 1);
        assert_eq!(d.get("finished.provider.local"), 1);
        assert_eq!(d.get("failed.provider.local"), 0);
        assert_eq!(d.get("finished.workflow.text_to_video"), 1);
        assert_eq!(d.get("ttc.count"), 1);
        assert_eq!(d.get("ttc.ms_sum"), 12_345);
        assert_eq!(d.get(&counter::bucket(bucket_of(12.345))), 1);
        assert_eq!(d.get("bytes.video"), 1_000);
        assert_eq!(d.get("bytes.thumbnail"), 50);
    }

    #[test]
    fn failing_counts_a_finish_and_a_failure_by_provider_and_workflow() {
        let d = change_deltas(&change(&job(JobStatus::Submitted), JobStatus::Failed, None, JobUpdate::default()));
        for name in ["finished.provider.local", "failed.provider.local", "finished.workflow.text_to_video", "failed.workflow.text_to_video"]
        {
            assert_eq!(d.get(name), 1, "{name}");
        }
        assert_eq!(d.get("ttc.count"), 0);
    }

    #[test]
    fn a_rejection_counts_a_review_and_its_reason_and_an_approval_only_a_review() {
        let j = job(JobStatus::Completed);
        let reason = JobError { code: "unreadable_text".into(), message: "m".into(), next_step: None };
        let rejected = change_deltas(&change(&j, JobStatus::Rejected, Some(reason), JobUpdate::default()));
        assert_eq!((rejected.get("reviewed"), rejected.get("rejected")), (1, 1));
        assert_eq!(rejected.get("rejected.reason.unreadable_text"), 1);
        let approved = change_deltas(&change(&j, JobStatus::Approved, None, JobUpdate::default()));
        assert_eq!((approved.get("reviewed"), approved.get("rejected")), (1, 0));
    }

    #[test]
    fn removing_an_output_takes_its_bytes_back() {
        let mut j = job(JobStatus::Completed);
        j.output = Some(artifact(700, Some(30)));
        let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
        let d = change_deltas(&change(&j, JobStatus::Expired, None, update));
        assert_eq!((d.get("bytes.video"), d.get("bytes.thumbnail")), (-700, -30));
        assert_eq!(removal_deltas(StoredBytes { video: 5, thumbnail: 0 }).iter().collect::<Vec<_>>(), [("bytes.video", -5)]);
    }

    #[test]
    fn buckets_are_four_per_doubling_and_bounded() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.999), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(1.0), 1);
        assert_eq!(bucket_of(2.0), 5);
        assert_eq!(bucket_of(1e12), LAST_BUCKET);
        for seconds in [1.0, 1.5, 3.3, 10.0, 61.0, 900.0, 86_400.0] {
            let upper = bucket_upper_bound(bucket_of(seconds));
            assert!(upper > seconds && upper <= seconds * 2f64.powf(0.25) + 1e-9, "{seconds} → {upper}");
        }
    }

    #[test]
    fn the_p95_is_the_upper_bound_of_the_bucket_holding_the_95th_percentile() {
        assert_eq!(p95_of(&BTreeMap::new()), None);
        let one = BTreeMap::from([(bucket_of(10.0), 1)]);
        assert_eq!(p95_of(&one), Some(round(bucket_upper_bound(bucket_of(10.0)), 2)));
        // 19 fast and 1 slow: the 95th of 20 is the 19th, a fast one.
        let mostly_fast = BTreeMap::from([(bucket_of(5.0), 19), (bucket_of(100.0), 1)]);
        assert_eq!(p95_of(&mostly_fast), Some(round(bucket_upper_bound(bucket_of(5.0)), 2)));
        // 18 fast and 2 slow: the 19th is slow.
        let two_slow = BTreeMap::from([(bucket_of(5.0), 18), (bucket_of(100.0), 2)]);
        assert_eq!(p95_of(&two_slow), Some(round(bucket_upper_bound(bucket_of(100.0)), 2)));
    }

    fn counters(pairs: &[(&str, i64)]) -> Counters {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_figures_come_from_the_counters() {
        let c = counters(&[
            ("jobs.queued", 1),
            ("jobs.completed", 2),
            ("jobs.failed", 1),
            ("ttc.count", 2),
            ("ttc.ms_sum", 9_000),
            (&counter::bucket(bucket_of(4.0)), 1),
            (&counter::bucket(bucket_of(5.0)), 1),
            ("finished.provider.local", 3),
            ("failed.provider.local", 1),
            ("finished.provider.fal", 0),
            ("finished.workflow.text_to_video", 3),
            ("failed.workflow.text_to_video", 1),
            ("reviewed", 4),
            ("rejected", 3),
            ("rejected.reason.off_brief", 1),
            ("rejected.reason.unreadable_text", 2),
            ("duplicate_callbacks", 7),
            ("bytes.video", 1234),
            ("bytes.thumbnail", 56),
        ]);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let body = StatsBody::new(&c, StuckPage::default(), 1800, now);
        let json = serde_json::to_value(&body).unwrap();

        assert_eq!(json["generated_at"], timestamp::format(now));
        assert_eq!(json["scope"], "admin");
        assert_eq!(json["time_to_complete_seconds"]["p50"], round(bucket_upper_bound(bucket_of(4.0)), 2));
        let statuses: Vec<&String> = json["jobs_by_status"].as_object().unwrap().keys().collect();
        assert_eq!(statuses.len(), 10);
        assert_eq!(json["jobs_by_status"]["completed"], 2);
        assert_eq!(json["jobs_by_status"]["expired"], 0);
        assert_eq!(json["time_to_complete_seconds"]["count"], 2);
        assert_eq!(json["time_to_complete_seconds"]["average"], 4.5);
        assert_eq!(json["time_to_complete_seconds"]["p95"], round(bucket_upper_bound(bucket_of(5.0)), 2));
        assert_eq!(
            json["failure_rate_by_provider"],
            serde_json::json!([{"provider": "fal", "finished": 0, "failed": 0, "rate": 0.0},
                               {"provider": "local", "finished": 3, "failed": 1, "rate": 0.3333}])
        );
        assert_eq!(json["failure_rate_by_workflow_type"][0]["workflow_type"], "text_to_video");
        assert_eq!(json["failure_rate_by_workflow_type"][0]["rate"], 0.3333);
        assert_eq!(json["failure_rate_by_workflow_type"][1]["finished"], 0);
        assert_eq!(json["rejections"]["rate"], 0.75);
        assert_eq!(
            json["rejections"]["by_reason"],
            serde_json::json!([{"reason": "unreadable_text", "count": 2, "rate": 0.5},
                               {"reason": "off_brief", "count": 1, "rate": 0.25}])
        );
        assert_eq!(json["duplicate_callbacks"], 7);
        assert_eq!(json["stuck_jobs"], serde_json::json!({"threshold_seconds": 1800, "count": 0, "jobs": []}));
        assert_eq!(json["stored_bytes_by_artifact_type"], serde_json::json!({"video": 1234, "thumbnail": 56}));
    }

    #[test]
    fn the_p50_is_the_bucket_holding_the_median() {
        // 3 fast and 2 slow: the 3rd of 5 is fast; 2 fast and 3 slow: slow.
        let fast = BTreeMap::from([(bucket_of(5.0), 3), (bucket_of(100.0), 2)]);
        assert_eq!(percentile_of(&fast, 50), Some(round(bucket_upper_bound(bucket_of(5.0)), 2)));
        let slow = BTreeMap::from([(bucket_of(5.0), 2), (bucket_of(100.0), 3)]);
        assert_eq!(percentile_of(&slow, 50), Some(round(bucket_upper_bound(bucket_of(100.0)), 2)));
    }

    #[test]
    fn a_user_sees_the_queue_the_typical_time_and_their_own_jobs_only() {
        let c = counters(&[
            ("jobs.queued", 2),
            ("jobs.submitted", 1),
            ("jobs.retrying", 1),
            ("jobs.processing", 3),
            ("jobs.failed", 9),
            ("ttc.count", 1),
            (&counter::bucket(bucket_of(30.0)), 1),
            ("duplicate_callbacks", 7),
            ("finished.provider.local", 3),
        ]);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let admin = StatsBody::new(&c, StuckPage::default(), 1800, now);
        let own = [JobStatus::Approved, JobStatus::Approved, JobStatus::Processing];
        let json = serde_json::to_value(UserStatsBody::new(&admin, &own, true, 1, 5)).unwrap();
        assert_eq!(json["scope"], "user");
        assert_eq!(json["queue"], serde_json::json!({"waiting": 2, "generating": 5}));
        let p = round(bucket_upper_bound(bucket_of(30.0)), 2);
        assert_eq!(json["time_to_complete_seconds"], serde_json::json!({"count": 1, "p50": p, "p95": p}));
        assert_eq!(json["your_jobs"]["by_status"]["approved"], 2);
        assert_eq!(json["your_jobs"]["by_status"]["failed"], 0, "only the caller's own");
        assert_eq!(json["your_jobs"]["counted"], 3);
        assert_eq!(json["your_jobs"]["active"], 1);
        // Nothing operational: no providers, duplicates, stuck jobs or bytes.
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["generated_at", "queue", "scope", "time_to_complete_seconds", "your_jobs", "your_paused_endpoints"]);
    }

    #[test]
    fn no_completions_means_no_average_and_no_p95() {
        let body = StatsBody::new(&Counters::new(), StuckPage::default(), 60, OffsetDateTime::UNIX_EPOCH);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["time_to_complete_seconds"], serde_json::json!({"count": 0, "average": null, "p50": null, "p95": null}));
        assert_eq!(json["rejections"]["rate"], 0.0);
    }

    #[test]
    fn the_scheduled_check_parses_from_its_kind_alone() {
        let parsed: ScheduledMessage = serde_json::from_str(r#"{"kind":"check_stuck"}"#).unwrap();
        assert_eq!(parsed, ScheduledMessage::CheckStuck);
        assert!(serde_json::from_str::<ScheduledMessage>(r#"{"kind":"submit","job_id":"x"}"#).is_err());
    }
}
