//! Two benchmarks against the local stack (moto must be running; scripts/bench
//! starts it):
//!
//! - `--jobs N`: runs N text-to-video jobs that go well, end to end (create,
//!   10 status polls and a result read each, provider callbacks, worker,
//!   retention expiry), counts every AWS request the functions make (an SDK
//!   interceptor), the state machine's transitions and service calls (from the
//!   execution history) and the Lambda and API Gateway requests, and prices
//!   them per 1,000 jobs at published us-east-1 prices.
//! - `--copy-mib M`: streams an M MiB output from the provider into S3 the way
//!   the worker does, and reports the process's peak memory and the throughput.

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

type Error = Box<dyn std::error::Error + Send + Sync>;

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
    let outputs = videojobs_aws::S3Outputs::new(clients.s3.clone(), &resources.media_bucket, videojobs_providers::http_client());
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

async fn jobs_bench(jobs: usize) -> Result<(), Error> {
    let resources = bootstrap()?;
    let meter = RequestMeter::default();
    let clients = AwsClients::metered(&meter).await;
    // The event source mapping's polling is Lambda's, counted apart.
    let poller_clients = AwsClients::from_env();
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
    let app = Arc::new(local_api::App::on_aws(&clients, &resources, settings, providers, http.clone(), base.clone()));
    let user: UserId = "bench-user".parse()?;
    let key = ApiKey::generate();
    app.services
        .keys
        .save_key_record(
            &key.hash(),
            &videojobs_core::ports::KeyRecord::for_key(&key.hash(), Principal { user_id: user.clone(), role: Role::User }, "bench"),
        )
        .await?;
    app.services.accounts.open_account(&user, 1_000_000).await?;
    tokio::spawn(local_api::serve(listener, app.clone()));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let worker_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (sqs, url, worker) = (poller_clients.sqs.clone(), resources.work_queue_url.clone(), app.worker.clone());
        let (delivered, worker_ms) = (delivered.clone(), worker_ms.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((n, took)) = local_api::queue::poll_once(&sqs, &url, &worker, 1).await {
                    delivered.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    // Lambda bills each invocation to the next millisecond.
                    worker_ms.fetch_add(took.as_millis() as u64 + u64::from(n > 0), std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    meter.reset();
    let client = reqwest::Client::new();
    let mut api_requests = 0u64;
    let mut api_ms = 0f64;
    let mut job_ids = Vec::new();
    for i in 0..jobs {
        let started = Instant::now();
        let reply: serde_json::Value = client
            .post(format!("{base}/videos/generate"))
            .bearer_auth(key.expose())
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
                client.get(format!("{base}/videos/jobs/{id}/status")).bearer_auth(key.expose()).send().await?.json().await?;
            api_ms += started.elapsed().as_secs_f64() * 1000.0;
            polls += 1;
            status = body["status"].as_str().unwrap_or("").to_owned();
        }
        if status != "completed" {
            return Err(format!("job {id} is {status} after 10 polls").into());
        }
        let started = Instant::now();
        client.get(format!("{base}/videos/jobs/{id}/result")).bearer_auth(key.expose()).send().await?;
        api_ms += started.elapsed().as_secs_f64() * 1000.0;
        api_requests += 11;
        job_ids.push(id);
    }
    // Let the retention window pass so that expiry is counted too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all_expired = true;
        for id in &job_ids {
            let job = app.services.jobs.job(&id.parse()?).await?.ok_or("job gone")?;
            all_expired &= job.status == videojobs_core::JobStatus::Expired;
        }
        if all_expired || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = meter.snapshot();
    let stats: serde_json::Value = reqwest::get(format!("{}/v1/stats", provider.base_url)).await?.json().await?;
    let callbacks = stats["deliveries"].as_u64().unwrap_or(0);
    let messages = delivered.load(std::sync::atomic::Ordering::Relaxed);
    let (mut transitions, mut sm_sqs) = (0u64, 0u64);
    for id in &job_ids {
        let arn = videojobs_aws::StepFunctions::new(poller_clients.sfn.clone(), &resources.state_machine_arn).execution_arn(&id.parse()?);
        let history = poller_clients.sfn.get_execution_history().execution_arn(arn).max_results(1000).send().await?;
        for event in history.events() {
            let kind = event.r#type().as_str();
            if kind.ends_with("StateEntered") {
                transitions += 1;
            }
            if kind == "TaskScheduled" {
                sm_sqs += 1;
            }
        }
    }
    let largest_job_item = largest_job_item(&poller_clients, &resources, &job_ids).await?;
    let measured = Durations {
        api_ms_per_call: api_ms / api_requests as f64,
        worker_ms_total: worker_ms.load(std::sync::atomic::Ordering::Relaxed) as f64,
        largest_job_item,
    };
    report(jobs as f64, &counts, api_requests, callbacks, messages, transitions, sm_sqs, &measured);
    let _ = std::fs::remove_dir_all(provider_dir);
    Ok(())
}

/// What was timed and sized, for the parts AWS bills by duration and size.
struct Durations {
    /// Mean round trip of an API call through the local API (an upper bound
    /// on the function's own time; the webhook is billed at the same rate).
    api_ms_per_call: f64,
    worker_ms_total: f64,
    largest_job_item: usize,
}

/// The size DynamoDB bills a job item at: names and values, as it counts them.
async fn largest_job_item(clients: &AwsClients, resources: &Resources, ids: &[String]) -> Result<usize, Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    fn size(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| k.len() + 1 + size(v)).sum::<usize>(),
            AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + size(v)).sum::<usize>(),
            _ => 1,
        }
    }
    let mut largest = 0;
    for id in ids {
        let out = clients
            .dynamodb
            .get_item()
            .table_name(&resources.jobs_table)
            .key("pk", AttributeValue::S(format!("JOB#{id}")))
            .key("sk", AttributeValue::S("JOB".into()))
            .send()
            .await?;
        let item = out.item.unwrap_or_default();
        largest = largest.max(item.iter().map(|(k, v)| k.len() + size(v)).sum());
    }
    Ok(largest)
}

#[allow(clippy::too_many_arguments)]
fn report(
    jobs: f64,
    counts: &BTreeMap<(String, String), u64>,
    api: u64,
    callbacks: u64,
    messages: u64,
    transitions: u64,
    sm_sqs: u64,
    measured: &Durations,
) {
    let per = |n: u64| n as f64 / jobs;
    println!("## AWS requests per job that goes well ({jobs} jobs, 10 status polls and 1 result read each)\n");
    println!("| service | operation | per job |");
    println!("|---|---|---|");
    for ((service, op), n) in counts {
        println!("| {service} | {op} | {:.1} |", per(*n));
    }
    println!("| Step Functions | state transitions | {:.1} |", per(transitions));
    println!("| SQS (from the state machine) | SendMessage | {:.1} |", per(sm_sqs));
    println!("| API Gateway | HTTP API requests | {:.1} |", per(api));
    println!(
        "| Lambda | invocations: API {:.1} + webhook {:.1} + worker {:.1} | {:.1} |",
        per(api),
        per(callbacks),
        per(messages),
        per(api + callbacks + messages)
    );
    println!("| SQS (event source mapping) | ReceiveMessage + DeleteMessage, one each per message at most | {:.1} |", per(2 * messages));

    let get = |service: &str, op: &str| counts.get(&(service.to_owned(), op.to_owned())).copied().unwrap_or(0) as f64;
    let dynamo_ops: Vec<(&str, u64)> = counts.iter().filter(|((s, _), _)| s == "DynamoDB").map(|((_, o), n)| (o.as_str(), *n)).collect();
    let sum = |names: &[&str]| dynamo_ops.iter().filter(|(o, _)| names.contains(o)).map(|(_, n)| *n as f64).sum::<f64>();
    // Items are under 1 KB (the largest job item is measured below) but for
    // the task token's item: a real token is up to about 1 KB, so every
    // PutItem is counted at 2 units to be safe. Transactions cost double.
    let wru = 2.0 * sum(&["PutItem"]) + sum(&["UpdateItem", "DeleteItem"]) + 2.0 * get("DynamoDB", "TransactWriteItems (items)");
    let rru = sum(&["GetItem", "Query"]);
    let s3_put = ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"].iter().map(|o| get("S3", o)).sum::<f64>();
    let s3_get = get("S3", "HeadObject") + get("S3", "GetObject");
    let sqs = counts.iter().filter(|((s, _), _)| s == "SQS").map(|(_, n)| *n as f64).sum::<f64>() + sm_sqs as f64 + 2.0 * messages as f64;
    let invocations = (api + callbacks + messages) as f64;
    // API and webhook functions have 256 MB, the worker 512 MB (template.yaml).
    let gb_seconds = (api + callbacks) as f64 * 0.25 * measured.api_ms_per_call.ceil() / 1000.0 + 0.5 * measured.worker_ms_total / 1000.0;
    let lines = [
        ("API Gateway HTTP API", api as f64 * price::API_GATEWAY_HTTP),
        ("Lambda requests", invocations * price::LAMBDA_REQUEST),
        ("Lambda duration (arm64, as timed here)", gb_seconds * price::LAMBDA_ARM_GB_SECOND),
        ("DynamoDB writes (on-demand)", wru * price::DYNAMODB_WRU),
        ("DynamoDB reads (on-demand)", rru * price::DYNAMODB_RRU),
        ("SQS", sqs * price::SQS_REQUEST),
        ("Step Functions transitions", transitions as f64 * price::SFN_TRANSITION),
        ("S3 requests", s3_put * price::S3_PUT + s3_get * price::S3_GET),
    ];
    println!("\n## Cost per 1,000 jobs (us-east-1 list prices; storage not included)\n");
    println!("| item | $ per 1,000 jobs |");
    println!("|---|---|");
    let mut total = 0.0;
    for (name, dollars) in lines {
        let per_thousand = dollars / jobs * 1000.0;
        total += per_thousand;
        println!("| {name} | {per_thousand:.4} |");
    }
    println!("| **total** | **{total:.4}** (target ≤ 0.15: {}) |", if total <= 0.15 { "met" } else { "NOT met" });
    println!(
        "\nTimed here: {:.1} ms per API call (round trip, against moto), {:.1} ms of worker time per job. Largest job item: {} bytes. DynamoDB: {wru:.0} write units and {rru:.0} read units per {jobs} jobs.",
        measured.api_ms_per_call,
        measured.worker_ms_total / jobs,
        measured.largest_job_item
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
