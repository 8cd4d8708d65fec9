//! The scale mode (docs/SCALE.md) on a small load: it runs clean, and its
//! tally shows the design's few-partition indexes as they are.

use videojobs_sim::{run_scale, ScaleOptions};
use videojobs_testkit::tally::Place;

#[test]
fn a_small_scale_run_is_clean_and_finds_the_review_queue_and_stuck_watch_partitions() {
    let options =
        ScaleOptions { users: 200, jobs_per_second: 2.0, seconds: 500, warmup: 250, hot_user_per_second: 2.0, ..ScaleOptions::default() };
    let report = run_scale(options);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let created = report.counts.get("jobs.created").copied().unwrap_or(0) as f64 / report.window;
    assert!((1.0..3.0).contains(&created), "{created} jobs/s");
    // The whole review queue is one partition; the stuck list three, one per watched status.
    assert_eq!(report.tally.keys(Place::ReviewQueue), 1);
    assert!(report.tally.get(Place::ReviewQueue, "pending").writes > 0);
    assert_eq!(report.tally.keys(Place::StuckWatch), 3);
    // `processing` carries the most: its put, the progress rise (a moved key: two writes), its delete.
    let top = report.tally.top(Place::StuckWatch, 1, |u| u.writes);
    assert_eq!(top[0].0, "processing");
    // Every job's state machine ran: a start per job, and the jobs waited on their tokens.
    assert_eq!(report.counts.get("sfn.start_execution"), report.counts.get("jobs.created"));
    assert!(report.render().contains("index review_queue"), "{}", report.render());
}
