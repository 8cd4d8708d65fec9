//! The DynamoDB model and its invariants, top to bottom.
//!
//! Two tables. **Jobs** holds every item but prompts, told apart by their keys:
//!
//! | item              | pk                      | sk                   | notes |
//! |-------------------|-------------------------|----------------------|-------|
//! | job               | `JOB#{job_id}`          | `JOB`                | `user_id` + `created_key` put it in index `by_user`; `active_user_id` (only while in flight) in `active_by_user`; `provider_request` (once submitted) in `by_provider_request`; `parent_job_id` (only on a job made by a retry or a remix) + `created_key` in `by_parent`; `review_state = "pending"` + `completed_at` (only while completed) in `review_queue` |
//! | event             | `JOB#{job_id}`          | `EVENT#{at}#{ulid}`  | sorted by time under its job |
//! | task token        | `JOB#{job_id}`          | `TASK_TOKEN`         | what the execution waits on; apart, so the job item stays under 1 KB |
//! | idempotency       | `IDEM#{user}#{key}`     | `IDEM`               | the first answer; TTL a day |
//! | account           | `USER#{user}`           | `ACCOUNT`            | `credits`, `active_jobs` |
//! | API key           | `APIKEY#{sha256 hex}`   | `APIKEY`             | `key_id`, `user_id`, `role`, `expires_at`?, `revoked_at`?; the key itself is never stored |
//! | key listing entry | `KEYS`                  | `KEY#{key_id}`       | the key's record without its hash: admins list and revoke by `key_id` (`dynamo/keys.rs`) |
//! | upload            | `UPLOAD#{upload_id}`    | `UPLOAD`             | TTL a day |
//! | callback receipt  | `RECEIPT#{provider}#{event_id}` | `RECEIPT`    | a provider event applied once: `receipt_state` `pending` (with `lease_until`) while applied, then `done`; TTL a week |
//! | request owner     | `PROVREQ#{provider}#{request_id}` | `OWNER`    | `job_id`: put by the worker before the job records the request id; read strongly consistent by the webhook |
//! | early callback    | `PROVREQ#{provider}#{request_id}` | `EARLY`    | a verified callback that found no owner yet; the worker looks for it after recording the owner |
//! | webhook secret    | `USER#{user}`           | `WEBHOOK_SECRET`     | `secret` (`whsec_…`, kept readable: it signs), `previous_secret` + `previous_valid_until` after a rotation |
//! | notification sent | `JOB#{job_id}`          | `NOTIFIED#{status}`  | the client was told of this status: put once (`attribute_not_exists`), checked before each attempt |
//! | notification claim | `JOB#{job_id}`         | `NOTIFYING#{status}` | an attempt in progress (`holder`, `lease_until`) and the attempts made (`made_through`): taken unless held or that attempt was made, given back by its `holder` only; TTL a week |
//! | delivery slot     | `USER#{user}`           | `NOTIFY_SLOT#{0..3}` | one of a tenant's 4 deliveries in flight: leased as the claim is |
//! | rate limit window | `RATE#{policy}#{key_id}#{window start}` | `RATE` | `hits` in one minute, counted only under the limit; TTL two minutes (`dynamo/ratelimit.rs`) |
//! | counter shard     | `STATS#{0..7}`          | `COUNTERS`           | operational counters (see `stats.rs`); a job item also carries `watch_status` while `submitted`/`processing` (index `stuck_watch`) |
//!
//! **Prompts** holds the raw prompt by `job_id`, apart so that only the
//! functions that need it (create, worker, and status for reviewers) are granted it.
//!
//! Invariants, each carried by a condition on a write:
//! - a job is created once: `attribute_not_exists(pk)` on the job put;
//! - creating a job writes job, first event, prompt, idempotency record and the
//!   account's debit in ONE transaction; the debit is conditioned on
//!   `credits >= cost AND active_jobs < cap`, the idempotency record on
//!   `attribute_not_exists(pk)`; so two requests with one key debit once;
//! - a status change is conditioned on the status it leaves, and writes its
//!   event, and any refund and slot release, in the same transaction;
//! - a provider callback is applied once: its receipt is put under
//!   `attribute_not_exists(pk)` (or over a pending receipt whose lease ran
//!   out), keyed by provider and the provider's event id, and marked done
//!   after the event is applied; a failed apply deletes the pending receipt;
//! - a submission attempt is fenced: the job's `submit_attempt` is raised by
//!   the status change that claims an attempt, and every write an attempt
//!   makes afterwards is conditioned on it still being current; the claim
//!   sets `submit_lease_until` (unix ms), and a copy that resumes the
//!   attempt takes it over only under `submit_lease_until <= :now`;
//! - progress only rises: `progress < :p` on its update; the progress detail
//!   only moves forward (`progress_detail_at < :at`, and only in the statuses
//!   its stage allows) and goes when the job leaves `submitted`/`processing`;
//!   a progress refresh is claimed once per window (`refresh_requested_at`);
//! - a user's first webhook secret is put under `attribute_not_exists(pk)`,
//!   so concurrent first requests agree; a rotation is conditioned on the
//!   secret it replaces; a notification is recorded delivered once, and
//!   attempted by one worker at a time (a leased claim), and each numbered
//!   attempt is made once (the claim's `made_through` rises only after the
//!   next attempt is queued);
//! - a refund also sets `refunded_at` under `attribute_not_exists(refunded_at)`,
//!   so a job's credits come back at most once even if a transition were wrong.
//! - the stats counters move in the same transaction as the creation or change
//!   they count, and an output's bytes come off them in the same transaction
//!   that forgets the output (conditioned on that output).

mod notifications;

use crate::errors::{conditional_write, store_error, transaction_cancellation};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use videojobs_core::model::ids::{ApiKeyHash, IdempotencyKey, JobId, Role, UploadId, UserId};
use videojobs_core::model::job::{timestamp, Job, JobEvent};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::model::request::ImageType;
use videojobs_core::ports::*;
use videojobs_core::services::retry::{retry, Backoff, Failed};
use videojobs_core::{JobStatus, StoreError};

type Item = HashMap<String, AttributeValue>;

/// Attributes that live only while the job waits on its provider (written
/// by `progress`); a status change out of `submitted`/`processing` removes them.
const WHILE_AT_PROVIDER: [&str; 3] = ["progress_detail", "progress_detail_at", "refresh_requested_at"];

mod counters;
mod keys;
mod listing;
mod progress;
mod provider_switch;
mod ratelimit;
mod stats;

pub const INDEX_BY_USER: &str = "by_user";
pub const INDEX_ACTIVE_BY_USER: &str = "active_by_user";
pub const INDEX_BY_PROVIDER_REQUEST: &str = "by_provider_request";
pub const INDEX_BY_PARENT: &str = "by_parent";
/// Jobs waiting for a review, by `completed_at` (see `review_queue.rs`).
pub const INDEX_REVIEW_QUEUE: &str = "review_queue";
/// `review_state` of a job in the review queue; the attribute exists only then.
pub const REVIEW_PENDING: &str = "pending";

const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;
const UPLOAD_TTL_SECONDS: i64 = 24 * 3600;
/// Providers retry callbacks for a day at most; a receipt outlives that.
const RECEIPT_TTL_SECONDS: i64 = 7 * 24 * 3600;
const RECEIPT_PENDING: &str = "pending";
const RECEIPT_DONE: &str = "done";

fn receipt_pk(provider: &str, event_id: &str) -> String {
    format!("RECEIPT#{provider}#{event_id}")
}

fn owner_pk(provider: &str, request_id: &str) -> String {
    format!("PROVREQ#{provider}#{request_id}")
}

/// How often a transaction that lost a race to another is tried again.

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    jobs_table: String,
    prompts_table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A moment as a number a condition can compare.
fn unix_millis(at: time::OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn job_pk(id: &JobId) -> String {
    format!("JOB#{id}")
}

fn account_key(user: &UserId) -> Item {
    key(format!("USER#{user}"), "ACCOUNT")
}

fn idempotency_key(user: &UserId, idem: &IdempotencyKey) -> Item {
    key(format!("IDEM#{user}#{}", idem.as_str()), "IDEM")
}

fn created_key(job: &Job) -> String {
    format!("{}#{}", timestamp::format(job.created_at), job.job_id)
}

fn to_item<T: serde::Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Internal(format!("encoding an item: {e}")))
}

fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Internal(format!("decoding an item: {e}")))
}

fn text(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Internal(format!("item has no text attribute {name}"))),
    }
}

fn number(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|_| StoreError::Internal(format!("attribute {name} is not an integer"))),
        _ => Err(StoreError::Internal(format!("item has no number attribute {name}"))),
    }
}

fn parsed<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    text(item, name)?.parse().map_err(|_| StoreError::Internal(format!("attribute {name} does not parse")))
}

/// The full job item: the domain record plus the keys and index attributes.
pub fn job_item(job: &Job) -> Result<Item, StoreError> {
    let mut item = to_item(job)?;
    item.extend(key(job_pk(&job.job_id), "JOB"));
    item.insert("kind".into(), s("job"));
    item.insert("created_key".into(), s(created_key(job)));
    // Projected into `by_user` beside `status` (and `tags`, from the job), for the list's filters.
    item.insert("workflow_type".into(), s(job.workflow_type().as_str()));
    if job.status.is_in_flight() {
        item.insert("active_user_id".into(), s(job.user_id.as_str()));
    }
    if let Some(request_id) = &job.provider_request_id {
        item.insert("provider_request".into(), s(format!("{}#{request_id}", job.provider)));
    }
    if job.status == JobStatus::Completed {
        item.insert("review_state".into(), s(REVIEW_PENDING));
    }
    if counters::is_watched(job.status) {
        item.insert(counters::WATCH_ATTRIBUTE.into(), s(job.status.as_str()));
        item.insert(counters::WATCH_SINCE.into(), s(timestamp::format(job.updated_at)));
    }
    Ok(item)
}

pub fn event_item(event: &JobEvent) -> Result<Item, StoreError> {
    let mut item = to_item(event)?;
    let sk = format!("EVENT#{}#{}", timestamp::format(event.at), ulid::Ulid::new());
    item.extend(key(job_pk(&event.job_id), &sk));
    item.insert("kind".into(), s("event"));
    if let Some(facts) = event.delivery.as_ref().filter(|f| f.outcome == videojobs_core::model::notification::log::DeliveryOutcome::Failed)
    {
        // Only a failed attempt is in the sparse `failed_deliveries` index.
        item.insert("failed_delivery_user".into(), s(facts.user_id.as_str()));
    }
    Ok(item)
}

fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| StoreError::Internal(format!("building a put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn epoch_after(seconds: i64) -> AttributeValue {
    n(time::OffsetDateTime::now_utc().unix_timestamp() + seconds)
}

impl DynamoStore {
    pub fn new(client: Client, jobs_table: impl Into<String>, prompts_table: impl Into<String>) -> Self {
        Self { client, jobs_table: jobs_table.into(), prompts_table: prompts_table.into() }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn jobs_table(&self) -> &str {
        &self.jobs_table
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    fn create_items(&self, new: &NewJob) -> Result<Vec<TransactWriteItem>, StoreError> {
        let job = &new.job;
        let debit = Update::builder()
            .table_name(&self.jobs_table)
            .set_key(Some(account_key(&job.user_id)))
            .update_expression("SET credits = credits - :cost, active_jobs = active_jobs + :one")
            .condition_expression("attribute_exists(pk) AND credits >= :cost AND active_jobs < :cap")
            .expression_attribute_values(":cost", n(job.cost_credits))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(new.max_active_jobs))
            .build()
            .map_err(|e| StoreError::Internal(format!("building the debit: {e}")))?;
        let mut items = vec![
            put(&self.jobs_table, job_item(job)?, Some("attribute_not_exists(pk)"))?,
            put(&self.jobs_table, event_item(&new.first_event)?, Some("attribute_not_exists(pk)"))?,
            TransactWriteItem::builder().update(debit).build(),
        ];
        if let Some(prompt) = &new.prompt {
            let mut item = HashMap::from([
                ("job_id".to_owned(), s(job.job_id.as_str())),
                ("prompt".to_owned(), s(prompt.as_str())),
                ("created_at".to_owned(), s(timestamp::format(job.created_at))),
            ]);
            // The raw prompt goes with the job's retention (the table's TTL attribute).
            if let Some(at) = new.prompt_expires_at {
                item.insert("ttl_epoch".into(), n(at.unix_timestamp()));
            }
            items.push(put(&self.prompts_table, item, Some("attribute_not_exists(job_id)"))?);
        }
        if let Some(record) = &new.idempotency {
            let mut item = idempotency_key(&record.user_id, &record.key);
            item.insert("kind".into(), s("idempotency"));
            item.insert("fingerprint".into(), s(record.fingerprint.as_str()));
            item.insert("job_id".into(), s(record.job_id.as_str()));
            item.insert("response_status".into(), n(record.response_status));
            item.insert("response_body".into(), s(record.response_body.as_str()));
            item.insert("created_at".into(), s(timestamp::format(record.created_at)));
            item.insert("ttl_epoch".into(), epoch_after(IDEMPOTENCY_TTL_SECONDS));
            items.push(put(&self.jobs_table, item, Some("attribute_not_exists(pk)"))?);
        }
        // Last, so that the indexes of the items above stay as `create` reads them.
        items.extend(counters::creation_item(&self.jobs_table, new)?);
        Ok(items)
    }

    /// Why the debit was refused, read back after the transaction failed on it.
    async fn debit_refusal(&self, user: &UserId, cost: u32) -> Result<CreateOutcome, StoreError> {
        let Some(account) = self.account(user).await? else { return Ok(CreateOutcome::NoAccount) };
        if account.credits < i64::from(cost) {
            Ok(CreateOutcome::InsufficientCredits { balance: account.credits })
        } else {
            Ok(CreateOutcome::TooManyActiveJobs)
        }
    }

    fn change_items(&self, change: &StatusChange) -> Result<Vec<TransactWriteItem>, StoreError> {
        let t = &change.transition;
        let mut clauses = UpdateClauses::new(&change.update)?;
        clauses.set.push("#status = :to".into());
        clauses.values.insert(":to".into(), s(t.to.as_str()));
        let mut condition = String::from("#status = :from");
        clauses.values.insert(":from".into(), s(t.from.as_str()));
        if let Some(fence) = clauses.attempt_fence(&change.update) {
            condition.push_str(" AND ");
            condition.push_str(&fence);
        }
        clauses.values.insert(":now".into(), s(timestamp::format(change.at)));
        if let Some(error) = &change.error {
            clauses.set.push("#error = :error".into());
            clauses.names.insert("#error".into(), "error".into());
            clauses.values.insert(":error".into(), AttributeValue::M(to_item(error)?));
        }
        if t.refunds_credits {
            clauses.set.push("refunded_at = :now".into());
            condition.push_str(" AND attribute_not_exists(refunded_at)");
        }
        if t.frees_slot {
            clauses.remove.push("active_user_id");
        }
        // The review queue holds a job exactly while it is completed.
        if t.to == JobStatus::Completed {
            clauses.set.push("review_state = :review_pending".into());
            clauses.values.insert(":review_pending".into(), s(REVIEW_PENDING));
        }
        if t.from == JobStatus::Completed {
            clauses.remove.push("review_state");
        }
        if !matches!(t.to, JobStatus::Submitted | JobStatus::Processing) {
            clauses.remove.extend(WHILE_AT_PROVIDER);
        }
        if counters::is_watched(t.to) {
            clauses.set.push(format!("{} = :to, {} = :now", counters::WATCH_ATTRIBUTE, counters::WATCH_SINCE));
        } else if counters::is_watched(t.from) {
            clauses.remove.push(counters::WATCH_ATTRIBUTE);
            clauses.remove.push(counters::WATCH_SINCE);
        }
        let job_update = clauses
            .into_update(&self.jobs_table, key(job_pk(&change.job_id), "JOB"), condition)
            .map_err(|e| StoreError::Internal(format!("building a status change: {e}")))?;
        let mut items = vec![
            TransactWriteItem::builder().update(job_update).build(),
            put(&self.jobs_table, event_item(&change.event)?, Some("attribute_not_exists(pk)"))?,
        ];
        if t.refunds_credits || t.frees_slot {
            let credits = if t.refunds_credits { i64::from(change.cost_credits) } else { 0 };
            let slots = if t.frees_slot { -1 } else { 0 };
            let account = Update::builder()
                .table_name(&self.jobs_table)
                .set_key(Some(account_key(&change.user_id)))
                .update_expression("ADD credits :credits, active_jobs :slots")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":credits", n(credits))
                .expression_attribute_values(":slots", n(slots))
                .build()
                .map_err(|e| StoreError::Internal(format!("building a refund: {e}")))?;
            items.push(TransactWriteItem::builder().update(account).build());
        }
        items.extend(counters::change_item(&self.jobs_table, change)?);
        Ok(items)
    }

    /// One transaction, applied at most once. Its client request token is
    /// kept across the SDK's retries and our own: an attempt that timed out
    /// or lost its answer may still be being applied when the retry comes,
    /// and DynamoDB then answers `TransactionInProgressException`; asked
    /// again with the same token a moment later, it answers the first
    /// attempt's outcome. A new token would be a second transaction.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TransactFailure> {
        let token = ulid::Ulid::new().to_string();
        let mut wait = std::time::Duration::from_millis(100);
        let mut tries_left = IN_PROGRESS_TRIES;
        loop {
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).client_request_token(&token).send().await;
            match sent {
                Ok(_) => return Ok(()),
                Err(err) if tries_left > 1 && err.as_service_error().is_some_and(|e| e.is_transaction_in_progress_exception()) => {
                    tries_left -= 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(err) => {
                    return Err(match transaction_cancellation(&err) {
                        Some(reasons) => TransactFailure::Cancelled(reasons),
                        None => TransactFailure::Store(store_error("TransactWriteItems", err)),
                    })
                }
            }
        }
    }

    /// A page of a user's entries in one of the user indexes, newest first:
    /// the entries as the index holds them, and where the next page starts.
    async fn query_user_index(
        &self,
        index: &str,
        attribute: &str,
        user: &UserId,
        limit: Option<u32>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        self.query_index(index, attribute, user.as_str(), limit, start).await
    }

    /// A page of `index` where `attribute` is `value`, newest first.
    async fn query_index(
        &self,
        index: &str,
        attribute: &str,
        value: &str,
        limit: Option<u32>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .index_name(index)
            .key_condition_expression("#owner = :user")
            .expression_attribute_names("#owner", attribute)
            .expression_attribute_values(":user", s(value))
            .scan_index_forward(false)
            .set_limit(limit.map(|l| l as i32))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// A page of a user's jobs, newest first: the index gives the keys, one
    /// `BatchGetItem` the items as they are now.
    async fn query_jobs(
        &self,
        index: &str,
        attribute: &str,
        user: &UserId,
        limit: Option<u32>,
        start: Option<Item>,
    ) -> Result<(Vec<Job>, Option<Item>), StoreError> {
        let (found, last) = self.query_user_index(index, attribute, user, limit, start).await?;
        Ok((self.jobs_by_keys(&index_keys(found)).await?, last))
    }

    /// The job items of `keys`, in their order; one gone since the index
    /// listed it (expired) is left out.
    async fn jobs_by_keys(&self, keys: &[Item]) -> Result<Vec<Job>, StoreError> {
        let mut found: HashMap<String, Job> = HashMap::new();
        // BatchGetItem takes 100 keys; a page is at most that (`PageRequest`).
        for chunk in keys.chunks(100) {
            for item in self.batch_get(chunk.to_vec()).await? {
                let job: Job = from_item(item)?;
                found.insert(job_pk(&job.job_id), job);
            }
        }
        Ok(keys.iter().filter_map(|key| key.get("pk").and_then(|pk| pk.as_s().ok()).and_then(|pk| found.remove(pk))).collect())
    }

    /// The items of up to 100 `keys` of the jobs table, read consistently,
    /// in no particular order; keys DynamoDB leaves unprocessed are asked
    /// again, a little later each time, ten rounds at most.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Internal(format!("building a batch get: {e}")))?;
        let mut items = Vec::new();
        for round in 1..=10u64 {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.jobs_table, request)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            items.extend(out.responses.unwrap_or_default().into_values().flatten());
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.jobs_table)) {
                Some(rest) if !rest.keys().is_empty() => request = rest,
                _ => return Ok(items),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * round)).await;
        }
        Err(StoreError::Unavailable("items kept coming back unprocessed".into()))
    }

    /// An unconditional put of one item into the jobs table.
    async fn put_item(&self, item: Item) -> Result<(), StoreError> {
        self.client.put_item().table_name(&self.jobs_table).set_item(Some(item)).send().await.map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    /// Writes `item` unless its key is taken: `false` when it was. The item
    /// carries a `put_id` of this call's own, which the SDK sends again on
    /// every retry: an item already there with this `put_id` is this very
    /// write, whose answer was lost (a dropped connection, a timeout) after
    /// it was applied. That is written, not taken; another caller's item,
    /// even an identical one, is taken.
    async fn put_if_absent(&self, mut item: Item) -> Result<bool, StoreError> {
        let put_id = s(ulid::Ulid::new().to_string());
        item.insert("put_id".into(), put_id.clone());
        let result = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        if let Some(ours) = Self::condition_failed_on_own_write(&result, "put_id", &put_id) {
            return Ok(ours);
        }
        conditional_write("PutItem", result)
    }

    /// For a conditional PutItem sent with `ReturnValuesOnConditionCheckFailure::AllOld`:
    /// when its condition failed, whether the item there carries `marker` = `value`,
    /// that is, whether it is this very write, applied before its answer was lost
    /// and sent again by the SDK. `None` when the condition did not fail.
    pub(crate) fn condition_failed_on_own_write(
        result: &Result<
            aws_sdk_dynamodb::operation::put_item::PutItemOutput,
            aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError, aws_smithy_runtime_api::http::Response>,
        >,
        marker: &str,
        value: &AttributeValue,
    ) -> Option<bool> {
        match result.as_ref().err()?.as_service_error()? {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed) => {
                Some(failed.item().and_then(|existing| existing.get(marker)) == Some(value))
            }
            _ => None,
        }
    }

    /// Removes a job's output and takes its bytes off the counters in one
    /// transaction, conditioned on that very output (and on `condition`,
    /// the status and any attempt fence): counted once.
    async fn forget_output(
        &self,
        id: &JobId,
        status: JobStatus,
        mut clauses: UpdateClauses,
        mut condition: String,
    ) -> Result<bool, StoreError> {
        let Some(job) = self.job(id).await?.filter(|job| job.status == status) else { return Ok(false) };
        let stored = videojobs_core::model::change::StoredBytes::of(job.output.as_ref());
        if let Some(output) = &job.output {
            clauses.values.insert(":video_key".into(), s(output.video_key.as_str()));
            condition.push_str(" AND #output.video_key = :video_key");
        }
        let job_update = clauses
            .into_update(&self.jobs_table, key(job_pk(id), "JOB"), condition)
            .map_err(|e| StoreError::Internal(format!("building an output removal: {e}")))?;
        let mut items = vec![TransactWriteItem::builder().update(job_update).build()];
        items.extend(counters::counter_update(&self.jobs_table, &videojobs_core::model::stats::removal_deltas(stored))?);
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(TransactFailure::Cancelled(reasons)) if reason_is(&reasons, 0, "ConditionalCheckFailed") => Ok(false),
            Err(TransactFailure::Cancelled(reasons)) => Err(StoreError::Unavailable(format!("output removal cancelled: {reasons:?}"))),
            Err(TransactFailure::Store(err)) => Err(err),
        }
    }
}

/// The SET and REMOVE parts of an update, built from a [`JobUpdate`].
struct UpdateClauses {
    set: Vec<String>,
    remove: Vec<&'static str>,
    names: HashMap<String, String>,
    values: Item,
}

impl UpdateClauses {
    fn new(update: &JobUpdate) -> Result<Self, StoreError> {
        let mut c = UpdateClauses {
            set: vec!["updated_at = :now".into()],
            remove: Vec::new(),
            names: HashMap::from([("#status".to_owned(), "status".to_owned())]),
            values: HashMap::new(),
        };
        if let Some(progress) = update.progress {
            c.set.push("progress = :progress".into());
            c.values.insert(":progress".into(), n(progress));
        }
        if let Some((provider, request_id)) = &update.provider_request {
            c.set.push("provider_request_id = :request_id, provider_request = :provider_request".into());
            c.values.insert(":request_id".into(), s(request_id.as_str()));
            c.values.insert(":provider_request".into(), s(format!("{provider}#{request_id}")));
        }
        if let Some(output) = &update.output {
            c.set.push("#output = :output".into());
            c.names.insert("#output".into(), "output".into());
            c.values.insert(":output".into(), AttributeValue::M(to_item(output)?));
        }
        if let Some(at) = update.output_expires_at {
            c.set.push("output_expires_at = :output_expires_at".into());
            c.values.insert(":output_expires_at".into(), s(timestamp::format(at)));
        }
        if let Some(at) = update.completed_at {
            c.set.push("completed_at = :completed_at".into());
            c.values.insert(":completed_at".into(), s(timestamp::format(at)));
        }
        if update.remove_output {
            c.remove.push("#output");
            c.names.insert("#output".into(), "output".into());
        }
        if let Some(attempt) = update.submit_attempt {
            c.set.push("submit_attempt = :submit_attempt".into());
            c.values.insert(":submit_attempt".into(), n(attempt));
        }
        if let Some(lease) = &update.submit_lease {
            c.set.push("submit_lease_until = :lease_until".into());
            c.values.insert(":lease_until".into(), n(unix_millis(lease.until)));
        }
        if let Some(review) = &update.review {
            c.set.push("#review = :review".into());
            c.names.insert("#review".into(), "review".into());
            c.values.insert(":review".into(), AttributeValue::M(to_item(review)?));
        }
        Ok(c)
    }

    /// The condition that fences a write to one submission attempt, if the
    /// update asks for it (attempt 0: the job was never submitted), and
    /// that the attempt's lease has run out, if the update takes it over.
    fn attempt_fence(&mut self, update: &JobUpdate) -> Option<String> {
        let mut fences = Vec::new();
        match update.only_in_attempt {
            Some(0) => fences.push("attribute_not_exists(submit_attempt)"),
            Some(attempt) => {
                self.values.insert(":only_in_attempt".into(), n(attempt));
                fences.push("submit_attempt = :only_in_attempt");
            }
            None => {}
        }
        if let Some(at) = update.submit_lease.and_then(|lease| lease.if_run_out_at) {
            self.values.insert(":lease_run_out_at".into(), n(unix_millis(at)));
            fences.push("(attribute_not_exists(submit_lease_until) OR submit_lease_until <= :lease_run_out_at)");
        }
        (!fences.is_empty()).then(|| fences.join(" AND "))
    }

    fn expression(&self) -> String {
        let mut expression = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        expression
    }

    fn into_update(self, table: &str, key: Item, condition: String) -> Result<Update, aws_sdk_dynamodb::error::BuildError> {
        Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(self.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values))
            .build()
    }
}

/// How often a transaction still in progress is asked again (waits of 0.1,
/// 0.2, 0.4, 0.8 s: a DynamoDB transaction takes milliseconds).
const IN_PROGRESS_TRIES: u32 = 5;

enum TransactFailure {
    /// The transaction was cancelled; one reason code per item, in order.
    Cancelled(Vec<Option<String>>),
    Store(StoreError),
}

fn reason_is(reasons: &[Option<String>], index: usize, code: &str) -> bool {
    reasons.get(index).and_then(|r| r.as_deref()) == Some(code)
}

fn any_conflict(reasons: &[Option<String>]) -> bool {
    reasons.iter().any(|r| r.as_deref() == Some("TransactionConflict"))
}

/// Transactions cancelled by another writer's (`TransactionConflict`) are
/// tried again, the waits jittered to spread the racing writers.
pub(crate) const ON_CONFLICT: Backoff = Backoff::jittered(8, std::time::Duration::from_millis(10));

/// A conflict is worth another try; `what` names the write when they run out.
pub(crate) fn conflicted(what: &str) -> Failed<StoreError> {
    Failed::Retry(StoreError::Unavailable(format!("{what} kept conflicting with other writes")))
}

#[async_trait]
impl JobWrites for DynamoStore {
    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError> {
        const DEBIT: usize = 2;
        let idempotency_index = new.idempotency.as_ref().map(|_| if new.prompt.is_some() { 4 } else { 3 });
        let items = self.create_items(new)?;
        let outcome = retry(ON_CONFLICT, |_| async {
            match self.transact(items.clone()).await {
                Ok(()) => Ok(None),
                Err(TransactFailure::Store(err)) => Err(Failed::Stop(err)),
                Err(TransactFailure::Cancelled(reasons)) => {
                    if idempotency_index.is_some_and(|i| reason_is(&reasons, i, "ConditionalCheckFailed")) {
                        Ok(Some(CreateOutcome::IdempotencyKeyTaken))
                    } else if reason_is(&reasons, DEBIT, "ConditionalCheckFailed") {
                        Ok(Some(self.debit_refusal(&new.job.user_id, new.job.cost_credits).await.map_err(Failed::Stop)?))
                    } else if any_conflict(&reasons) {
                        Err(conflicted("create"))
                    } else {
                        Err(Failed::Stop(StoreError::Internal(format!("create cancelled: {reasons:?}"))))
                    }
                }
            }
        })
        .await?;
        if outcome.is_none() {
            counters::emit_created(new);
        }
        Ok(outcome.unwrap_or(CreateOutcome::Created))
    }

    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError> {
        let items = self.change_items(change)?;
        let applied = retry(ON_CONFLICT, |_| async {
            match self.transact(items.clone()).await {
                Ok(()) => Ok(true),
                Err(TransactFailure::Store(err)) => Err(Failed::Stop(err)),
                Err(TransactFailure::Cancelled(reasons)) if reason_is(&reasons, 0, "ConditionalCheckFailed") => Ok(false),
                Err(TransactFailure::Cancelled(reasons)) if any_conflict(&reasons) => Err(conflicted("status change")),
                Err(TransactFailure::Cancelled(reasons)) => {
                    Err(Failed::Stop(StoreError::Internal(format!("status change cancelled: {reasons:?}"))))
                }
            }
        })
        .await?;
        if applied {
            counters::emit_changed(change);
            return Ok(ChangeOutcome::Applied);
        }
        Ok(match self.job(&change.job_id).await? {
            Some(job) => ChangeOutcome::StatusWas(job.status),
            None => ChangeOutcome::NotFound,
        })
    }

    async fn update_in_status(&self, id: &JobId, status: JobStatus, update: &JobUpdate) -> Result<bool, StoreError> {
        let mut clauses = UpdateClauses::new(update)?;
        clauses.values.insert(":now".into(), s(timestamp::format(timestamp::now())));
        clauses.values.insert(":status".into(), s(status.as_str()));
        let mut condition = String::from("#status = :status");
        if let Some(fence) = clauses.attempt_fence(update) {
            condition.push_str(" AND ");
            condition.push_str(&fence);
        }
        if update.remove_output {
            return self.forget_output(id, status, clauses, condition).await;
        }
        if update.progress.is_some() && counters::is_watched(status) {
            clauses.set.push(format!("{} = :now", counters::WATCH_SINCE));
        }
        let expression = clauses.expression();
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(job_pk(id), "JOB")))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(clauses.names))
            .set_expression_attribute_values(Some(clauses.values))
            .send()
            .await;
        conditional_write("UpdateItem", result)
    }

    async fn raise_progress(&self, id: &JobId, percent: u8) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(job_pk(id), "JOB")))
            .update_expression(format!("SET progress = :p, updated_at = :now, {} = :now", counters::WATCH_SINCE))
            .condition_expression("progress < :p AND #status IN (:submitted, :processing)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":p", n(percent.min(99)))
            .expression_attribute_values(":now", s(timestamp::format(timestamp::now())))
            .expression_attribute_values(":submitted", s(JobStatus::Submitted.as_str()))
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already further along, or no longer in flight: progress stays.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }

    async fn record_event(&self, event: &JobEvent) -> Result<(), StoreError> {
        self.put_item(event_item(event)?).await
    }
}

#[async_trait]
impl JobReads for DynamoStore {
    async fn job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.get(key(job_pk(id), "JOB")).await?.map(from_item).transpose()
    }

    async fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.jobs_table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(job_pk(id)))
                .expression_attribute_values(":prefix", s("EVENT#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                events.push(from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(events);
            }
        }
    }

    async fn idempotency_record(&self, user: &UserId, idem: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(item) = self.get(idempotency_key(user, idem)).await? else { return Ok(None) };
        Ok(Some(IdempotencyRecord {
            user_id: user.clone(),
            key: idem.clone(),
            fingerprint: text(&item, "fingerprint")?,
            job_id: parsed(&item, "job_id")?,
            response_status: u16::try_from(number(&item, "response_status")?)
                .map_err(|_| StoreError::Internal("response_status out of range".into()))?,
            response_body: text(&item, "response_body")?,
            created_at: timestamp::parse(&text(&item, "created_at")?)
                .ok_or_else(|| StoreError::Internal("created_at does not parse".into()))?,
        }))
    }

    async fn prompt(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.prompts_table)
            .key("job_id", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item.map(|item| text(&item, "prompt")).transpose()
    }
}

#[async_trait]
impl JobListings for DynamoStore {
    async fn jobs_of(&self, user: &UserId, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, ListError> {
        self.filtered_jobs(user, filter, page).await
    }

    async fn statuses_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<JobStatus>, ListError> {
        let start = page.cursor.as_deref().map(|c| decode_cursor(c, user)).transpose()?;
        let (found, last) = self.query_user_index(INDEX_BY_USER, "user_id", user, Some(page.limit), start).await?;
        let status_of = |entry: &Item| {
            JobStatus::parse(&text(entry, "status")?).ok_or_else(|| StoreError::Internal("a job's status does not parse".into()))
        };
        let items = found.iter().map(status_of).collect::<Result<_, _>>()?;
        let next_cursor = last.map(|k| encode_cursor(&k)).transpose()?;
        Ok(Page { items, next_cursor })
    }

    async fn active_jobs_of(&self, user: &UserId) -> Result<Vec<Job>, StoreError> {
        // The cap keeps this list short: one page is all of it. The index
        // lags the table: a job it still lists may have left flight since.
        let (jobs, _) = self.query_jobs(INDEX_ACTIVE_BY_USER, "active_user_id", user, None, None).await?;
        Ok(jobs.into_iter().filter(|job| job.status.is_in_flight()).collect())
    }

    async fn children_of(&self, parent: &JobId, limit: u32) -> Result<Vec<Job>, StoreError> {
        let (found, _) = self.query_index(INDEX_BY_PARENT, "parent_job_id", parent.as_str(), Some(limit), None).await?;
        self.jobs_by_keys(&index_keys(found)).await
    }
}

#[async_trait]
impl CallbackLedger for DynamoStore {
    async fn record_receipt(
        &self,
        provider: &str,
        event_id: &str,
        request_id: &str,
        lease: std::time::Duration,
    ) -> Result<ReceiptClaim, StoreError> {
        let now = timestamp::now();
        let mut item = key(receipt_pk(provider, event_id), "RECEIPT");
        item.insert("kind".into(), s("receipt"));
        item.insert("request_id".into(), s(request_id));
        item.insert("receipt_state".into(), s(RECEIPT_PENDING));
        item.insert("lease_until".into(), n(now.unix_timestamp() + lease.as_secs() as i64));
        item.insert("received_at".into(), s(timestamp::format(now)));
        item.insert("ttl_epoch".into(), epoch_after(RECEIPT_TTL_SECONDS));
        let result = self
            .client
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            // New, or pending under a lease that ran out (its applier died).
            .condition_expression("attribute_not_exists(pk) OR (receipt_state = :pending AND lease_until < :now)")
            .expression_attribute_values(":pending", s(RECEIPT_PENDING))
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .send()
            .await;
        if conditional_write("PutItem", result)? {
            return Ok(ReceiptClaim::New);
        }
        let held = self.get(key(receipt_pk(provider, event_id), "RECEIPT")).await?;
        // Receipts from before leases existed have no state: they were applied.
        let pending = held.as_ref().and_then(|item| item.get("receipt_state")).and_then(|v| v.as_s().ok()).map(String::as_str)
            == Some(RECEIPT_PENDING);
        Ok(if pending { ReceiptClaim::InProgress } else { ReceiptClaim::Done })
    }

    async fn complete_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(receipt_pk(provider, event_id), "RECEIPT")))
            .update_expression("SET receipt_state = :done REMOVE lease_until")
            .expression_attribute_values(":done", s(RECEIPT_DONE))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        Ok(())
    }

    // Conditioned on the receipt being pending, not on who holds it: its
    // lease (30 s) outlasts the webhook function's timeout (5 s), so a
    // receipt another delivery took over is never forgotten by the one that
    // held it before.

    async fn forget_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(receipt_pk(provider, event_id), "RECEIPT")))
            .condition_expression("receipt_state = :pending")
            .expression_attribute_values(":pending", s(RECEIPT_PENDING))
            .send()
            .await;
        conditional_write("DeleteItem", result).map(|_| ())
    }
}

#[async_trait]
impl SubmissionTokens for DynamoStore {
    async fn save_task_token(&self, id: &JobId, token: &str, save: TokenSave) -> Result<(), StoreError> {
        let mut item = key(job_pk(id), "TASK_TOKEN");
        item.insert("kind".into(), s("task_token"));
        item.insert("token".into(), s(token));
        item.insert("saved_at".into(), s(timestamp::format(timestamp::now())));
        match save {
            TokenSave::Replace => self.put_item(item).await,
            TokenSave::KeepExisting => self.put_if_absent(item).await.map(|_| ()),
        }
    }

    async fn task_token(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.get(key(job_pk(id), "TASK_TOKEN")).await?.map(|item| text(&item, "token")).transpose()
    }
}

#[async_trait]
impl videojobs_core::ports::ReviewWaits for DynamoStore {
    /// Put whole: an execution has one review wait, so a repeated message
    /// carries the same token.
    async fn save_review_token(&self, id: &JobId, token: &str) -> Result<(), StoreError> {
        let mut item = key(job_pk(id), "REVIEW_TOKEN");
        item.insert("kind".into(), s("review_token"));
        item.insert("token".into(), s(token));
        item.insert("saved_at".into(), s(timestamp::format(timestamp::now())));
        self.put_item(item).await
    }

    async fn review_token(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.get(key(job_pk(id), "REVIEW_TOKEN")).await?.map(|item| text(&item, "token")).transpose()
    }
}

#[async_trait]
impl ProviderRequests for DynamoStore {
    async fn job_for_provider_request(&self, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
        if let Some(owner) = self.get(key(owner_pk(provider, request_id), "OWNER")).await? {
            return parsed(&owner, "job_id").map(Some);
        }
        // Jobs submitted before owner records existed are found by the index.
        let out = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .index_name(INDEX_BY_PROVIDER_REQUEST)
            .key_condition_expression("provider_request = :key")
            .expression_attribute_values(":key", s(format!("{provider}#{request_id}")))
            .limit(1)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else { return Ok(None) };
        let pk = text(&item, "pk")?;
        let id = pk.strip_prefix("JOB#").ok_or_else(|| StoreError::Internal("index item is not a job".into()))?;
        id.parse().map(Some).map_err(|_| StoreError::Internal("index item has a bad job id".into()))
    }

    async fn record_owner(&self, provider: &str, request_id: &str, job: &JobId) -> Result<(), StoreError> {
        let mut item = key(owner_pk(provider, request_id), "OWNER");
        item.insert("kind".into(), s("provider_request_owner"));
        item.insert("job_id".into(), s(job.as_str()));
        item.insert("ttl_epoch".into(), epoch_after(RECEIPT_TTL_SECONDS));
        self.put_item(item).await
    }

    async fn note_early_callback(&self, provider: &str, request_id: &str) -> Result<(), StoreError> {
        let mut item = key(owner_pk(provider, request_id), "EARLY");
        item.insert("kind".into(), s("early_callback"));
        item.insert("received_at".into(), s(timestamp::format(timestamp::now())));
        item.insert("ttl_epoch".into(), epoch_after(RECEIPT_TTL_SECONDS));
        self.put_item(item).await
    }

    async fn had_early_callback(&self, provider: &str, request_id: &str) -> Result<bool, StoreError> {
        Ok(self.get(key(owner_pk(provider, request_id), "EARLY")).await?.is_some())
    }
}

/// The attributes of a position in a user's job listing, in a cursor.
const JOB_LIST_CURSOR: [&str; 4] = ["pk", "sk", "user_id", "created_key"];

fn encode_cursor(last: &Item) -> Result<String, ListError> {
    crate::cursor::encode(last, &JOB_LIST_CURSOR)
}

/// The table keys of the entries an index query found.
fn index_keys(found: Vec<Item>) -> Vec<Item> {
    found.into_iter().map(|entry| entry.into_iter().filter(|(name, _)| name == "pk" || name == "sk").collect()).collect()
}

/// A cursor is good only for the listing it came from: this user's jobs.
fn decode_cursor(cursor: &str, user: &UserId) -> Result<Item, ListError> {
    crate::cursor::decode(cursor, &JOB_LIST_CURSOR, |fields| {
        fields.get("user_id").map(String::as_str) == Some(user.as_str())
            && fields.get("pk").and_then(|pk| pk.strip_prefix("JOB#")).is_some_and(|id| id.parse::<JobId>().is_ok())
            && fields.get("sk").map(String::as_str) == Some("JOB")
    })
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let Some(item) = self.get(account_key(user)).await? else { return Ok(None) };
        Ok(Some(Account {
            user_id: user.clone(),
            credits: number(&item, "credits")?,
            active_jobs: u32::try_from(number(&item, "active_jobs")?.max(0)).unwrap_or(u32::MAX),
        }))
    }

    async fn open_account(&self, user: &UserId, credits: i64) -> Result<bool, StoreError> {
        let mut item = account_key(user);
        item.insert("kind".into(), s("account"));
        item.insert("credits".into(), n(credits));
        item.insert("active_jobs".into(), n(0));
        item.insert("created_at".into(), s(timestamp::format(timestamp::now())));
        self.put_if_absent(item).await
    }

    async fn grant_credits(&self, user: &UserId, credits: i64) -> Result<Account, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(account_key(user)))
            .update_expression("ADD credits :credits")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":credits", n(credits))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        let item = out.attributes.unwrap_or_default();
        Ok(Account {
            user_id: user.clone(),
            credits: number(&item, "credits")?,
            active_jobs: u32::try_from(number(&item, "active_jobs")?.max(0)).unwrap_or(u32::MAX),
        })
    }
}

#[async_trait]
impl UploadStore for DynamoStore {
    async fn save_upload(&self, upload: &Upload) -> Result<(), StoreError> {
        let mut item = key(format!("UPLOAD#{}", upload.upload_id), "UPLOAD");
        item.insert("kind".into(), s("upload"));
        item.insert("upload_id".into(), s(upload.upload_id.as_str()));
        item.insert("owner_id".into(), s(upload.user_id.as_str()));
        item.insert("content_type".into(), s(upload.content_type.mime()));
        item.insert("size_bytes".into(), n(upload.size_bytes));
        item.insert("object_key".into(), s(upload.object_key.as_str()));
        item.insert("created_at".into(), s(timestamp::format(upload.created_at)));
        item.insert("ttl_epoch".into(), epoch_after(UPLOAD_TTL_SECONDS));
        if self.put_if_absent(item).await? {
            Ok(())
        } else {
            Err(StoreError::Internal(format!("upload id {} already taken", upload.upload_id)))
        }
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>, StoreError> {
        let Some(item) = self.get(key(format!("UPLOAD#{id}"), "UPLOAD")).await? else { return Ok(None) };
        let content_type = match text(&item, "content_type")?.as_str() {
            "image/jpeg" => ImageType::Jpeg,
            "image/png" => ImageType::Png,
            "image/webp" => ImageType::Webp,
            other => return Err(StoreError::Internal(format!("upload has content type {other}"))),
        };
        Ok(Some(Upload {
            upload_id: id.clone(),
            user_id: parsed(&item, "owner_id")?,
            content_type,
            size_bytes: u64::try_from(number(&item, "size_bytes")?).unwrap_or(0),
            object_key: text(&item, "object_key")?,
            created_at: timestamp::parse(&text(&item, "created_at")?)
                .ok_or_else(|| StoreError::Internal("created_at does not parse".into()))?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn user(name: &str) -> UserId {
        name.parse().unwrap()
    }

    fn sample_last_key(user_id: &str) -> Item {
        HashMap::from([
            ("pk".to_owned(), s("JOB#job_01j0000000000000000000000a")),
            ("sk".to_owned(), s("JOB")),
            ("user_id".to_owned(), s(user_id)),
            ("created_key".to_owned(), s("2026-01-01T00:00:00.000Z#job_01j0000000000000000000000a")),
        ])
    }

    #[test]
    fn a_cursor_decodes_back_to_the_key_it_came_from() {
        let last = sample_last_key("alice");
        let cursor = encode_cursor(&last).unwrap();
        assert_eq!(decode_cursor(&cursor, &user("alice")).unwrap(), last);
    }

    #[test]
    fn a_cursor_is_refused_for_another_user_or_when_tampered_with() {
        let cursor = encode_cursor(&sample_last_key("alice")).unwrap();
        assert_eq!(decode_cursor(&cursor, &user("bob")), Err(ListError::BadCursor));
        assert_eq!(decode_cursor("not-base64!", &user("alice")), Err(ListError::BadCursor));
        let forged = URL_SAFE_NO_PAD.encode(r#"{"pk":"USER#alice","sk":"ACCOUNT","user_id":"alice","created_key":"x"}"#);
        assert_eq!(decode_cursor(&forged, &user("alice")), Err(ListError::BadCursor));
        let extra =
            URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#job_01j0000000000000000000000a","sk":"JOB","user_id":"alice","created_key":"x","z":"1"}"#);
        assert_eq!(decode_cursor(&extra, &user("alice")), Err(ListError::BadCursor));
    }
}
