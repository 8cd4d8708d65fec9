//! Two benchmarks against the local stack (moto must be running; scripts/bench
//! starts it):
//!
//! - `--jobs N`: runs N text-to-video jobs that go well and a reviewer
//!   approves, then N that nobody approves, end to end (create, 10 status
//!   polls and a result read each, provider callbacks, worker, the approval
//!   or the retention expiry), counts every AWS request the functions make (an
//!   SDK interceptor), the state machine's transitions and service calls (from
//!   the execution history) and the Lambda and API Gateway requests, and
//!   prices each kind per 1,000 jobs at published us-east-1 prices. The
//!   writes DynamoDB makes to the jobs table's global secondary indexes are
//!   computed from the table's stream (see `index_writes`).
//! - `--copy-mib M`: streams an M MiB output from the provider into S3 the way
//!   the worker does, and reports the process's peak memory and the throughput.

mod index_writes;
mod stream;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use videojobs_aws::metering::RequestMeter;
use videojobs_aws::{AwsClients, Resources};
use videojobs_core::model::ids::{ApiKey, Role, UserId};
use videojobs_core::model::settings::Settings;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::ports::{OutputStore, Principal};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// us-east-1 list prices, in dollars per request (or unit).
mod price {
    pub const API_GATEWAY_HTTP: f64 = 1.00 / 1e6;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    pub const SFN_TRANSITION: f64 = 0.025 / 1e3;
    pub const S3_PUT: f64 = 0.005 / 1e3;
    pub const S3_GET: f64 = 0.0004 / 1e3;
}

fn bootstrap() -> Result<Resources, Error> {
    let stack = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    let env_file = std::env::temp_dir().join(format!("{stack}.env"));
    let status = Command::new(".venv/bin/python")
        .args(["infra/local/bootstrap.py", "--stack-name", &stack, "--env-out"])
        .arg(&env_file)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err("bootstrap failed".into());
    }
    let text = std::fs::read_to_string(&env_file)?;
    let exports: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    Ok(Resources::from_lookup(|name| exports.get(name).cloned())?)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn copy_bench(mib: u64) -> Result<(), Error> {
    let resources = bootstrap()?;
    let clients = AwsClients::from_env();
    let dir = std::env::temp_dir().join(format!("copy-bench-{}", ulid::Ulid::new()));
    let id = "lp_copybench";
    std::fs::create_dir_all(dir.join(id))?;
    let file = std::fs::File::create(dir.join(id).join("video.mp4"))?;
    // A sparse file: reading it costs no disk, so the copy path is what is measured.
    file.set_len(mib * 1024 * 1024)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let secret = WebhookSecret::parse(&WebhookSecret::generate_text())?;
    let provider = local_provider::spawn(listener, local_provider::Config::local(dir.clone(), secret))?;
    // The local provider serves on loopback over http, as in the local stack.
    let local = videojobs_core::model::notification::WebhookPolicy {
        allow_http: true,
        loopback: videojobs_core::model::notification::LoopbackPorts::range(1, u16::MAX),
    };
    let outputs = videojobs_aws::S3Outputs::new(clients.s3.clone(), &resources.media_bucket).fetching_from(local);
    let before = peak_rss_mib();
    let started = Instant::now();
    let copied = outputs.copy_from_url(&format!("{}/files/{id}/video.mp4", provider.base_url), "bench/copy.bin", "video/mp4").await?;
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let _ = std::fs::remove_dir_all(&dir);
    println!("## S3 copy of a {mib} MiB output\n");
    println!("| size | parts | time s | throughput MiB/s | peak RSS MiB (whole process) | RSS before copy MiB | target |");
    println!("|---|---|---|---|---|---|---|");
    let parts = copied.size_bytes.div_ceil(videojobs_aws::outputs::PART_BYTES as u64);
    println!(
        "| {} MiB | {parts} | {elapsed:.1} | {:.1} | {peak:.1} | {before:.1} | peak ≤ 64 MB: {} |",
        copied.size_bytes / (1024 * 1024),
        copied.size_bytes as f64 / (1024.0 * 1024.0) / elapsed,
        if peak * 1.048_576 <= 64.0 { "yes" } else { "NO" }
    );
    Ok(())
}

/// What one run of jobs used, and the durations AWS bills.
struct Phase {
    jobs: f64,
    counts: BTreeMap<(String, String), u64>,
    api: u64,
    callbacks: u64,
    messages: u64,
    transitions: u64,
    sm_sqs: u64,
    api_ms_per_call: f64,
    worker_ms_total: f64,
    states: BTreeMap<String, u64>,
    /// What the phase's writes cost the jobs table's indexes.
    index: stream::IndexWrites,
}

/// The pieces of the local stack a bench run drives.
struct Bench {
    app: Arc<local_api::App>,
    meter: RequestMeter,
    /// Unmetered: what the bench itself reads (waiting, histories) is not the pipeline's.
    quiet: AwsClients,
    quiet_store: videojobs_aws::DynamoStore,
    resources: Resources,
    /// The jobs table's stream: every write's item before and after.
    stream: stream::JobsStream,
    base: String,
    provider_url: String,
    user_key: ApiKey,
    reviewer_key: ApiKey,
    delivered: Arc<std::sync::atomic::AtomicU64>,
    worker_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Bench {
    async fn provider_deliveries(&self) -> Result<u64, Error> {
        let stats: serde_json::Value = reqwest::get(format!("{}/v1/stats", self.provider_url)).await?.json().await?;
        Ok(stats["deliveries"].as_u64().unwrap_or(0))
    }

    async fn execution_running(&self, id: &str) -> Result<bool, Error> {
        let sfn = videojobs_aws::StepFunctions::new(self.quiet.sfn.clone(), &self.resources.state_machine_arn);
        let out = self.quiet.sfn.describe_execution().execution_arn(sfn.execution_arn(&id.parse()?)).send().await?;
        Ok(out.status().as_str() == "RUNNING")
    }

    /// `jobs` jobs that go well: create, 10 status polls, a result read each,
    /// then either a reviewer's approval (once the review wait is stored) or
    /// nothing until the retention window has passed; every request counted.
    async fn run(&self, jobs: usize, approve: bool) -> Result<Phase, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        use videojobs_core::ports::{JobReads, ReviewWaits};
        let (delivered_before, worker_ms_before) = (self.delivered.load(Relaxed), self.worker_ms.load(Relaxed));
        let callbacks_before = self.provider_deliveries().await?;
        self.meter.reset();
        let stream_position = self.stream.position().await?;
        let client = reqwest::Client::new();
        let base = &self.base;
        let mut api_requests = 0u64;
        let mut api_ms = 0f64;
        let mut job_ids = Vec::new();
        for i in 0..jobs {
            let started = Instant::now();
            let reply: serde_json::Value = client
                .post(format!("{base}/videos/generate"))
                .bearer_auth(self.user_key.expose())
                .json(&serde_json::json!({"prompt": format!("Benchmark clip number {i}"), "duration_seconds": 1, "resolution": "480p"}))
                .send()
                .await?
                .json()
                .await?;
            api_ms += started.elapsed().as_secs_f64() * 1000.0;
            api_requests += 1;
            let id = reply["job_id"].as_str().ok_or("no job id")?.to_owned();
            let mut polls = 0;
            let mut status = String::new();
            while polls < 10 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let started = Instant::now();
                let body: serde_json::Value =
                    client.get(format!("{base}/videos/jobs/{id}/status")).bearer_auth(self.user_key.expose()).send().await?.json().await?;
                api_ms += started.elapsed().as_secs_f64() * 1000.0;
                polls += 1;
                status = body["status"].as_str().unwrap_or("").to_owned();
            }
            if status != "completed" {
                return Err(format!("job {id} is {status} after 10 polls").into());
            }
            let started = Instant::now();
            client.get(format!("{base}/videos/jobs/{id}/result")).bearer_auth(self.user_key.expose()).send().await?;
            api_ms += started.elapsed().as_secs_f64() * 1000.0;
            api_requests += 11;
            if approve {
                // A person reviews later than this: the wait is stored by then.
                let deadline = Instant::now() + Duration::from_secs(30);
                while self.quiet_store.review_token(&id.parse()?).await?.is_none() {
                    if Instant::now() > deadline {
                        return Err(format!("no review wait stored for {id}").into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let started = Instant::now();
                let reply = client
                    .post(format!("{base}/videos/jobs/{id}/review"))
                    .bearer_auth(self.reviewer_key.expose())
                    .json(&serde_json::json!({"decision": "approve"}))
                    .send()
                    .await?;
                api_ms += started.elapsed().as_secs_f64() * 1000.0;
                api_requests += 1;
                if !reply.status().is_success() {
                    return Err(format!("approving {id}: {}", reply.status()).into());
                }
            }
            job_ids.push(id);
        }
        // Unapproved jobs: until they expired. Approved ones: until their
        // executions ended, then past the retention window, so that anything
        // it would still do is counted.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut done = true;
            for id in &job_ids {
                done &= if approve {
                    !self.execution_running(id).await?
                } else {
                    let job = self.quiet_store.job(&id.parse()?).await?.ok_or("job gone")?;
                    job.status == videojobs_core::JobStatus::Expired
                };
            }
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let settle = if approve { self.app.status.settings.retention_seconds + 2 } else { 1 };
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let counts = self.meter.snapshot();
        let index = self.stream.tally(&self.stream.records_since(stream_position).await?);
        let callbacks = self.provider_deliveries().await? - callbacks_before;
        let messages = self.delivered.load(Relaxed) - delivered_before;
        let worker_ms_total = (self.worker_ms.load(Relaxed) - worker_ms_before) as f64;
        let (mut transitions, mut sm_sqs) = (0u64, 0u64);
        let mut states = BTreeMap::new();
        for id in &job_ids {
            let arn =
                videojobs_aws::StepFunctions::new(self.quiet.sfn.clone(), &self.resources.state_machine_arn).execution_arn(&id.parse()?);
            let history = self.quiet.sfn.get_execution_history().execution_arn(arn).max_results(1000).send().await?;
            for event in history.events() {
                if let Some(entered) = event.state_entered_event_details() {
                    transitions += 1;
                    *states.entry(entered.name().to_owned()).or_insert(0) += 1;
                }
                if event.r#type().as_str() == "TaskScheduled" {
                    sm_sqs += 1;
                }
            }
        }
        Ok(Phase {
            jobs: jobs as f64,
            counts,
            api: api_requests,
            callbacks,
            messages,
            transitions,
            sm_sqs,
            api_ms_per_call: api_ms / api_requests as f64,
            worker_ms_total,
            states,
            index,
        })
    }
}

async fn jobs_bench(jobs: usize) -> Result<(), Error> {
    let resources = bootstrap()?;
    let meter = RequestMeter::default();
    // Unmetered: turning the stream on and reading it are the bench's.
    let stream = stream::JobsStream::enable(&AwsClients::from_env().dynamodb, &resources.jobs_table).await?;
    let clients = AwsClients::metered(&meter).await;
    // The event source mapping's polling is Lambda's, counted apart.
    let quiet = AwsClients::from_env();
    let secret_text = WebhookSecret::generate_text();
    let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_dir = std::env::temp_dir().join(format!("pipeline-bench-{}", ulid::Ulid::new()));
    let provider =
        local_provider::spawn(provider_listener, local_provider::Config::local(provider_dir.clone(), WebhookSecret::parse(&secret_text)?))?;
    let http = videojobs_providers::http_client();
    let lookup = |name: &str| match name {
        "LOCAL_PROVIDER_URL" => Some(provider.base_url.clone()),
        "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret_text.clone()),
        _ => None,
    };
    let providers = videojobs_providers::from_lookup(lookup, http.clone())?;
    let mut settings = Settings::from_lookup(|_| None)?;
    settings.retention_seconds = 6;
    // The figures are the pipeline's; per-key limits add one UpdateItem per API request (docs/SECURITY.md).
    settings.rate_limits = videojobs_core::model::ratelimit::RateLimits { requests_per_minute: 0, creates_per_minute: 0 };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Each function signs as itself (its role checked by the local gate), with
    // no injected faults or duplicate deliveries: the counts are the pipeline's own.
    let signed_as = |function| {
        let mut options = AwsClients::local_options(function, Some("none"));
        options.meter = Some(meter.clone());
        AwsClients::build(options)
    };
    let app = Arc::new(local_api::App::on_aws(signed_as, &resources, settings.clone(), providers, base.clone()));
    // Accounts and keys are an operator's setup, metered like the rest.
    let admin = videojobs_aws::services(&clients, &resources, settings);
    let user: UserId = "bench-user".parse()?;
    let user_key = ApiKey::generate();
    admin
        .keys
        .save_key_record(
            &user_key.hash(),
            &videojobs_core::ports::KeyRecord::for_key(&user_key.hash(), Principal { user_id: user.clone(), role: Role::User }, "bench"),
        )
        .await?;
    admin.accounts.open_account(&user, 1_000_000).await?;
    let reviewer_key = ApiKey::generate();
    let reviewer = Principal { user_id: "bench-reviewer".parse()?, role: Role::Reviewer };
    admin
        .keys
        .save_key_record(&reviewer_key.hash(), &videojobs_core::ports::KeyRecord::for_key(&reviewer_key.hash(), reviewer.clone(), "bench"))
        .await?;
    tokio::spawn(local_api::serve(listener, app.clone()));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let worker_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (sqs, url, worker) = (quiet.sqs.clone(), resources.work_queue_url.clone(), app.worker.clone());
        let (delivered, worker_ms) = (delivered.clone(), worker_ms.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((n, took)) =
                    local_api::queue::poll_once(&sqs, &url, &worker, 1, &local_api::queue::Delivery::exactly_once()).await
                {
                    delivered.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    // Lambda bills each invocation to the next millisecond.
                    worker_ms.fetch_add(took.as_millis() as u64 + u64::from(n > 0), std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let bench = Bench {
        quiet_store: videojobs_aws::DynamoStore::new(quiet.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table),
        app,
        meter,
        quiet,
        resources,
        stream,
        base,
        provider_url: provider.base_url.clone(),
        user_key,
        reviewer_key,
        delivered,
        worker_ms,
    };
    let approved = bench.run(jobs, true).await?;
    let unapproved = bench.run(jobs, false).await?;
    let largest = largest_items(&bench.quiet, &bench.resources).await?;
    report(&approved, &unapproved, &largest);
    let _ = std::fs::remove_dir_all(provider_dir);
    Ok(())
}

/// The largest items in the jobs table, at the size DynamoDB bills them
/// (names and values, as it counts them).
struct Largest {
    /// The largest job item.
    job: usize,
    /// The largest item of any kind but the task tokens' (which are only
    /// ever put, and sized from the request): what bounds the billed size of
    /// an update, a delete or a condition check, counted at one unit.
    updated: (usize, String),
}

async fn largest_items(clients: &AwsClients, resources: &Resources) -> Result<Largest, Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    fn size(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| k.len() + 1 + size(v)).sum::<usize>(),
            AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + size(v)).sum::<usize>(),
            _ => 1,
        }
    }
    let mut largest = Largest { job: 0, updated: (0, String::new()) };
    let mut start = None;
    loop {
        let out = clients.dynamodb.scan().table_name(&resources.jobs_table).set_exclusive_start_key(start).send().await?;
        for item in out.items() {
            let bytes = item.iter().map(|(k, v)| k.len() + size(v)).sum();
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if sk == "JOB" {
                largest.job = largest.job.max(bytes);
            }
            if !item.contains_key("token") && bytes > largest.updated.0 {
                largest.updated = (bytes, sk);
            }
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(largest);
        }
    }
}

/// Dollars per 1,000 jobs, line by line, for one phase.
fn costs(p: &Phase) -> Vec<(&'static str, f64)> {
    let get = |service: &str, op: &str| p.counts.get(&(service.to_owned(), op.to_owned())).copied().unwrap_or(0) as f64;
    let dynamo = |names: &[&str]| names.iter().map(|o| get("DynamoDB", o)).sum::<f64>();
    // Measured by the meter from each request's items (see
    // `videojobs_aws::metering::write_units`): transactions cost double.
    let wru = write_units(p);
    let rru = dynamo(&["GetItem", "Query"]);
    // PUT, COPY, POST and LIST are one price (tagging an object is a PUT).
    let s3_put = ["PutObject", "PutObjectTagging", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"]
        .iter()
        .map(|o| get("S3", o))
        .sum::<f64>();
    // DELETE requests are free on S3's price list; taking an object's tags
    // off (DeleteObjectTagging) is counted at the GET price all the same, in
    // case AWS bills it as a request of its own.
    let s3_get = get("S3", "HeadObject") + get("S3", "GetObject") + get("S3", "DeleteObjectTagging");
    let sqs =
        p.counts.iter().filter(|((s, _), _)| s == "SQS").map(|(_, n)| *n as f64).sum::<f64>() + p.sm_sqs as f64 + 2.0 * p.messages as f64;
    let invocations = (p.api + p.callbacks + p.messages) as f64;
    // API and webhook functions have 256 MB, the worker 512 MB (template.yaml).
    let gb_seconds = (p.api + p.callbacks) as f64 * 0.25 * p.api_ms_per_call.ceil() / 1000.0 + 0.5 * p.worker_ms_total / 1000.0;
    let lines = [
        ("API Gateway HTTP API", p.api as f64 * price::API_GATEWAY_HTTP),
        ("Lambda requests", invocations * price::LAMBDA_REQUEST),
        ("Lambda duration (arm64, as timed here)", gb_seconds * price::LAMBDA_ARM_GB_SECOND),
        ("DynamoDB writes (on-demand)", wru * price::DYNAMODB_WRU),
        ("DynamoDB index writes (on-demand, from the table's stream)", p.index.total() as f64 * price::DYNAMODB_WRU),
        ("DynamoDB reads (on-demand)", rru * price::DYNAMODB_RRU),
        ("SQS", sqs * price::SQS_REQUEST),
        ("Step Functions transitions", p.transitions as f64 * price::SFN_TRANSITION),
        ("S3 requests", s3_put * price::S3_PUT + s3_get * price::S3_GET),
    ];
    lines.into_iter().map(|(name, dollars)| (name, dollars / p.jobs * 1000.0)).collect()
}

/// DynamoDB write units of a phase, as the meter measured them.
fn write_units(p: &Phase) -> f64 {
    p.counts.iter().filter(|((s, op), _)| s == "DynamoDB" && op.ends_with("(write units)")).map(|(_, n)| *n as f64).sum()
}

/// The target for 1,000 approved jobs (issue 13).
const APPROVED_TARGET: f64 = 0.10;

fn report(approved: &Phase, unapproved: &Phase, largest: &Largest) {
    let jobs = approved.jobs;
    println!(
        "## AWS requests per job ({jobs} approved and {} unapproved jobs; create, 10 status polls and 1 result read each)\n",
        unapproved.jobs
    );
    println!("| service | operation | approved | unapproved |");
    println!("|---|---|---|---|");
    // The requests, and beside DynamoDB's the index writes they caused.
    let rows = |p: &Phase| {
        let mut rows = p.counts.clone();
        for (index, units) in &p.index.per_index {
            rows.insert(("DynamoDB".to_owned(), format!("index writes: {index} (write units)")), *units);
        }
        rows
    };
    let (approved_rows, unapproved_rows) = (rows(approved), rows(unapproved));
    let mut ops: Vec<&(String, String)> = approved_rows.keys().chain(unapproved_rows.keys()).collect();
    ops.sort();
    ops.dedup();
    let per = |p: &Phase, n: u64| n as f64 / p.jobs;
    for op in ops {
        let a = approved_rows.get(op).copied().unwrap_or(0);
        let u = unapproved_rows.get(op).copied().unwrap_or(0);
        println!("| {} | {} | {:.1} | {:.1} |", op.0, op.1, per(approved, a), per(unapproved, u));
    }
    let states = |p: &Phase| p.states.iter().map(|(name, n)| format!("{name} {:.0}", per(p, *n))).collect::<Vec<_>>().join(", ");
    println!(
        "| Step Functions | state transitions ({} / {}) | {:.1} | {:.1} |",
        states(approved),
        states(unapproved),
        per(approved, approved.transitions),
        per(unapproved, unapproved.transitions)
    );
    println!(
        "| SQS (from the state machine) | SendMessage | {:.1} | {:.1} |",
        per(approved, approved.sm_sqs),
        per(unapproved, unapproved.sm_sqs)
    );
    println!("| API Gateway | HTTP API requests | {:.1} | {:.1} |", per(approved, approved.api), per(unapproved, unapproved.api));
    let lambda = |p: &Phase| format!("API {:.1} + webhook {:.1} + worker {:.1}", per(p, p.api), per(p, p.callbacks), per(p, p.messages));
    println!(
        "| Lambda | invocations ({} / {}) | {:.1} | {:.1} |",
        lambda(approved),
        lambda(unapproved),
        per(approved, approved.api + approved.callbacks + approved.messages),
        per(unapproved, unapproved.api + unapproved.callbacks + unapproved.messages)
    );
    println!(
        "| SQS (event source mapping) | ReceiveMessage + DeleteMessage, one each per message at most | {:.1} | {:.1} |",
        per(approved, 2 * approved.messages),
        per(unapproved, 2 * unapproved.messages)
    );

    println!("\n## Cost per 1,000 jobs (us-east-1 list prices; storage not included)\n");
    println!("| item | approved | unapproved |");
    println!("|---|---|---|");
    let (a, u) = (costs(approved), costs(unapproved));
    for ((name, da), (_, du)) in a.iter().zip(&u) {
        println!("| {name} | {da:.4} | {du:.4} |");
    }
    let (ta, tu) = (a.iter().map(|(_, d)| d).sum::<f64>(), u.iter().map(|(_, d)| d).sum::<f64>());
    println!("| **total** | **{ta:.4}** | **{tu:.4}** |");
    println!(
        "| target (approved) | ≤ {APPROVED_TARGET:.2}: {} | |",
        if ta <= APPROVED_TARGET { "met".to_owned() } else { format!("NOT met, {:.4} over", ta - APPROVED_TARGET) }
    );
    println!(
        "\nTimed here: {:.1} / {:.1} ms per API call (round trip, against moto), {:.1} / {:.1} ms of worker time per job (approved / unapproved). Largest job item: {} bytes.",
        approved.api_ms_per_call,
        unapproved.api_ms_per_call,
        approved.worker_ms_total / approved.jobs,
        unapproved.worker_ms_total / unapproved.jobs,
        largest.job,
    );
    println!(
        "DynamoDB write units per job, measured from the items written (task tokens' items sized with a {}-character token): {:.1} / {:.1}. Largest item but the tokens': {} bytes (`{}`): updates, deletes and condition checks counted at one unit each are {}.",
        videojobs_aws::metering::LONGEST_TASK_TOKEN,
        write_units(approved) / approved.jobs,
        write_units(unapproved) / unapproved.jobs,
        largest.updated.0,
        largest.updated.1,
        if largest.updated.0 <= 1024 { "exact" } else { "UNDERCOUNTED (an item is over 1 KB)" },
    );
    let per_index = approved
        .index
        .per_index
        .iter()
        .map(|(index, units)| {
            let u = unapproved.index.per_index.get(index).copied().unwrap_or(0);
            format!("{index} {:.1} / {:.1}", *units as f64 / approved.jobs, u as f64 / unapproved.jobs)
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "DynamoDB index write units per job, from the jobs table's stream (each write's item before and after, by DynamoDB's rules per global secondary index; an index write caused by a transaction is counted once, on the assumption that a transaction's doubling applies to the table's writes only): {:.1} / {:.1} ({per_index}). The jobs table's own write units from the same images, each write once (not doubled in a transaction; condition checks and refused conditional writes, which leave no record, not included): {:.1} / {:.1} in {:.1} / {:.1} writes, beside the meter's {:.1} / {:.1} (every table, transactions doubled).",
        approved.index.total() as f64 / approved.jobs,
        unapproved.index.total() as f64 / unapproved.jobs,
        approved.index.table_units as f64 / approved.jobs,
        unapproved.index.table_units as f64 / unapproved.jobs,
        approved.index.writes as f64 / approved.jobs,
        unapproved.index.writes as f64 / unapproved.jobs,
        write_units(approved) / approved.jobs,
        write_units(unapproved) / unapproved.jobs,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    videojobs_providers::tls::install_crypto_provider();
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err("AWS_ENDPOINT_URL must point at moto: run scripts/bench".into());
    }
    let mut jobs = 5;
    let mut copy_mib = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => jobs = args.next().and_then(|n| n.parse().ok()).unwrap_or(jobs),
            "--copy-mib" => copy_mib = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if copy_mib > 0 {
        copy_bench(copy_mib).await
    } else {
        jobs_bench(jobs).await
    }
}
