//! The DynamoDB-backed ports, in memory: each method does what its
//! DynamoDB adapter's writes do, conditions included, in one critical section.

use crate::state::{AccountItem, Lease, Receipt, State, StoredJob};
use crate::tally::{key, Place, TOKEN_ITEM_UNITS};
use crate::Memory;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::model::ids::{ApiKeyHash, IdempotencyKey, JobId, KeyId, UploadId, UserId};
use videojobs_core::model::job::{timestamp, Job, JobEvent};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::model::notification::endpoints::{EndpointChange, EndpointState};
use videojobs_core::model::notification::log::{DeliveryOutcome, FailedDeliveriesFilter};
use videojobs_core::model::notification::{AttemptClaim, UserWebhookSecrets};
use videojobs_core::model::progress::ProgressDetail;
use videojobs_core::model::request::ProviderName;
use videojobs_core::model::stats::{Counters, StuckJob, StuckPage};
use videojobs_core::ports::ProgressDetails;
use videojobs_core::ports::ProviderSwitch;
use videojobs_core::ports::RateLimiter;
use videojobs_core::ports::ReviewQueue;
use videojobs_core::ports::StatsStore;
use videojobs_core::ports::*;
use videojobs_core::ports::{NotificationLog, WebhookSecrets};
use videojobs_core::{JobStatus, StoreError};

const DAY: i64 = 24 * 3600;
const IDEMPOTENCY_TTL_SECONDS: i64 = DAY;
const UPLOAD_TTL_SECONDS: i64 = DAY;
const RECEIPT_TTL_SECONDS: i64 = 7 * DAY;

/// The adapter's partition keys of a callback receipt and of a provider request's owner record.
fn receipt_pk(provider: &str, event_id: &str) -> String {
    format!("RECEIPT#{provider}#{event_id}")
}

fn owner_pk(provider: &str, request_id: &str) -> String {
    format!("PROVREQ#{provider}#{request_id}")
}

/// An opaque cursor naming one listing and a position in it.
fn encode_cursor(listing: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{listing}\n{position}"))
}

fn decode_cursor(cursor: &str, listing: &str) -> Result<String, ListError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ListError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ListError::BadCursor)?;
    match text.split_once('\n') {
        Some((name, position)) if name == listing => Ok(position.to_owned()),
        _ => Err(ListError::BadCursor),
    }
}

/// A query page: DynamoDB stops at `limit` and then gives a position to go
/// on from, even when nothing follows (the next page is then empty).
fn page_of<T>(sorted: Vec<(String, T)>, limit: u32, listing: &str) -> Page<T> {
    let limit = limit.max(1) as usize;
    let full = sorted.len() >= limit;
    let mut items: Vec<(String, T)> = sorted.into_iter().take(limit).collect();
    let next_cursor = if full { items.last().map(|(position, _)| encode_cursor(listing, position)) } else { None };
    Page { items: items.drain(..).map(|(_, item)| item).collect(), next_cursor }
}

/// The write fence of a submission attempt and its lease (`UpdateClauses::attempt_fence`).
fn fence_holds(job: &StoredJob, update: &JobUpdate) -> bool {
    let attempt_holds = match update.only_in_attempt {
        None => true,
        Some(0) => !job.attempt_set,
        Some(attempt) => job.attempt_set && job.job.submit_attempt == attempt,
    };
    let lease_free = match (update.submit_lease.and_then(|lease| lease.if_run_out_at), job.submit_lease_until) {
        (Some(at), Some(until)) => until <= at,
        _ => true,
    };
    attempt_holds && lease_free
}

/// The SET and REMOVE of `UpdateClauses`, on the item.
fn apply_update(stored: &mut StoredJob, update: &JobUpdate, now: OffsetDateTime) {
    let job = &mut stored.job;
    job.updated_at = now;
    if let Some(progress) = update.progress {
        job.progress = progress;
    }
    if let Some(lease) = update.submit_lease {
        stored.submit_lease_until = Some(lease.until);
    }
    if let Some((provider, request_id)) = &update.provider_request {
        job.provider_request_id = Some(request_id.clone());
        stored.provider_request = Some(format!("{provider}#{request_id}"));
    }
    if let Some(output) = &update.output {
        job.output = Some(output.clone());
    }
    if let Some(at) = update.output_expires_at {
        job.output_expires_at = Some(at);
    }
    if let Some(at) = update.completed_at {
        job.completed_at = Some(at);
    }
    if update.remove_output {
        job.output = None;
    }
    if let Some(attempt) = update.submit_attempt {
        job.submit_attempt = attempt;
        stored.attempt_set = true;
    }
    if let Some(review) = &update.review {
        job.review = Some(review.clone());
    }
}

fn is_at_provider(status: JobStatus) -> bool {
    matches!(status, JobStatus::Submitted | JobStatus::Processing)
}

impl Memory {
    /// Writes a job's item as it is (what `dynamo::job_item` writes for it),
    /// for states a test cannot reach through the API yet.
    pub fn put_job(&self, job: &Job) {
        let now = self.now();
        let mut state = self.lock();
        state.jobs.insert(job.job_id.clone(), StoredJob::of(job));
        state.reindex(&job.job_id, now);
    }

    /// The prompt stored beside the job, until its TTL deletes it.
    pub fn stored_prompt(&self, id: &JobId) -> Option<String> {
        self.lock().prompts.get(id).map(|(prompt, _)| prompt.clone())
    }

    /// Deletes the prompt stored beside the job, as its TTL does.
    pub fn forget_prompt(&self, id: &JobId) {
        self.lock().prompts.remove(id);
    }
}

impl Memory {
    fn lease_key(kind: &str, a: &str, b: &str) -> String {
        format!("{kind}#{a}#{b}")
    }

    /// `claim_lease`: put unless another holder's lease has not run out.
    fn claim(state: &mut crate::state::State, key: String, holder: &str, lease: Duration, now: OffsetDateTime) -> bool {
        let now = now.unix_timestamp();
        // A claim held by `holder` itself is its own write sent again (the adapter's lost answer).
        if state.leases.get(&key).is_some_and(|held| held.lease_until >= now && held.holder != holder) {
            return false;
        }
        let lease_until = now + i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2);
        state.leases.insert(key, Lease { holder: holder.to_owned(), lease_until, expires: now + DAY });
        true
    }

    fn release(state: &mut crate::state::State, key: &str, holder: &str) {
        if state.leases.get(key).is_some_and(|held| held.holder == holder) {
            state.leases.remove(key);
        }
    }
}

impl Memory {
    /// A page of `user`'s entries in `by_user` (the lagging index copy),
    /// newest first, each made into an item by `read` (`None`: left out).
    /// `reads_items`: the adapter reads each entry's item too (one `BatchGetItem`).
    async fn user_index_page<T: Send + 'static>(
        &self,
        operation: &'static str,
        user: &UserId,
        page: &PageRequest,
        reads_items: bool,
        read: impl Fn(&State, &StoredJob) -> Option<T> + Send + 'static,
    ) -> Result<Page<T>, ListError> {
        let listing = format!("jobs_of {user}");
        let after = page.cursor.as_deref().map(|c| decode_cursor(c, &listing)).transpose()?;
        let (user, limit) = (user.clone(), page.limit);
        Ok(self
            .call(operation, move |state, _| {
                let mut rows: Vec<(String, T)> = state
                    .index
                    .copy
                    .values()
                    .filter(|found| found.job.user_id == user)
                    .filter(|found| after.as_ref().is_none_or(|after| &found.created_key() < after))
                    .filter_map(|found| Some((found.created_key(), read(state, found)?)))
                    .collect();
                rows.sort_by(|a, b| b.0.cmp(&a.0));
                if state.tally.is_some() {
                    // A query reads at least one unit; the page's items are read by their keys
                    // (`created_key` ends with the job id).
                    let listed: Vec<String> = rows.iter().take(limit.max(1) as usize).map(|(position, _)| position.clone()).collect();
                    state.tally_read(Place::ByUser, || user.to_string(), (listed.len() as u64).max(1));
                    for position in listed.iter().filter(|_| reads_items) {
                        let id = position.rsplit_once('#').map_or(position.as_str(), |(_, id)| id);
                        state.tally_read(Place::Jobs, || key::job(id), 1);
                    }
                }
                Ok(page_of(rows, limit, &listing))
            })
            .await?)
    }
}

impl Memory {
    /// A filtered page, as the DynamoDB adapter reads it
    /// (`videojobs_aws::dynamo::listing`): `by_parent` for a parent, else
    /// `by_user`; the time window bounds the positions; status, type and tag
    /// are tested on the index's (lagging) copy, then every job again as it
    /// is now. Unlike DynamoDB's, the page is always full while jobs remain.
    async fn filtered_jobs(&self, user: &UserId, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, ListError> {
        let listing = match &filter.parent_job_id {
            Some(parent) => format!("children_of {parent}"),
            None => format!("jobs_of {user}"),
        };
        let after = page.cursor.as_deref().map(|c| decode_cursor(c, &listing)).transpose()?;
        let in_window = |position: &str| {
            position.split_once('#').and_then(|(at, _)| timestamp::parse(at)).is_some_and(|at| filter.admits_creation_time(at))
        };
        if after.as_deref().is_some_and(|position| !in_window(position)) {
            return Err(ListError::BadCursor);
        }
        let (user, filter, limit) = (user.clone(), filter.clone(), page.limit);
        Ok(self
            .call("JobListings::jobs_of", move |state, _| {
                let mut rows: Vec<(String, Job)> = state
                    .index
                    .copy
                    .values()
                    .filter(|found| match &filter.parent_job_id {
                        Some(parent) => found.job.parent_job_id.as_ref() == Some(parent),
                        None => found.job.user_id == user,
                    })
                    .filter(|found| after.as_ref().is_none_or(|after| &found.created_key() < after))
                    .filter(|found| filter.admits_creation_time(found.job.created_at))
                    // by_parent holds keys only: the rest is tested on the items.
                    .filter(|found| filter.parent_job_id.is_some() || filter.matches(&found.job))
                    .filter_map(|found| Some((found.created_key(), state.jobs.get(&found.job.job_id)?.job.clone())))
                    .collect();
                rows.sort_by(|a, b| b.0.cmp(&a.0));
                let mut page = page_of(rows, limit, &listing);
                page.items.retain(|job| job.user_id == user && filter.matches(job));
                if state.tally.is_some() {
                    state.tally_read(Place::ByUser, || user.to_string(), (page.items.len() as u64).max(1));
                    for job in &page.items {
                        state.tally_read(Place::Jobs, || key::job(&job.job_id), 1);
                    }
                }
                Ok(page)
            })
            .await?)
    }
}

#[async_trait]
impl JobWrites for Memory {
    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError> {
        self.call("JobWrites::create", |state, now| {
            let job = &new.job;
            state.tally_create(new);
            if let Some(record) = &new.idempotency {
                if state.idempotency.contains_key(&(record.user_id.clone(), record.key.as_str().to_owned())) {
                    return Ok(CreateOutcome::IdempotencyKeyTaken);
                }
            }
            // A refused debit: the adapter reads the account back to say why.
            let refused = |state: &mut State| state.tally_read(Place::Jobs, || key::user(&job.user_id), 1);
            let Some(account) = state.accounts.get(&job.user_id) else {
                refused(state);
                return Ok(CreateOutcome::NoAccount);
            };
            if account.credits < i64::from(job.cost_credits) {
                let balance = account.credits;
                refused(state);
                return Ok(CreateOutcome::InsufficientCredits { balance });
            }
            if account.active_jobs >= i64::from(new.max_active_jobs) {
                refused(state);
                return Ok(CreateOutcome::TooManyActiveJobs);
            }
            if state.jobs.contains_key(&job.job_id) || (new.prompt.is_some() && state.prompts.contains_key(&job.job_id)) {
                return Err(StoreError::Internal("create cancelled: the job exists".into()));
            }
            if let Some(account) = state.accounts.get_mut(&job.user_id) {
                account.credits -= i64::from(job.cost_credits);
                account.active_jobs += 1;
            }
            state.jobs.insert(job.job_id.clone(), StoredJob::of(job));
            state.push_event(&new.first_event);
            if let Some(prompt) = &new.prompt {
                state.prompts.insert(job.job_id.clone(), (prompt.clone(), new.prompt_expires_at.map(|at| at.unix_timestamp())));
            }
            if let Some(record) = &new.idempotency {
                let expires = now.unix_timestamp() + IDEMPOTENCY_TTL_SECONDS;
                state.idempotency.insert((record.user_id.clone(), record.key.as_str().to_owned()), (record.clone(), expires));
            }
            state.add_counters(&videojobs_core::model::stats::creation_deltas(job));
            state.reindex(&job.job_id, now);
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError> {
        self.call("JobWrites::change_status", |state, now| {
            let t = change.transition;
            state.tally_change(change);
            // A refused change: the adapter reads the job back to say what it was.
            let refused = |state: &mut State| state.tally_read(Place::Jobs, || key::job(&change.job_id), 1);
            let Some(stored) = state.jobs.get(&change.job_id) else {
                refused(state);
                return Ok(ChangeOutcome::NotFound);
            };
            let holds = stored.job.status == t.from && fence_holds(stored, &change.update) && !(t.refunds_credits && stored.refunded);
            if !holds {
                let was = stored.job.status;
                refused(state);
                return Ok(ChangeOutcome::StatusWas(was));
            }
            if (t.refunds_credits || t.frees_slot) && !state.accounts.contains_key(&change.user_id) {
                // The account update's `attribute_exists(pk)` cancels the transaction.
                return Err(StoreError::Internal("status change cancelled: no account".into()));
            }
            let Some(stored) = state.jobs.get_mut(&change.job_id) else { return Ok(ChangeOutcome::NotFound) };
            apply_update(stored, &change.update, change.at);
            stored.job.status = t.to;
            if let Some(error) = &change.error {
                stored.job.error = Some(error.clone());
            }
            if t.refunds_credits {
                stored.refunded = true;
            }
            if t.frees_slot {
                stored.active = false;
            }
            if t.to == JobStatus::Completed {
                stored.review_pending = true;
            }
            if t.from == JobStatus::Completed {
                stored.review_pending = false;
            }
            if !is_at_provider(t.to) {
                stored.job.progress_detail = None;
                stored.progress_detail_at = None;
                stored.refresh_requested_at = None;
            }
            let watched = |s| videojobs_core::model::stats::WATCHED_STATUSES.contains(&s);
            if watched(t.to) {
                stored.watch_status = Some(t.to);
                stored.watch_since = Some(change.at);
            } else if watched(t.from) {
                stored.watch_status = None;
                stored.watch_since = None;
            }
            if t.refunds_credits || t.frees_slot {
                if let Some(account) = state.accounts.get_mut(&change.user_id) {
                    if t.refunds_credits {
                        account.credits += i64::from(change.cost_credits);
                    }
                    if t.frees_slot {
                        account.active_jobs -= 1;
                    }
                }
            }
            state.push_event(&change.event);
            state.add_counters(&videojobs_core::model::stats::change_deltas(change));
            state.reindex(&change.job_id, now);
            Ok(ChangeOutcome::Applied)
        })
        .await
    }

    async fn update_in_status(&self, id: &JobId, status: JobStatus, update: &JobUpdate) -> Result<bool, StoreError> {
        self.call("JobWrites::update_in_status", |state, now| {
            if update.remove_output {
                // `forget_output` reads the job first, and writes (a transaction: the job and a
                // counter shard) only if it is in the status.
                state.tally_read(Place::Jobs, || key::job(id), 1);
                if state.jobs.get(id).is_some_and(|stored| stored.job.status == status) {
                    state.tally_write(Place::Jobs, || key::job(id), 2);
                    state.tally_shard_write(2);
                }
            } else {
                state.tally_write(Place::Jobs, || key::job(id), 1);
            }
            let Some(stored) = state.jobs.get_mut(id) else { return Ok(false) };
            if stored.job.status != status {
                return Ok(false);
            }
            if !fence_holds(stored, update) {
                return Ok(false);
            }
            if update.remove_output {
                // `forget_output`: conditioned on the status, the output and the fence.
                let removed = videojobs_core::model::change::StoredBytes::of(stored.job.output.as_ref());
                apply_update(stored, update, now);
                state.add_counters(&videojobs_core::model::stats::removal_deltas(removed));
            } else {
                apply_update(stored, update, now);
                if update.progress.is_some() && stored.watch_status.is_some() {
                    stored.watch_since = Some(now);
                }
            }
            state.reindex(id, now);
            Ok(true)
        })
        .await
    }

    async fn raise_progress(&self, id: &JobId, percent: u8) -> Result<(), StoreError> {
        self.call("JobWrites::raise_progress", |state, now| {
            // Sent whatever the job's progress: refused by its condition, it still costs its unit.
            state.tally_write(Place::Jobs, || key::job(id), 1);
            let percent = percent.min(99);
            let Some(stored) = state.jobs.get_mut(id) else { return Ok(()) };
            if stored.job.progress < percent && is_at_provider(stored.job.status) {
                stored.job.progress = percent;
                stored.job.updated_at = now;
                stored.watch_since = Some(now);
                state.reindex(id, now);
            }
            Ok(())
        })
        .await
    }

    async fn record_event(&self, event: &JobEvent) -> Result<(), StoreError> {
        self.call("JobWrites::record_event", |state, _| {
            state.tally_write(Place::Jobs, || key::job(&event.job_id), 1);
            state.push_event(event);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl JobReads for Memory {
    async fn job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.call("JobReads::job", |state, _| {
            state.tally_read(Place::Jobs, || key::job(id), 1);
            Ok(state.jobs.get(id).map(|stored| stored.job.clone()))
        })
        .await
    }

    async fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        self.call("JobReads::events", |state, _| {
            let events = state.events.get(id).cloned().unwrap_or_default();
            state.tally_read(Place::Jobs, || key::job(id), (events.len() as u64).max(1));
            Ok(events)
        })
        .await
    }

    async fn idempotency_record(&self, user: &UserId, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.call("JobReads::idempotency_record", |state, _| {
            state.tally_read(Place::Jobs, || format!("IDEM#{user}#{}", key.as_str()), 1);
            Ok(state.idempotency.get(&(user.clone(), key.as_str().to_owned())).map(|(record, _)| record.clone()))
        })
        .await
    }

    async fn prompt(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.call("JobReads::prompt", |state, _| {
            state.tally_read(Place::Prompts, || id.to_string(), 1);
            Ok(state.prompts.get(id).map(|(prompt, _)| prompt.clone()))
        })
        .await
    }
}

#[async_trait]
impl JobListings for Memory {
    async fn jobs_of(&self, user: &UserId, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, ListError> {
        if filter.is_empty() {
            // The index (keys only) finds them; the items are read as they are now.
            return self
                .user_index_page("JobListings::jobs_of", user, page, true, |state, found| {
                    state.jobs.get(&found.job.job_id).map(|s| s.job.clone())
                })
                .await;
        }
        self.filtered_jobs(user, filter, page).await
    }

    async fn statuses_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<JobStatus>, ListError> {
        // `by_user` holds the status too: read as the index has it.
        self.user_index_page("JobListings::statuses_of", user, page, false, |_, found| Some(found.job.status)).await
    }

    async fn active_jobs_of(&self, user: &UserId) -> Result<Vec<Job>, StoreError> {
        self.call("JobListings::active_jobs_of", |state, _| {
            // Found by the lagging index, read as they are now: one that left flight since is left out.
            let mut rows: Vec<(String, Job)> = state
                .index
                .copy
                .values()
                .filter(|stored| stored.active && &stored.job.user_id == user)
                .filter_map(|stored| Some((stored.created_key(), state.jobs.get(&stored.job.job_id)?.job.clone())))
                .filter(|(_, job)| job.status.is_in_flight())
                .collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0));
            if state.tally.is_some() {
                // The index query, then each entry's item (found ones; those that left flight were read too).
                let found: Vec<JobId> = state
                    .index
                    .copy
                    .values()
                    .filter(|stored| stored.active && &stored.job.user_id == user)
                    .map(|s| s.job.job_id.clone())
                    .collect();
                state.tally_read(Place::ActiveByUser, || user.to_string(), (found.len() as u64).max(1));
                for id in &found {
                    state.tally_read(Place::Jobs, || key::job(id), 1);
                }
            }
            Ok(rows.into_iter().map(|(_, job)| job).collect())
        })
        .await
    }

    async fn children_of(&self, parent: &JobId, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.call("JobListings::children_of", |state, _| {
            // Found by the lagging index, read as they are now.
            let mut rows: Vec<(String, Job)> = state
                .index
                .copy
                .values()
                .filter(|stored| stored.job.parent_job_id.as_ref() == Some(parent))
                .filter_map(|stored| Some((stored.created_key(), state.jobs.get(&stored.job.job_id)?.job.clone())))
                .collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0));
            rows.truncate(limit as usize);
            if state.tally.is_some() {
                for (_, job) in &rows {
                    state.tally_read(Place::Jobs, || key::job(&job.job_id), 1);
                }
            }
            Ok(rows.into_iter().map(|(_, job)| job).collect())
        })
        .await
    }
}

#[async_trait]
impl CallbackLedger for Memory {
    async fn record_receipt(&self, provider: &str, event_id: &str, _request_id: &str, lease: Duration) -> Result<ReceiptClaim, StoreError> {
        self.call("CallbackLedger::record_receipt", |state, now| {
            let now = now.unix_timestamp();
            let key = (provider.to_owned(), event_id.to_owned());
            state.tally_write(Place::Jobs, || receipt_pk(provider, event_id), 1);
            // A refused put: the adapter reads the receipt to say which.
            let held = |state: &mut State| state.tally_read(Place::Jobs, || receipt_pk(provider, event_id), 1);
            match state.receipts.get(&key) {
                // New, or pending under a lease that ran out (`lease_until < :now`, in seconds).
                None => {}
                Some(held) if held.pending && held.lease_until.is_some_and(|until| until < now) => {}
                Some(receipt) if receipt.pending => {
                    held(state);
                    return Ok(ReceiptClaim::InProgress);
                }
                Some(_) => {
                    held(state);
                    return Ok(ReceiptClaim::Done);
                }
            }
            let receipt =
                Receipt { pending: true, lease_until: Some(now + lease.as_secs() as i64), expires: Some(now + RECEIPT_TTL_SECONDS) };
            state.receipts.insert(key, receipt);
            Ok(ReceiptClaim::New)
        })
        .await
    }

    async fn complete_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        self.call("CallbackLedger::complete_receipt", |state, _| {
            state.tally_write(Place::Jobs, || receipt_pk(provider, event_id), 1);
            // An unconditional UpdateItem: it makes the item if there was none.
            let receipt = state.receipts.entry((provider.to_owned(), event_id.to_owned())).or_insert(Receipt {
                pending: false,
                lease_until: None,
                expires: None,
            });
            receipt.pending = false;
            receipt.lease_until = None;
            Ok(())
        })
        .await
    }

    async fn forget_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        self.call("CallbackLedger::forget_receipt", |state, _| {
            state.tally_write(Place::Jobs, || receipt_pk(provider, event_id), 1);
            let key = (provider.to_owned(), event_id.to_owned());
            if state.receipts.get(&key).is_some_and(|r| r.pending) {
                state.receipts.remove(&key);
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SubmissionTokens for Memory {
    async fn save_task_token(&self, id: &JobId, token: &str, save: TokenSave) -> Result<(), StoreError> {
        self.call("SubmissionTokens::save_task_token", |state, _| {
            state.tally_write(Place::Jobs, || key::job(id), TOKEN_ITEM_UNITS);
            if save == TokenSave::Replace || !state.task_tokens.contains_key(id) {
                state.task_tokens.insert(id.clone(), token.to_owned());
            }
            Ok(())
        })
        .await
    }

    async fn task_token(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.call("SubmissionTokens::task_token", |state, _| {
            state.tally_read(Place::Jobs, || key::job(id), 1);
            Ok(state.task_tokens.get(id).cloned())
        })
        .await
    }
}

#[async_trait]
impl ProviderRequests for Memory {
    async fn job_for_provider_request(&self, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
        self.call("ProviderRequests::job_for_provider_request", |state, _| {
            state.tally_read(Place::Jobs, || owner_pk(provider, request_id), 1);
            if let Some((job, _)) = state.owners.get(&(provider.to_owned(), request_id.to_owned())) {
                return Ok(Some(job.clone()));
            }
            // Jobs submitted before owner records existed: the (lagging) index.
            let wanted = format!("{provider}#{request_id}");
            state.tally_read(Place::ByProviderRequest, || wanted.clone(), 1);
            Ok(state.index.copy.values().find(|stored| stored.provider_request.as_deref() == Some(&wanted)).map(|s| s.job.job_id.clone()))
        })
        .await
    }

    async fn record_owner(&self, provider: &str, request_id: &str, job: &JobId) -> Result<(), StoreError> {
        self.call("ProviderRequests::record_owner", |state, now| {
            state.tally_write(Place::Jobs, || owner_pk(provider, request_id), 1);
            state.owners.insert((provider.to_owned(), request_id.to_owned()), (job.clone(), now.unix_timestamp() + RECEIPT_TTL_SECONDS));
            Ok(())
        })
        .await
    }

    async fn note_early_callback(&self, provider: &str, request_id: &str) -> Result<(), StoreError> {
        self.call("ProviderRequests::note_early_callback", |state, now| {
            state.tally_write(Place::Jobs, || owner_pk(provider, request_id), 1);
            state.early.insert((provider.to_owned(), request_id.to_owned()), now.unix_timestamp() + RECEIPT_TTL_SECONDS);
            Ok(())
        })
        .await
    }

    async fn had_early_callback(&self, provider: &str, request_id: &str) -> Result<bool, StoreError> {
        self.call("ProviderRequests::had_early_callback", |state, _| {
            state.tally_read(Place::Jobs, || owner_pk(provider, request_id), 1);
            Ok(state.early.contains_key(&(provider.to_owned(), request_id.to_owned())))
        })
        .await
    }
}

#[async_trait]
impl AccountStore for Memory {
    async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        self.call("AccountStore::account", |state, _| {
            state.tally_read(Place::Jobs, || key::user(user), 1);
            Ok(state.accounts.get(user).map(|a| Account {
                user_id: user.clone(),
                credits: a.credits,
                active_jobs: u32::try_from(a.active_jobs.max(0)).unwrap_or(u32::MAX),
            }))
        })
        .await
    }

    async fn open_account(&self, user: &UserId, credits: i64) -> Result<bool, StoreError> {
        self.call("AccountStore::open_account", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            if state.accounts.contains_key(user) {
                return Ok(false);
            }
            state.accounts.insert(user.clone(), AccountItem { credits, active_jobs: 0 });
            Ok(true)
        })
        .await
    }

    async fn grant_credits(&self, user: &UserId, credits: i64) -> Result<Account, StoreError> {
        self.call("AccountStore::grant_credits", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            // `attribute_exists(pk)`: a conditional check failure, which the adapter reports as an error.
            let Some(account) = state.accounts.get_mut(user) else {
                return Err(StoreError::Internal("UpdateItem: the conditional request failed".into()));
            };
            account.credits += credits;
            Ok(Account {
                user_id: user.clone(),
                credits: account.credits,
                active_jobs: u32::try_from(account.active_jobs.max(0)).unwrap_or(u32::MAX),
            })
        })
        .await
    }
}

#[async_trait]
impl ApiKeyStore for Memory {
    async fn key_for(&self, key: &ApiKeyHash) -> Result<Option<KeyRecord>, StoreError> {
        self.call("ApiKeyStore::key_for", |state, _| {
            state.tally_read(Place::Jobs, || format!("APIKEY#{}", key.as_str()), 1);
            Ok(state.keys.get(key.as_str()).map(|(record, _)| record.clone()))
        })
        .await
    }

    async fn save_key_record(&self, key: &ApiKeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        self.call("ApiKeyStore::save_key_record", |state, _| {
            // One transaction: the key's item and its listing entry.
            state.tally_write(Place::Jobs, || format!("APIKEY#{}", key.as_str()), 2);
            state.tally_write(Place::Jobs, || "KEYS".to_owned(), 2);
            let expires = |days: i64| record.expires_at.map(|at| at.unix_timestamp() + days * DAY);
            state.keys.insert(key.as_str().to_owned(), (record.clone(), expires(1)));
            state.key_listing.insert(record.key_id.clone(), (record.clone(), key.as_str().to_owned(), expires(30)));
            Ok(())
        })
        .await
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<KeyRecord>, ListError> {
        const LISTING: &str = "keys";
        let after = page.cursor.as_deref().map(|c| decode_cursor(c, LISTING)).transpose()?;
        let mut listed = self
            .call("ApiKeyStore::list_keys", |state, _| {
                let rows: Vec<(String, KeyRecord)> = state
                    .key_listing
                    .iter()
                    .map(|(id, (record, _, _))| (id.as_str().to_owned(), record.clone()))
                    .filter(|(id, _)| after.as_ref().is_none_or(|after| id > after))
                    .collect();
                state.tally_read(Place::Jobs, || "KEYS".to_owned(), (rows.len().min(page.limit.max(1) as usize) as u64).max(1));
                Ok(page_of(rows, page.limit, LISTING))
            })
            .await?;
        // The adapter gives no cursor after an empty page.
        if listed.items.is_empty() {
            listed.next_cursor = None;
        }
        Ok(listed)
    }

    async fn revoke_key(&self, id: &KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        self.call("ApiKeyStore::revoke_key", |state, _| {
            state.tally_read(Place::Jobs, || "KEYS".to_owned(), 1);
            let Some((record, hash, _)) = state.key_listing.get_mut(id) else { return Ok(None) };
            if record.revoked_at.is_some() {
                return Ok(Some(record.clone()));
            }
            record.revoked_at = Some(at);
            let mut answer = record.clone();
            let hash = hash.clone();
            if let Some((key_record, _)) = state.keys.get_mut(&hash) {
                key_record.revoked_at.get_or_insert(at);
            }
            // One transaction: the key's item and its listing entry.
            state.tally_write(Place::Jobs, || format!("APIKEY#{hash}"), 2);
            state.tally_write(Place::Jobs, || "KEYS".to_owned(), 2);
            answer.revoked_at = Some(at);
            Ok(Some(answer))
        })
        .await
    }
}

#[async_trait]
impl UploadStore for Memory {
    async fn save_upload(&self, upload: &Upload) -> Result<(), StoreError> {
        self.call("UploadStore::save_upload", |state, now| {
            state.tally_write(Place::Jobs, || format!("UPLOAD#{}", upload.upload_id), 1);
            if state.uploads.contains_key(&upload.upload_id) {
                return Err(StoreError::Internal(format!("upload id {} already taken", upload.upload_id)));
            }
            state.uploads.insert(upload.upload_id.clone(), (upload.clone(), now.unix_timestamp() + UPLOAD_TTL_SECONDS));
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>, StoreError> {
        self.call("UploadStore::upload", |state, _| {
            state.tally_read(Place::Jobs, || format!("UPLOAD#{id}"), 1);
            Ok(state.uploads.get(id).map(|(upload, _)| upload.clone()))
        })
        .await
    }
}

#[async_trait]
impl ProgressDetails for Memory {
    async fn record_detail(&self, id: &JobId, detail: &ProgressDetail) -> Result<bool, StoreError> {
        self.call("ProgressDetails::record_detail", |state, now| {
            state.tally_write(Place::Jobs, || key::job(id), 1);
            let Some(stored) = state.jobs.get_mut(id) else { return Ok(false) };
            let forward = stored.progress_detail_at.is_none_or(|at| timestamp::format(at) < timestamp::format(detail.observed_at));
            if !detail.allowed_statuses().contains(&stored.job.status) || !forward {
                return Ok(false);
            }
            stored.job.progress_detail = Some(detail.clone());
            stored.progress_detail_at = Some(detail.observed_at);
            state.reindex(id, now);
            Ok(true)
        })
        .await
    }

    async fn claim_refresh(&self, id: &JobId, at: OffsetDateTime, window_seconds: u64) -> Result<bool, StoreError> {
        self.call("ProgressDetails::claim_refresh", |state, now| {
            state.tally_write(Place::Jobs, || key::job(id), 1);
            let cutoff = timestamp::format(at - Duration::from_secs(window_seconds));
            let Some(stored) = state.jobs.get_mut(id) else { return Ok(false) };
            let free = stored.refresh_requested_at.is_none_or(|last| timestamp::format(last) <= cutoff);
            if !is_at_provider(stored.job.status) || !free {
                return Ok(false);
            }
            stored.refresh_requested_at = Some(at);
            state.reindex(id, now);
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl ProviderSwitch for Memory {
    async fn switch_provider(&self, id: &JobId, from: &ProviderName, to: &ProviderName, event: &JobEvent) -> Result<bool, StoreError> {
        self.call("ProviderSwitch::switch_provider", |state, now| {
            // One transaction: the job and its event.
            state.tally_write(Place::Jobs, || key::job(id), 4);
            let Some(stored) = state.jobs.get_mut(id) else { return Ok(false) };
            let job = &mut stored.job;
            if job.status != JobStatus::Submitted || &job.provider != from || job.provider_request_id.is_some() {
                return Ok(false);
            }
            job.provider = to.clone();
            job.updated_at = event.at;
            state.push_event(event);
            state.reindex(id, now);
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl RateLimiter for Memory {
    async fn take(&self, bucket: &str, window_start: i64, window_seconds: u64, limit: u32) -> Result<bool, StoreError> {
        self.call("RateLimiter::take", |state, _| {
            // Refused over the limit, the update still costs its unit.
            state.tally_write(Place::Jobs, || format!("RATE#{bucket}#{window_start}"), 1);
            let expires = window_start + i64::try_from(window_seconds).unwrap_or(60) * 2;
            let entry = state.rate.entry((bucket.to_owned(), window_start)).or_insert((0, expires));
            // `attribute_not_exists(hits) OR hits < :limit`: a first hit always counts.
            if entry.0 > 0 && entry.0 >= limit {
                return Ok(false);
            }
            entry.0 += 1;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl WebhookSecrets for Memory {
    async fn webhook_secrets(&self, user: &UserId) -> Result<Option<UserWebhookSecrets>, StoreError> {
        self.call("WebhookSecrets::webhook_secrets", |state, _| {
            state.tally_read(Place::Jobs, || key::user(user), 1);
            Ok(state.secrets.get(user).cloned())
        })
        .await
    }

    async fn create_webhook_secret(&self, user: &UserId, secret: &str) -> Result<UserWebhookSecrets, StoreError> {
        self.call("WebhookSecrets::create_webhook_secret", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            if state.secrets.contains_key(user) {
                // The put found one (a concurrent first request made it): the adapter reads that one.
                state.tally_read(Place::Jobs, || key::user(user), 1);
            }
            Ok(state
                .secrets
                .entry(user.clone())
                .or_insert_with(|| UserWebhookSecrets { current: secret.to_owned(), previous: None, previous_valid_until: None })
                .clone())
        })
        .await
    }

    async fn rotate_webhook_secret(
        &self,
        user: &UserId,
        expected: &str,
        new: &str,
        grace_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.call("WebhookSecrets::rotate_webhook_secret", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            let Some(secrets) = state.secrets.get_mut(user).filter(|s| s.current == expected) else { return Ok(false) };
            secrets.previous = Some(std::mem::replace(&mut secrets.current, new.to_owned()));
            secrets.previous_valid_until = Some(grace_until);
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl NotificationLog for Memory {
    async fn was_delivered(&self, job: &JobId, status: JobStatus) -> Result<bool, StoreError> {
        self.call("NotificationLog::was_delivered", |state, _| {
            state.tally_read(Place::Jobs, || key::job(job), 1);
            Ok(state.delivered.contains(&(job.clone(), status)))
        })
        .await
    }

    async fn record_delivery(&self, job: &JobId, status: JobStatus, _attempt: u32, _http_status: u16) -> Result<bool, StoreError> {
        self.call("NotificationLog::record_delivery", |state, _| {
            state.tally_write(Place::Jobs, || key::job(job), 1);
            Ok(state.delivered.insert((job.clone(), status)))
        })
        .await
    }

    async fn claim_attempt(
        &self,
        job: &JobId,
        status: JobStatus,
        attempt: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<AttemptClaim, StoreError> {
        self.call("NotificationLog::claim_attempt", |state, now| {
            state.tally_write(Place::Jobs, || key::job(job), 1);
            if state.attempts_made.get(&(job.clone(), status)).is_some_and(|made| *made >= attempt) {
                return Ok(AttemptClaim::AlreadyMade);
            }
            Ok(match Memory::claim(state, Memory::lease_key("NOTIFYING", job.as_str(), status.as_str()), holder, lease, now) {
                true => AttemptClaim::Taken,
                false => AttemptClaim::Held,
            })
        })
        .await
    }

    async fn release_attempt(&self, job: &JobId, status: JobStatus, holder: &str) -> Result<(), StoreError> {
        self.call("NotificationLog::release_attempt", |state, _| {
            state.tally_write(Place::Jobs, || key::job(job), 1);
            Memory::release(state, &Memory::lease_key("NOTIFYING", job.as_str(), status.as_str()), holder);
            Ok(())
        })
        .await
    }

    async fn finish_attempt(&self, job: &JobId, status: JobStatus, attempt: u32, holder: &str) -> Result<(), StoreError> {
        self.call("NotificationLog::finish_attempt", |state, _| {
            state.tally_write(Place::Jobs, || key::job(job), 1);
            let key = Memory::lease_key("NOTIFYING", job.as_str(), status.as_str());
            if state.leases.get(&key).is_some_and(|held| held.holder == holder) {
                state.attempts_made.insert((job.clone(), status), attempt);
                state.leases.remove(&key);
            }
            Ok(())
        })
        .await
    }

    async fn claim_user_slot(&self, user: &UserId, slots: u32, holder: &str, lease: Duration) -> Result<Option<u32>, StoreError> {
        self.call("NotificationLog::claim_user_slot", |state, now| {
            // The adapter's order: from a point that depends on the holder.
            let start = holder.bytes().fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)));
            for i in 0..slots {
                let slot = start.wrapping_add(i) % slots.max(1);
                // Each slot tried is a conditional put on the user's partition.
                state.tally_write(Place::Jobs, || key::user(user), 1);
                if Memory::claim(state, Memory::lease_key("NOTIFY_SLOT", user.as_str(), &slot.to_string()), holder, lease, now) {
                    return Ok(Some(slot));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn release_user_slot(&self, user: &UserId, slot: u32, holder: &str) -> Result<(), StoreError> {
        self.call("NotificationLog::release_user_slot", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            Memory::release(state, &Memory::lease_key("NOTIFY_SLOT", user.as_str(), &slot.to_string()), holder);
            Ok(())
        })
        .await
    }

    async fn request_redelivery(&self, job: &JobId, status: JobStatus, at: OffsetDateTime, window: Duration) -> Result<bool, StoreError> {
        self.call("NotificationLog::request_redelivery", |state, _| {
            state.tally_write(Place::Jobs, || key::job(job), 1);
            let cutoff = at.unix_timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
            let requests = &mut state.redelivery_requests;
            if requests.get(&(job.clone(), status)).is_some_and(|requested| *requested > cutoff) {
                return Ok(false);
            }
            requests.insert((job.clone(), status), at.unix_timestamp());
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl EndpointHealth for Memory {
    async fn endpoint(&self, user: &UserId, endpoint: &str) -> Result<Option<EndpointState>, StoreError> {
        self.call("EndpointHealth::endpoint", |state, _| {
            state.tally_read(Place::Jobs, || key::user(user), 1);
            Ok(state.webhook_endpoints.get(&(user.clone(), endpoint.to_owned())).cloned())
        })
        .await
    }

    async fn record_failure(
        &self,
        user: &UserId,
        endpoint: &str,
        pause_after: u32,
        at: OffsetDateTime,
    ) -> Result<EndpointChange, StoreError> {
        self.call("EndpointHealth::record_failure", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            let record = state.webhook_endpoints.entry((user.clone(), endpoint.to_owned())).or_insert_with(|| EndpointState {
                endpoint: endpoint.to_owned(),
                consecutive_failures: 0,
                paused_at: None,
            });
            record.consecutive_failures += 1;
            if record.paused_at.is_none() && record.consecutive_failures >= pause_after {
                record.paused_at = Some(at);
                return Ok(EndpointChange::Paused);
            }
            Ok(EndpointChange::Unchanged)
        })
        .await
    }

    async fn record_success(&self, user: &UserId, endpoint: &str) -> Result<(), StoreError> {
        self.call("EndpointHealth::record_success", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            if let Some(record) = state.webhook_endpoints.get_mut(&(user.clone(), endpoint.to_owned())).filter(|r| r.paused_at.is_none()) {
                record.consecutive_failures = 0;
            }
            Ok(())
        })
        .await
    }

    async fn resume(&self, user: &UserId, endpoint: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.call("EndpointHealth::resume", |state, _| {
            state.tally_write(Place::Jobs, || key::user(user), 1);
            Ok(state.webhook_endpoints.get_mut(&(user.clone(), endpoint.to_owned())).and_then(|record| {
                record.consecutive_failures = 0;
                record.paused_at.take()
            }))
        })
        .await
    }

    async fn paused_endpoints(&self, user: &UserId) -> Result<Vec<EndpointState>, StoreError> {
        self.call("EndpointHealth::paused_endpoints", |state, _| {
            state.tally_read(Place::Jobs, || key::user(user), 1);
            let mut paused: Vec<EndpointState> = state
                .webhook_endpoints
                .iter()
                .filter(|((owner, _), r)| owner == user && r.paused_at.is_some())
                .map(|(_, r)| r.clone())
                .collect();
            paused.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
            Ok(paused)
        })
        .await
    }
}

#[async_trait]
impl DeliveryLog for Memory {
    async fn failed_deliveries_of(
        &self,
        user: &UserId,
        filter: &FailedDeliveriesFilter,
        page: &PageRequest,
    ) -> Result<Page<JobEvent>, ListError> {
        let listing = format!("failed_deliveries {user}");
        let after = page.cursor.as_deref().map(|c| decode_cursor(c, &listing)).transpose()?;
        let in_window =
            |position: &str| position.split_once('#').and_then(|(at, _)| timestamp::parse(at)).is_some_and(|at| filter.matches(at, None));
        if after.as_deref().is_some_and(|position| !in_window(position)) {
            return Err(ListError::BadCursor);
        }
        let (user, filter, limit) = (user.clone(), filter.clone(), page.limit);
        Ok(self
            .call("DeliveryLog::failed_deliveries_of", move |state, _| {
                let mut rows: Vec<(String, JobEvent)> = Vec::new();
                let events = state.events.values().flat_map(|events| events.iter().enumerate());
                for (i, event) in events {
                    let Some(facts) = &event.delivery else { continue };
                    if facts.user_id != user || facts.outcome != DeliveryOutcome::Failed || !filter.matches(event.at, None) {
                        continue;
                    }
                    // The adapter's position: the event's time, then (for the sort key's ULID) its job and place.
                    let position = format!("{}#{}#{i:06}", timestamp::format(event.at), event.job_id);
                    if after.as_ref().is_none_or(|after| &position < after) {
                        rows.push((position, event.clone()));
                    }
                }
                rows.sort_by(|a, b| b.0.cmp(&a.0));
                let mut page = page_of(rows, limit, &listing);
                // The error class is a filter expression: tested on what the read found.
                page.items.retain(|event| filter.matches(event.at, event.error_code.as_deref()));
                state.tally_read(Place::Jobs, || user.to_string(), (page.items.len() as u64).max(1));
                Ok(page)
            })
            .await?)
    }
}

#[async_trait]
impl StatsStore for Memory {
    async fn counters(&self) -> Result<Counters, StoreError> {
        self.call("StatsStore::counters", |state, _| {
            // One BatchGetItem of every shard.
            for shard in 0..crate::tally::COUNTER_SHARDS {
                state.tally_read(Place::Jobs, || format!("STATS#{shard}"), 1);
            }
            Ok(state.counters.iter().map(|(k, v)| (k.clone(), *v)).collect())
        })
        .await
    }

    async fn stuck_jobs(&self, status: JobStatus, before: OffsetDateTime, limit: u32) -> Result<StuckPage, StoreError> {
        self.call("StatsStore::stuck_jobs", |state, _| {
            let before = timestamp::format(before);
            let mut rows: Vec<(String, StuckJob)> = state
                .index
                .copy
                .values()
                .filter_map(|stored| Some((stored, stored.watch_since?)))
                .filter(|(stored, since)| stored.watch_status == Some(status) && timestamp::format(*since) < before)
                .map(|(stored, since)| {
                    let job = &stored.job;
                    let row = StuckJob { job_id: job.job_id.clone(), status, provider: job.provider.to_string(), updated_at: since };
                    (format!("{}#{}", timestamp::format(since), job.job_id), row)
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let count = rows.len() as u64;
            // Two queries of the status's partition: the oldest page, and the count, which reads every entry.
            state.tally_read(Place::StuckWatch, || status.as_str().to_owned(), count.min(u64::from(limit)).max(1) + count.max(1));
            Ok(StuckPage { count, oldest: rows.into_iter().take(limit as usize).map(|(_, row)| row).collect() })
        })
        .await
    }

    async fn count_duplicate_callback(&self, _provider: &str) -> Result<(), StoreError> {
        self.call("StatsStore::count_duplicate_callback", |state, _| {
            state.tally_shard_write(1);
            *state.counters.entry(videojobs_core::model::stats::counter::DUPLICATE_CALLBACKS.to_owned()).or_insert(0) += 1;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl ReviewQueue for Memory {
    async fn waiting(&self, page: &PageRequest) -> Result<Page<Job>, ListError> {
        const LISTING: &str = "review_queue";
        let after = page.cursor.as_deref().map(|c| decode_cursor(c, LISTING)).transpose()?;
        let mut listed = self
            .call("ReviewQueue::waiting", |state, _| {
                let mut rows: Vec<(String, &StoredJob)> = state
                    .index
                    .copy
                    .values()
                    .filter(|stored| stored.review_pending)
                    .filter_map(|stored| {
                        stored.job.completed_at.map(|at| (format!("{}#{}", timestamp::format(at), stored.job.job_id), stored))
                    })
                    .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
                    .collect();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                // Only the page is copied: the queue may hold many jobs.
                rows.truncate(page.limit.max(1) as usize);
                let rows: Vec<(String, Job)> = rows.into_iter().map(|(key, stored)| (key, stored.job.clone())).collect();
                state.tally_read(Place::ReviewQueue, || "pending".to_owned(), (rows.len() as u64).max(1));
                Ok(page_of(rows, page.limit, LISTING))
            })
            .await?;
        // The adapter keeps only jobs whose (indexed) status says completed.
        listed.items.retain(|job| job.status == JobStatus::Completed);
        Ok(listed)
    }
}

#[async_trait]
impl videojobs_core::ports::ReviewWaits for Memory {
    async fn save_review_token(&self, id: &JobId, token: &str) -> Result<(), StoreError> {
        self.call("ReviewWaits::save_review_token", |state, _| {
            state.tally_write(Place::Jobs, || key::job(id), TOKEN_ITEM_UNITS);
            state.review_tokens.insert(id.clone(), token.to_owned());
            Ok(())
        })
        .await
    }

    async fn review_token(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.call("ReviewWaits::review_token", |state, _| {
            state.tally_read(Place::Jobs, || key::job(id), 1);
            Ok(state.review_tokens.get(id).cloned())
        })
        .await
    }
}
