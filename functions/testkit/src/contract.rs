//! The adapter contract: behaviour every implementation of the ports must
//! have, written once over the port traits. `tests/contract.rs` in this
//! crate runs it on [`crate::Memory`]; `tests/integration/adapter_contract.rs`
//! runs the same cases on the AWS adapters against moto. A case that needs
//! more time than a test can wait for on AWS asks [`Time::can_pass`] and
//! runs that part in memory only; every lease is the caller's argument, so
//! a one-second lease proves its takeover on both.
//!
//! On AWS time passes for real, however slowly the machine runs: a check
//! that something is still held, invisible or not yet due uses a lease,
//! visibility or delay far longer than any run, and a short one is only
//! checked once it has passed (later is never wrong for that check).
//!
//! Each case names its own users and jobs, so cases can share one stack;
//! the cases that read global figures (counters, the stuck index, the
//! queue) or start executions are marked `isolated` and get a stack of their own.

#![allow(clippy::unwrap_used)] // Contract cases fail loudly on purpose.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::model::ids::{ApiKey, IdempotencyKey, JobId, KeyId, Role, UploadId, UserId};
use videojobs_core::model::job::{EventSource, Job, JobEvent, JobParams};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::model::notification::AttemptClaim;
use videojobs_core::model::progress::{ProgressDetail, Stage};
use videojobs_core::model::request::{AspectRatio, ImageType, ProviderName, Resolution};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::ProgressDetails;
use videojobs_core::ports::ProviderSwitch;
use videojobs_core::ports::RateLimiter;
use videojobs_core::ports::ReviewQueue;
use videojobs_core::ports::StatsStore;
use videojobs_core::ports::*;
use videojobs_core::ports::{NotificationLog, WebhookSecrets};
use videojobs_core::services::callbacks::RECEIPT_LEASE;
use videojobs_core::{transition, JobStatus, StoreError};

/// Every port the jobs table backs.
pub trait Tables:
    JobWrites
    + JobReads
    + JobListings
    + CallbackLedger
    + SubmissionTokens
    + AccountStore
    + ApiKeyStore
    + ProviderRequests
    + UploadStore
    + ProgressDetails
    + ProviderSwitch
    + RateLimiter
    + WebhookSecrets
    + NotificationLog
    + StatsStore
{
}

impl<T> Tables for T where
    T: JobWrites
        + JobReads
        + JobListings
        + CallbackLedger
        + SubmissionTokens
        + AccountStore
        + ApiKeyStore
        + ProviderRequests
        + UploadStore
        + ProgressDetails
        + ProviderSwitch
        + RateLimiter
        + WebhookSecrets
        + NotificationLog
        + StatsStore
{
}

/// How time passes for the adapters under test.
#[async_trait]
pub trait Time: Send + Sync {
    /// Lets `by` pass (the in-memory clock jumps; on AWS the test waits).
    async fn pass(&self, by: Duration);
    /// Whether a case can afford to let `by` pass.
    fn can_pass(&self, by: Duration) -> bool;
}

/// A message as the contract receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub body: String,
    pub receipt_handle: String,
    pub receive_count: u32,
}

/// The work queue, both ends: the ports produce, the contract consumes.
#[async_trait]
pub trait QueueUnderTest: WorkQueue + DelayedWorkQueue {
    async fn receive(&self, visibility: Duration) -> Vec<Delivery>;
    async fn delete(&self, receipt_handle: &str);
}

/// The bucket: the ports plus what the contract needs to look inside.
#[async_trait]
pub trait ObjectsUnderTest: OutputStore + KeepOutputs + MediaStore {
    /// A URL the output store can copy `bytes` from.
    async fn source_url(&self, bytes: &[u8]) -> String;
    /// Puts an object (as a client's presigned PUT would).
    async fn put(&self, key: &str, bytes: &[u8]);
    /// The object's tags; `None` when there is no such object.
    async fn tags(&self, key: &str) -> Option<Vec<(String, String)>>;
}

/// Where a task token a started execution waits on is found.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The token of the first task the job's (started) execution waits on.
    async fn waiting_token(&self, job: &JobId) -> String;
}

/// Everything a contract case may use.
pub struct Subject {
    pub tables: Arc<dyn Tables>,
    /// Apart: on AWS it is an adapter of its own.
    pub review: Arc<dyn ReviewQueue>,
    pub queue: Arc<dyn QueueUnderTest>,
    pub objects: Arc<dyn ObjectsUnderTest>,
    pub workflows: Arc<dyn Workflows>,
    pub tasks: Arc<dyn TaskTokens>,
    pub tokens: Arc<dyn TokenSource>,
    pub time: Arc<dyn Time>,
}

/// Runs every case as a test of its own; `$subject` is an
/// `async fn(isolated: bool) -> Subject`.
#[macro_export]
macro_rules! contract_suite {
    ($subject:path) => {
        $crate::contract_suite!(@cases $subject;
            shared: creating_a_job_writes_everything_once_and_keeps_its_idempotency_record,
            a_refused_creation_writes_nothing,
            a_status_change_is_conditioned_on_the_status_it_leaves,
            racing_writers_cannot_both_win,
            a_refunding_change_gives_the_credits_back_once_and_frees_the_slot,
            the_attempt_fence_refuses_writes_of_a_stale_attempt,
            a_submission_lease_is_taken_over_only_once_it_has_run_out,
            updates_in_status_and_progress_only_move_forward,
            a_receipt_is_new_then_in_progress_then_done,
            an_owner_record_and_an_early_callback_note_are_found_again,
            a_task_token_is_kept_unless_replaced,
            a_users_jobs_page_newest_first_and_refuse_foreign_cursors,
            filters_list_exactly_the_jobs_that_pass_them_page_by_page,
            keys_list_oldest_first_and_a_revocation_sticks,
            accounts_open_once_and_grants_need_an_account,
            uploads_are_saved_once,
            progress_details_only_move_forward_and_a_refresh_is_claimed_once_per_window,
            a_provider_switch_happens_only_before_a_provider_accepts,
            rate_limit_windows_count_up_to_their_limit,
            webhook_secrets_are_created_once_and_rotated_from_the_expected_one,
            notifications_are_recorded_once_and_claims_are_leased,
            the_review_queue_lists_completed_jobs_oldest_first,
            outputs_are_copied_unreviewed_kept_untagged_and_deleted,
            media_objects_are_measured_read_by_prefix_and_copied;
            isolated: counters_move_with_the_writes_they_count,
            forgetting_an_output_takes_its_bytes_off_the_counters_once,
            workflows_start_and_stop_idempotently_and_unknown_tokens_are_no_error,
            a_task_token_answered_again_is_no_error,
            stuck_jobs_are_counted_and_listed_oldest_first,
            only_a_change_of_status_or_progress_takes_a_job_off_the_stuck_list,
            the_queue_redelivers_until_deleted,
            a_delayed_message_waits_its_delay
        );
    };
    (@cases $subject:path; shared: $($shared:ident),*; isolated: $($isolated:ident),*) => {
        $(
            #[tokio::test]
            async fn $shared() {
                let subject = $subject(false).await;
                $crate::contract::$shared(&subject).await;
            }
        )*
        $(
            #[tokio::test]
            async fn $isolated() {
                let subject = $subject(true).await;
                $crate::contract::$isolated(&subject).await;
            }
        )*
    };
}

// ------------------------------------------------------------- fixtures

/// A user no other case (nor run) uses.
pub fn fresh_user() -> UserId {
    format!("ct-{}", &JobId::generate().as_str()[4..]).parse().unwrap()
}

/// A fixed time, `seconds` after a base far from now (so that jobs the
/// contract makes sort apart from anything else in a shared table).
pub fn at(seconds: i64) -> OffsetDateTime {
    time::macros::datetime!(2001-01-01 00:00:00 UTC) + time::Duration::seconds(seconds)
}

fn provider() -> ProviderName {
    "local".parse().unwrap()
}

fn params() -> JobParams {
    JobParams::TextToVideo { duration_seconds: 4, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Sd }
}

fn event(job: &Job, previous: Option<JobStatus>, status: JobStatus, when: OffsetDateTime, message: &str) -> JobEvent {
    JobEvent {
        job_id: job.job_id.clone(),
        at: when,
        source: EventSource::Worker,
        previous_status: previous,
        status,
        message: message.to_owned(),
        error_code: None,
        actor: None,
        delivery: None,
    }
}

/// A job to create for `user`, costing `cost`, created at `created_at`.
pub fn new_job(user: &UserId, cost: u32, created_at: OffsetDateTime) -> NewJob {
    let job = Job::accepted(JobId::generate(), user.clone(), params(), provider(), cost, created_at);
    let first_event = event(&job, None, JobStatus::Queued, created_at, "Accepted");
    NewJob {
        job,
        prompt: Some("a cat on a skateboard".into()),
        prompt_expires_at: None,
        first_event,
        idempotency: None,
        max_active_jobs: 5,
    }
}

/// The change of `job` to `to` at `when`, with `update`.
pub fn change(job: &Job, to: JobStatus, when: OffsetDateTime, update: JobUpdate) -> StatusChange {
    let mut change = StatusChange::new(job, transition(job.status, to).unwrap(), EventSource::Worker, format!("to {to}"), None, update);
    change.at = when;
    change.event.at = when;
    change
}

async fn account_with(s: &Subject, credits: i64) -> UserId {
    let user = fresh_user();
    assert!(s.tables.open_account(&user, credits).await.unwrap());
    user
}

/// Creates a job and moves it along `path`, one second per step.
async fn job_through(s: &Subject, user: &UserId, created: OffsetDateTime, path: &[JobStatus]) -> Job {
    let new = new_job(user, 1, created);
    assert_eq!(s.tables.create(&new).await.unwrap(), CreateOutcome::Created);
    let mut job = new.job;
    for (i, to) in path.iter().enumerate() {
        let when = created + time::Duration::seconds(i as i64 + 1);
        let update = match to {
            JobStatus::Completed => JobUpdate { completed_at: Some(when), ..JobUpdate::default() },
            _ => JobUpdate::default(),
        };
        assert_eq!(s.tables.change_status(&change(&job, *to, when, update)).await.unwrap(), ChangeOutcome::Applied);
        job = s.tables.job(&job.job_id).await.unwrap().unwrap();
    }
    job
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Checks a listing's pages: none longer than its limit, and only a full
/// page carries a cursor. (DynamoDB gives a cursor after every full page,
/// even the last, whose next page is then empty; moto only when more
/// follows: both obey this.)
fn check_page<T>(listed: &Page<T>, limit: u32) {
    assert!(listed.items.len() <= limit as usize, "a page holds at most its limit");
    if listed.next_cursor.is_some() {
        assert_eq!(listed.items.len(), limit as usize, "only a full page has a cursor");
    }
}

// ------------------------------------------------------------- jobs

pub async fn creating_a_job_writes_everything_once_and_keeps_its_idempotency_record(s: &Subject) {
    let user = account_with(s, 10).await;
    let key: IdempotencyKey = "contract-key-1".parse().unwrap();
    let mut first = new_job(&user, 3, at(0));
    let record = IdempotencyRecord {
        user_id: user.clone(),
        key: key.clone(),
        fingerprint: "POST /videos:abc".into(),
        job_id: first.job.job_id.clone(),
        response_status: 202,
        response_body: "{\"job_id\":\"x\"}".into(),
        created_at: at(0),
    };
    first.idempotency = Some(record.clone());

    assert_eq!(s.tables.create(&first).await.unwrap(), CreateOutcome::Created);
    let mut again = new_job(&user, 3, at(1));
    again.idempotency = Some(IdempotencyRecord { job_id: again.job.job_id.clone(), ..record.clone() });
    let second = s.tables.create(&again).await.unwrap();

    assert_eq!(second, CreateOutcome::IdempotencyKeyTaken);
    assert_eq!(s.tables.idempotency_record(&user, &key).await.unwrap(), Some(record));
    let account = s.tables.account(&user).await.unwrap().unwrap();
    assert_eq!((account.credits, account.active_jobs), (7, 1), "debited once");
    assert_eq!(s.tables.job(&again.job.job_id).await.unwrap(), None, "the refused job was not written");
    assert_eq!(s.tables.prompt(&again.job.job_id).await.unwrap(), None);
    assert_eq!(s.tables.job(&first.job.job_id).await.unwrap(), Some(first.job.clone()));
    assert_eq!(s.tables.events(&first.job.job_id).await.unwrap(), vec![first.first_event.clone()]);
    assert_eq!(s.tables.prompt(&first.job.job_id).await.unwrap().as_deref(), Some("a cat on a skateboard"));
    let other: IdempotencyKey = "contract-key-2".parse().unwrap();
    assert_eq!(s.tables.idempotency_record(&user, &other).await.unwrap(), None);
}

pub async fn a_refused_creation_writes_nothing(s: &Subject) {
    let nobody = fresh_user();
    let poor = account_with(s, 2).await;
    let busy = account_with(s, 10).await;
    let mut capped = new_job(&busy, 1, at(0));
    capped.max_active_jobs = 1;
    assert_eq!(s.tables.create(&capped).await.unwrap(), CreateOutcome::Created);

    let no_account = new_job(&nobody, 1, at(1));
    let too_poor = new_job(&poor, 3, at(1));
    let mut over_cap = new_job(&busy, 1, at(1));
    over_cap.max_active_jobs = 1;

    assert_eq!(s.tables.create(&no_account).await.unwrap(), CreateOutcome::NoAccount);
    assert_eq!(s.tables.create(&too_poor).await.unwrap(), CreateOutcome::InsufficientCredits { balance: 2 });
    assert_eq!(s.tables.create(&over_cap).await.unwrap(), CreateOutcome::TooManyActiveJobs);
    for refused in [&no_account, &too_poor, &over_cap] {
        assert_eq!(s.tables.job(&refused.job.job_id).await.unwrap(), None);
        assert_eq!(s.tables.events(&refused.job.job_id).await.unwrap(), vec![]);
        assert_eq!(s.tables.prompt(&refused.job.job_id).await.unwrap(), None);
    }
    assert_eq!(s.tables.account(&poor).await.unwrap().unwrap().credits, 2);
    let busy_account = s.tables.account(&busy).await.unwrap().unwrap();
    assert_eq!((busy_account.credits, busy_account.active_jobs), (9, 1));
}

pub async fn a_status_change_is_conditioned_on_the_status_it_leaves(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let submit = change(&job, JobStatus::Submitted, at(5), JobUpdate { progress: Some(2), ..JobUpdate::default() });

    let first = s.tables.change_status(&submit).await.unwrap();
    let repeated = s.tables.change_status(&submit).await.unwrap();
    let unknown = Job { job_id: JobId::generate(), ..job.clone() };
    let missing = s.tables.change_status(&change(&unknown, JobStatus::Submitted, at(5), JobUpdate::default())).await.unwrap();

    assert_eq!(first, ChangeOutcome::Applied);
    assert_eq!(repeated, ChangeOutcome::StatusWas(JobStatus::Submitted));
    assert_eq!(missing, ChangeOutcome::NotFound);
    let stored = s.tables.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.progress, stored.updated_at), (JobStatus::Submitted, 2, at(5)));
    let events = s.tables.events(&job.job_id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.status).collect::<Vec<_>>(),
        [JobStatus::Queued, JobStatus::Submitted],
        "one event per applied change"
    );
    assert_eq!(s.tables.account(&user).await.unwrap().unwrap().active_jobs, 1, "submitted is still in flight");
}

/// Conditions are checked with their writes: of writers racing for the
/// same conditional write, exactly one wins.
pub async fn racing_writers_cannot_both_win(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let key: IdempotencyKey = "contract-race".parse().unwrap();
    let event_id = format!("evt-{}", JobId::generate());
    let mut races = tokio::task::JoinSet::new();
    for i in 0..6 {
        let tables = s.tables.clone();
        let submit = change(&job, JobStatus::Submitted, at(1), JobUpdate::default());
        let mut create = new_job(&user, 1, at(10 + i));
        create.idempotency = Some(IdempotencyRecord {
            user_id: user.clone(),
            key: key.clone(),
            fingerprint: "f".into(),
            job_id: create.job.job_id.clone(),
            response_status: 202,
            response_body: "{}".into(),
            created_at: at(10),
        });
        let event_id = event_id.clone();
        let user = user.clone();
        races.spawn(async move {
            let changed = tables.change_status(&submit).await.unwrap() == ChangeOutcome::Applied;
            let created = tables.create(&create).await.unwrap() == CreateOutcome::Created;
            let claimed = tables.record_receipt("local", &event_id, "req", RECEIPT_LEASE).await.unwrap() == ReceiptClaim::New;
            let opened = tables.open_account(&user, 99).await.unwrap();
            (changed, created, claimed, opened)
        });
    }
    let outcomes: Vec<(bool, bool, bool, bool)> = races.join_all().await;

    let winners = |pick: fn(&(bool, bool, bool, bool)) -> bool| outcomes.iter().filter(|o| pick(o)).count();
    assert_eq!(winners(|o| o.0), 1, "one status change applies");
    assert_eq!(winners(|o| o.1), 1, "one creation per idempotency key");
    assert_eq!(winners(|o| o.2), 1, "one delivery claims the receipt");
    assert_eq!(winners(|o| o.3), 0, "the account was open already");
    assert_eq!(s.tables.events(&job.job_id).await.unwrap().len(), 2);
    let account = s.tables.account(&user).await.unwrap().unwrap();
    assert_eq!((account.credits, account.active_jobs), (8, 2), "two creations debited: the first job's and the winner's");
}

pub async fn a_refunding_change_gives_the_credits_back_once_and_frees_the_slot(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[JobStatus::Submitted]).await;
    assert_eq!(s.tables.active_jobs_of(&user).await.unwrap().len(), 1);

    let cancel = change(&job, JobStatus::Canceled, at(9), JobUpdate::default());
    let first = s.tables.change_status(&cancel).await.unwrap();
    let again = s.tables.change_status(&cancel).await.unwrap();

    assert_eq!(first, ChangeOutcome::Applied);
    assert_eq!(again, ChangeOutcome::StatusWas(JobStatus::Canceled));
    let account = s.tables.account(&user).await.unwrap().unwrap();
    assert_eq!((account.credits, account.active_jobs), (10, 0), "refunded once, slot freed");
    assert_eq!(s.tables.active_jobs_of(&user).await.unwrap(), vec![], "no longer in the in-flight index");
    assert_eq!(s.tables.jobs_of(&user, &JobFilter::default(), &page(10, None)).await.unwrap().items.len(), 1, "still listed");
}

pub async fn the_attempt_fence_refuses_writes_of_a_stale_attempt(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let claim = JobUpdate { submit_attempt: Some(1), only_in_attempt: Some(0), ..JobUpdate::default() };
    assert_eq!(s.tables.change_status(&change(&job, JobStatus::Submitted, at(1), claim.clone())).await.unwrap(), ChangeOutcome::Applied);
    let job = s.tables.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!(job.submit_attempt, 1);

    let never_submitted = JobUpdate { progress: Some(3), only_in_attempt: Some(0), ..JobUpdate::default() };
    let stale = JobUpdate { progress: Some(4), only_in_attempt: Some(2), ..JobUpdate::default() };
    let current =
        JobUpdate { provider_request: Some(("local".into(), "req-fence".into())), only_in_attempt: Some(1), ..JobUpdate::default() };
    assert!(!s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &never_submitted).await.unwrap(), "attempt 0 is over");
    assert!(!s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &stale).await.unwrap(), "attempt 2 never began");
    assert!(s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &current).await.unwrap());
    let retry = change(&job, JobStatus::Retrying, at(3), JobUpdate { only_in_attempt: Some(2), ..JobUpdate::default() });
    assert_eq!(
        s.tables.change_status(&retry).await.unwrap(),
        ChangeOutcome::StatusWas(JobStatus::Submitted),
        "a fenced change reports where the job is"
    );

    let stored = s.tables.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!((stored.progress, stored.provider_request_id.as_deref()), (0, Some("req-fence")));
    assert_eq!(s.tables.job_for_provider_request("local", "req-fence").await.unwrap(), Some(job.job_id.clone()), "found by the index");
}

pub async fn a_submission_lease_is_taken_over_only_once_it_has_run_out(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let lease = |until: i64, if_run_out_at: Option<i64>| Some(SubmitLease { until: at(until), if_run_out_at: if_run_out_at.map(at) });
    let claim = JobUpdate { submit_attempt: Some(1), only_in_attempt: Some(0), submit_lease: lease(100, None), ..JobUpdate::default() };
    assert_eq!(s.tables.change_status(&change(&job, JobStatus::Submitted, at(1), claim)).await.unwrap(), ChangeOutcome::Applied);
    let resume = |now: i64, attempt: u32| JobUpdate {
        only_in_attempt: Some(attempt),
        submit_lease: lease(now + 75, Some(now)),
        ..JobUpdate::default()
    };

    let while_held = s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &resume(99, 1)).await.unwrap();
    let other_attempt = s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &resume(100, 2)).await.unwrap();
    let run_out = s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &resume(100, 1)).await.unwrap();
    let again = s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &resume(101, 1)).await.unwrap();

    assert!(!while_held, "the lease runs until 100");
    assert!(!other_attempt, "a lease is taken within its attempt only");
    assert!(run_out, "taken over once run out");
    assert!(!again, "the new holder's lease runs until 175");
}

pub async fn updates_in_status_and_progress_only_move_forward(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let set = JobUpdate { progress: Some(1), ..JobUpdate::default() };
    assert!(!s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &set).await.unwrap(), "not in that status");
    assert!(!s.tables.update_in_status(&JobId::generate(), JobStatus::Queued, &set).await.unwrap(), "no such job");
    s.tables.raise_progress(&job.job_id, 50).await.unwrap();
    assert_eq!(s.tables.job(&job.job_id).await.unwrap().unwrap().progress, 0, "a queued job's progress stays");

    let job = job_through_existing(s, job, JobStatus::Submitted, at(1)).await;
    s.tables.raise_progress(&job.job_id, 40).await.unwrap();
    s.tables.raise_progress(&job.job_id, 30).await.unwrap();
    assert_eq!(s.tables.job(&job.job_id).await.unwrap().unwrap().progress, 40, "never lowered");
    s.tables.raise_progress(&job.job_id, 150).await.unwrap();
    assert_eq!(s.tables.job(&job.job_id).await.unwrap().unwrap().progress, 99, "kept under 100 until done");
    s.tables.raise_progress(&JobId::generate(), 10).await.unwrap();
}

async fn job_through_existing(s: &Subject, job: Job, to: JobStatus, when: OffsetDateTime) -> Job {
    assert_eq!(s.tables.change_status(&change(&job, to, when, JobUpdate::default())).await.unwrap(), ChangeOutcome::Applied);
    s.tables.job(&job.job_id).await.unwrap().unwrap()
}

pub async fn a_receipt_is_new_then_in_progress_then_done(s: &Subject) {
    let event_id = format!("evt-{}", JobId::generate());
    let t = &s.tables;
    assert_eq!(t.record_receipt("local", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::New);
    assert_eq!(t.record_receipt("local", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::InProgress);
    assert_eq!(t.record_receipt("fal", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::New, "receipts are per provider");
    t.complete_receipt("local", &event_id).await.unwrap();
    assert_eq!(t.record_receipt("local", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::Done);
    t.forget_receipt("local", &event_id).await.unwrap();
    assert_eq!(
        t.record_receipt("local", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(),
        ReceiptClaim::Done,
        "a done receipt is never forgotten"
    );

    // A failed apply forgets its pending receipt: the retry applies it.
    t.forget_receipt("fal", &event_id).await.unwrap();
    assert_eq!(t.record_receipt("fal", &event_id, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::New);

    // Completing a receipt nobody claimed makes it done (an unconditional update).
    let unclaimed = format!("evt-{}", JobId::generate());
    t.complete_receipt("local", &unclaimed).await.unwrap();
    assert_eq!(t.record_receipt("local", &unclaimed, "req-1", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::Done);

    // The lease is the caller's. One far longer than the case holds however
    // slowly it runs; a short one, checked only once it has run out, proves
    // its takeover on DynamoDB too.
    let long = Duration::from_secs(600);
    let held = format!("evt-{}", JobId::generate());
    assert_eq!(t.record_receipt("local", &held, "req-1", long).await.unwrap(), ReceiptClaim::New);
    assert_eq!(t.record_receipt("local", &held, "req-1", long).await.unwrap(), ReceiptClaim::InProgress, "the lease still holds");
    let short = Duration::from_secs(1);
    let dying = format!("evt-{}", JobId::generate());
    assert_eq!(t.record_receipt("local", &dying, "req-1", short).await.unwrap(), ReceiptClaim::New);
    // A lease runs out in whole seconds, after `lease_until < now`.
    s.time.pass(Duration::from_millis(2_100)).await;
    assert_eq!(t.record_receipt("local", &dying, "req-1", long).await.unwrap(), ReceiptClaim::New, "a retry takes over a lapsed lease");
    assert_eq!(t.record_receipt("local", &dying, "req-1", long).await.unwrap(), ReceiptClaim::InProgress, "under a new lease");
    assert_eq!(t.record_receipt("local", &held, "req-1", long).await.unwrap(), ReceiptClaim::InProgress, "the long lease still holds");
}

pub async fn an_owner_record_and_an_early_callback_note_are_found_again(s: &Subject) {
    let request = format!("req-{}", JobId::generate());
    let job = JobId::generate();
    assert_eq!(s.tables.job_for_provider_request("local", &request).await.unwrap(), None);
    assert!(!s.tables.had_early_callback("local", &request).await.unwrap());

    s.tables.note_early_callback("local", &request).await.unwrap();
    s.tables.record_owner("local", &request, &job).await.unwrap();

    assert!(s.tables.had_early_callback("local", &request).await.unwrap());
    assert!(!s.tables.had_early_callback("fal", &request).await.unwrap());
    assert_eq!(s.tables.job_for_provider_request("local", &request).await.unwrap(), Some(job));
    assert_eq!(s.tables.job_for_provider_request("fal", &request).await.unwrap(), None);
}

pub async fn a_task_token_is_kept_unless_replaced(s: &Subject) {
    let job = JobId::generate();
    assert_eq!(s.tables.task_token(&job).await.unwrap(), None);
    s.tables.save_task_token(&job, "token-submit", TokenSave::KeepExisting).await.unwrap();
    s.tables.save_task_token(&job, "token-late-copy", TokenSave::KeepExisting).await.unwrap();
    assert_eq!(s.tables.task_token(&job).await.unwrap().as_deref(), Some("token-submit"));
    s.tables.save_task_token(&job, "token-poll", TokenSave::Replace).await.unwrap();
    assert_eq!(s.tables.task_token(&job).await.unwrap().as_deref(), Some("token-poll"));
}

pub async fn a_users_jobs_page_newest_first_and_refuse_foreign_cursors(s: &Subject) {
    let user = account_with(s, 10).await;
    let other = account_with(s, 10).await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(job_through(s, &user, at(100 + i), &[]).await.job_id);
    }
    job_through(s, &other, at(200), &[]).await;

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut foreign = None;
    for _ in 0..10 {
        let listed = s.tables.jobs_of(&user, &JobFilter::default(), &page(2, cursor.clone())).await.unwrap();
        check_page(&listed, 2);
        seen.extend(listed.items.iter().map(|j| j.job_id.clone()));
        foreign = foreign.or(listed.next_cursor.clone());
        cursor = listed.next_cursor;
        if cursor.is_none() {
            break;
        }
    }

    made.reverse();
    assert_eq!(seen, made, "every job once, newest first");
    let stolen = s.tables.jobs_of(&other, &JobFilter::default(), &page(2, foreign)).await;
    assert_eq!(stolen, Err(ListError::BadCursor), "a cursor is good only for its own listing");
    assert_eq!(s.tables.jobs_of(&user, &JobFilter::default(), &page(2, Some("not a cursor".into()))).await, Err(ListError::BadCursor));
    assert_eq!(s.tables.active_jobs_of(&user).await.unwrap().len(), 5);

    let newest = s.tables.job(&made[0]).await.unwrap().unwrap();
    job_through_existing(s, newest, JobStatus::Submitted, at(300)).await;
    let mut statuses = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let listed = s.tables.statuses_of(&user, &page(2, cursor.clone())).await.unwrap();
        statuses.extend(listed.items);
        cursor = listed.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let queued = JobStatus::Queued;
    assert_eq!(statuses, [JobStatus::Submitted, queued, queued, queued, queued], "the statuses page like the jobs, newest first");
    assert_eq!(
        s.tables.jobs_of(&user, &JobFilter::default(), &page(1, None)).await.unwrap().items[0].status,
        JobStatus::Submitted,
        "a list reads each job as it is now"
    );
}

pub async fn filters_list_exactly_the_jobs_that_pass_them_page_by_page(s: &Subject) {
    // Arrange: six jobs of one user, told apart by status, type, tags, time and parent.
    let user = account_with(s, 20).await;
    let mut made: Vec<Job> = Vec::new();
    let parent = JobId::generate();
    for i in 0..6i64 {
        let mut new = new_job(&user, 1, at(1_000 + i));
        new.job.tags = match i % 3 {
            0 => vec!["promo".parse().unwrap(), "q4".parse().unwrap()],
            1 => vec!["q4".parse().unwrap()],
            _ => Vec::new(),
        };
        if i % 2 == 1 {
            let image = videojobs_core::model::request::ImageSource::Url("https://images.example.com/cat.png".into());
            new.job.params = JobParams::ImageToVideo { image, length_seconds: 4, frame_rate: 24, zoom_speed: 0.1 };
        }
        if i >= 4 {
            new.job.parent_job_id = Some(parent.clone());
        }
        assert_eq!(s.tables.create(&new).await.unwrap(), CreateOutcome::Created);
        let job = if i % 2 == 0 { job_through_existing(s, new.job, JobStatus::Canceled, at(1_100 + i)).await } else { new.job };
        made.push(job);
    }
    let all_pages = |filter: JobFilter| {
        let user = user.clone();
        async move {
            let mut seen = Vec::new();
            let mut cursor = None;
            for _ in 0..20 {
                let listed = s.tables.jobs_of(&user, &filter, &page(2, cursor.clone())).await.unwrap();
                assert!(listed.items.len() <= 2, "a page holds at most its limit");
                seen.extend(listed.items.iter().map(|j| j.job_id.clone()));
                cursor = listed.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            seen
        }
    };
    let filter = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        JobFilter::parse(|name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap()
    };
    let window_start = videojobs_core::model::job::timestamp::format(at(1_002));
    let window_end = videojobs_core::model::job::timestamp::format(at(1_005));
    let cases = [
        vec![("status", "canceled")],
        vec![("status", "queued,canceled"), ("tag", "q4")],
        vec![("workflow_type", "image_to_video")],
        vec![("tag", "promo")],
        vec![("parent_job_id", parent.as_str())],
        vec![("parent_job_id", parent.as_str()), ("status", "queued")],
        vec![("created_after", window_start.as_str()), ("created_before", window_end.as_str())],
        vec![("created_after", window_start.as_str()), ("tag", "q4"), ("workflow_type", "text_to_video")],
    ];
    for case in cases {
        let filter = filter(&case);
        let expected: Vec<JobId> = made.iter().rev().filter(|job| filter.matches(job)).map(|job| job.job_id.clone()).collect();

        // Act
        let listed = all_pages(filter).await;

        // Assert
        assert!(!expected.is_empty(), "{case:?} picks some job");
        assert_eq!(listed, expected, "{case:?}: every job that passes, once, newest first");
    }
    // A cursor from a window is refused outside it (DynamoDB would refuse its start key).
    let windowed = filter(&[("created_after", window_start.as_str())]);
    let first = s.tables.jobs_of(&user, &windowed, &page(1, None)).await.unwrap();
    let earlier = filter(&[("created_before", window_start.as_str())]);
    assert_eq!(s.tables.jobs_of(&user, &earlier, &page(1, first.next_cursor.clone())).await, Err(ListError::BadCursor));
    let other_parent = filter(&[("parent_job_id", JobId::generate().as_str())]);
    assert_eq!(s.tables.jobs_of(&user, &other_parent, &page(1, first.next_cursor)).await, Err(ListError::BadCursor));
}

pub async fn keys_list_oldest_first_and_a_revocation_sticks(s: &Subject) {
    let user = fresh_user();
    let principal = Principal { user_id: user.clone(), role: Role::User };
    let key = ApiKey::generate();
    let record = KeyRecord::new(principal.clone(), "contract", at(0), None);
    s.tables.save_key_record(&key.hash(), &record).await.unwrap();

    assert_eq!(s.tables.key_for(&key.hash()).await.unwrap(), Some(record.clone()));
    assert_eq!(s.tables.key_for(&ApiKey::generate().hash()).await.unwrap(), None);
    let revoked = s.tables.revoke_key(&record.key_id, at(10)).await.unwrap().unwrap();
    let again = s.tables.revoke_key(&record.key_id, at(20)).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(10)));
    assert_eq!(again.revoked_at, Some(at(10)), "revoked once, at the first time");
    assert_eq!(s.tables.key_for(&key.hash()).await.unwrap().unwrap().revoked_at, Some(at(10)), "the key's own item says so too");
    assert_eq!(s.tables.revoke_key(&KeyId::generate(), at(10)).await.unwrap(), None);

    // The listing: every key once, by key id; the cursor moves on.
    let mut listed_ids = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let listed = s.tables.list_keys(&page(50, cursor.clone())).await.unwrap();
        check_page(&listed, 50);
        listed_ids.extend(listed.items.iter().map(|k| k.key_id.clone()));
        cursor = listed.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(listed_ids.iter().filter(|id| **id == record.key_id).count(), 1);
    let mut sorted = listed_ids.clone();
    sorted.sort();
    assert_eq!(listed_ids, sorted, "ordered by key id");
    assert_eq!(s.tables.list_keys(&page(5, Some("bad".into()))).await, Err(ListError::BadCursor));
}

pub async fn accounts_open_once_and_grants_need_an_account(s: &Subject) {
    let user = fresh_user();
    assert!(s.tables.open_account(&user, 5).await.unwrap());
    assert!(!s.tables.open_account(&user, 50).await.unwrap(), "opened once");
    let granted = s.tables.grant_credits(&user, 7).await.unwrap();
    assert_eq!((granted.credits, granted.active_jobs), (12, 0));
    let nobody = s.tables.grant_credits(&fresh_user(), 7).await;
    assert!(matches!(nobody, Err(StoreError::Internal(_))), "no account to grant to: {nobody:?}");
}

pub async fn uploads_are_saved_once(s: &Subject) {
    let user = fresh_user();
    let id = UploadId::generate();
    let upload = Upload {
        upload_id: id.clone(),
        user_id: user.clone(),
        content_type: ImageType::Png,
        size_bytes: 1234,
        object_key: Upload::object_key_for(&user, &id),
        created_at: at(0),
    };
    s.tables.save_upload(&upload).await.unwrap();
    assert!(s.tables.save_upload(&upload).await.is_err(), "an upload id is taken once");
    assert_eq!(s.tables.upload(&id).await.unwrap(), Some(upload));
    assert_eq!(s.tables.upload(&UploadId::generate()).await.unwrap(), None);
}

pub async fn progress_details_only_move_forward_and_a_refresh_is_claimed_once_per_window(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[]).await;
    let queued = |seconds, position| ProgressDetail { stage: Stage::Queued, queue_position: Some(position), observed_at: at(seconds) };
    assert!(!s.tables.record_detail(&job.job_id, &queued(10, 3)).await.unwrap(), "not at the provider yet");
    assert!(!s.tables.claim_refresh(&job.job_id, at(10), 30).await.unwrap());

    let job = job_through_existing(s, job, JobStatus::Submitted, at(1)).await;
    assert!(s.tables.record_detail(&job.job_id, &queued(10, 3)).await.unwrap());
    assert!(!s.tables.record_detail(&job.job_id, &queued(9, 4)).await.unwrap(), "an older word is stale");
    assert!(!s.tables.record_detail(&job.job_id, &queued(10, 2)).await.unwrap(), "as is one of the same moment");
    assert!(s.tables.record_detail(&job.job_id, &queued(11, 2)).await.unwrap());
    let stored = s.tables.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!(stored.progress_detail, Some(queued(11, 2)));
    assert_eq!(stored.updated_at, at(1), "a provider's word is not a change of the job");

    assert!(s.tables.claim_refresh(&job.job_id, at(20), 30).await.unwrap());
    assert!(!s.tables.claim_refresh(&job.job_id, at(49), 30).await.unwrap(), "claimed in this window");
    assert!(s.tables.claim_refresh(&job.job_id, at(50), 30).await.unwrap(), "the next window");

    let processing = job_through_existing(s, job, JobStatus::Processing, at(60)).await;
    assert!(!s.tables.record_detail(&processing.job_id, &queued(70, 1)).await.unwrap(), "a queued word after processing began");
    let done = job_through_existing(s, processing, JobStatus::Failed, at(80)).await;
    assert_eq!(done.progress_detail, None, "it goes when the job leaves the provider");
}

pub async fn a_provider_switch_happens_only_before_a_provider_accepts(s: &Subject) {
    let user = account_with(s, 10).await;
    let fallback: ProviderName = "fal".parse().unwrap();
    let queued = job_through(s, &user, at(0), &[]).await;
    let switched = event(&queued, Some(JobStatus::Submitted), JobStatus::Submitted, at(5), "moved to fal");
    assert!(!s.tables.switch_provider(&queued.job_id, &provider(), &fallback, &switched).await.unwrap(), "only a submitted job moves");

    let job = job_through_existing(s, queued, JobStatus::Submitted, at(1)).await;
    assert!(!s.tables.switch_provider(&job.job_id, &fallback, &provider(), &switched).await.unwrap(), "not from the provider it has");
    assert!(s.tables.switch_provider(&job.job_id, &provider(), &fallback, &switched).await.unwrap());
    assert!(!s.tables.switch_provider(&job.job_id, &provider(), &fallback, &switched).await.unwrap(), "once");
    let stored = s.tables.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!((stored.provider.as_str(), stored.updated_at), ("fal", at(5)));
    assert!(s.tables.events(&job.job_id).await.unwrap().iter().any(|e| e.message == "moved to fal"));

    let accepted = JobUpdate { provider_request: Some(("fal".into(), "req-accepted".into())), ..JobUpdate::default() };
    assert!(s.tables.update_in_status(&job.job_id, JobStatus::Submitted, &accepted).await.unwrap());
    assert!(!s.tables.switch_provider(&job.job_id, &fallback, &provider(), &switched).await.unwrap(), "never after a provider accepted");
}

pub async fn rate_limit_windows_count_up_to_their_limit(s: &Subject) {
    let bucket = format!("requests#{}", KeyId::generate());
    for _ in 0..3 {
        assert!(s.tables.take(&bucket, 120, 60, 3).await.unwrap());
    }
    assert!(!s.tables.take(&bucket, 120, 60, 3).await.unwrap(), "the fourth hit in the window");
    assert!(s.tables.take(&bucket, 180, 60, 3).await.unwrap(), "the next window counts apart");
}

pub async fn webhook_secrets_are_created_once_and_rotated_from_the_expected_one(s: &Subject) {
    let user = fresh_user();
    assert_eq!(s.tables.webhook_secrets(&user).await.unwrap(), None);
    let first = s.tables.create_webhook_secret(&user, "whsec_first").await.unwrap();
    let racing = s.tables.create_webhook_secret(&user, "whsec_second").await.unwrap();
    assert_eq!((first.current.as_str(), racing.current.as_str()), ("whsec_first", "whsec_first"), "everyone gets the first");

    assert!(!s.tables.rotate_webhook_secret(&user, "whsec_second", "whsec_new", at(100)).await.unwrap(), "not the current one");
    assert!(s.tables.rotate_webhook_secret(&user, "whsec_first", "whsec_new", at(100)).await.unwrap());
    let rotated = s.tables.webhook_secrets(&user).await.unwrap().unwrap();
    assert_eq!(rotated.current, "whsec_new");
    assert_eq!(rotated.previous.as_deref(), Some("whsec_first"));
    assert_eq!(rotated.previous_valid_until, Some(at(100)));
}

pub async fn notifications_are_recorded_once_and_claims_are_leased(s: &Subject) {
    let job = JobId::generate();
    let user = fresh_user();
    let done = JobStatus::Completed;
    assert!(!s.tables.was_delivered(&job, done).await.unwrap());
    assert!(s.tables.record_delivery(&job, done, 1, 200).await.unwrap());
    assert!(!s.tables.record_delivery(&job, done, 2, 200).await.unwrap(), "recorded once");
    assert!(s.tables.was_delivered(&job, done).await.unwrap());

    // A short lease is only checked once it has run out (on AWS time passes
    // for real, so a check that it still holds would race the clock).
    let lease = Duration::from_secs(1);
    // Far longer than the case: no claim lapses before the clock is moved on purpose.
    let long = Duration::from_secs(600);
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "a", long).await.unwrap(), AttemptClaim::Taken);
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "a2", long).await.unwrap(), AttemptClaim::Held);
    s.tables.release_attempt(&job, done, "b").await.unwrap();
    s.tables.finish_attempt(&job, done, 1, "b").await.unwrap();
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "a2", long).await.unwrap(), AttemptClaim::Held, "only the holder gives it back");
    s.tables.release_attempt(&job, done, "a").await.unwrap();
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "b", long).await.unwrap(), AttemptClaim::Taken, "released, not made");
    s.tables.finish_attempt(&job, done, 1, "b").await.unwrap();
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "c", long).await.unwrap(), AttemptClaim::AlreadyMade, "a copy of attempt 1");
    assert_eq!(s.tables.claim_attempt(&job, done, 2, "b", long).await.unwrap(), AttemptClaim::Taken, "the next attempt");
    assert_eq!(s.tables.claim_attempt(&job, done, 2, "b", long).await.unwrap(), AttemptClaim::Taken, "its own write, sent again");
    s.tables.finish_attempt(&job, done, 2, "b").await.unwrap();
    assert_eq!(s.tables.claim_attempt(&job, done, 1, "d", long).await.unwrap(), AttemptClaim::AlreadyMade, "older than the last made");
    assert_eq!(s.tables.claim_attempt(&job, done, 3, "d", lease).await.unwrap(), AttemptClaim::Taken);

    let mut slots = Vec::new();
    for holder in ["h1", "h2", "h3"] {
        slots.push(s.tables.claim_user_slot(&user, 2, holder, long).await.unwrap());
    }
    assert!(slots[0].is_some() && slots[1].is_some() && slots[0] != slots[1]);
    assert_eq!(slots[2], None, "both slots held");
    // Another user's slots, under short leases that are left to run out.
    let hurried = fresh_user();
    let mut short_slots = Vec::new();
    for holder in ["s1", "s2"] {
        short_slots.push(s.tables.claim_user_slot(&hurried, 2, holder, lease).await.unwrap());
    }
    assert!(short_slots[0].is_some() && short_slots[1].is_some() && short_slots[0] != short_slots[1]);

    // A lease runs out: in whole seconds, after `lease_until < now`.
    s.time.pass(Duration::from_millis(2_100)).await;
    assert_eq!(s.tables.claim_attempt(&job, done, 3, "c", long).await.unwrap(), AttemptClaim::Taken, "a lapsed claim is taken over");
    s.tables.finish_attempt(&job, done, 3, "d").await.unwrap();
    assert_eq!(s.tables.claim_attempt(&job, done, 3, "e", long).await.unwrap(), AttemptClaim::Held, "the late holder records nothing");
    assert!(s.tables.claim_user_slot(&hurried, 2, "s3", long).await.unwrap().is_some(), "a lapsed slot is taken over");
    assert_eq!(s.tables.claim_user_slot(&user, 2, "h3", long).await.unwrap(), None, "long leases still hold");
}

pub async fn the_review_queue_lists_completed_jobs_oldest_first(s: &Subject) {
    let user = account_with(s, 10).await;
    let path = [JobStatus::Submitted, JobStatus::Processing, JobStatus::Completed];
    let newer = job_through(s, &user, at(30), &path).await;
    let older = job_through(s, &user, at(10), &path).await;
    let reviewed = job_through(s, &user, at(20), &path).await;
    job_through_existing(s, reviewed.clone(), JobStatus::Approved, at(40)).await;

    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let listed = s.review.waiting(&page(2, cursor.clone())).await.unwrap();
        assert!(listed.items.len() <= 2);
        assert!(listed.items.iter().all(|j| j.status == JobStatus::Completed));
        seen.extend(listed.items.into_iter().map(|j| j.job_id));
        cursor = listed.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mine: Vec<JobId> = seen.into_iter().filter(|id| [&newer.job_id, &older.job_id, &reviewed.job_id].contains(&id)).collect();
    assert_eq!(mine, vec![older.job_id, newer.job_id], "oldest completion first; a reviewed job leaves the queue");
    assert_eq!(s.review.waiting(&page(2, Some("bad".into()))).await, Err(ListError::BadCursor));
}

// ------------------------------------------------------------- counters and indexes (isolated)

pub async fn counters_move_with_the_writes_they_count(s: &Subject) {
    let user = account_with(s, 10).await;
    let before = s.tables.counters().await.unwrap();
    let queued = job_through(s, &user, at(0), &[]).await;
    job_through_existing(s, queued.clone(), JobStatus::Submitted, at(1)).await;
    let refused = new_job(&fresh_user(), 1, at(0));
    assert_eq!(s.tables.create(&refused).await.unwrap(), CreateOutcome::NoAccount);
    let repeated = s.tables.change_status(&change(&queued, JobStatus::Submitted, at(9), JobUpdate::default())).await.unwrap();
    assert_eq!(repeated, ChangeOutcome::StatusWas(JobStatus::Submitted), "a refused change counts nothing");
    s.tables.count_duplicate_callback("local").await.unwrap();

    let after = s.tables.counters().await.unwrap();
    let moved = |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    assert_eq!(moved("jobs.queued"), 0, "created queued, then left it");
    assert_eq!(moved("jobs.submitted"), 1);
    assert_eq!(moved("duplicate_callbacks"), 1);
}

pub async fn forgetting_an_output_takes_its_bytes_off_the_counters_once(s: &Subject) {
    let user = account_with(s, 10).await;
    let job = job_through(s, &user, at(0), &[JobStatus::Submitted, JobStatus::Processing]).await;
    let output = videojobs_core::model::job::Artifact {
        video_key: format!("outputs/{}.mp4", job.job_id),
        thumbnail_key: None,
        thumbnail_size_bytes: None,
        mime_type: "video/mp4".into(),
        size_bytes: 1_000,
        duration_seconds: 4.0,
        width: 640,
        height: 360,
    };
    let before = s.tables.counters().await.unwrap();
    let stored = JobUpdate { output: Some(output), completed_at: Some(at(10)), ..JobUpdate::default() };
    assert_eq!(s.tables.change_status(&change(&job, JobStatus::Completed, at(10), stored)).await.unwrap(), ChangeOutcome::Applied);
    let video_bytes = |counters: &videojobs_core::model::stats::Counters| counters.get("bytes.video").copied().unwrap_or(0);
    assert_eq!(video_bytes(&s.tables.counters().await.unwrap()) - video_bytes(&before), 1_000);

    let forget = JobUpdate { remove_output: true, ..JobUpdate::default() };
    let stale = JobUpdate { remove_output: true, only_in_attempt: Some(5), ..JobUpdate::default() };
    assert!(!s.tables.update_in_status(&job.job_id, JobStatus::Approved, &forget).await.unwrap(), "not in that status");
    assert!(!s.tables.update_in_status(&job.job_id, JobStatus::Completed, &stale).await.unwrap(), "fenced to an attempt that never began");
    assert!(s.tables.job(&job.job_id).await.unwrap().unwrap().output.is_some(), "the fenced removal left the output");
    assert!(s.tables.update_in_status(&job.job_id, JobStatus::Completed, &forget).await.unwrap());
    assert!(s.tables.update_in_status(&job.job_id, JobStatus::Completed, &forget).await.unwrap(), "nothing left to forget: no error");

    assert_eq!(s.tables.job(&job.job_id).await.unwrap().unwrap().output, None);
    assert_eq!(video_bytes(&s.tables.counters().await.unwrap()), video_bytes(&before), "taken off once");
}

pub async fn stuck_jobs_are_counted_and_listed_oldest_first(s: &Subject) {
    let user = account_with(s, 10).await;
    let oldest = job_through(s, &user, at(0), &[JobStatus::Submitted]).await;
    let middle = job_through(s, &user, at(10), &[JobStatus::Submitted]).await;
    let recent = job_through(s, &user, at(1000), &[JobStatus::Submitted]).await;
    let moved_on = job_through(s, &user, at(5), &[JobStatus::Submitted, JobStatus::Processing]).await;

    let page = s.tables.stuck_jobs(JobStatus::Submitted, at(500), 1).await.unwrap();
    let processing = s.tables.stuck_jobs(JobStatus::Processing, at(500), 10).await.unwrap();

    assert_eq!(page.count, 2, "both old submitted jobs are counted");
    assert_eq!(page.oldest.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), vec![oldest.job_id.clone()], "the oldest listed");
    assert_eq!(page.oldest[0].updated_at, at(1));
    assert_eq!(page.oldest[0].provider, "local");
    assert_eq!(processing.oldest.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), vec![moved_on.job_id]);
    let _ = (middle, recent);
}

pub async fn only_a_change_of_status_or_progress_takes_a_job_off_the_stuck_list(s: &Subject) {
    let user = account_with(s, 10).await;
    let bookkept = job_through(s, &user, at(0), &[JobStatus::Submitted]).await;
    let progressed = job_through(s, &user, at(0), &[JobStatus::Submitted]).await;
    let bookkeeping = JobUpdate { provider_request: Some(("local".into(), "req-stuck".into())), ..JobUpdate::default() };

    assert!(s.tables.update_in_status(&bookkept.job_id, JobStatus::Submitted, &bookkeeping).await.unwrap());
    s.tables.raise_progress(&progressed.job_id, 40).await.unwrap();
    let page = s.tables.stuck_jobs(JobStatus::Submitted, at(500), 10).await.unwrap();

    assert_eq!(page.count, 1, "the job with news is no longer stuck");
    assert_eq!(page.oldest.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), vec![bookkept.job_id]);
    assert_eq!(page.oldest[0].updated_at, at(1), "still since its change of status");
}

// ------------------------------------------------------------- SQS

fn marker() -> WorkMessage {
    WorkMessage::Finalize { job_id: JobId::generate() }
}

fn body(message: &WorkMessage) -> String {
    serde_json::to_string(message).unwrap()
}

pub async fn the_queue_redelivers_until_deleted(s: &Subject) {
    // A message being handled is invisible: under a visibility far longer
    // than the case, so that no stall can bring it back before the check.
    let handled_long = marker();
    s.queue.enqueue(&handled_long).await.unwrap();
    let taken = s.queue.receive(Duration::from_secs(600)).await;
    assert_eq!(taken.iter().map(|d| (d.body.clone(), d.receive_count)).collect::<Vec<_>>(), vec![(body(&handled_long), 1)]);
    assert_eq!(s.queue.receive(Duration::from_secs(600)).await, vec![], "invisible while being handled");
    s.queue.delete(&taken[0].receipt_handle).await;

    // Under a short visibility, checked only once it has run out: a message
    // not deleted comes back, a deleted one never does.
    let (kept, done) = (marker(), marker());
    s.queue.enqueue(&kept).await.unwrap();
    s.queue.enqueue(&done).await.unwrap();
    let visibility = Duration::from_secs(1);

    let first = s.queue.receive(visibility).await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|d| d.receive_count == 1));
    let handled = first.iter().find(|d| d.body == body(&done)).unwrap();
    s.queue.delete(&handled.receipt_handle).await;

    s.time.pass(Duration::from_millis(2_100)).await;
    let again = s.queue.receive(visibility).await;
    assert_eq!(
        again.iter().map(|d| (d.body.clone(), d.receive_count)).collect::<Vec<_>>(),
        vec![(body(&kept), 2)],
        "not deleted: delivered again"
    );
    s.queue.delete(&again[0].receipt_handle).await;
    s.time.pass(Duration::from_millis(2_100)).await;
    assert_eq!(s.queue.receive(visibility).await, vec![], "deleted for good");
}

pub async fn a_delayed_message_waits_its_delay(s: &Subject) {
    // Not before its delay: SQS's longest (15 minutes), far longer than the case.
    let far = marker();
    s.queue.enqueue_after(&far, Duration::from_secs(900)).await.unwrap();
    assert_eq!(s.queue.receive(Duration::from_secs(30)).await, vec![], "not before its delay");
    // Delivered after it: a short delay, checked only once it is over.
    let soon = marker();
    s.queue.enqueue_after(&soon, Duration::from_secs(2)).await.unwrap();
    s.time.pass(Duration::from_millis(3_100)).await;
    let delivered = s.queue.receive(Duration::from_secs(30)).await;
    assert_eq!(delivered.iter().map(|d| d.body.clone()).collect::<Vec<_>>(), vec![body(&soon)], "the far one still waits");
}

// ------------------------------------------------------------- S3 and Step Functions

/// Any bytes copy (the MP4 probe's findings are the probe's own tests).
const VIDEO: &[u8] = b"not really a video, but bytes all the same";

pub async fn outputs_are_copied_unreviewed_kept_untagged_and_deleted(s: &Subject) {
    let url = s.objects.source_url(VIDEO).await;
    let key = format!("outputs/contract/{}.mp4", JobId::generate());
    let copied = s.objects.copy_from_url(&url, &key, "video/mp4").await.unwrap();
    assert_eq!(copied.size_bytes, VIDEO.len() as u64);
    assert_eq!(copied.sha256, sha256_hex(VIDEO));
    assert_eq!(s.objects.tags(&key).await, Some(vec![("videojobs-retention".into(), "unreviewed".into())]));
    assert_eq!(s.objects.object_size(&key).await.unwrap(), Some(VIDEO.len() as u64));

    s.objects.keep(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(s.objects.tags(&key).await, Some(vec![]), "kept: no tag left for the safety net's rule to match");
    s.objects.keep(std::slice::from_ref(&key)).await.expect("keeping an object kept already changes nothing");
    assert_eq!(s.objects.tags(&key).await, Some(vec![]));
    let missing = format!("outputs/contract/{}.mp4", JobId::generate());
    s.objects.keep(std::slice::from_ref(&missing)).await.expect("a missing object is skipped: nothing there to keep");
    assert_eq!(s.objects.tags(&missing).await, None);

    s.objects.delete(&[key.clone(), missing]).await.unwrap();
    assert_eq!(s.objects.tags(&key).await, None);
    assert_eq!(s.objects.object_size(&key).await.unwrap(), None);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

pub async fn media_objects_are_measured_read_by_prefix_and_copied(s: &Subject) {
    let key = format!("uploads/contract/{}", JobId::generate());
    assert_eq!(s.objects.object_size(&key).await.unwrap(), None);
    assert_eq!(s.objects.read_prefix(&key, 4).await.unwrap(), None);
    s.objects.put(&key, b"\x89PNG and the rest").await;
    assert_eq!(s.objects.object_size(&key).await.unwrap(), Some(17));
    assert_eq!(s.objects.read_prefix(&key, 4).await.unwrap().as_deref(), Some(&b"\x89PNG"[..]));
    assert_eq!(s.objects.read_prefix(&key, 100).await.unwrap().map(|b| b.len()), Some(17), "a short object reads whole");
    let put = s.objects.presign_put(&key, 17, 300).await.unwrap();
    assert_eq!(put.method, "PUT");
    assert!(put.url.contains(&key.rsplit('/').next().unwrap().to_owned()));
    // A copy is the object as it was when copied: a later PUT to the original leaves it alone.
    let copy = format!("uploads/checked/{}", JobId::generate());
    s.objects.copy_object(&key, &copy).await.unwrap();
    s.objects.put(&key, b"something else").await;
    assert_eq!(s.objects.read_prefix(&copy, 100).await.unwrap().as_deref(), Some(&b"\x89PNG and the rest"[..]));
    assert!(s.objects.copy_object(&format!("uploads/contract/{}", JobId::generate()), &copy).await.is_err(), "nothing to copy");
}

pub async fn workflows_start_and_stop_idempotently_and_unknown_tokens_are_no_error(s: &Subject) {
    let input =
        WorkflowInput { job_id: JobId::generate(), workflow_type: "text_to_video".into(), deadline_seconds: 600, retention_seconds: 3600 };
    s.workflows.start(&input).await.unwrap();
    s.workflows.start(&input).await.unwrap();
    s.workflows.stop(&input.job_id, "contract").await.unwrap();
    s.workflows.stop(&input.job_id, "contract").await.unwrap();
    s.workflows.stop(&JobId::generate(), "never started").await.unwrap();
    s.tasks.succeed("no-such-token", &serde_json::json!({})).await.unwrap();
    s.tasks.fail("no-such-token", "Gone", "nobody waits").await.unwrap();
}

/// The adapter reports `Ok` for an answer that comes too late (the task was
/// answered, or the execution ended): a redelivered message must not fail.
pub async fn a_task_token_answered_again_is_no_error(s: &Subject) {
    let input =
        WorkflowInput { job_id: JobId::generate(), workflow_type: "text_to_video".into(), deadline_seconds: 600, retention_seconds: 3600 };
    s.workflows.start(&input).await.unwrap();
    let token = s.tokens.waiting_token(&input.job_id).await;

    s.tasks.succeed(&token, &serde_json::json!({"stored": true})).await.unwrap();
    s.tasks.succeed(&token, &serde_json::json!({"stored": true})).await.unwrap();
    s.tasks.fail(&token, "Late", "a redelivered message").await.unwrap();
    s.workflows.stop(&input.job_id, "contract").await.unwrap();
    s.tasks.succeed(&token, &serde_json::json!({})).await.unwrap();
}

// ------------------------------------------------------------- the in-memory subject

#[async_trait]
impl TokenSource for crate::Memory {
    async fn waiting_token(&self, job: &JobId) -> String {
        assert!(self.execution(job).is_some(), "the execution was started");
        self.issue_task_token(job)
    }
}

#[async_trait]
impl Time for crate::VirtualClock {
    async fn pass(&self, by: Duration) {
        self.advance(by);
    }

    fn can_pass(&self, _: Duration) -> bool {
        true
    }
}

#[async_trait]
impl QueueUnderTest for crate::WorkQueueHandle {
    async fn receive(&self, visibility: Duration) -> Vec<Delivery> {
        self.memory()
            .receive(self.name(), 10, visibility)
            .into_iter()
            .map(|r| Delivery { body: r.body, receipt_handle: r.receipt_handle, receive_count: r.receive_count })
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) {
        self.memory().delete(self.name(), receipt_handle);
    }
}

#[async_trait]
impl ObjectsUnderTest for crate::Memory {
    async fn source_url(&self, bytes: &[u8]) -> String {
        let url = format!("https://provider.example/outputs/{}.mp4", JobId::generate());
        self.serve(&url, crate::WebResource::Body { bytes: bytes.to_vec(), sha256: None });
        url
    }

    async fn put(&self, key: &str, bytes: &[u8]) {
        self.put_object(key, bytes, "application/octet-stream");
    }

    async fn tags(&self, key: &str) -> Option<Vec<(String, String)>> {
        self.object(key).map(|o| o.tags.into_iter().collect())
    }
}

/// The contract's subject on a fresh in-memory world.
pub fn memory_subject(memory: &crate::Memory) -> Subject {
    Subject {
        tables: Arc::new(memory.clone()),
        review: Arc::new(memory.clone()),
        queue: Arc::new(memory.queue(crate::QueueName::Work)),
        objects: Arc::new(memory.clone()),
        workflows: Arc::new(memory.clone()),
        tasks: Arc::new(memory.clone()),
        tokens: Arc::new(memory.clone()),
        time: Arc::new(memory.clock().clone()),
    }
}
