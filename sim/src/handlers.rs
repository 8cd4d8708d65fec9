//! The pipeline's rules as the simulator runs them: the worker's messages,
//! the webhook's callbacks, the API's creates, cancels, reviews and reads,
//! and the scheduled check, each written against the world through port
//! calls (yield points) in the order core's rules make them today
//! (`services::pipeline`, `services::callbacks`, `services` and its review,
//! `services::notifying::NotifyingJobs`). The lifecycle, the notification
//! ids and what is notified are core's own functions.

use crate::exec::{Ctx, Ended, Unavailable};
use crate::world::*;
use crate::Fix;
use std::rc::Rc;
use videojobs_core::model::lifecycle::{transition, JobStatus};
use videojobs_core::model::notify::{is_notified, message_id};
use videojobs_core::model::work::WorkMessage;

pub const PROVIDER_BUSY: &str = "ProviderBusy";
pub const PROVIDER_REFUSED: &str = "ProviderRefused";
pub const JOB_ENDED: &str = "JobEnded";
pub const STILL_RUNNING: &str = "StillRunning";
const MAX_SUBMISSIONS: u32 = 5;
const POLL_ROUNDS: u32 = 4;
const POLL_WAITS: [Secs; 3] = [5, 10, 20];
const NOTIFY_ATTEMPTS: u32 = 8;
/// A client's endpoint fails at most this many times per notification.
const CLIENT_FAILURES: u32 = 3;

enum Fail {
    Retry(String),
    Unusable(String),
}

impl From<Unavailable> for Fail {
    fn from(_: Unavailable) -> Self {
        Fail::Retry("a store or service was unavailable".into())
    }
}

type R<T = ()> = Result<T, Fail>;

fn ended(result: R) -> Ended {
    match result {
        Ok(()) => Ended::Ok,
        Err(Fail::Retry(why)) => Ended::Retry(why),
        Err(Fail::Unusable(why)) => Ended::Unusable(why),
    }
}

/// What a provider's API answered.
enum Answer<T> {
    Ok(T),
    Transient,
    Refused,
    NotFound,
}

pub async fn work(ctx: Rc<Ctx>, message: WorkMessage) -> Ended {
    let c = &ctx;
    ended(match message {
        WorkMessage::Submit { job_id, task_token, attempt } => submit(c, job_id.as_str(), task_token, attempt.unwrap_or(1).max(1)).await,
        WorkMessage::Finalize { job_id } => finalize(c, job_id.as_str()).await,
        WorkMessage::Poll { job_id, task_token, round } => poll(c, job_id.as_str(), task_token, round.unwrap_or(1)).await,
        WorkMessage::AwaitReview { job_id, task_token } => await_review(c, job_id.as_str(), task_token).await,
        WorkMessage::Expire { job_id } => expire(c, job_id.as_str()).await,
        WorkMessage::GiveUp { job_id, error } => give_up(c, job_id.as_str(), error.as_deref()).await,
        WorkMessage::CancelAtProvider { job_id } => cancel_at_provider(c, job_id.as_str()).await,
        WorkMessage::DiscardOutput { job_id } => discard_output(c, job_id.as_str()).await,
        WorkMessage::KeepOutput { job_id } => keep_output(c, job_id.as_str()).await,
        WorkMessage::Refresh { job_id } => refresh(c, job_id.as_str()).await,
        WorkMessage::Notify { job_id, status, attempt, .. } => notify(c, job_id.as_str(), status, attempt).await,
    })
}

async fn load(ctx: &Ctx, id: &str) -> R<JobRec> {
    ctx.read(|w| w.job(id).cloned()).await?.ok_or_else(|| Fail::Unusable(format!("no job {id}")))
}

/// `move_job` through `NotifyingJobs`: the status change, then (a write of
/// its own) the notification, which is lost when it cannot be queued.
async fn move_job(
    ctx: &Ctx,
    job: &mut JobRec,
    to: JobStatus,
    fence: Option<u32>,
    set_attempt: Option<u32>,
    output: Option<String>,
) -> R<bool> {
    if transition(job.status, to).is_err() {
        return Ok(false);
    }
    let (id, from) = (job.id.to_string(), job.status);
    let changed = ctx
        .write(|w| {
            let outcome = w.change_status(&id, from, to, fence, set_attempt);
            if outcome == Change::Applied && w.job(&id).is_some_and(|j| j.webhook) && is_notified(to) {
                w.owed_notifications.insert((id.clone(), to.as_str()));
            }
            if outcome == Change::Applied {
                if let Some(j) = w.jobs.get_mut(&id) {
                    if output.is_some() {
                        j.output = output.clone();
                        j.completed_at = Some(w.now);
                    }
                }
            }
            outcome
        })
        .await?;
    match changed {
        Change::Applied => {
            job.status = to;
            if let Some(n) = set_attempt {
                job.attempt = n;
            }
            if job.webhook && is_notified(to) {
                queue_notification(ctx, job, to).await;
            }
            Ok(true)
        }
        Change::StatusWas(now) => {
            job.status = now;
            Ok(false)
        }
        Change::NotFound => Err(Fail::Unusable(format!("no job {id}"))),
    }
}

async fn queue_notification(ctx: &Ctx, job: &JobRec, status: JobStatus) {
    for _ in 0..3 {
        let message = WorkMessage::Notify { job_id: job.id.clone(), status, attempt: 1, not_before: None };
        let queued = ctx.write(|w| {
            w.enqueue(QueueName::Notify, message, 0);
            w.queued_notifications.insert((job.id.to_string(), status.as_str()));
        });
        if queued.await.is_ok() {
            return;
        }
    }
}

async fn answer_task(ctx: &Ctx, id: &str, outcome: Result<(), &'static str>) -> R {
    let Some(token) = ctx.read(|w| w.job(id).and_then(|j| j.task_token.clone())).await? else { return Ok(()) };
    ctx.write(|w| w.answer(&token, outcome)).await?;
    Ok(())
}

async fn fail_job(ctx: &Ctx, job: &mut JobRec, task_error: &'static str) -> R {
    for _ in 0..3 {
        if move_job(ctx, job, JobStatus::Failed, None, None, None).await? {
            break;
        }
        if transition(job.status, JobStatus::Failed).is_err() {
            break;
        }
    }
    answer_task(ctx, job.id.as_str(), Err(task_error)).await
}

// ---------------------------------------------------------------- the provider

async fn provider_submit(ctx: &Ctx, job: &JobRec, n: u32, resumed: bool) -> Answer<String> {
    let id = job.id.clone();
    ctx.call(|w, rng| {
        let current = w.job(id.as_str()).map(|j| (j.attempt, j.status));
        if resumed {
            w.resumed_attempts.insert((id.to_string(), n));
        }
        if current.is_some_and(|(attempt, _)| attempt != n) {
            // A copy resumed the attempt while the copy it took for dead was
            // alive (this copy, or the claimer whose attempt it took over).
            let known = w.resumed_attempts.contains(&(id.to_string(), n)).then_some(crate::invariants::GAP_RESUMED_DUPLICATE);
            w.breaches.push((format!("a provider request from stale attempt {n} of {id} (current: {current:?})"), known));
        }
        w.log.push(format!("  provider: submit {id} attempt {n}{} (job now {current:?})", if resumed { ", resumed" } else { "" }));
        // The job id is the idempotency key: a resubmission finds its request.
        if let Some((request, _)) = w.requests.iter().find(|(_, r)| r.job == id) {
            return Answer::Ok(request.clone());
        }
        match rng.weighted(&[75, 15, 3, 7]) {
            1 => return Answer::Transient,
            2 => return Answer::Refused,
            _ => {}
        }
        let request = format!("req{}", w.requests.len() + 1);
        let outcome = [Outcome::Succeeds, Outcome::Fails, Outcome::Unusable, Outcome::Lost][rng.weighted(&[85, 7, 3, 5])];
        let duration = [rng.between(5, 120), rng.between(120, 800), rng.between(900, 1_500)][rng.weighted(&[50, 40, 10])];
        w.requests.insert(
            request.clone(),
            ProviderRequest { job: id.clone(), state: ProviderState::Running, finishes_at: w.now + duration, outcome },
        );
        if !rng.percent(10) {
            let at = w.now + rng.between(0, 20);
            let event_id = w.new_event_id();
            w.callbacks.push(Callback { at, event_id, request_id: request.clone(), finished: None, tries: 0 });
        }
        // Accepted, but the answer was lost: the next attempt finds it by its key.
        if rng.weighted(&[93, 7]) == 1 {
            return Answer::Transient;
        }
        Answer::Ok(request)
    })
    .await
}

async fn provider_poll(ctx: &Ctx, request: &str) -> Answer<ProviderState> {
    ctx.call(|w, rng| {
        if rng.percent(w_faults(w)) {
            return Answer::Transient;
        }
        match w.requests.get(request).map(|r| r.state) {
            None | Some(ProviderState::Lost) => Answer::NotFound,
            Some(state) => Answer::Ok(state),
        }
    })
    .await
}

async fn provider_cancel(ctx: &Ctx, request: &str) -> Answer<()> {
    ctx.call(|w, rng| {
        if rng.percent(w_faults(w)) {
            return Answer::Transient;
        }
        match w.requests.get_mut(request) {
            Some(r) if r.state == ProviderState::Running => {
                r.state = ProviderState::Canceled;
                Answer::Ok(())
            }
            Some(_) => Answer::Refused,
            None => Answer::NotFound,
        }
    })
    .await
}

/// The provider's own error rate follows the run's phase.
fn w_faults(w: &World) -> u64 {
    if w.calm {
        0
    } else {
        10
    }
}

// ---------------------------------------------------------------- submission

async fn submit(ctx: &Ctx, id: &str, token: Option<String>, n: u32) -> R {
    if let Some(token) = token {
        ctx.write(|w| {
            if let Some(j) = w.jobs.get_mut(id) {
                j.task_token.get_or_insert(token);
            }
        })
        .await?;
    }
    let mut job = load(ctx, id).await?;
    let resumed = matches!(job.status, JobStatus::Submitted | JobStatus::Processing);
    match (job.status, job.attempt) {
        (JobStatus::Queued, 0) | (JobStatus::Retrying, _)
            if (n == 1 && job.status == JobStatus::Queued) || (n >= 2 && job.attempt == n - 1) =>
        {
            if !move_job(ctx, &mut job, JobStatus::Submitted, Some(n - 1), Some(n), None).await? {
                // Another copy took the attempt: if it has not stored the
                // request id yet, come back in case it dies (its message
                // would be deleted by this copy's success).
                let job = load(ctx, id).await?;
                let resumable =
                    matches!(job.status, JobStatus::Submitted | JobStatus::Processing) && job.attempt == n && job.request_id.is_none();
                if resumable && ctx.rules.has(Fix::LostClaimComesBack) {
                    return Err(Fail::Retry("another copy of this attempt has not finished".into()));
                }
                return Ok(());
            }
        }
        (JobStatus::Submitted, a) if a == n && job.request_id.is_none() => {}
        (JobStatus::Processing, a) if a == n && job.request_id.is_none() && ctx.rules.has(Fix::RequestIdInProcessing) => {}
        (JobStatus::Retrying, a) if a == n => return queue_retry(ctx, id, n).await,
        _ => return Ok(()),
    }
    let _prompt = ctx.read(|w| w.job(id).map(|j| j.created_at)).await?;
    match provider_submit(ctx, &job, n, resumed).await {
        Answer::Ok(request) => {
            let provider_owner = (request.clone(), id.to_owned());
            ctx.write(|w| w.owners.insert(provider_owner.0, provider_owner.1)).await?;
            let store_in = |status: JobStatus| {
                let request = request.clone();
                move |w: &mut World| match w.jobs.get_mut(id) {
                    Some(j) if j.status == status && j.attempt == n => {
                        j.request_id = Some(request);
                        true
                    }
                    _ => false,
                }
            };
            // In submitted, or in processing where a progress callback moved it meanwhile.
            let stored = ctx.write(store_in(JobStatus::Submitted)).await?
                || (ctx.rules.has(Fix::RequestIdInProcessing) && ctx.write(store_in(JobStatus::Processing)).await?);
            if !stored {
                let _ = provider_cancel(ctx, &request).await;
                return Ok(());
            }
            if ctx.read(|w| w.early.contains(&request)).await? {
                refresh(ctx, id).await?;
            }
            Ok(())
        }
        Answer::Transient if n < MAX_SUBMISSIONS => {
            if move_job(ctx, &mut job, JobStatus::Retrying, Some(n), None, None).await? {
                queue_retry(ctx, id, n).await?;
            } else {
                job = load(ctx, id).await?;
                let _ = job;
            }
            Ok(())
        }
        Answer::Transient => fail_attempt(ctx, &mut job, n, PROVIDER_BUSY).await,
        Answer::Refused => fail_attempt(ctx, &mut job, n, PROVIDER_REFUSED).await,
        Answer::NotFound => Err(Fail::Retry("provider not found".into())),
    }
}

async fn queue_retry(ctx: &Ctx, id: &str, n: u32) -> R {
    let ceiling = (2i64 << (n - 1).min(16)).min(60);
    let wait = ctx.between(1, ceiling.max(1));
    let job_id = ctx.read(|w| w.job(id).map(|j| j.id.clone())).await?.ok_or_else(|| Fail::Unusable("no job".into()))?;
    let next = WorkMessage::Submit { job_id, task_token: None, attempt: Some(n + 1) };
    ctx.write(|w| w.enqueue(QueueName::Work, next, wait)).await?;
    Ok(())
}

async fn fail_attempt(ctx: &Ctx, job: &mut JobRec, n: u32, task_error: &'static str) -> R {
    if !move_job(ctx, job, JobStatus::Failed, Some(n), None, None).await? {
        return Ok(());
    }
    answer_task(ctx, job.id.as_str(), Err(task_error)).await
}

// ---------------------------------------------------------------- finishing

async fn finalize(ctx: &Ctx, id: &str) -> R {
    let mut job = load(ctx, id).await?;
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) {
        return Ok(());
    }
    // Not stored yet (the submission recorded the owner, the webhook found it,
    // and the submission may have died before storing the id): come back.
    let Some(request) = job.request_id.clone() else {
        if !ctx.rules.has(Fix::FinalizeWaitsForRequestId) {
            return Err(Fail::Unusable("the job has no provider request".into()));
        }
        return Err(Fail::Retry("the provider's request id is not stored yet".into()));
    };
    match provider_poll(ctx, &request).await {
        Answer::Ok(state) => settle(ctx, &mut job, state).await,
        Answer::Transient => Err(Fail::Retry("provider unavailable".into())),
        _ => Err(Fail::Unusable("provider does not know the request".into())),
    }
}

async fn settle(ctx: &Ctx, job: &mut JobRec, state: ProviderState) -> R {
    match state {
        ProviderState::Succeeded | ProviderState::Unusable => complete(ctx, job, state == ProviderState::Succeeded).await,
        ProviderState::Failed | ProviderState::Canceled | ProviderState::Lost => fail_job(ctx, job, JOB_ENDED).await,
        ProviderState::Running => Ok(()),
    }
}

async fn complete(ctx: &Ctx, job: &mut JobRec, playable: bool) -> R {
    if !playable {
        return fail_job(ctx, job, JOB_ENDED).await;
    }
    let key = format!("outputs/{}/video.mp4", job.id);
    let put = key.clone();
    ctx.write(|w| {
        let now = w.now;
        w.objects.insert(put, (false, now));
    })
    .await?;
    if job.status == JobStatus::Submitted {
        move_job(ctx, job, JobStatus::Processing, None, None, None).await?;
    }
    let done = move_job(ctx, job, JobStatus::Completed, None, None, Some(key.clone())).await?;
    if !done && job.status != JobStatus::Completed {
        if !ctx.rules.has(Fix::SecondCompleterKeepsTheVideo) {
            ctx.write(|w| w.objects.remove(&key)).await?;
            return Ok(());
        }
        // The key is fixed: another completer's job may point at this very object.
        let current = load(ctx, job.id.as_str()).await?;
        match current.output {
            None => {
                ctx.write(|w| w.objects.remove(&key)).await?;
            }
            Some(_) if current.status == JobStatus::Approved => {
                ctx.write(|w| {
                    if let Some(object) = w.objects.get_mut(&key) {
                        object.0 = true;
                    }
                })
                .await?;
            }
            Some(_) => {}
        }
        return Ok(());
    }
    answer_task(ctx, job.id.as_str(), Ok(())).await
}

async fn refresh(ctx: &Ctx, id: &str) -> R {
    let mut job = load(ctx, id).await?;
    let Some(request) = job.request_id.clone().filter(|_| matches!(job.status, JobStatus::Submitted | JobStatus::Processing)) else {
        return Ok(());
    };
    match provider_poll(ctx, &request).await {
        Answer::Ok(ProviderState::Running) => {
            if job.status == JobStatus::Submitted {
                move_job(ctx, &mut job, JobStatus::Processing, None, None, None).await?;
            }
            Ok(())
        }
        Answer::Ok(state) => settle(ctx, &mut job, state).await,
        _ => Ok(()),
    }
}

async fn poll(ctx: &Ctx, id: &str, token: Option<String>, round: u32) -> R {
    if let Some(token) = token {
        ctx.write(|w| {
            if let Some(j) = w.jobs.get_mut(id) {
                j.task_token = Some(token);
            }
        })
        .await?;
    }
    if ctx.read(|w| w.job(id).and_then(|j| j.task_token.clone())).await?.is_none() {
        return Err(Fail::Unusable("no task token to answer".into()));
    }
    let mut job = load(ctx, id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::Approved | JobStatus::Rejected => return answer_task(ctx, id, Ok(())).await,
        status if status.is_terminal() => return answer_task(ctx, id, Err(JOB_ENDED)).await,
        _ => {}
    }
    if let Some(request) = job.request_id.clone() {
        match provider_poll(ctx, &request).await {
            Answer::Ok(ProviderState::Running) | Answer::Transient | Answer::Refused => {}
            Answer::Ok(state) => return settle(ctx, &mut job, state).await,
            Answer::NotFound => return fail_job(ctx, &mut job, JOB_ENDED).await,
        }
    }
    match POLL_WAITS.get(round.saturating_sub(1) as usize).filter(|_| round < POLL_ROUNDS) {
        Some(wait) => {
            let next = WorkMessage::Poll { job_id: job.id.clone(), task_token: None, round: Some(round + 1) };
            ctx.write(|w| w.enqueue(QueueName::Work, next, *wait)).await?;
            Ok(())
        }
        None => answer_task(ctx, id, Err(STILL_RUNNING)).await,
    }
}

// ---------------------------------------------------------------- the end of a job

/// The review wait's token is saved first, the job read after: an approval
/// that committed before the token was there is answered here.
async fn await_review(ctx: &Ctx, id: &str, token: String) -> R {
    let saved = token.clone();
    ctx.write(|w| {
        if let Some(j) = w.jobs.get_mut(id) {
            j.review_token = Some(saved);
        }
    })
    .await?;
    let job = load(ctx, id).await?;
    if job.status == JobStatus::Approved {
        ctx.write(|w| w.answer(&token, Ok(()))).await?;
    }
    Ok(())
}

async fn expire(ctx: &Ctx, id: &str) -> R {
    let mut job = load(ctx, id).await?;
    if job.status == JobStatus::Completed {
        move_job(ctx, &mut job, JobStatus::Expired, None, None, None).await?;
    }
    match job.status {
        JobStatus::Expired | JobStatus::Rejected => delete_output(ctx, &job).await,
        JobStatus::Approved => keep_output(ctx, id).await,
        _ => Ok(()),
    }
}

async fn delete_output(ctx: &Ctx, job: &JobRec) -> R {
    let Some(key) = job.output.clone() else { return Ok(()) };
    ctx.write(|w| w.objects.remove(&key)).await?;
    let (id, status) = (job.id.to_string(), job.status);
    ctx.write(|w| {
        if let Some(j) = w.jobs.get_mut(&id).filter(|j| j.status == status) {
            j.output = None;
            j.output_deleted = true;
        }
    })
    .await?;
    Ok(())
}

async fn discard_output(ctx: &Ctx, id: &str) -> R {
    let job = load(ctx, id).await?;
    if job.status != JobStatus::Rejected {
        return Ok(());
    }
    delete_output(ctx, &job).await
}

async fn keep_output(ctx: &Ctx, id: &str) -> R {
    let job = load(ctx, id).await?;
    let Some(key) = job.output.clone().filter(|_| job.status == JobStatus::Approved) else { return Ok(()) };
    ctx.write(|w| {
        if let Some(object) = w.objects.get_mut(&key) {
            object.0 = true;
        }
    })
    .await?;
    Ok(())
}

async fn give_up(ctx: &Ctx, id: &str, cause: Option<&str>) -> R {
    let to = match cause {
        Some(PROVIDER_BUSY | PROVIDER_REFUSED | JOB_ENDED) => JobStatus::Failed,
        _ => JobStatus::Expired,
    };
    for _ in 0..5 {
        let mut job = load(ctx, id).await?;
        if transition(job.status, to).is_err() {
            return Ok(());
        }
        if let Some(request) = job.request_id.clone() {
            if let Answer::Transient = provider_cancel(ctx, &request).await {
                return Err(Fail::Retry("provider unavailable".into()));
            }
        }
        if move_job(ctx, &mut job, to, None, None, None).await? {
            return Ok(());
        }
    }
    Err(Fail::Retry("the job kept changing".into()))
}

async fn cancel_at_provider(ctx: &Ctx, id: &str) -> R {
    let job = load(ctx, id).await?;
    let Some(request) = job.request_id else { return Ok(()) };
    match provider_cancel(ctx, &request).await {
        Answer::Transient => Err(Fail::Retry("provider unavailable".into())),
        _ => Ok(()),
    }
}

async fn notify(ctx: &Ctx, id: &str, status: JobStatus, attempt: u32) -> R {
    let job = load(ctx, id).await?;
    if !job.webhook {
        return Err(Fail::Unusable("the job has no webhook_url".into()));
    }
    if ctx.read(|w| w.notified.contains(&(id.to_owned(), status.as_str()))).await? {
        return Ok(());
    }
    let message = message_id(&job.id, status);
    let received = ctx
        .call(|w, rng| {
            let failures = w.client_failures.entry((id.to_owned(), status.as_str())).or_insert(0);
            if *failures < CLIENT_FAILURES && rng.percent(30) {
                *failures += 1;
                return false;
            }
            w.delivered.push((id.to_owned(), status, message));
            true
        })
        .await;
    if received {
        ctx.write(|w| w.notified.insert((id.to_owned(), status.as_str()))).await?;
    } else if attempt < NOTIFY_ATTEMPTS {
        let next = WorkMessage::Notify { job_id: job.id.clone(), status, attempt: attempt + 1, not_before: None };
        let wait = 30 * Secs::from(attempt);
        ctx.write(|w| w.enqueue(QueueName::Notify, next, wait)).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- the webhook

/// A provider's callback; `Ended::Ok` is a 200 or 202 (the provider stops),
/// anything else makes the provider deliver it again.
pub async fn callback(ctx: Rc<Ctx>, cb: Callback) -> Ended {
    ended(apply_callback(&ctx, &cb).await)
}

async fn apply_callback(ctx: &Ctx, cb: &Callback) -> R {
    let request = cb.request_id.clone();
    let mut owner = ctx.read(|w| w.owners.get(&request).cloned()).await?;
    if owner.is_none() {
        ctx.write(|w| w.early.insert(request.clone())).await?;
        owner = ctx.read(|w| w.owners.get(&request).cloned()).await?;
    }
    let Some(id) = owner else { return Ok(()) };
    let Some(mut job) = ctx.read(|w| w.job(&id).cloned()).await? else { return Ok(()) };
    let event = cb.event_id.clone();
    let claim = ctx
        .write(|w| {
            let now = w.now;
            match w.receipts.get(&event) {
                Some(Receipt::Done) => 'd',
                Some(Receipt::Pending { until }) if *until > now => 'p',
                _ => {
                    w.receipts.insert(event.clone(), Receipt::Pending { until: now + RECEIPT_LEASE_SECONDS });
                    'n'
                }
            }
        })
        .await?;
    match claim {
        'd' => return Ok(()),
        'p' => return Err(Fail::Retry("in progress (409)".into())),
        _ => {}
    }
    let applied: R = async {
        match cb.finished {
            None => {
                if !(job.status == JobStatus::Submitted && move_job(ctx, &mut job, JobStatus::Processing, None, None, None).await?) {
                    ctx.write(|_| ()).await?;
                }
                Ok(())
            }
            Some(_) if matches!(job.status, JobStatus::Submitted | JobStatus::Processing) => {
                let message = WorkMessage::Finalize { job_id: job.id.clone() };
                ctx.write(|w| w.enqueue(QueueName::Work, message, 0)).await?;
                Ok(())
            }
            Some(_) => {
                ctx.write(|_| ()).await?;
                Ok(())
            }
        }
    }
    .await;
    if let Err(err) = applied {
        ctx.write(|w| w.receipts.remove(&event)).await?;
        return Err(err);
    }
    ctx.write(|w| w.receipts.insert(event.clone(), Receipt::Done)).await?;
    Ok(())
}

// ---------------------------------------------------------------- the API

/// `POST /videos/generate`, with or without an `Idempotency-Key`.
pub async fn create(ctx: Rc<Ctx>, user: String, key: Option<String>, webhook: bool) -> Ended {
    ended(create_job(&ctx, &user, key, webhook).await)
}

async fn create_job(ctx: &Ctx, user: &str, key: Option<String>, webhook: bool) -> R {
    if let Some(key) = &key {
        let previous = ctx.read(|w| w.idempotency.get(&(user.to_owned(), key.clone())).cloned()).await?;
        if let Some(id) = previous {
            return replay(ctx, &id).await;
        }
    }
    let cost = 1 + ctx.between(0, 3);
    let id = videojobs_core::model::ids::JobId::generate();
    let created = ctx
        .write(|w| {
            if let Some(key) = &key {
                if w.idempotency.contains_key(&(user.to_owned(), key.clone())) {
                    return Err(true);
                }
            }
            let Some(account) = w.accounts.get_mut(user).filter(|a| a.credits >= cost) else { return Err(false) };
            account.credits -= cost;
            let text = id.to_string();
            w.ledger.push((text.clone(), user.to_owned(), Entry::Debit, cost));
            if let Some(key) = key.clone() {
                w.idempotency.insert((user.to_owned(), key), text.clone());
            }
            let job = JobRec {
                id: id.clone(),
                user: user.to_owned(),
                cost,
                status: JobStatus::Queued,
                history: vec![JobStatus::Queued],
                attempt: 0,
                request_id: None,
                output: None,
                output_deleted: false,
                webhook,
                created_at: w.now,
                completed_at: None,
                task_token: None,
                review_token: None,
            };
            w.jobs.insert(text.clone(), job);
            w.order.push(text);
            Ok(())
        })
        .await?;
    match created {
        Ok(()) => {}
        Err(true) => {
            let id = ctx.read(|w| key.and_then(|k| w.idempotency.get(&(user.to_owned(), k)).cloned())).await?;
            return match id {
                Some(id) => replay(ctx, &id).await,
                None => Err(Fail::Retry("idempotency record did not appear".into())),
            };
        }
        Err(false) => return Ok(()),
    }
    let text = id.to_string();
    if ctx.write(|w| w.start_execution(&text)).await.is_err() {
        // give_up_unstarted: fail the job and give its credits back.
        let mut job = load(ctx, &text).await?;
        move_job(ctx, &mut job, JobStatus::Failed, None, None, None).await?;
        return Err(Fail::Retry("the execution did not start".into()));
    }
    Ok(())
}

async fn replay(ctx: &Ctx, id: &str) -> R {
    if ctx.read(|w| w.job(id).map(|j| j.status)).await? == Some(JobStatus::Queued) {
        ctx.write(|w| w.start_execution(id)).await?;
    }
    Ok(())
}

/// `DELETE /videos/jobs/{id}`.
pub async fn cancel(ctx: Rc<Ctx>, id: String) -> Ended {
    ended(cancel_job(&ctx, &id).await)
}

async fn cancel_job(ctx: &Ctx, id: &str) -> R {
    let mut job = load(ctx, id).await?;
    for _ in 0..5 {
        if transition(job.status, JobStatus::Canceled).is_err() {
            return Ok(());
        }
        if move_job(ctx, &mut job, JobStatus::Canceled, None, None, None).await? {
            let _ = ctx.write(|w| w.stop_execution(id)).await;
            if job.request_id.is_some() {
                let message = WorkMessage::CancelAtProvider { job_id: job.id.clone() };
                let _ = ctx.write(|w| w.enqueue(QueueName::Work, message, 0)).await;
            }
            return Ok(());
        }
    }
    Err(Fail::Retry("the job kept changing".into()))
}

/// `POST /videos/jobs/{id}/review`.
pub async fn review(ctx: Rc<Ctx>, id: String, approve: bool) -> Ended {
    ended(review_job(&ctx, &id, approve).await)
}

async fn review_job(ctx: &Ctx, id: &str, approve: bool) -> R {
    let mut job = load(ctx, id).await?;
    let now = ctx.read(|w| w.now).await?;
    if job.status != JobStatus::Completed || job.completed_at.is_some_and(|at| at + RETENTION_SECONDS <= now) {
        return Ok(());
    }
    let to = if approve { JobStatus::Approved } else { JobStatus::Rejected };
    if let Some(key) = job.output.clone().filter(|_| approve) {
        // Kept before the approval commits: once it has, nothing else keeps it.
        ctx.write(|w| {
            if let Some(object) = w.objects.get_mut(&key) {
                object.0 = true;
            }
        })
        .await?;
    }
    if !move_job(ctx, &mut job, to, None, None, None).await? {
        return Ok(());
    }
    if approve {
        // Answers the review wait (best effort): the execution ends. A token
        // not stored yet is answered by `await_review`; a lost answer leaves
        // the execution to reach Expire.
        if let Ok(Some(token)) = ctx.read(|w| w.job(id).and_then(|j| j.review_token.clone())).await {
            let _ = ctx.write(|w| w.answer(&token, Ok(()))).await;
        }
    } else {
        let message = WorkMessage::DiscardOutput { job_id: job.id.clone() };
        let _ = ctx.write(|w| w.enqueue(QueueName::Work, message, 0)).await;
    }
    Ok(())
}

/// `GET /videos/jobs/{id}`: a read of an in-flight job may ask for a refresh.
pub async fn read(ctx: Rc<Ctx>, id: String) -> Ended {
    ended(read_job(&ctx, &id).await)
}

async fn read_job(ctx: &Ctx, id: &str) -> R {
    let job = load(ctx, id).await?;
    if matches!(job.status, JobStatus::Submitted | JobStatus::Processing) && job.request_id.is_some() && ctx.percent(50) {
        let message = WorkMessage::Refresh { job_id: job.id.clone() };
        ctx.write(|w| w.enqueue(QueueName::Work, message, 0)).await?;
    }
    Ok(())
}

/// The schedule's `check_stuck`: starts the execution of a job queued too long.
pub async fn check_stuck(ctx: Rc<Ctx>) -> Ended {
    ended(restart_unstarted(&ctx).await)
}

async fn restart_unstarted(ctx: &Ctx) -> R {
    let stuck: Vec<String> = ctx
        .read(|w| {
            w.jobs.values().filter(|j| j.status == JobStatus::Queued && j.created_at + 10 < w.now).map(|j| j.id.to_string()).collect()
        })
        .await?;
    for id in stuck {
        ctx.write(|w| w.start_execution(&id)).await?;
    }
    Ok(())
}
