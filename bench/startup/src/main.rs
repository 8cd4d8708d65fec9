//! Measures each Lambda binary's cold start the way Lambda sees it: the time
//! from spawning the process to its first `GET …/runtime/invocation/next` on a
//! fake Runtime API. Binaries are measured in interleaved rounds, so that a
//! noisy moment on a shared machine hits all of them alike.
//!
//! startup-bench [--rounds N] [--check] BINARY...   (the first is the baseline)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const START_UP_TARGET: f64 = 1.5;
const SIZE_TARGET_MB: f64 = 8.0;

fn first_request(binary: &str) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("JOBS_TABLE", "jobs")
        .env("PROMPTS_TABLE", "prompts")
        .env("MEDIA_BUCKET", "media")
        .env("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:jobs")
        .env("WORK_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/work")
        .env("WEBHOOK_BASE_URL", "https://example.lambda-url.us-east-1.on.aws/")
        // Lambda's image names one CA bundle; without it a Debian machine has the
        // TLS stack scan a directory of 146 files instead.
        .envs(std::env::var("SSL_CERT_FILE").map(|file| ("SSL_CERT_FILE", file)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{binary}: {e}"))?;
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut buffer = [0u8; 512];
    let mut seen = Vec::new();
    // The request line is enough: it names the path the runtime asks for.
    while !seen.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buffer[..n]);
    }
    let elapsed = started.elapsed();
    let line = String::from_utf8_lossy(&seen);
    let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    if !line.contains("/runtime/invocation/next") {
        return Err(format!("{binary}: unexpected first request {line:?}"));
    }
    Ok(elapsed)
}

fn stripped_mb(binary: &str) -> f64 {
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    // The release profile strips symbols already; strip a copy to make sure.
    let copy = std::env::temp_dir().join(format!("startup-bench-{}", std::process::id()));
    let stripped = std::fs::copy(binary, &copy)
        .ok()
        .and_then(|_| Command::new("strip").arg(&copy).status().ok())
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&copy).ok())
        .map(|m| m.len())
        .unwrap_or(size);
    let _ = std::fs::remove_file(&copy);
    size.min(stripped) as f64 / 1_000_000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let mut rounds = 30;
    let mut check = false;
    let mut binaries = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            "--check" => check = true,
            _ => binaries.push(arg),
        }
    }
    if binaries.len() < 2 {
        eprintln!("usage: startup-bench [--rounds N] [--check] BASELINE BINARY...");
        std::process::exit(2);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    for _ in 0..rounds {
        for (i, binary) in binaries.iter().enumerate() {
            match first_request(binary) {
                Ok(elapsed) => samples[i].push(elapsed.as_secs_f64() * 1000.0),
                Err(err) => {
                    eprintln!("{err}");
                    std::process::exit(1);
                }
            }
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            percentile(s, 0.5)
        })
        .collect();
    println!("| binary | median ms | p90 ms | min ms | × bare | stripped MB | start-up ≤ {START_UP_TARGET}× | size ≤ {SIZE_TARGET_MB} MB |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut missed = false;
    for (i, binary) in binaries.iter().enumerate() {
        let s = &samples[i];
        let ratio = medians[i] / medians[0];
        let mb = stripped_mb(binary);
        let (fast, small) = (ratio <= START_UP_TARGET, mb <= SIZE_TARGET_MB);
        if i > 0 && !(fast && small) {
            missed = true;
        }
        let name = std::path::Path::new(binary).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mark = |ok: bool| if i == 0 { "baseline" } else if ok { "yes" } else { "NO" };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {ratio:.2} | {mb:.2} | {} | {} |",
            medians[i],
            percentile(s, 0.9),
            s[0],
            mark(fast),
            mark(small)
        );
    }
    println!("\n{rounds} interleaved rounds; start-up is spawn to the first request for an event.");
    if check && missed {
        std::process::exit(1);
    }
}
