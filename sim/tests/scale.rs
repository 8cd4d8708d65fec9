//! The scale mode (docs/SCALE.md) on a small load, a few seconds in a debug
//! build: it runs clean, Little's law holds, and the tally meters each
//! design's hot key as the DynamoDB adapter would write it — the numbers
//! docs/SCALE.md scales up.

use videojobs_sim::{run_scale, ScaleOptions, ScaleReport};
use videojobs_testkit::tally::{Place, COUNTER_SHARDS};

/// 4 jobs/s by 400 users, the provider taking 60 to 120 s, reviews 10 to 60 s
/// after completion, a hot tenant at 5 create attempts a second.
fn small() -> ScaleReport {
    run_scale(ScaleOptions {
        users: 400,
        jobs_per_second: 4.0,
        generation: (60, 120),
        review_after: (10, 60),
        warmup: 200,
        seconds: 500,
        hot_user_per_second: 5.0,
        ..ScaleOptions::default()
    })
}

fn count(report: &ScaleReport, name: &str) -> f64 {
    report.counts.get(name).copied().unwrap_or(0) as f64
}

fn near(what: &str, value: f64, expected: f64, tolerance: f64) {
    assert!((value - expected).abs() <= expected * tolerance, "{what}: {value:.2}, expected {expected:.2} ± {:.0} %", tolerance * 100.0);
}

#[test]
fn a_small_scale_run_is_clean_and_meters_the_hot_keys() {
    let report = small();
    let rendered = report.render();
    assert!(report.errors.is_empty(), "{:?}\n{rendered}", report.errors);
    let window = report.window;
    let created = count(&report, "jobs.created");

    // The load is the one asked for, and Little's law holds: 4/s × 90 s.
    near("jobs created per second", created / window, 4.0, 0.15);
    let mean = report.in_flight.iter().sum::<u64>() as f64 / report.in_flight.len() as f64;
    near("jobs in flight", mean, report.options.expected_in_flight(), 0.15);

    // Step Functions: one start per job, two transitions per job that completed
    // (Submit, KeepForReview); the expiry of an unreviewed job is a day away.
    assert_eq!(report.counts.get("sfn.start_execution"), report.counts.get("jobs.created"));
    near("state transitions per job", count(&report, "sfn.transitions") / created, 2.0, 0.1);

    // The counters: eight shards, each write to one picked at random, two units
    // (in the transaction of a creation or a change of status): no shard carries
    // twice its share.
    let shards: Vec<u64> = (0..COUNTER_SHARDS).map(|s| report.tally.get(Place::Jobs, &format!("STATS#{s}")).writes).collect();
    let total: u64 = shards.iter().sum();
    assert!(shards.iter().all(|&w| w > 0 && w as f64 <= 2.0 * total as f64 / COUNTER_SHARDS as f64), "{shards:?}");
    // A creation and four changes (submitted, processing, completed, then the review) per job.
    near("counter shard units per job", total as f64 / created, 10.0, 0.15);

    // stuck_watch has one partition per watched status; `processing` carries
    // the most: the job's put, the progress rise (its sort key moves: two
    // writes) and its delete; `queued` and `submitted` a put and a delete each.
    assert_eq!(report.tally.keys(Place::StuckWatch), 3);
    let watched = |status: &str| report.tally.get(Place::StuckWatch, status).writes as f64 / created;
    near("stuck_watch processing writes per job", watched("processing"), 4.0, 0.1);
    near("stuck_watch submitted writes per job", watched("submitted"), 2.0, 0.1);
    near("stuck_watch queued writes per job", watched("queued"), 2.0, 0.1);

    // The review queue is one partition: a job goes in when completed and out when reviewed.
    assert_eq!(report.tally.keys(Place::ReviewQueue), 1);
    let pending = report.tally.get(Place::ReviewQueue, "pending");
    near("review_queue writes per job", pending.writes as f64 / created, 1.0 + 0.9, 0.15);
    assert!(pending.reads > 0, "reviewers read the queue");

    // The hot tenant: its client ignores the 429s, and every attempt, refused
    // or not, writes its key's rate limit item of the minute and reads its key.
    let hot_attempts = count(&report, "api.hot_user");
    assert!(count(&report, "api.rate_limited") >= 0.8 * hot_attempts, "most of the hot tenant's attempts are refused");
    let (hot_hash, hot_key_id) = (&report.aliases[0].0, &report.aliases[1].0);
    let (key, writes) = report
        .tally
        .of(Place::Jobs)
        .filter(|(key, _)| key.starts_with("RATE#"))
        .max_by_key(|(_, units)| units.writes)
        .map(|(key, units)| (key.to_owned(), units.writes))
        .unwrap_or_default();
    assert!(key.starts_with(&format!("RATE#requests#{hot_key_id}#")), "the busiest rate limit item is the hot tenant's: {key}");
    near("writes of the hot tenant's busiest minute per second", writes as f64 / 60.0, 5.0, 0.15);
    let key_reads = report.tally.get(Place::Jobs, &format!("APIKEY#{hot_hash}")).reads as f64;
    near("reads of the hot tenant's key item per attempt", key_reads / hot_attempts, 1.0, 0.05);

    // Every key of the jobs table is one the adapter writes.
    let prefixes = ["JOB#", "USER#", "STATS#", "RATE#", "APIKEY#", "IDEM#", "RECEIPT#", "PROVREQ#", "UPLOAD#", "KEYS"];
    for (key, _) in report.tally.of(Place::Jobs) {
        assert!(prefixes.iter().any(|p| key.starts_with(p)), "a partition key the adapter never writes: {key}");
    }

    for place in ["index review_queue", "index stuck_watch", "STATS#", "RATE#requests#(the hot tenant's key)#{minute}"] {
        assert!(rendered.contains(place), "{place} not in the report:\n{rendered}");
    }
}
