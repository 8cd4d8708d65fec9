//! Measures each Lambda binary's cold start the way Lambda sees it: the time
//! from spawning the process to its first `GET …/runtime/invocation/next` on a
//! fake Runtime API. Binaries are measured in interleaved rounds, so that a
//! noisy moment on a shared machine hits all of them alike.
//!
//! startup-bench [--rounds N] [--check] BASELINE BINARY...
//!
//! The first binary is the baseline the others are compared with (a bare
//! `lambda_runtime` function). `--check` exits non-zero when a target is missed.
//! Each round also measures, for information, the time to the answer to a first
//! event (see `first_answer`).

mod first_answer;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const START_UP_TARGET: f64 = 1.5;
const SIZE_TARGET_MB: f64 = 8.0;
/// A binary that has not asked for an event by then is reported, not waited for.
const TIMEOUT: Duration = Duration::from_secs(10);
const NEXT_EVENT: &str = "GET /2018-06-01/runtime/invocation/next";

/// What the start-up bench sets besides what every bench does (`bench_support::LAMBDA_ENV`).
const MORE_ENV: &[(&str, &str)] = &[
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    // The worker also needs the URL providers call back.
    ("WEBHOOK_BASE_URL", "https://example.lambda-url.us-east-1.on.aws/"),
];

/// Lambda's image (Amazon Linux) has one CA bundle and no directory of hashed
/// certificate files; a Debian machine has 146 of them, which the TLS stack
/// reads unless `SSL_CERT_FILE` names the bundle. Passed through when set.
fn ca_bundle() -> Option<String> {
    std::env::var("SSL_CERT_FILE").ok().filter(|f| !f.is_empty())
}

/// The binary with a Lambda environment pointing at `runtime_api`, its stderr to `stderr_log`.
fn lambda_command(binary: &str, runtime_api: std::net::SocketAddr, stderr_log: &Path) -> Result<Command, String> {
    let stderr = std::fs::File::create(stderr_log).map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .envs(bench_support::LAMBDA_ENV.iter().chain(MORE_ENV).copied())
        .envs(ca_bundle().map(|file| ("SSL_CERT_FILE", file)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Ok(command)
}

fn file_name(binary: &str) -> String {
    Path::new(binary).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn stderr_tail(stderr_log: &Path) -> String {
    let log = std::fs::read_to_string(stderr_log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    tail.join("\n")
}

/// Spawn to the runtime's answer to a first event it can handle without AWS.
fn first_answer(binary: &str, scratch: &Path) -> Result<Duration, String> {
    let api = first_answer::RuntimeApi::start(first_answer::event_for(&file_name(binary))).map_err(|e| e.to_string())?;
    let stderr_log = scratch.with_extension("stderr");
    let mut command = lambda_command(binary, api.addr, &stderr_log)?;
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("{binary}: {e}"))?;
    let outcome = api.wait_for_answer(started, TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    outcome.map_err(|problem| format!("{binary}: {problem}\n{}", stderr_tail(&stderr_log)))
}

/// One cold start: spawn to the first request line on a fresh fake Runtime API.
fn first_request(binary: &str, scratch: &Path) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stderr_log = scratch.with_extension("stderr");
    let mut command = lambda_command(binary, addr, &stderr_log)?;

    let started = Instant::now();
    let child = command.spawn().map_err(|e| format!("{binary}: {e}"))?;
    let child = Arc::new(Mutex::new(child));

    // Wakes the accept below if the binary exits or hangs before it asks for an event.
    let (done, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn({
        let child = Arc::clone(&child);
        move || -> Option<String> {
            loop {
                match done_rx.recv_timeout(Duration::from_millis(50)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return None,
                }
                let mut child = child.lock().expect("the watchdog never panics holding the child");
                let problem = match child.try_wait() {
                    Ok(Some(status)) => Some(format!("exited ({status}) before asking for an event")),
                    Ok(None) if started.elapsed() > TIMEOUT => {
                        let _ = child.kill();
                        Some(format!("did not ask for an event within {} s", TIMEOUT.as_secs()))
                    }
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                };
                if problem.is_some() {
                    let _ = TcpStream::connect(addr);
                    return problem;
                }
            }
        }
    });

    let mut seen = Vec::new();
    if let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_read_timeout(Some(TIMEOUT));
        let mut buffer = [0u8; 512];
        // The request line is enough: it names the path the runtime asks for.
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    }
    let elapsed = started.elapsed();
    let _ = done.send(());
    let problem = watchdog.join().unwrap_or(None);
    {
        let mut child = child.lock().expect("the watchdog never panics holding the child");
        let _ = child.kill();
        let _ = child.wait();
    }

    let line = String::from_utf8_lossy(&seen);
    let line = line.lines().next().unwrap_or("");
    if line.starts_with(NEXT_EVENT) {
        return Ok(elapsed);
    }
    let problem = problem.unwrap_or_else(|| format!("first request was {line:?}, not {NEXT_EVENT:?}"));
    Err(format!("{binary}: {problem}\n{}", stderr_tail(&stderr_log)))
}

/// File size as built; a copy is stripped as well, and the smaller reported.
fn stripped_bytes(binary: &str, scratch: &Path) -> u64 {
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let copy = scratch.with_extension("strip");
    let stripped = std::fs::copy(binary, &copy)
        .ok()
        .and_then(|_| Command::new("strip").arg(&copy).stderr(Stdio::null()).status().ok())
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&copy).ok())
        .map(|m| m.len())
        .unwrap_or(size);
    let _ = std::fs::remove_file(&copy);
    size.min(stripped)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn usage() -> ! {
    eprintln!("usage: startup-bench [--rounds N] [--check] BASELINE BINARY...");
    std::process::exit(2);
}

fn main() {
    let Some(bench_support::Args { rounds, flags, binaries }) = bench_support::parse_args(std::env::args().skip(1), 30, &["--check"], 2)
    else {
        usage()
    };
    let check = flags.iter().any(|flag| flag == "--check");
    let scratch: PathBuf = std::env::temp_dir().join(format!("startup-bench-{}", std::process::id()));

    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); binaries.len()];
    let mut answers: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); binaries.len()];
    for _ in 0..rounds {
        for (i, binary) in binaries.iter().enumerate() {
            let measured = first_request(binary, &scratch).and_then(|request| Ok((request, first_answer(binary, &scratch)?)));
            match measured {
                Ok((request, answer)) => {
                    samples[i].push(request.as_secs_f64() * 1000.0);
                    answers[i].push(answer.as_secs_f64() * 1000.0);
                }
                Err(err) => {
                    eprintln!("{err}");
                    let _ = std::fs::remove_file(scratch.with_extension("stderr"));
                    std::process::exit(1);
                }
            }
        }
    }
    let _ = std::fs::remove_file(scratch.with_extension("stderr"));
    for s in samples.iter_mut().chain(answers.iter_mut()) {
        s.sort_by(f64::total_cmp);
    }
    let baseline = percentile(&samples[0], 0.5);
    let baseline_answer = percentile(&answers[0], 0.5);

    println!("| binary | median ms | p90 ms | min ms | × bare | stripped MB | start-up ≤ {START_UP_TARGET}× bare | size ≤ {SIZE_TARGET_MB} MB | first answer ms | × bare |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut missed = false;
    for (i, binary) in binaries.iter().enumerate() {
        let s = &samples[i];
        let median = percentile(s, 0.5);
        let ratio = median / baseline;
        let mb = stripped_bytes(binary, &scratch) as f64 / 1e6;
        let (fast, small) = (ratio <= START_UP_TARGET, mb <= SIZE_TARGET_MB);
        if i > 0 && !(fast && small) {
            missed = true;
        }
        let name = file_name(binary);
        let mark = |ok: bool| {
            if i == 0 {
                "baseline"
            } else if ok {
                "pass"
            } else {
                "**FAIL**"
            }
        };
        let answer = percentile(&answers[i], 0.5);
        println!(
            "| {name} | {median:.2} | {:.2} | {:.2} | {ratio:.2} | {mb:.2} | {} | {} | {answer:.2} | {:.2} |",
            percentile(s, 0.9),
            s[0],
            mark(fast),
            mark(small),
            answer / baseline_answer
        );
    }
    println!();
    println!(
        "{rounds} interleaved rounds; start-up is spawn to the first `{NEXT_EVENT}`; \
         first answer (medians; no target) is spawn to the answer to a first event that needs no AWS request; \
         MB = 10^6 bytes; SSL_CERT_FILE {}.",
        match ca_bundle() {
            Some(file) => format!("= {file}"),
            None => "not set".into(),
        }
    );
    if check && missed {
        std::process::exit(1);
    }
}
