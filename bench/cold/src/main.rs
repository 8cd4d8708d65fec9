//! The cold request a user waits for: spawn to the answer of a first
//! `POST /videos/generate` (a valid key, a real transaction and execution
//! start), every AWS call over TLS to an endpoint that answers at once (see
//! `replay`), at a Lambda-like CPU share; then the second (warm) request.
//! Also spawn to the answer of a first event that needs no AWS call.
//!
//! cold-bench [--rounds N] BARE NAIVE CREATE...
//!
//! BARE is a bare `lambda_runtime` function (the baseline of the first
//! answer), NAIVE the create function built the usual way (aws-config's
//! default loader, clients built in `main`), each CREATE a build of ours.
//! All run in interleaved rounds, at each CPU share in turn.

mod replay;
mod runtime;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIRST_ANSWER_TARGET: f64 = 1.5;
const COLD_CREATE_TARGET: f64 = 0.5;
/// Lambda gives a function one vCPU at 1,769 MB, and CPU in proportion to memory.
const FULL_VCPU_MB: u64 = 1769;
const SHARES_MB: [u64; 2] = [128, FULL_VCPU_MB];
/// The CFS period of the bench's cgroups (Lambda does not publish its own):
/// short (the kernel takes no quota under 1 ms: 128 MB is 1.45 ms of 20), so that a share behaves as a steady fraction of a CPU and a figure
/// does not depend on where in a period a process happens to start.
const CFS_PERIOD_US: u64 = 20_000;
const CPU_CGROUPS: &str = "/sys/fs/cgroup/cpu";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a system keeps its CA bundle (Debian, Amazon Linux, others).
const SYSTEM_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// An API Gateway HTTP API (v2) request for a route no function has: answered without AWS.
const NO_AWS_EVENT: &str = r#"{"version":"2.0","routeKey":"$default","rawPath":"/bench/no-such-route","rawQueryString":"","headers":{"host":"bench.example.com"},"requestContext":{"accountId":"123456789012","apiId":"bench","domainName":"bench.example.com","domainPrefix":"bench","http":{"method":"GET","path":"/bench/no-such-route","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"cold-bench"},"requestId":"bench-1","routeKey":"$default","stage":"$default","time":"01/Jan/2026:00:00:00 +0000","timeEpoch":1767225600000},"isBase64Encoded":false}"#;

/// A create with a well-formed key (the replayed GetItem finds it active).
fn create_event(n: usize) -> String {
    let body = r#"{\"prompt\": \"A paper boat drifting down a rainy street, cinematic\", \"duration_seconds\": 4, \"aspect_ratio\": \"16:9\", \"resolution\": \"720p\"}"#;
    format!(
        r#"{{"version":"2.0","routeKey":"POST /videos/generate","rawPath":"/videos/generate","rawQueryString":"","headers":{{"authorization":"Bearer vj_coldBenchKey0000000000000000000000000000","content-type":"application/json","host":"bench.example.com"}},"requestContext":{{"accountId":"123456789012","apiId":"bench","domainName":"bench.example.com","domainPrefix":"bench","http":{{"method":"POST","path":"/videos/generate","protocol":"HTTP/1.1","sourceIp":"203.0.113.10","userAgent":"cold-bench"}},"requestId":"bench-{n}","routeKey":"POST /videos/generate","stage":"$default","time":"01/Jan/2026:00:00:00 +0000","timeEpoch":1767225600000}},"isBase64Encoded":false,"body":"{body}"}}"#
    )
}

/// A Lambda-like CPU share: a cgroup with a CFS quota, or the whole machine
/// when no cgroup could be made (`problem` says why).
struct Share {
    memory_mb: u64,
    quota_us: u64,
    cgroup: Option<PathBuf>,
    problem: Option<String>,
}

impl Share {
    fn new(memory_mb: u64) -> Self {
        let quota_us = CFS_PERIOD_US * memory_mb / FULL_VCPU_MB;
        match make_cgroup(memory_mb, quota_us) {
            Ok(dir) => Self { memory_mb, quota_us, cgroup: Some(dir), problem: None },
            Err(problem) => Self { memory_mb, quota_us, cgroup: None, problem: Some(problem) },
        }
    }

    fn describe(&self) -> String {
        match &self.problem {
            None => format!(
                "{} MB: cgroup (v1) CPU quota {} µs per {} µs period = {:.3} of a CPU",
                self.memory_mb,
                self.quota_us,
                CFS_PERIOD_US,
                self.quota_us as f64 / CFS_PERIOD_US as f64
            ),
            Some(problem) => format!(
                "{} MB: **no cgroup could be made ({problem}); measured at the machine's whole CPU instead, not at {:.3} of a CPU**",
                self.memory_mb,
                self.quota_us as f64 / CFS_PERIOD_US as f64
            ),
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(dir) = &self.cgroup {
            // A spawning thread that has just exited may still be listed for a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("could not remove {}", dir.display());
        }
    }
}

fn make_cgroup(memory_mb: u64, quota_us: u64) -> Result<PathBuf, String> {
    let root = Path::new(CPU_CGROUPS);
    if !root.join("cpu.cfs_quota_us").exists() {
        return Err(format!("{CPU_CGROUPS} is not a cgroup v1 CPU controller"));
    }
    let dir = root.join(format!("cold-bench-{}-{memory_mb}mb", std::process::id()));
    let made = std::fs::create_dir(&dir)
        .and_then(|_| std::fs::write(dir.join("cpu.cfs_period_us"), CFS_PERIOD_US.to_string()))
        .and_then(|_| std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()));
    made.map(|_| dir.clone()).map_err(|e| {
        let _ = std::fs::remove_dir(&dir);
        let who = if is_root() { "" } else { "not root; " };
        format!("{who}{}: {e}", dir.display())
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Spawns from a thread of its own moved into the share's cgroup first, so
/// that the child starts in it (cgroup v1 places threads; a child inherits the
/// cgroup of the thread that forks it). Returns the child and the spawn time.
fn spawn_in(share: &Share, command: &mut Command) -> Result<(Child, Instant), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(dir) = &share.cgroup {
                    let tid = std::fs::read_link("/proc/thread-self")
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .ok_or("cannot read this thread's id")?;
                    std::fs::write(dir.join("tasks"), tid).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let started = Instant::now();
                let child = command.spawn().map_err(|e| e.to_string())?;
                Ok((child, started))
            })
            .join()
            .map_err(|_| "the spawning thread panicked".to_string())?
    })
}

struct Setup {
    replay: replay::ReplayEndpoints,
    ca_file: PathBuf,
    bundle_file: PathBuf,
    bundle_from: Option<&'static str>,
    scratch: PathBuf,
}

impl Setup {
    fn command(&self, binary: &str, share: &Share, api: std::net::SocketAddr) -> Result<Command, String> {
        let stderr = std::fs::File::create(self.scratch.join("stderr.log")).map_err(|e| e.to_string())?;
        let dynamodb = format!("https://{}", self.replay.dynamodb);
        let sfn = format!("https://{}", self.replay.sfn);
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", share.memory_mb.to_string())
            .envs(bench_support::LAMBDA_ENV.iter().copied())
            // One host per service, as on AWS. S3 and SQS are not called by a
            // create; sent to the replay, a call would show as unanswered.
            .env("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb)
            .env("AWS_ENDPOINT_URL_SFN", &sfn)
            .env("AWS_ENDPOINT_URL_S3", &dynamodb)
            .env("AWS_ENDPOINT_URL_SQS", &dynamodb)
            // How each kind of function comes to trust the test CA: a build on
            // native roots reads the system bundle (plus the test CA) from
            // SSL_CERT_FILE; ours adds EXTRA_CA_CERTS to its compiled-in roots.
            .env("SSL_CERT_FILE", &self.bundle_file)
            .env("EXTRA_CA_CERTS", &self.ca_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        Ok(command)
    }

    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Spawns `binary`, hands it `events` in turn, and returns the spawn time
    /// and each answer; the process is killed afterwards.
    fn run(&self, binary: &str, share: &Share, events: Vec<String>) -> Result<(Instant, Vec<runtime::Answer>), String> {
        let count = events.len();
        let api = runtime::RuntimeApi::start(events).map_err(|e| e.to_string())?;
        let mut command = self.command(binary, share, api.addr)?;
        let (mut child, started) = spawn_in(share, &mut command).map_err(|e| format!("{binary}: {e}"))?;
        let deadline = started + TIMEOUT;
        let answers = (0..count).map(|i| api.wait_for_answer(i, deadline)).collect::<Result<Vec<_>, _>>();
        let _ = child.kill();
        let _ = child.wait();
        answers.map(|a| (started, a)).map_err(|problem| format!("{binary}: {problem}\n{}", self.stderr_tail()))
    }
}

fn status_of(body: &str) -> Option<u16> {
    let at = body.find("\"statusCode\":")? + "\"statusCode\":".len();
    body[at..].trim_start().chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Samples {
    no_aws: Vec<f64>,
    cold: Vec<f64>,
    warm: Vec<f64>,
}

fn file_name(binary: &str) -> String {
    Path::new(binary).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn usage() -> ! {
    eprintln!("usage: cold-bench [--rounds N] BARE NAIVE CREATE...");
    std::process::exit(2);
}

fn fail(problem: String) -> ! {
    eprintln!("{problem}");
    std::process::exit(1);
}

fn setup() -> Result<Setup, String> {
    let scratch = std::env::temp_dir().join(format!("cold-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let pki = replay::TestPki::generate()?;
    let ca_file = scratch.join("test-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).map_err(|e| e.to_string())?;
    let bundle_from = SYSTEM_BUNDLES.iter().copied().find(|path| Path::new(path).is_file());
    let mut bundle = bundle_from.and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default();
    bundle.push('\n');
    bundle.push_str(&pki.ca_pem);
    let bundle_file = scratch.join("bundle.pem");
    std::fs::write(&bundle_file, bundle).map_err(|e| e.to_string())?;
    let replay = replay::ReplayEndpoints::start(&pki).map_err(|e| e.to_string())?;
    Ok(Setup { replay, ca_file, bundle_file, bundle_from, scratch })
}

fn main() {
    let Some(bench_support::Args { rounds, binaries, .. }) = bench_support::parse_args(std::env::args().skip(1), 10, &[], 3) else {
        usage()
    };
    let setup = setup().unwrap_or_else(|e| fail(e));
    let creates = &binaries[1..];
    let names: Vec<String> = binaries.iter().map(|b| file_name(b)).collect();

    let (mut share_notes, mut notes) = (Vec::new(), Vec::new());
    let mut targets = Vec::new();
    for memory_mb in SHARES_MB {
        let share = Share::new(memory_mb);
        share_notes.push(share.describe());
        let mut samples: Vec<Samples> = binaries.iter().map(|_| Samples::default()).collect();
        for round in 0..rounds {
            for (i, binary) in binaries.iter().enumerate() {
                let event = if i == 0 { "{}".to_string() } else { NO_AWS_EVENT.to_string() };
                let (started, answers) = setup.run(binary, &share, vec![event]).unwrap_or_else(|e| fail(e));
                let answer = &answers[0];
                if i > 0 && status_of(&answer.body) != Some(404) {
                    fail(format!("{binary}: the route no function has was answered {}", answer.body));
                }
                samples[i].no_aws.push(ms(answer.answered - started));
            }
            for (i, binary) in creates.iter().enumerate() {
                let (started, answers) = setup.run(binary, &share, vec![create_event(1), create_event(2)]).unwrap_or_else(|e| fail(e));
                for answer in &answers {
                    if status_of(&answer.body) != Some(202) {
                        fail(format!("{binary}: a create was answered {}", answer.body));
                    }
                }
                let seen = setup.replay.take_seen();
                if !seen.unknown.is_empty() {
                    fail(format!("{binary}: asked what the replay has no answer for: {:?}", seen.unknown));
                }
                if round == 0 && i == 0 && memory_mb == SHARES_MB[0] {
                    let calls: Vec<String> = seen.by_target.iter().map(|(t, n)| format!("{t} × {}", n / 2)).collect();
                    notes.push(format!("AWS calls per create (all answered by the replay): {}", calls.join(", ")));
                }
                samples[i + 1].cold.push(ms(answers[0].answered - started));
                samples[i + 1].warm.push(ms(answers[1].answered - answers[1].handed));
            }
        }
        for s in &mut samples {
            s.no_aws.sort_by(f64::total_cmp);
            s.cold.sort_by(f64::total_cmp);
            s.warm.sort_by(f64::total_cmp);
        }
        let bare_answer = percentile(&samples[0].no_aws, 0.5);
        let naive_cold = percentile(&samples[1].cold, 0.5);
        println!("### {memory_mb} MB");
        println!();
        println!("| binary | first answer, no AWS call: median ms | × bare | cold create: median ms | p90 ms | × naive | warm create: median ms |");
        println!("|---|---|---|---|---|---|---|");
        for (i, name) in names.iter().enumerate() {
            let s = &samples[i];
            let answer = percentile(&s.no_aws, 0.5);
            let (cold, warm) = (percentile(&s.cold, 0.5), percentile(&s.warm, 0.5));
            let dash = |v: f64, text: String| if v.is_nan() { "–".to_string() } else { text };
            println!(
                "| {name} | {answer:.2} | {:.2} | {} | {} | {} | {} |",
                answer / bare_answer,
                dash(cold, format!("{cold:.1}")),
                dash(cold, format!("{:.1}", percentile(&s.cold, 0.9))),
                dash(cold, format!("{:.2}", cold / naive_cold)),
                dash(warm, format!("{warm:.2}")),
            );
            if i >= 2 {
                targets.push((
                    format!("{name}: first answer without AWS calls, {memory_mb} MB"),
                    answer / bare_answer,
                    FIRST_ANSWER_TARGET,
                    "× bare",
                ));
                if memory_mb == SHARES_MB[0] {
                    targets.push((format!("{name}: cold create, {memory_mb} MB"), cold / naive_cold, COLD_CREATE_TARGET, "× naive"));
                }
            }
        }
        println!();
    }
    println!("### Targets");
    println!();
    println!("| measure | measured | target | result |");
    println!("|---|---|---|---|");
    for (what, value, limit, unit) in &targets {
        let result = if value <= limit { "pass" } else { "**FAIL**" };
        println!("| {what} | {value:.2}{unit} | ≤ {limit}{unit} | {result} |");
    }
    println!();
    println!(
        "{rounds} interleaved rounds per share; bare = {}, naive = {}. CPU shares: {}. {}. \
         Trust: SSL_CERT_FILE = {} plus the bench's test CA (read by builds on native roots); \
         EXTRA_CA_CERTS = the test CA alone (read by ours, on top of its compiled-in roots).",
        names[0],
        names[1],
        share_notes.join("; "),
        notes.join("; "),
        setup.bundle_from.unwrap_or("no system bundle found"),
    );
    let _ = std::fs::remove_dir_all(&setup.scratch);
}
