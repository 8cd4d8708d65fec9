//! The world's state: the jobs table as items the way the DynamoDB adapter
//! writes them (with the attributes its conditions and indexes read), the
//! indexes' lagging copy, the queues, the bucket and the executions.

use crate::{objects, queues, workflows};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::model::ids::{JobId, KeyId, UploadId, UserId};
use videojobs_core::model::job::{timestamp, Job, JobEvent};
use videojobs_core::model::notification::UserWebhookSecrets;
use videojobs_core::ports::{IdempotencyRecord, KeyRecord, Upload};
use videojobs_core::JobStatus;

/// A job item: the record plus the attributes only conditions and indexes read.
#[derive(Debug, Clone)]
pub(crate) struct StoredJob {
    pub job: Job,
    /// `provider_request` (index `by_provider_request`): `{provider}#{request_id}`.
    pub provider_request: Option<String>,
    /// `active_user_id` (index `active_by_user`): put while in flight, removed when a transition frees the slot.
    pub active: bool,
    /// `review_state = pending` (index `review_queue`, with `completed_at`).
    pub review_pending: bool,
    /// `watch_status` (index `stuck_watch`, with `watch_since`).
    pub watch_status: Option<JobStatus>,
    /// `watch_since`: the last change of status or rise in progress while watched.
    pub watch_since: Option<OffsetDateTime>,
    /// Whether the `submit_attempt` attribute exists (the fence of attempt 0 is its absence).
    pub attempt_set: bool,
    pub refunded: bool,
    /// `submit_lease_until`: until when the current submission attempt is held.
    pub submit_lease_until: Option<OffsetDateTime>,
    pub progress_detail_at: Option<OffsetDateTime>,
    pub refresh_requested_at: Option<OffsetDateTime>,
}

impl StoredJob {
    /// What `dynamo::job_item` writes for a job.
    pub fn of(job: &Job) -> Self {
        Self {
            provider_request: job.provider_request_id.as_ref().map(|id| format!("{}#{id}", job.provider)),
            active: job.status.is_in_flight(),
            review_pending: job.status == JobStatus::Completed,
            watch_status: videojobs_core::model::stats::WATCHED_STATUSES.contains(&job.status).then_some(job.status),
            watch_since: videojobs_core::model::stats::WATCHED_STATUSES.contains(&job.status).then_some(job.updated_at),
            attempt_set: job.submit_attempt != 0,
            refunded: false,
            submit_lease_until: None,
            progress_detail_at: None,
            refresh_requested_at: None,
            job: job.clone(),
        }
    }

    /// `created_key`, the sort key of `by_user`.
    pub fn created_key(&self) -> String {
        format!("{}#{}", timestamp::format(self.job.created_at), self.job.job_id)
    }
}

/// The job indexes' copy of the job items, which a write reaches after the lag.
#[derive(Default)]
pub(crate) struct Indexes {
    pub lag: Duration,
    pub copy: BTreeMap<JobId, StoredJob>,
    pending: VecDeque<(OffsetDateTime, StoredJob)>,
}

impl Indexes {
    pub fn record(&mut self, now: OffsetDateTime, job: &StoredJob) {
        if self.lag.is_zero() && self.pending.is_empty() {
            self.copy.insert(job.job.job_id.clone(), job.clone());
        } else {
            self.pending.push_back((now + self.lag, job.clone()));
        }
    }

    /// Applies, in write order, every write whose lag has run out.
    pub fn propagate_due(&mut self, now: OffsetDateTime) {
        while self.pending.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, job)) = self.pending.pop_front() {
                self.copy.insert(job.job.job_id.clone(), job);
            }
        }
    }

    pub fn propagate_all(&mut self) {
        while let Some((_, job)) = self.pending.pop_front() {
            self.copy.insert(job.job.job_id.clone(), job);
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    pub pending: bool,
    /// Unix seconds, as the adapter stores it.
    pub lease_until: Option<i64>,
    pub expires: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub holder: String,
    pub lease_until: i64,
    pub expires: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct AccountItem {
    pub credits: i64,
    pub active_jobs: i64,
}

#[derive(Default)]
pub(crate) struct State {
    pub jobs: BTreeMap<JobId, StoredJob>,
    /// A job's events, in sort-key order: `(at, write order)`.
    pub events: BTreeMap<JobId, Vec<JobEvent>>,
    pub prompts: HashMap<JobId, (String, Option<i64>)>,
    pub idempotency: HashMap<(UserId, String), (IdempotencyRecord, i64)>,
    pub accounts: HashMap<UserId, AccountItem>,
    /// `APIKEY#{hash}` items, by hash.
    pub keys: HashMap<String, (KeyRecord, Option<i64>)>,
    /// The `KEYS` partition, by key id: the record and the hash it points to.
    pub key_listing: BTreeMap<KeyId, (KeyRecord, String, Option<i64>)>,
    pub uploads: HashMap<UploadId, (Upload, i64)>,
    pub receipts: HashMap<(String, String), Receipt>,
    pub owners: HashMap<(String, String), (JobId, i64)>,
    pub early: HashMap<(String, String), i64>,
    pub task_tokens: HashMap<JobId, String>,
    pub review_tokens: HashMap<JobId, String>,
    pub secrets: HashMap<UserId, UserWebhookSecrets>,
    pub delivered: HashSet<(JobId, JobStatus)>,
    /// Notification claims and delivery slots, by item key.
    pub leases: HashMap<String, Lease>,
    /// The attempts made of each notification (`made_through` on the claim item).
    pub attempts_made: HashMap<(JobId, JobStatus), u32>,
    /// When each notification was last asked to be sent again (`REDELIVER#` items).
    pub redelivery_requests: HashMap<(JobId, JobStatus), i64>,
    /// Each user's notification endpoints (`ENDPOINT#` items).
    pub webhook_endpoints: HashMap<(UserId, String), videojobs_core::model::notification::endpoints::EndpointState>,
    pub rate: HashMap<(String, i64), (u32, i64)>,
    pub counters: BTreeMap<String, i64>,
    pub index: Indexes,
    pub queues: queues::Queues,
    pub bucket: objects::Bucket,
    pub executions: workflows::Executions,
    /// DNS: addresses by host name.
    pub hosts: HashMap<String, Vec<std::net::IpAddr>>,
    /// Client endpoints: what each URL answers (none: unreachable).
    pub endpoints: HashMap<String, u16>,
    /// Every notification posted, in order.
    pub posted: Vec<crate::dns::Posted>,
    /// Reads and writes per partition key, while counted (`Memory::tally_partitions`).
    pub tally: Option<crate::tally::Tally>,
}

impl State {
    /// The job's item after a write: the indexes get it after their lag.
    pub fn reindex(&mut self, id: &JobId, now: OffsetDateTime) {
        if let Some(job) = self.jobs.get(id) {
            self.index.record(now, job);
            if let Some(tally) = self.tally.as_mut() {
                tally.job_written(job);
            }
        }
    }

    pub fn push_event(&mut self, event: &JobEvent) {
        let events = self.events.entry(event.job_id.clone()).or_default();
        // Sorted by time; equal times keep their write order.
        let at = events.partition_point(|e| e.at <= event.at);
        events.insert(at, event.clone());
    }

    pub fn add_counters(&mut self, deltas: &videojobs_core::model::stats::Deltas) {
        for (name, amount) in deltas.iter() {
            *self.counters.entry(name.to_owned()).or_insert(0) += amount;
        }
    }

    /// DynamoDB's TTL sweep: items whose `ttl_epoch` passed are deleted.
    pub fn sweep_expired(&mut self, now: OffsetDateTime) {
        let now = now.unix_timestamp();
        let live = |expires: &Option<i64>| expires.is_none_or(|at| at > now);
        self.prompts.retain(|_, (_, expires)| live(expires));
        self.idempotency.retain(|_, (_, expires)| *expires > now);
        self.keys.retain(|_, (_, expires)| live(expires));
        self.key_listing.retain(|_, (_, _, expires)| live(expires));
        self.uploads.retain(|_, (_, expires)| *expires > now);
        self.receipts.retain(|_, receipt| live(&receipt.expires));
        self.owners.retain(|_, (_, expires)| *expires > now);
        self.early.retain(|_, expires| *expires > now);
        self.leases.retain(|_, lease| lease.expires > now);
        self.rate.retain(|_, (_, expires)| *expires > now);
    }
}
