//! Many tenants at once, faults, a crash: the real local stack (moto with its
//! Step Functions interpreter, the real state machine, the local provider
//! rendering with ffmpeg), driven over HTTP as clients drive it.
//!
//! - **storm**: users × their active-job cap, each create sent twice at once
//!   with one `Idempotency-Key`, mixed provider faults, random cancels, every
//!   user with a webhook receiver. Every job ends `completed` or `canceled`;
//!   credits are exact; no history moves backwards; one notification id per
//!   job and status.
//! - **crash**: `local-api` (API, webhook and worker in one process) killed
//!   with SIGKILL while jobs are in flight and started again on the same
//!   port: every job still finishes, credits exact; prints the recovery time.
//! - **isolation**: a tenant whose webhook receivers accept the connection
//!   and never answer creates and cancels 20 jobs; a quiet tenant's 1-second
//!   job completes while the hostile tenant's notifications are still hanging.
//!
//! Each test has a hard bound and then says what was unfinished. The bench
//! commands (`./scripts/bench storm|crash|isolation`) run the same tests at
//! larger sizes through the environment and append a Markdown table to
//! `$BENCH_OUT`:
//!
//! | variable | default | |
//! |---|---|---|
//! | `STORM_USERS`, `STORM_CANCEL_PERCENT`, `STORM_LIMIT_SECONDS` | 6, 20, 300 | the storm's size, share canceled, bound |
//! | `STORM_CREATE_SPREAD_SECONDS` | 0 | the creates spread evenly over this long instead of all at once |
//! | `CRASH_USERS`, `CRASH_DOWN_SECONDS` | 3, 3 | users × cap jobs; how long local-api stays down |
//! | `ISOLATION_HOSTILE_JOBS` | 20 | created and canceled before each quiet job |
//! | `ISOLATION_ALONE_ROUNDS`, `ISOLATION_BESIDE_ROUNDS` | 0, 1 | quiet jobs alone (for the ratio), beside the hostile tenant |
//! | `ISOLATION_TRICKLE` | 1 | the hostile tenant goes on (one job a second) during the quiet job; 0: the scenario |
//! | `ISOLATION_LIMIT_SECONDS` | 120 | the bound on each quiet job |
//!
//! Seeds: `STORM_SEED`, `CRASH_SEED` (printed by each run).

use crate::harness::{
    env_number, fresh_stack, gate_fault_counts, history_problems, settings, wait_until_settled, BlackHole, HttpApi, LocalApiProcess,
    Receiver, SeededRng, TestApp,
};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use videojobs_aws::DynamoStore;
use videojobs_core::model::ids::{JobId, Role, UserId};
use videojobs_core::model::job::Job;
use videojobs_core::ports::{AccountStore, JobReads};
use videojobs_core::JobStatus;

/// The storm's whole run, setup included, fails past this.
const STORM_LIMIT: Duration = Duration::from_secs(300);
/// From the restart: every job must have finished by then.
const CRASH_LIMIT: Duration = Duration::from_secs(360);
/// The quiet tenant's 1-second job (about 2 s alone) must have completed by then.
const ISOLATION_LIMIT: Duration = Duration::from_secs(120);

/// The provider faults a storm mixes, one per slot of a user's cap: every
/// one of them is covered by the pipeline's retries and receipts.
fn storm_faults() -> Vec<Value> {
    vec![
        json!({}),
        json!({"duplicate_callbacks": 3}),
        json!({"shuffle_callbacks": true, "duplicate_callbacks": 2}),
        json!({"completion_first": true, "late_callbacks_ms": 1500}),
        json!({"submit_errors": [429, 503]}),
    ]
}

/// Appends a bench's Markdown to `$BENCH_OUT` (set by `scripts/bench`) and prints it.
fn bench_table(title: &str, header: &str, row: &str) {
    let columns = header.matches('|').count().saturating_sub(1);
    let text = format!("## {title}\n\n{header}\n|{}\n{row}\n\n", "---|".repeat(columns));
    println!("{text}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("the bench output file");
        file.write_all(text.as_bytes()).expect("bench output written");
    }
}

fn seconds_between(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    (to - from).as_seconds_f64()
}

/// A user of the storm: a key, the credits granted, and where their notifications go.
#[derive(Clone)]
struct Tenant {
    user: UserId,
    key: String,
    grant: i64,
    webhook_url: String,
}

async fn tenants(app: &TestApp, count: usize, grant: i64, receiver: &Receiver) -> Vec<Tenant> {
    let mut tenants = Vec::with_capacity(count);
    for index in 0..count {
        let (user, key) = app.another_user(grant, Role::User).await;
        tenants.push(Tenant { user, key, grant, webhook_url: receiver.url(&format!("/hooks/tenant{index}")) });
    }
    tenants
}

/// A job the storm created.
#[derive(Clone)]
struct Planned {
    tenant: usize,
    id: JobId,
    faults: Value,
}

/// Creates `per_user` jobs for every tenant, `STORM_CREATES_IN_FLIGHT` (16)
/// at a time, each create sent twice at once with the same `Idempotency-Key`:
/// both answers must be the same `202` with the same job. Bounded because
/// moto is one process for every service: hundreds of creates at once only
/// measure its queue (each then runs out of time and is retried), where
/// AWS would take them all.
async fn create_twice_at_once(
    api: &HttpApi,
    tenants: &[Tenant],
    per_user: usize,
    body_for: impl Fn(usize, usize, &Tenant) -> Value,
) -> Result<Vec<Planned>, Vec<String>> {
    let requests: Vec<(usize, Value, String)> = tenants
        .iter()
        .enumerate()
        .flat_map(|(t, tenant)| (0..per_user).map(move |slot| (t, slot, tenant)))
        .map(|(t, slot, tenant)| (t, body_for(t, slot, tenant), format!("storm-{}", ulid::Ulid::new())))
        .collect();
    let in_flight: usize = env_number("STORM_CREATES_IN_FLIGHT", 16);
    // Spread, the same jobs arrive as a steady stream one moto can serve.
    let spread = Duration::from_secs(env_number("STORM_CREATE_SPREAD_SECONDS", 0));
    let (start, count) = (tokio::time::Instant::now(), requests.len().max(1) as u32);
    let answers: Vec<_> = futures::stream::iter(requests.iter().enumerate().map(|(i, (t, body, idempotency_key))| {
        let key = tenants[*t].key.clone();
        async move {
            tokio::time::sleep_until(start + spread * i as u32 / count).await;
            let caller = api.as_key(&key).idempotent(idempotency_key);
            futures::join!(generate_as_a_client(&caller, body), generate_as_a_client(&caller, body))
        }
    }))
    .buffered(in_flight.max(1))
    .collect()
    .await;
    let mut planned = Vec::new();
    let mut problems = Vec::new();
    for ((t, body, idempotency_key), (r1, r2)) in requests.iter().zip(answers) {
        let (s1, b1, s2, b2) = (r1.status.as_u16(), r1.body, r2.status.as_u16(), r2.body);
        if s1 != 202 || s2 != 202 || b1["job_id"] != b2["job_id"] {
            problems.push(format!("tenant {t}, key {idempotency_key}: the two creates answered {s1} {b1} and {s2} {b2}"));
            continue;
        }
        let id: JobId = b1["job_id"].as_str().expect("a job id").parse().expect("a valid job id");
        planned.push(Planned { tenant: *t, id, faults: body["metadata"]["local_faults"].clone() });
    }
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(problems)
    }
}

/// Creates the storm's clients sent again after a `503`.
static CREATES_RETRIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How long a client keeps retrying a request that answers `503`: two
/// minutes, or `STORM_CLIENT_RETRY_SECONDS` (a 40-tenant storm on moto's
/// throughput needs longer: one create still met a 503 after two minutes).
fn client_retry_window() -> Duration {
    Duration::from_secs(env_number("STORM_CLIENT_RETRY_SECONDS", 120))
}

/// A create as docs/ERRORS.md asks a client to make it: a `503` (throttled,
/// or out of time while moto works through the storm) is sent again with the
/// same `Idempotency-Key`, after a jittered backoff (up to 1, 2, 4, 8, 8 … s),
/// for [`client_retry_window`].
async fn generate_as_a_client(caller: &crate::harness::api::Caller<'_>, body: &Value) -> crate::harness::api::Reply {
    let started = Instant::now();
    let mut reply = caller.generate(body).await;
    let mut attempt = 0u32;
    while reply.status.as_u16() == 503 && started.elapsed() < client_retry_window() {
        let ceiling_ms = 1_000u64 << attempt.min(3);
        tokio::time::sleep(Duration::from_millis(ceiling_ms / 2 + (ulid::Ulid::new().random() as u64) % (ceiling_ms / 2))).await;
        CREATES_RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reply = caller.generate(body).await;
        attempt += 1;
    }
    reply
}

/// A cancel as a client sends it: again after a `503`, which the API
/// documents as safe to retry. A `409` after a retried `503` is the first
/// try's cancel, applied before its answer was lost: canceled all the same.
async fn cancel_as_a_client(caller: &crate::harness::api::Caller<'_>, id: &str) -> crate::harness::api::Reply {
    let started = Instant::now();
    let mut reply = caller.cancel_job(id).await;
    let mut attempt = 0u32;
    while reply.status.as_u16() == 503 && started.elapsed() < client_retry_window() {
        let ceiling_ms = 1_000u64 << attempt.min(3);
        tokio::time::sleep(Duration::from_millis(ceiling_ms / 2 + (ulid::Ulid::new().random() as u64) % (ceiling_ms / 2))).await;
        reply = caller.cancel_job(id).await;
        attempt += 1;
        if reply.status.as_u16() == 409 && caller.job_status(id).await.body["status"] == "canceled" {
            reply.status = lambda_http::http::StatusCode::OK;
        }
    }
    reply
}

/// Cancels `percent` of the jobs (rounded up), each after a random wait below
/// `max_wait_ms`; answers each cancel's job and HTTP status.
fn cancel_some(
    api: &HttpApi,
    tenants: &[Tenant],
    jobs: &[Planned],
    rng: &mut SeededRng,
    percent: u64,
    max_wait_ms: u64,
) -> tokio::task::JoinHandle<Vec<(JobId, u16)>> {
    // Exactly `percent` of them (at least one), picked by a partial shuffle.
    let count = (jobs.len() * percent as usize).div_ceil(100).min(jobs.len());
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    for i in 0..count {
        let j = i + rng.below((order.len() - i) as u64) as usize;
        order.swap(i, j);
    }
    let picked: Vec<(JobId, String, u64)> =
        order[..count].iter().map(|&i| (jobs[i].id.clone(), tenants[jobs[i].tenant].key.clone(), rng.below(max_wait_ms))).collect();
    let api = api.clone();
    tokio::spawn(async move {
        futures::future::join_all(picked.into_iter().map(|(id, key, wait)| {
            let api = api.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let status = api.as_key(&key).cancel_job(&id).await.status.as_u16();
                (id, status)
            }
        }))
        .await
    })
}

/// What every storm must leave: each job `completed` or `canceled` (a cancel
/// answered `200` means `canceled`), each history forward only, each
/// account's credits its grant less its completed jobs' cost, no slot held.
async fn outcome_problems(
    store: &DynamoStore,
    tenants: &[Tenant],
    jobs: &[Planned],
    finals: &HashMap<JobId, Job>,
    cancels: &[(JobId, u16)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let canceled_by_user: HashMap<&JobId, u16> = cancels.iter().map(|(id, status)| (id, *status)).collect();
    for job in jobs {
        let last = &finals[&job.id];
        let events = store.events(&job.id).await.expect("events read");
        let history = crate::harness::describe_events(&events);
        if !matches!(last.status, JobStatus::Completed | JobStatus::Canceled) {
            let error = last.error.as_ref().map(|e| format!("{} ({})", e.code, e.message)).unwrap_or_default();
            problems.push(format!("job {} (faults {}) ended {} {error}; events:\n{history}", job.id, job.faults, last.status));
        }
        if canceled_by_user.get(&job.id) == Some(&200) && last.status != JobStatus::Canceled {
            problems.push(format!("job {}: its cancel answered 200 but it ended {}", job.id, last.status));
        }
        for problem in history_problems(&events) {
            problems.push(format!("job {} history: {problem}; events:\n{history}", job.id));
        }
    }
    for (index, tenant) in tenants.iter().enumerate() {
        let spent: i64 = jobs
            .iter()
            .filter(|job| job.tenant == index && finals[&job.id].status == JobStatus::Completed)
            .map(|job| i64::from(finals[&job.id].cost_credits))
            .sum();
        let account = store.account(&tenant.user).await.expect("account read").expect("account exists");
        if account.credits != tenant.grant - spent {
            problems.push(format!(
                "tenant {index} ({}): {} credits, expected {} (granted {} less {spent} for completed jobs)",
                tenant.user,
                account.credits,
                tenant.grant - spent,
                tenant.grant
            ));
        }
        if account.active_jobs != 0 {
            problems.push(format!("tenant {index} ({}): {} active-job slots still held", tenant.user, account.active_jobs));
        }
    }
    problems
}

/// Waits (until `deadline`) for each job's final status to be notified, lets
/// repeats land, then checks: one notification id per job and status, and
/// only statuses the job had. Answers the problems and a summary line.
async fn notification_problems(
    receiver: &Receiver,
    store: &DynamoStore,
    jobs: &[Planned],
    finals: &HashMap<JobId, Job>,
    deadline: Instant,
) -> (Vec<String>, Notified) {
    let wanted: BTreeSet<(String, String)> =
        jobs.iter().map(|job| (job.id.to_string(), finals[&job.id].status.as_str().to_owned())).collect();
    loop {
        let got: BTreeSet<(String, String)> = receiver.deliveries().into_iter().map(|d| (d.job_id, d.status)).collect();
        if wanted.is_subset(&got) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Repeated deliveries, if any, arrive within moments.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deliveries = receiver.deliveries();
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in &deliveries {
        ids.entry((d.job_id.clone(), d.status.clone())).or_default().insert(d.webhook_id.clone());
        *count.entry((d.job_id.clone(), d.status.clone())).or_default() += 1;
    }
    let mut problems = Vec::new();
    for missing in wanted.iter().filter(|key| !ids.contains_key(*key)) {
        problems.push(format!("job {} was never notified of {}", missing.0, missing.1));
    }
    let known: HashMap<String, &Planned> = jobs.iter().map(|job| (job.id.to_string(), job)).collect();
    for ((job_id, status), distinct) in &ids {
        if distinct.len() != 1 {
            problems.push(format!("job {job_id}, {status}: {} notification ids {distinct:?}", distinct.len()));
        }
        let Some(job) = known.get(job_id) else {
            problems.push(format!("a notification for a job this run did not make: {job_id} {status}"));
            continue;
        };
        let had: BTreeSet<String> =
            store.events(&job.id).await.expect("events read").iter().map(|e| e.status.as_str().to_owned()).collect();
        if !had.contains(status) {
            problems.push(format!("job {job_id} was notified of {status}, a status it never had ({had:?})"));
        }
    }
    let repeats: usize = count.values().map(|n| n - 1).sum();
    let summary = Notified { deliveries: deliveries.len(), pairs: ids.len(), ids: ids.values().map(BTreeSet::len).sum(), repeats };
    (problems, summary)
}

/// What a storm's receiver saw.
struct Notified {
    deliveries: usize,
    /// Distinct (job, status).
    pairs: usize,
    /// Distinct `webhook-id`s over all pairs.
    ids: usize,
    repeats: usize,
}

impl std::fmt::Display for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} notifications delivered for {} (job, status) pairs, {} distinct webhook-ids, {} repeated deliveries",
            self.deliveries, self.pairs, self.ids, self.repeats
        )
    }
}

/// The median and the longest of the jobs' times, created → finished (completed or canceled), by their own timestamps.
fn job_times(finals: &HashMap<JobId, Job>) -> (f64, f64) {
    let mut times: Vec<f64> =
        finals.values().map(|job| seconds_between(job.created_at, job.completed_at.unwrap_or(job.updated_at))).collect();
    times.sort_by(f64::total_cmp);
    (times.get(times.len() / 2).copied().unwrap_or(0.0), times.last().copied().unwrap_or(0.0))
}

fn fail_with(what: &str, problems: &[String]) -> ! {
    panic!("{what}: {} problem(s):\n{}", problems.len(), problems.join("\n"));
}

// ------------------------------------------------------------------ storm

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_users_at_their_cap_with_faults_and_cancels_ends_completed_or_canceled_with_exact_credits() {
    let limit = Duration::from_secs(env_number("STORM_LIMIT_SECONDS", STORM_LIMIT.as_secs()));
    let deadline = Instant::now() + limit;
    let users: usize = env_number("STORM_USERS", 6);
    let cancel_percent: u64 = env_number("STORM_CANCEL_PERCENT", 20);
    let mut rng = SeededRng::from_env("STORM_SEED", "storm");
    let mut s = settings();
    // A bench at hundreds of jobs lasts longer than the generation deadline:
    // one moto process serves every AWS call of every job (BENCHMARKS.md).
    s.generation_timeout_seconds = env_number("STORM_GENERATION_TIMEOUT_SECONDS", s.generation_timeout_seconds);
    let per_user = s.max_active_jobs as usize;
    // Every function's AWS calls under the local gate's storm profile:
    // throttles, 500s, slow and lost answers, far more often than by default.
    let profile = std::env::var("STORM_FAULT_PROFILE").unwrap_or_else(|_| "storm".to_owned());
    let p = TestApp::builder().settings(s).fault_profile(&profile).with_local_provider().build().await;
    let api = p.http();
    let receiver = Receiver::answering(200).await;
    let tenants = tenants(&p, users, 1_000, &receiver).await;
    let faults = storm_faults();
    let gate_before = gate_fault_counts(&profile).await;

    let storm_started = Instant::now();
    let jobs = create_twice_at_once(&api, &tenants, per_user, |t, slot, tenant| {
        json!({"prompt": format!("Storm {t}.{slot}: a lighthouse in a gale"), "duration_seconds": 1, "resolution": "480p",
               "webhook_url": tenant.webhook_url, "metadata": {"local_faults": faults[slot % faults.len()]}})
    })
    .await
    .unwrap_or_else(|problems| fail_with("creating the storm", &problems));
    let cancels = cancel_some(&api, &tenants, &jobs, &mut rng, cancel_percent, 4_000);
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
    let finals = wait_until_settled(&p.stack().store, &ids, deadline)
        .await
        .unwrap_or_else(|report| panic!("the storm did not finish within {} s: {report}", limit.as_secs()));
    let storm_seconds = storm_started.elapsed().as_secs_f64();
    let cancels = cancels.await.expect("the cancels ran");
    // Let late callbacks, refunds and notifications settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut problems = outcome_problems(&p.stack().store, &tenants, &jobs, &finals, &cancels).await;
    let (notify_problems, notify_summary) = notification_problems(&receiver, &p.stack().store, &jobs, &finals, deadline).await;
    problems.extend(notify_problems);
    let count = |status: JobStatus| finals.values().filter(|j| j.status == status).count();
    let (completed, canceled, failed) = (count(JobStatus::Completed), count(JobStatus::Canceled), count(JobStatus::Failed));
    let cancels_accepted = cancels.iter().filter(|(_, s)| *s == 200).count();
    let retried = CREATES_RETRIED.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "storm: {users} users × {per_user} jobs = {} jobs in {storm_seconds:.1} s: {completed} completed, {canceled} canceled, {failed} failed; \
         {} cancels sent ({cancels_accepted} accepted); {notify_summary}; {retried} creates sent again after a 503",
        jobs.len(),
        cancels.len()
    );
    let (median, longest) = job_times(&finals);
    let gate_faults = fault_summary(&gate_before, &gate_fault_counts(&profile).await);
    println!("storm: the gate's faults ({profile}): {gate_faults}");
    bench_table(
        "Storm",
        "| users × cap | jobs (each create sent twice) | time s (creates → last job finished) | job time s, median / max | completed | canceled | failed | cancels sent | notifications, webhook-ids, repeats | creates sent again after a 503 | AWS calls, faults by kind (gate) |",
        &format!(
            "| {users} × {per_user} | {} | {storm_seconds:.1} | {median:.1} / {longest:.1} | {completed} | {canceled} | {failed} | {} | {}, {}, {} | {retried} | {gate_faults} |",
            jobs.len(),
            cancels.len(),
            notify_summary.deliveries,
            notify_summary.ids,
            notify_summary.repeats
        ),
    );
    if !problems.is_empty() {
        fail_with("the storm", &problems);
    }
}

/// The gate's counts between two readings: the calls the profile's
/// principals made and each kind of fault they met.
fn fault_summary(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let delta = |kind: &str| after.get(kind).copied().unwrap_or(0).saturating_sub(before.get(kind).copied().unwrap_or(0));
    let mut by_group: BTreeMap<&str, u64> = BTreeMap::new();
    for kind in after.keys().filter(|k| *k != "calls") {
        // "error:ThrottlingException" and "error:SlowDown" are errors; "lost:drop", "lost:500" lost answers.
        let group = kind.split(':').next().unwrap_or(kind);
        *by_group.entry(group).or_default() += delta(kind);
    }
    let kinds: Vec<String> = after.keys().filter(|k| *k != "calls" && delta(k) > 0).map(|k| format!("{k} {}", delta(k))).collect();
    let groups: Vec<String> = by_group.iter().map(|(g, n)| format!("{g} {n}")).collect();
    format!("{} calls; {} ({})", delta("calls"), groups.join(", "), kinds.join(", "))
}

// ------------------------------------------------------------------ crash

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_worker_process_mid_storm_still_finishes_every_job_with_exact_credits() {
    let users: usize = env_number("CRASH_USERS", 3);
    let down_seconds: u64 = env_number("CRASH_DOWN_SECONDS", 3);
    let mut rng = SeededRng::from_env("CRASH_SEED", "crash");
    let stack = fresh_stack();
    // The provider lives in this process: it survives the crash, as a real one would.
    let secret = videojobs_core::model::signing::WebhookSecret::generate_text();
    let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let provider = local_provider::spawn(
        provider_listener,
        local_provider::Config::local(
            std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new())),
            videojobs_core::model::signing::WebhookSecret::parse(&secret).expect("a secret"),
        ),
    )
    .expect("the local provider starts");
    let s = settings();
    let per_user = s.max_active_jobs as usize;
    // Users and reads go straight to the stack's tables; everything else is the process's.
    let app = TestApp::builder().credits(0).settings(s).on_stack(stack.resources.clone()).build().await;
    let mut api_process = LocalApiProcess::start(
        &stack,
        &[("LOCAL_PROVIDER_URL", provider.base_url.clone()), ("LOCAL_PROVIDER_WEBHOOK_SECRETS", secret.clone())],
    )
    .await;
    let api = HttpApi::new(&api_process.base_url);
    let receiver = Receiver::answering(200).await;
    let tenants = tenants(&app, users, 1_000, &receiver).await;

    // Spread over time (the provider waits 0 to 6 s before rendering), so
    // that the kill finds jobs at every step.
    let jobs = create_twice_at_once(&api, &tenants, per_user, |t, slot, tenant| {
        let delay_ms = ((t * per_user + slot) % 7) * 1_000;
        let faults = if slot % 2 == 0 { json!({"delay_ms": delay_ms}) } else { json!({"delay_ms": delay_ms, "duplicate_callbacks": 2}) };
        json!({"prompt": format!("Crash {t}.{slot}: a paper boat"), "duration_seconds": 1 + (slot % 2), "resolution": "480p",
               "webhook_url": tenant.webhook_url, "metadata": {"local_faults": faults}})
    })
    .await
    .unwrap_or_else(|problems| fail_with("creating the jobs", &problems));
    let cancels = cancel_some(&api, &tenants, &jobs, &mut rng, 10, 1_500).await.expect("the cancels ran");
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();

    // Kill it in the middle: once a job has completed while at least half are
    // still in flight (or after 30 s).
    let wait_from = Instant::now();
    let in_flight_at_kill = loop {
        let mut in_flight = 0;
        let mut completed = 0;
        for id in &ids {
            match app.job(id).await.status {
                status if status.is_in_flight() => in_flight += 1,
                JobStatus::Completed => completed += 1,
                _ => {}
            }
        }
        if (completed >= 1 && in_flight * 2 >= ids.len()) || wait_from.elapsed() > Duration::from_secs(30) || in_flight == 0 {
            break in_flight;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    api_process.kill().await;
    let killed_at = OffsetDateTime::now_utc();
    println!("crash: killed local-api (SIGKILL) with {in_flight_at_kill} of {} jobs in flight", ids.len());
    tokio::time::sleep(Duration::from_secs(down_seconds)).await;
    api_process.restart().await;
    let restarted = Instant::now();
    let restarted_at = OffsetDateTime::now_utc();
    println!("crash: restarted local-api on {} after {:.1} s down", api_process.base_url, seconds_between(killed_at, restarted_at));

    let finals = wait_until_settled(&app.stack().store, &ids, restarted + CRASH_LIMIT).await.unwrap_or_else(|report| {
        panic!(
            "after the restart, the jobs did not all finish within {} s ({in_flight_at_kill} were in flight at the kill); logs: {:?}\n{report}",
            CRASH_LIMIT.as_secs(),
            api_process.logs()
        )
    });
    // The recovery: from the restart to the last job's leaving flight, by the jobs' own events.
    let mut last_finished = restarted_at;
    for id in &ids {
        let events = app.stack().store.events(id).await.expect("events read");
        if let Some(first_out) = events.iter().filter(|e| !e.status.is_in_flight()).map(|e| e.at).min() {
            last_finished = last_finished.max(first_out);
        }
    }
    let recovery = seconds_between(restarted_at, last_finished).max(0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut problems = outcome_problems(&app.stack().store, &tenants, &jobs, &finals, &cancels).await;
    let (notify_problems, notify_summary) =
        notification_problems(&receiver, &app.stack().store, &jobs, &finals, restarted + CRASH_LIMIT).await;
    problems.extend(notify_problems);
    let count = |status: JobStatus| finals.values().filter(|j| j.status == status).count();
    println!(
        "crash: {} jobs, {in_flight_at_kill} in flight at the kill, down {down_seconds} s; recovery (restart → last job finished) {recovery:.1} s; \
         {} completed, {} canceled; {notify_summary}",
        ids.len(),
        count(JobStatus::Completed),
        count(JobStatus::Canceled)
    );
    bench_table(
        "Crash",
        "| jobs | in flight at the kill | down s | recovery s (restart → last job finished) | target ≤ 120 s | completed | canceled |",
        &format!(
            "| {} | {in_flight_at_kill} | {down_seconds} | {recovery:.1} | {} | {} | {} |",
            ids.len(),
            if recovery <= 120.0 { "met" } else { "NOT met" },
            count(JobStatus::Completed),
            count(JobStatus::Canceled)
        ),
    );
    if !problems.is_empty() {
        fail_with("after the crash", &problems);
    }
}

// ------------------------------------------------------------------ isolation

/// A quiet tenant's 1-second job: its time (created → completed, by the
/// job's own timestamps), its `completed` time, and how long after that its
/// `completed` notification reached the tenant's receiver.
async fn quiet_job(
    p: &TestApp,
    api: &HttpApi,
    key: &str,
    receiver: &Receiver,
    limit: Duration,
) -> Result<(f64, OffsetDateTime, f64), String> {
    let webhook_url = receiver.url("/hooks/quiet");
    let body = json!({"prompt": "A quiet pond at dawn", "duration_seconds": 1, "resolution": "480p", "webhook_url": webhook_url});
    let reply = api.as_key(key).generate(&body).await;
    let status = reply.status.as_u16();
    let reply = reply.body;
    if status != 202 {
        return Err(format!("the quiet job's create answered {status} {reply}"));
    }
    let id: JobId = reply["job_id"].as_str().expect("a job id").parse().expect("a valid job id");
    let finals = wait_until_settled(&p.stack().store, std::slice::from_ref(&id), Instant::now() + limit).await?;
    let job = &finals[&id];
    let Some(completed_at) = job.completed_at.filter(|_| job.status == JobStatus::Completed) else {
        let events = p.stack().store.events(&id).await.expect("events read");
        return Err(format!("the quiet job ended {}; events:\n{}", job.status, crate::harness::describe_events(&events)));
    };
    let deadline = Instant::now() + limit;
    let notified_at = loop {
        let delivered = receiver
            .received()
            .into_iter()
            .find(|r| r.json_or_null()["job_id"] == id.as_str() && r.json_or_null()["status"] == "completed")
            .map(|r| r.at);
        if let Some(at) = delivered {
            break at;
        }
        if Instant::now() > deadline {
            return Err(format!("the quiet job's completed notification did not arrive within {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok((seconds_between(job.created_at, completed_at), completed_at, seconds_between(completed_at, notified_at)))
}

/// The hostile tenant: creates and cancels `jobs` jobs (a cap's worth at a
/// time; canceling is free), each with a webhook to a receiver that never
/// answers. The provider waits before rendering, so canceled jobs cost no ffmpeg.
async fn hostile_jobs(api: &HttpApi, key: &str, webhook_url: &str, jobs: usize, per_round: usize) -> Result<usize, String> {
    let body = json!({"prompt": "Hostile", "duration_seconds": 1, "resolution": "480p", "webhook_url": webhook_url,
                      "metadata": {"local_faults": {"delay_ms": 5_000}}});
    let mut made = 0;
    while made < jobs {
        let round = per_round.min(jobs - made);
        let created = futures::future::join_all((0..round).map(|_| async { generate_as_a_client(&api.as_key(key), &body).await })).await;
        let mut ids = Vec::new();
        for reply in created {
            let (status, reply) = (reply.status.as_u16(), reply.body);
            if status != 202 {
                return Err(format!("a hostile create answered {status} {reply}"));
            }
            ids.push(reply["job_id"].as_str().expect("a job id").to_owned());
        }
        for id in ids {
            let reply = cancel_as_a_client(&api.as_key(key), &id).await;
            let (status, reply) = (reply.status.as_u16(), reply.body);
            if status != 200 {
                return Err(format!("a hostile cancel answered {status} {reply}"));
            }
            made += 1;
        }
    }
    Ok(made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_a_tenant_whose_receivers_never_answer_does_not_hold_back_another_tenants_job() {
    let hostile_count: usize = env_number("ISOLATION_HOSTILE_JOBS", 20);
    let alone_rounds: usize = env_number("ISOLATION_ALONE_ROUNDS", 0);
    let beside_rounds: usize = env_number("ISOLATION_BESIDE_ROUNDS", 1).max(1);
    let trickle_on = env_number::<u8>("ISOLATION_TRICKLE", 1) != 0;
    let limit = Duration::from_secs(env_number("ISOLATION_LIMIT_SECONDS", ISOLATION_LIMIT.as_secs()));
    let s = settings();
    let per_round = s.max_active_jobs as usize;
    let p = TestApp::builder().settings(s).with_local_provider().build().await;
    let api = p.http();
    let hanging = BlackHole::start().await;
    let answering = Receiver::answering(200).await;
    let (_, hostile_key) = p.another_user(1_000, Role::User).await;
    let (_, quiet_key) = p.another_user(1_000, Role::User).await;

    // For the bench: the quiet tenant's job with nobody else about.
    let mut alone = Vec::new();
    let mut alone_notified = Vec::new();
    for _ in 0..alone_rounds {
        let (seconds, _, notified) = quiet_job(&p, &api, &quiet_key, &answering, limit).await.unwrap_or_else(|e| panic!("alone: {e}"));
        alone.push(seconds);
        alone_notified.push(notified);
    }

    let hostile_url = hanging.url("/hooks/hostile");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut trickle = None;
    let mut flooded = 0;
    let mut beside = Vec::new();
    let mut beside_notified = Vec::new();
    let mut problems = Vec::new();
    for round in 0..beside_rounds {
        // The flood, before each quiet job: it is on once the pipeline holds
        // a connection to the hostile receiver.
        let flood_started = Instant::now();
        flooded += hostile_jobs(&api, &hostile_key, &hostile_url, hostile_count, per_round).await.unwrap_or_else(|e| panic!("{e}"));
        while hanging.open_at(OffsetDateTime::now_utc()) == 0 {
            assert!(
                flood_started.elapsed() < limit,
                "the hostile tenant's notifications were never attempted within {} s",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And it stays on: one more created and canceled every second while
        // the quiet jobs run (ISOLATION_TRICKLE=0: only the flood before each).
        if trickle_on && trickle.is_none() {
            let (api, key, url, stop) = (api.clone(), hostile_key.clone(), hostile_url.clone(), stop.clone());
            trickle = Some(tokio::spawn(async move {
                let mut made = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && made < 600 {
                    if let Ok(n) = hostile_jobs(&api, &key, &url, 1, 1).await {
                        made += n;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                made
            }));
        }
        let started = Instant::now();
        match quiet_job(&p, &api, &quiet_key, &answering, limit).await {
            Ok((seconds, completed_at, notified)) => {
                beside.push(seconds);
                beside_notified.push(notified);
                let open = hanging.open_at(completed_at);
                let connections = hanging.connections();
                let closed_before = connections.iter().filter(|c| c.closed_at.is_some_and(|at| at <= completed_at)).count();
                println!(
                    "isolation: round {round}: the quiet job took {seconds:.1} s beside the hostile tenant; at its completion the hostile \
                     receiver held {open} open connection(s) (of {} accepted, {closed_before} already given up, none answered)",
                    connections.len(),
                );
                // The guard is structural: the quiet job was created while a
                // hostile attempt hung (the wait above), and it and its own
                // notification had to finish within the limit, which a notifier
                // serialised behind the hostile tenant's attempts (10 s each,
                // four at a time, dozens queued) cannot do. Whether a hostile
                // connection is open at the very instant of completion is not
                // asked: between one attempt's timeout and the next one's slot
                // there is a gap of up to `SLOT_WAIT`, as it should be.
            }
            Err(e) => problems.push(format!(
                "round {round}: the quiet tenant's 1-second job did not complete within {} s beside the hostile tenant ({:.0} s): {e}",
                limit.as_secs(),
                started.elapsed().as_secs_f64()
            )),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let trickled = match trickle {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };

    let median = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let alone_median = median(&mut alone);
    let beside_median = median(&mut beside);
    let notified_cell = match (median(&mut alone_notified), median(&mut beside_notified)) {
        (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
        (None, Some(b)) => format!("– / {b:.2}"),
        _ => "–".to_owned(),
    };
    let connections = hanging.connections();
    println!(
        "isolation: hostile tenant: {flooded} jobs created and canceled ({hostile_count} before each quiet job), then {trickled} more during the quiet job(s); \
         the hanging receiver accepted {} connections, answered none; quiet job alone {:?} s, beside {:?} s",
        connections.len(),
        alone,
        beside
    );
    if let Some(alone) = alone_median {
        let limit = limit.as_secs_f64();
        let completed_rounds = beside.len();
        let failed_rounds = beside_rounds - completed_rounds;
        let past = if failed_rounds > 0 { format!(", {failed_rounds} past {limit:.0} s") } else { String::new() };
        // A round that never completed counts as the bound: the ratio is then a lower bound.
        let (beside_cell, ratio) = match beside_median {
            Some(beside) if failed_rounds == 0 => (format!("{beside:.2} (of {beside_rounds})"), beside / alone),
            Some(beside) => (format!("{beside:.2} (of {} completed{past})", completed_rounds), limit / alone),
            None => (format!("> {limit:.0} (none of {beside_rounds} completed)"), limit / alone),
        };
        let ratio_cell = if failed_rounds > 0 { format!("> {ratio:.0}×") } else { format!("{ratio:.2}×") };
        bench_table(
            "Isolation",
            "| quiet job alone s (median) | beside the hostile tenant s (median) | ratio | target ≤ 2× | quiet notification s after completion, alone / beside (median) | hostile jobs created and canceled (floods + during) | hostile connections accepted, answered |",
            &format!(
                "| {alone:.2} (of {alone_rounds}) | {beside_cell} | {ratio_cell} | {} | {notified_cell} | {flooded} + {trickled} ({}) | {}, 0 |",
                if failed_rounds == 0 && ratio <= 2.0 { "met" } else { "NOT met" },
                if trickle_on { "one a second during the quiet jobs" } else { "none during" },
                connections.len()
            ),
        );
    }
    if !problems.is_empty() {
        fail_with("isolation", &problems);
    }
}

// ------------------------------------------------------------------ the history check itself

#[test]
fn the_history_check_finds_a_move_back_a_refused_change_and_a_broken_chain_and_passes_a_good_history() {
    use videojobs_core::model::job::{EventSource, JobEvent};
    use JobStatus::*;
    let t0 = OffsetDateTime::now_utc();
    let history = |steps: &[(i64, Option<JobStatus>, JobStatus)]| -> Vec<JobEvent> {
        steps
            .iter()
            .map(|(ms, previous, status)| JobEvent {
                job_id: "job_01m8ezjg0faxpfm52eaextr4xv".parse().unwrap(),
                at: t0 + time::Duration::milliseconds(*ms),
                source: EventSource::Worker,
                previous_status: *previous,
                status: *status,
                message: String::new(),
                error_code: None,
                actor: None,
                delivery: None,
            })
            .collect()
    };
    let good = history(&[
        (0, None, Queued),
        (10, Some(Queued), Submitted),
        (20, Some(Submitted), Retrying),
        // The same millisecond, listed out of order: taken in the order that continues the history.
        (30, Some(Processing), Completed),
        (30, Some(Retrying), Submitted),
        (30, Some(Submitted), Processing),
        (40, Some(Completed), Completed),
    ]);
    assert_eq!(history_problems(&good), Vec::<String>::new());

    let back = history(&[
        (0, None, Queued),
        (10, Some(Queued), Submitted),
        (20, Some(Submitted), Processing),
        (30, Some(Processing), Completed),
        (40, Some(Submitted), Processing),
    ]);
    let problems = history_problems(&back);
    assert!(problems.iter().any(|p| p.contains("moved back from completed to processing")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("while the job was completed")), "{problems:?}");

    let refused = history(&[(0, None, Queued), (10, Some(Queued), Completed)]);
    assert!(history_problems(&refused).iter().any(|p| p.contains("is not allowed")));
}
