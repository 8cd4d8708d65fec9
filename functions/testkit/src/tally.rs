//! What each partition key would be asked to carry on DynamoDB: a tally of
//! the reads and writes the in-memory store makes, per table or index and
//! per partition key value, metered as DynamoDB meters them. The simulator's
//! scale mode reads it to find the hot keys (docs/SCALE.md).
//!
//! Off unless turned on ([`Memory::tally_partitions`]): when off, every
//! count is one `Option` check and no key is formatted.
//!
//! The rules (the DynamoDB adapter's writes, `functions/aws/src/dynamo.rs`):
//! - keys are the adapter's: `JOB#{id}` for a job and everything under it
//!   (events, task tokens, notification records), `USER#{user}` for the
//!   account, the webhook secret and the delivery slots, `STATS#{0..7}` for
//!   the counter shards (one picked at random per write, as the adapter does),
//!   `RATE#…`, `APIKEY#…`, `IDEM#…`, `RECEIPT#…`, `PROVREQ#…`;
//! - a write is one unit per item (items are under 1 KB), two in a
//!   transaction; a task token's item three (sized for a 2,048-character
//!   token, as BENCHMARKS.md does); a write refused by its condition still
//!   costs its units, and a cancelled transaction is counted as if it did;
//! - an index is written when a write of the job item adds, removes or
//!   changes its entry: an entry put or deleted is one write on its
//!   partition, a moved key two (a delete on the old partition, a put on the
//!   new), a changed projected attribute one; `review_queue` projects the
//!   whole item, so any write of a job in it writes it. Index writes are not
//!   doubled by a transaction;
//! - a read is one per item read (a strongly consistent read of an item up
//!   to 4 KB is one unit); a query counts the items it read, which
//!   overstates its units (its items are summed, 4 KB a unit, and an index
//!   query is eventually consistent: half).

use crate::splitmix::SplitMix64;
use crate::state::{State, StoredJob};
use crate::Memory;
use std::collections::HashMap;
use videojobs_core::model::change::StatusChange;
use videojobs_core::model::ids::JobId;
use videojobs_core::ports::NewJob;

/// The DynamoDB adapter's counter shards (`COUNTER_SHARDS` in `functions/aws/src/dynamo/counters.rs`).
pub const COUNTER_SHARDS: u64 = 8;

/// A task token's item, in write units (a 2,048-character token).
pub(crate) const TOKEN_ITEM_UNITS: u64 = 3;

/// Where a read or a write lands: the jobs table, the prompts table, or one
/// of the jobs table's indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Jobs,
    Prompts,
    ByUser,
    ActiveByUser,
    ByProviderRequest,
    ReviewQueue,
    StuckWatch,
}

impl Place {
    pub const ALL: [Place; 7] =
        [Place::Jobs, Place::Prompts, Place::ByUser, Place::ActiveByUser, Place::ByProviderRequest, Place::ReviewQueue, Place::StuckWatch];

    /// The jobs table's indexes, in the order [`Entries`] holds them.
    const INDEXES: [Place; 5] = [Place::ByUser, Place::ActiveByUser, Place::ByProviderRequest, Place::ReviewQueue, Place::StuckWatch];

    /// The table's or the index's name in template.yaml.
    pub fn name(self) -> &'static str {
        match self {
            Place::Jobs => "jobs table",
            Place::Prompts => "prompts table",
            Place::ByUser => "index by_user",
            Place::ActiveByUser => "index active_by_user",
            Place::ByProviderRequest => "index by_provider_request",
            Place::ReviewQueue => "index review_queue",
            Place::StuckWatch => "index stuck_watch",
        }
    }
}

/// Reads and writes, in the units above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units {
    pub reads: u64,
    pub writes: u64,
}

/// The counts per place and partition key value.
#[derive(Debug, Clone, Default)]
pub struct PartitionTally {
    counts: HashMap<(Place, String), Units>,
}

impl PartitionTally {
    /// The counts of one partition key value.
    pub fn get(&self, place: Place, key: &str) -> Units {
        self.counts.get(&(place, key.to_owned())).copied().unwrap_or_default()
    }

    /// The counts of every partition of `place`, summed.
    pub fn total(&self, place: Place) -> Units {
        self.counts
            .iter()
            .filter(|((p, _), _)| *p == place)
            .fold(Units::default(), |sum, (_, u)| Units { reads: sum.reads + u.reads, writes: sum.writes + u.writes })
    }

    /// Every partition key value of `place` with its counts, in no order.
    pub fn of(&self, place: Place) -> impl Iterator<Item = (&str, Units)> + '_ {
        self.counts.iter().filter(move |((p, _), _)| *p == place).map(|((_, key), units)| (key.as_str(), *units))
    }

    /// How many partition key values of `place` were read or written.
    pub fn keys(&self, place: Place) -> usize {
        self.counts.keys().filter(|(p, _)| *p == place).count()
    }

    /// The `n` partition key values of `place` with the most of `what`
    /// (`|u| u.writes`, say), most first; equal counts in key order.
    pub fn top(&self, place: Place, n: usize, what: impl Fn(&Units) -> u64) -> Vec<(String, Units)> {
        let mut rows: Vec<(String, Units)> =
            self.counts.iter().filter(|((p, _), u)| *p == place && what(u) > 0).map(|((_, k), u)| (k.clone(), *u)).collect();
        rows.sort_by(|a, b| what(&b.1).cmp(&what(&a.1)).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(n);
        rows
    }

    fn add(&mut self, place: Place, key: String, reads: u64, writes: u64) {
        let units = self.counts.entry((place, key)).or_default();
        units.reads += reads;
        units.writes += writes;
    }
}

/// The partition key values the adapter writes (`dynamo.rs`'s key builders).
pub(crate) mod key {
    use std::fmt::Display;

    pub fn job(id: impl Display) -> String {
        format!("JOB#{id}")
    }

    pub fn user(user: impl Display) -> String {
        format!("USER#{user}")
    }
}

/// One index entry of a job item: its partition, its sort key, and what it
/// projects beyond the keys. A sort key is a time (`created_key` begins
/// with `created_at`, and a job's id, its rest, never changes), kept as the
/// whole milliseconds the adapter writes: two equal when their text would be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    partition: String,
    sort: i128,
    projected: String,
}

/// A job item's entries in the five indexes, in [`Place::INDEXES`] order.
type Entries = [Option<Entry>; 5];

/// A time as the adapter's keys hold it: whole milliseconds.
fn millis(at: time::OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

/// What `dynamo::job_item` puts in each index for the item as stored now.
fn entries(stored: &StoredJob) -> Entries {
    let job = &stored.job;
    let entry = |partition: String, sort: i128, projected: String| Some(Entry { partition, sort, projected });
    let created = millis(job.created_at);
    [
        // by_user: keys and the status.
        entry(job.user_id.to_string(), created, job.status.as_str().to_owned()),
        // active_by_user: keys only, while in flight.
        stored.active.then(|| Entry { partition: job.user_id.to_string(), sort: created, projected: String::new() }),
        // by_provider_request: keys only, once submitted.
        stored.provider_request.clone().map(|request| Entry { partition: request, sort: 0, projected: String::new() }),
        // review_queue: "pending" while completed, by completed_at; the whole item (see `whole_item`).
        stored.review_pending.then(|| Entry {
            partition: "pending".to_owned(),
            sort: job.completed_at.map(millis).unwrap_or_default(),
            projected: String::new(),
        }),
        // stuck_watch: the status while watched, by watch_since; job_id and provider.
        stored
            .watch_status
            .zip(stored.watch_since)
            .and_then(|(status, since)| entry(status.as_str().to_owned(), millis(since), job.provider.to_string())),
    ]
}

/// The index writes one write of an item makes, by partition.
fn index_writes(before: &Option<Entry>, after: &Option<Entry>, whole_item: bool, mut add: impl FnMut(&str)) {
    match (before, after) {
        (None, None) => {}
        (None, Some(put)) => add(&put.partition),
        (Some(deleted), None) => add(&deleted.partition),
        (Some(old), Some(new)) if old.partition != new.partition || old.sort != new.sort => {
            add(&old.partition);
            add(&new.partition);
        }
        (Some(old), Some(new)) if whole_item || old.projected != new.projected => add(&new.partition),
        _ => {}
    }
}

/// The tally and what it needs to meter index writes.
pub(crate) struct Tally {
    counts: PartitionTally,
    /// Each job item's index entries as its last write left them.
    entries: HashMap<JobId, Entries>,
    /// The adapter picks a counter shard at random per write: so does this,
    /// from a fixed seed (the simulator's runs stay reproducible).
    shards: SplitMix64,
}

impl Tally {
    fn new<'a>(jobs: impl Iterator<Item = &'a StoredJob>) -> Self {
        let entries = jobs.map(|stored| (stored.job.job_id.clone(), entries(stored))).collect();
        Self { counts: PartitionTally::default(), entries, shards: SplitMix64::new(0x5ca1_e000) }
    }

    /// A write of the job item landed: the indexes it changed are written.
    pub fn job_written(&mut self, stored: &StoredJob) {
        let after = entries(stored);
        let before = self.entries.remove(&stored.job.job_id).unwrap_or_default();
        for (i, place) in Place::INDEXES.into_iter().enumerate() {
            let counts = &mut self.counts;
            index_writes(&before[i], &after[i], place == Place::ReviewQueue, |partition| counts.add(place, partition.to_owned(), 0, 1));
        }
        self.entries.insert(stored.job.job_id.clone(), after);
    }
}

impl State {
    /// Counts `units` read from partition `key` of `place` (`key` is made only while counting).
    pub(crate) fn tally_read(&mut self, place: Place, key: impl FnOnce() -> String, units: u64) {
        if let Some(tally) = self.tally.as_mut() {
            tally.counts.add(place, key(), units, 0);
        }
    }

    /// Counts `units` written to partition `key` of `place`.
    pub(crate) fn tally_write(&mut self, place: Place, key: impl FnOnce() -> String, units: u64) {
        if let Some(tally) = self.tally.as_mut() {
            tally.counts.add(place, key(), 0, units);
        }
    }

    /// A write of `units` to one counter shard, picked at random as the adapter does.
    pub(crate) fn tally_shard_write(&mut self, units: u64) {
        if let Some(tally) = self.tally.as_mut() {
            let shard = tally.shards.below(COUNTER_SHARDS);
            tally.counts.add(Place::Jobs, format!("STATS#{shard}"), 0, units);
        }
    }

    /// The create transaction's items (`DynamoStore::create_items`): the job
    /// and its first event, the debit, the prompt, the idempotency record
    /// and a counter shard, two units each.
    pub(crate) fn tally_create(&mut self, new: &NewJob) {
        if self.tally.is_none() {
            return;
        }
        let job = &new.job;
        self.tally_write(Place::Jobs, || key::job(&job.job_id), 4);
        self.tally_write(Place::Jobs, || key::user(&job.user_id), 2);
        if new.prompt.is_some() {
            self.tally_write(Place::Prompts, || job.job_id.to_string(), 2);
        }
        if let Some(record) = &new.idempotency {
            self.tally_write(Place::Jobs, || format!("IDEM#{}#{}", record.user_id, record.key.as_str()), 2);
        }
        if !videojobs_core::model::stats::creation_deltas(job).is_empty() {
            self.tally_shard_write(2);
        }
    }

    /// A status change's transaction (`DynamoStore::change_items`): the job
    /// and its event, the account when credits or a slot come back, a shard.
    pub(crate) fn tally_change(&mut self, change: &StatusChange) {
        if self.tally.is_none() {
            return;
        }
        let t = change.transition;
        self.tally_write(Place::Jobs, || key::job(&change.job_id), 4);
        if t.refunds_credits || t.frees_slot {
            self.tally_write(Place::Jobs, || key::user(&change.user_id), 2);
        }
        if !videojobs_core::model::stats::change_deltas(change).is_empty() {
            self.tally_shard_write(2);
        }
    }
}

impl Memory {
    /// Counts every read and write of the DynamoDB-backed ports from now on,
    /// per table or index and partition key value (see [`PartitionTally`]).
    /// Off by default; turning it on again starts the counts afresh.
    pub fn tally_partitions(&self) {
        let mut state = self.lock();
        let tally = Tally::new(state.jobs.values());
        state.tally = Some(tally);
    }

    /// The counts so far (empty when not counting).
    pub fn partition_tally(&self) -> PartitionTally {
        self.lock().tally.as_ref().map(|t| t.counts.clone()).unwrap_or_default()
    }

    /// Zeroes the counts (a measurement window starts); the index entries
    /// the tally follows are kept, so the next writes are metered right.
    pub fn clear_partition_tally(&self) {
        if let Some(tally) = self.lock().tally.as_mut() {
            tally.counts = PartitionTally::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{at, change, new_job};
    use videojobs_core::model::change::JobUpdate;
    use videojobs_core::model::ids::UserId;
    use videojobs_core::ports::{AccountStore, ChangeOutcome, CreateOutcome, JobReads, JobWrites, ReviewQueue};
    use videojobs_core::JobStatus;

    fn shard_writes(tally: &PartitionTally) -> u64 {
        (0..COUNTER_SHARDS).map(|s| tally.get(Place::Jobs, &format!("STATS#{s}")).writes).sum()
    }

    #[tokio::test]
    async fn nothing_is_counted_until_asked() {
        let memory = Memory::default();
        let user: UserId = "alice".parse().unwrap();
        memory.open_account(&user, 10).await.unwrap();
        memory.create(&new_job(&user, 1, at(0))).await.unwrap();
        assert_eq!(memory.partition_tally().keys(Place::Jobs), 0);
    }

    #[tokio::test]
    async fn a_job_s_writes_land_on_its_keys_and_on_the_index_partitions_they_change() {
        let memory = Memory::default();
        let user: UserId = "alice".parse().unwrap();
        memory.open_account(&user, 10).await.unwrap();
        memory.tally_partitions();
        let new = new_job(&user, 1, at(0));
        let id = new.job.job_id.clone();
        assert_eq!(memory.create(&new).await.unwrap(), CreateOutcome::Created);

        let t = memory.partition_tally();
        // One transaction: the job and its event (one key), the debit, the prompt, a shard; two units each.
        assert_eq!(t.get(Place::Jobs, &key::job(&id)), Units { reads: 0, writes: 4 });
        assert_eq!(t.get(Place::Jobs, "USER#alice").writes, 2);
        assert_eq!(t.get(Place::Prompts, id.as_str()).writes, 2);
        assert_eq!(shard_writes(&t), 2);
        // The new item's entries: one put each, not doubled.
        assert_eq!(t.get(Place::ByUser, "alice").writes, 1);
        assert_eq!(t.get(Place::ActiveByUser, "alice").writes, 1);
        assert_eq!(t.get(Place::StuckWatch, "queued").writes, 1);
        assert_eq!(t.total(Place::ReviewQueue).writes, 0);

        memory.clear_partition_tally();
        let job = memory.job(&id).await.unwrap().unwrap();
        let submitted = change(&job, JobStatus::Submitted, at(1), JobUpdate::default());
        assert_eq!(memory.change_status(&submitted).await.unwrap(), ChangeOutcome::Applied);
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::Jobs, &key::job(&id)).writes, 4);
        assert_eq!(t.get(Place::Jobs, "USER#alice").writes, 0, "the slot stays taken");
        // stuck_watch's key moved from one status's partition to the next's; by_user's status changed.
        assert_eq!(t.get(Place::StuckWatch, "queued").writes, 1);
        assert_eq!(t.get(Place::StuckWatch, "submitted").writes, 1);
        assert_eq!(t.get(Place::ByUser, "alice").writes, 1);
        assert_eq!(t.total(Place::ActiveByUser).writes, 0, "a keys-only entry that did not move is not written");

        // A progress rise moves watch_since: two writes in one partition.
        memory.clear_partition_tally();
        let job = memory.job(&id).await.unwrap().unwrap();
        let processing = change(&job, JobStatus::Processing, at(2), JobUpdate::default());
        memory.change_status(&processing).await.unwrap();
        memory.clear_partition_tally();
        memory.raise_progress(&id, 40).await.unwrap();
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::Jobs, &key::job(&id)).writes, 1);
        assert_eq!(t.get(Place::StuckWatch, "processing").writes, 2);
        assert_eq!(t.total(Place::ByUser).writes, 0);

        // Completed: into the review queue's one partition, out of flight and off the stuck list.
        memory.clear_partition_tally();
        let job = memory.job(&id).await.unwrap().unwrap();
        let completed = change(&job, JobStatus::Completed, at(3), JobUpdate { completed_at: Some(at(3)), ..JobUpdate::default() });
        memory.change_status(&completed).await.unwrap();
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::ReviewQueue, "pending").writes, 1);
        assert_eq!(t.get(Place::StuckWatch, "processing").writes, 1);
        assert_eq!(t.get(Place::ActiveByUser, "alice").writes, 1);
        assert_eq!(t.get(Place::Jobs, "USER#alice").writes, 2, "the slot comes back in the transaction");

        // A refused change still costs its transaction, and the adapter reads the job back.
        memory.clear_partition_tally();
        assert_eq!(memory.change_status(&completed).await.unwrap(), ChangeOutcome::StatusWas(JobStatus::Completed));
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::Jobs, &key::job(&id)), Units { reads: 1, writes: 4 });
        assert_eq!(t.total(Place::ReviewQueue).writes, 0);

        // Reading the queue reads its one partition.
        memory.waiting(&videojobs_core::ports::PageRequest { limit: 20, cursor: None }).await.unwrap();
        assert_eq!(memory.partition_tally().get(Place::ReviewQueue, "pending").reads, 1);
    }

    #[tokio::test]
    async fn the_reads_the_adapter_makes_around_a_write_are_counted() {
        use videojobs_core::ports::WebhookSecrets;
        let memory = Memory::default();
        let user: UserId = "alice".parse().unwrap();
        memory.open_account(&user, 10).await.unwrap();
        memory.create_webhook_secret(&user, "whsec_first").await.unwrap();
        let new = new_job(&user, 1, at(0));
        let id = new.job.job_id.clone();
        memory.create(&new).await.unwrap();
        memory.tally_partitions();
        // A first secret that was already made: the put is refused, and the adapter reads the one there.
        memory.create_webhook_secret(&user, "whsec_second").await.unwrap();
        assert_eq!(memory.partition_tally().get(Place::Jobs, "USER#alice"), Units { reads: 1, writes: 1 });
        // Forgetting the output of a job in another status: the adapter reads the job and writes nothing.
        memory.clear_partition_tally();
        let forget = JobUpdate { remove_output: true, ..JobUpdate::default() };
        assert!(!memory.update_in_status(&id, JobStatus::Completed, &forget).await.unwrap());
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::Jobs, &key::job(&id)), Units { reads: 1, writes: 0 });
        assert_eq!(shard_writes(&t), 0);
        // In its status: the read, then the transaction of the job and a shard.
        memory.clear_partition_tally();
        assert!(memory.update_in_status(&id, JobStatus::Queued, &forget).await.unwrap());
        let t = memory.partition_tally();
        assert_eq!(t.get(Place::Jobs, &key::job(&id)), Units { reads: 1, writes: 2 });
        assert_eq!(shard_writes(&t), 2);
    }

    #[test]
    fn the_top_keys_come_most_first_and_ties_in_key_order() {
        let mut tally = PartitionTally::default();
        tally.add(Place::Jobs, "b".into(), 0, 5);
        tally.add(Place::Jobs, "a".into(), 0, 5);
        tally.add(Place::Jobs, "c".into(), 9, 1);
        tally.add(Place::ByUser, "z".into(), 0, 50);
        let top: Vec<String> = tally.top(Place::Jobs, 2, |u| u.writes).into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, ["a", "b"]);
        assert_eq!(tally.top(Place::Jobs, 5, |u| u.reads)[0].0, "c");
        assert_eq!(tally.total(Place::Jobs), Units { reads: 9, writes: 11 });
    }
}
