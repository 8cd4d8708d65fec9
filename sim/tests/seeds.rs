//! The simulator as part of the test command: a bounded run of seeds, the
//! seeds that found bugs (each replayed with and without its fix), and the
//! known gaps, each replayed so that it stays visible until it is fixed.

use videojobs_sim::invariants::{GAP_NOTIFICATION_NOT_QUEUED, GAP_RESUMED_DUPLICATE};
use videojobs_sim::{run, run_with, Fix, Rules};

/// Seeds in the bounded run: about ten seconds in a debug build on two cores.
const SEEDS: u64 = 3_000;

#[test]
fn a_bounded_run_of_seeds_finds_no_bug() {
    let bugs: Vec<String> = (0..SEEDS)
        .map(|seed| run(seed, false))
        .filter(|report| report.found_bug())
        .map(|report| {
            format!("seed {}: {}\n  replay: {}", report.seed, report.failure.clone().unwrap_or_default(), report.replay_command())
        })
        .collect();
    assert!(bugs.is_empty(), "{} of {SEEDS} seeds found a bug:\n{}", bugs.len(), bugs.join("\n"));
}

#[test]
fn one_seed_replays_one_run_exactly_and_another_seed_another_run() {
    let first = run(42, true);
    let again = run(42, true);
    assert_eq!(first, again);
    assert!(first.trace.len() > 10, "a run does something: {:?}", first.trace);
    assert_ne!(run(43, true).trace, first.trace);
}

fn undone(seed: u64, fix: Fix) -> videojobs_sim::Report {
    run_with(seed, false, Rules { undo: Some(fix) })
}

/// The first seed from `pinned` on whose run the bug `fix` closed shows
/// when the fix is undone. A seed replays one run of one version of the
/// simulator: when the simulator's choices change, the pinned seed may no
/// longer show the bug, and the search finds the next one that does.
fn seed_showing(fix: Fix, pinned: u64) -> (u64, videojobs_sim::Report) {
    (pinned..pinned + 5_000).map(|seed| (seed, undone(seed, fix))).find(|(_, report)| report.found_bug()).unwrap_or_else(|| {
        panic!("no seed from {pinned} shows {} undone: pin another (simulate --seeds 20000 --undo-fix {})", fix.name(), fix.name())
    })
}

/// Found by seed 78 (the first version of the simulator).
#[test]
fn a_progress_callback_before_the_request_id_is_stored_no_longer_loses_the_request() {
    let (seed, before) = seed_showing(Fix::RequestIdInProcessing, 11);
    assert!(before.failure.as_deref().is_some_and(|f| f.contains("finalize")), "{before:?}");
    assert_eq!(run(seed, false).failure, None, "seed {seed}");
}

/// Found by seed 242 (the first version of the simulator).
#[test]
fn a_finalize_before_the_request_id_is_stored_comes_back_instead_of_dead_lettering() {
    let (seed, before) = seed_showing(Fix::FinalizeWaitsForRequestId, 11);
    assert!(before.failure.as_deref().is_some_and(|f| f.contains("the job has no provider request")), "{before:?}");
    assert_eq!(run(seed, false).failure, None, "seed {seed}");
}

/// Found by seed 2747 (the first version of the simulator).
#[test]
fn a_submit_copy_that_loses_the_claim_comes_back_for_a_copy_that_dies() {
    let (seed, _) = seed_showing(Fix::LostClaimComesBack, 3978);
    assert_eq!(run(seed, false).failure, None, "seed {seed}");
}

/// Found by seed 274252 (a million-seed run); shown again by seed 888092 since the review wait changed the runs.
#[test]
fn a_second_completer_leaves_the_approved_jobs_video_alone() {
    let (seed, before) = seed_showing(Fix::SecondCompleterKeepsTheVideo, 888_092);
    assert!(before.failure.as_deref().is_some_and(|f| f.contains("has no video")), "{before:?}");
    assert_eq!(run(seed, false).failure, None, "seed {seed}");
}

/// The first run from seed `pinned` on that shows the known gap (see
/// [`seed_showing`] for why a search). When none does, the gap may be closed.
fn seed_with_gap(gap: &str, pinned: u64) -> videojobs_sim::Report {
    (pinned..pinned + 20_000).map(|seed| run(seed, false)).find(|report| report.known_gap == Some(gap)).unwrap_or_else(|| {
        panic!("no seed from {pinned} shows the known gap {gap}: closed? (simulate --seeds 100000 lists the gaps it sees)")
    })
}

/// Known gap: `NotifyingJobs` queues a notification by a write of its own
/// after the status change; a writer that dies in between loses it (the fix
/// is an outbox written with the change, not a small one). When this test
/// fails because the seed now passes, the gap is closed: make the seed a
/// regression test and drop the gap from `invariants`.
#[test]
fn known_gap_a_writer_that_dies_after_a_status_change_loses_its_notification() {
    let report = seed_with_gap(GAP_NOTIFICATION_NOT_QUEUED, 8);
    assert!(report.failure.as_deref().is_some_and(|f| f.contains("was never told")), "{report:?}");
}

/// Known gap: a duplicate `submit` that reads its attempt mid-way resumes it
/// (as if the first copy had died) while the first copy lives on, records a
/// retry, and the next attempt takes over: the duplicate then calls the
/// provider for a stale attempt (docs/RELIABILITY.md says a duplicated
/// message reaches no provider). Closing it needs a lease on the attempt.
#[test]
fn known_gap_a_resumed_duplicate_submit_reaches_the_provider_for_a_stale_attempt() {
    let report = seed_with_gap(GAP_RESUMED_DUPLICATE, 1166);
    assert!(report.failure.as_deref().is_some_and(|f| f.contains("stale attempt 1")), "{report:?}");
}
