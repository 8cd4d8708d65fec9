//! `simulate --seeds N [--from S]`: runs seeds S..S+N and prints one line per
//! failing seed, with the command that replays it. `simulate --seed S
//! --verbose`: replays one seed and prints what happened, step by step.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let verbose = args.iter().any(|a| a == "--verbose");
    if let Some(seed) = value("--seed") {
        let report = videojobs_sim::run(seed, verbose);
        for line in &report.trace {
            println!("{line}");
        }
        println!(
            "seed {seed}: {} steps, {} jobs: {}",
            report.steps,
            report.jobs,
            report.failure.as_deref().unwrap_or("every invariant held")
        );
        return if report.found_bug() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let Some(count) = value("--seeds") else {
        eprintln!("usage: simulate --seeds N [--from S] | --seed S [--verbose]");
        return ExitCode::from(2);
    };
    let from = value("--from").unwrap_or(0);
    let started = Instant::now();
    let (mut failed, mut steps, mut most) = (0u64, 0u64, 0u64);
    for seed in from..from.saturating_add(count) {
        let report = videojobs_sim::run(seed, false);
        steps += report.steps;
        most = most.max(report.steps);
        if let Some(failure) = &report.failure {
            failed += 1;
            println!("seed {seed} FAILED: {failure}  replay: {}", report.replay_command());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds from {from}: {failed} found a bug; {:.0} runs/s; {:.0} steps per run on average, {most} at most",
        count as f64 / seconds.max(1e-9),
        steps as f64 / count.max(1) as f64
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
