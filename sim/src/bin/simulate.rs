//! `simulate --seeds N [--from S]`: runs seeds S..S+N and prints one line per
//! failing seed, with the command that replays it. `simulate --seed S
//! --verbose`: replays one seed and prints what happened, step by step.
//! `simulate --scale [--users N] [--rate JOBS_PER_S] [--generation LO,HI]
//! [--deadline S] [--poll S] [--seconds S] [--warmup S] [--hot RATE]
//! [--progress N] [--seed S]`: many users at a target rate in virtual time,
//! and the partition keys that carry the most (docs/SCALE.md). Without
//! options: a million jobs a day, about 10,000 in flight.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let verbose = args.iter().any(|a| a == "--verbose");
    if args.iter().any(|a| a == "--scale") {
        return scale(&args);
    }
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
        eprintln!(
            "usage: simulate --seeds N [--from S] | --seed S [--verbose] | --scale [--users N] [--rate JOBS_PER_S] [--generation LO,HI] [--deadline S] [--poll S] [--seconds S] [--warmup S] [--hot RATE] [--progress N] [--seed S]"
        );
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

/// `--scale`: one scale run, its report printed.
fn scale(args: &[String]) -> ExitCode {
    let number = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<f64>().ok());
    let mut options = videojobs_sim::ScaleOptions::default();
    if let Some(users) = number("--users") {
        options.users = users as u32;
    }
    if let Some(rate) = number("--rate") {
        options.jobs_per_second = rate;
    }
    let text = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    if let Some(range) = text("--generation") {
        match range.split_once(',').and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?))) {
            Some((lo, hi)) if lo <= hi => options.generation = (lo, hi),
            _ => {
                eprintln!("--generation takes LO,HI in seconds, LO at most HI");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(deadline) = number("--deadline") {
        options.deadline = deadline as u64;
    }
    if let Some(poll) = number("--poll") {
        options.poll_every = (poll as u64).max(1);
    }
    if let Some(seconds) = number("--seconds") {
        options.seconds = seconds as u64;
        options.warmup = options.warmup.min(options.seconds / 2);
    }
    if let Some(warmup) = number("--warmup") {
        options.warmup = warmup as u64;
    }
    if let Some(hot) = number("--hot") {
        options.hot_user_per_second = hot;
    }
    if let Some(progress) = number("--progress") {
        options.progress_callbacks = progress as u32;
    }
    if let Some(seed) = number("--seed") {
        options.seed = seed as u64;
    }
    if options.warmup >= options.seconds || options.jobs_per_second <= 0.0 || options.users == 0 {
        eprintln!("--scale needs --warmup below --seconds, a positive --rate and at least one user");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let report = videojobs_sim::run_scale(options);
    print!("{}", report.render());
    println!("({:.1} s of real time)", started.elapsed().as_secs_f64());
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
