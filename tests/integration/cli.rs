//! The `videojobs` command, run in-process against the real local API (the
//! same server `./scripts/up` runs), the real local provider and ffmpeg.
//! Its `review` command runs against the review endpoint in `together.rs`.

use crate::helpers::{ffprobe, settings, Pipeline};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use videojobs_core::model::ids::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_with_wait_shows_progress_and_saves_a_playable_video() {
    let p = Pipeline::start(settings()).await;
    let file = std::env::temp_dir().join(format!("cli-{}.mp4", ulid::Ulid::new()));

    let run = p
        .videojobs(
            &p.app.key,
            &[
                "generate",
                "A red balloon over rooftops",
                "--duration",
                "2",
                "--resolution",
                "480p",
                "--wait",
                "--out",
                file.to_str().unwrap(),
                "--poll-seconds",
                "0.2",
            ],
        )
        .await;

    assert_eq!(run.code, 0, "{}", run.err);
    let job_id = run.out.trim().to_owned();
    assert!(job_id.starts_with("job_"), "{}", run.out);
    assert!(run.err.contains(&format!("[{}] 100%  Ready for review", "#".repeat(30))), "{}", run.err);
    assert!(run.err.contains("Saved the video"), "{}", run.err);
    let bytes = std::fs::read(&file).expect("the video was saved");
    let _ = std::fs::remove_file(&file);
    let (duration, width, height) = ffprobe(&bytes);
    assert!((duration - 2.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (854, 480));

    let status = p.videojobs(&p.app.key, &["status", &job_id]).await;
    assert_eq!(status.code, 0);
    assert!(status.out.starts_with(&format!("{job_id}  completed (Ready for review)  100%")), "{}", status.out);
    let events = p.videojobs(&p.app.key, &["events", &job_id]).await;
    assert!(events.out.contains("processing → completed"), "{}", events.out);
    let list = p.videojobs(&p.app.key, &["list", "--limit", "5"]).await;
    assert!(list.out.contains(&job_id), "{}", list.out);
    let download = std::env::temp_dir().join(format!("cli-{}.mp4", ulid::Ulid::new()));
    let again = p.videojobs(&p.app.key, &["download", &job_id, "--out", download.to_str().unwrap()]).await;
    assert_eq!(again.code, 0, "{}", again.err);
    assert_eq!(std::fs::read(&download).unwrap(), bytes);
    let _ = std::fs::remove_file(&download);

    // A completed job cannot be canceled: one sentence, and a failing exit code.
    let cancel = p.videojobs(&p.app.key, &["cancel", &job_id]).await;
    assert_eq!(cancel.code, 1);
    assert_eq!(cancel.err.lines().count(), 1, "{}", cancel.err);
    assert!(cancel.err.starts_with("error: A completed job cannot be canceled."), "{}", cancel.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_account_and_the_admin_commands_work_against_the_api() {
    let p = Pipeline::start(settings()).await;
    let (_, admin_key) = p.app.another_user(0, Role::Admin).await;
    let slow = json!({"prompt": "slow", "duration_seconds": 1, "resolution": "480p", "metadata": {"local_faults": {"delay_ms": 60_000}}});
    let reply = p.app.post("/videos/generate", &slow.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let job_id = reply.body["job_id"].as_str().unwrap().to_owned();

    let cancel = p.videojobs(&p.app.key, &["cancel", &job_id]).await;
    assert_eq!(cancel.code, 0, "{}", cancel.err);
    assert_eq!(cancel.out, format!("{job_id} canceled; its credits are back.\n"));
    assert_eq!(p.app.job(&job_id.parse().unwrap()).await.status, videojobs_core::JobStatus::Canceled);

    // An admin makes a key for a new user and grants them credits.
    let user = format!("cli-{}", ulid::Ulid::new().to_string().to_lowercase());
    let created = p.videojobs(&admin_key, &["admin", "create-key", "--user-id", &user, "--credits", "30"]).await;
    assert_eq!(created.code, 0, "{}", created.err);
    let new_key = created.out.trim().to_owned();
    assert!(created.err.contains("shown only this once"), "{}", created.err);
    let granted = p.videojobs(&admin_key, &["admin", "grant-credits", "--user-id", &user, "--credits", "12"]).await;
    assert_eq!(granted.out, format!("{user} now has 42 credits.\n"));
    let account = p.videojobs(&new_key, &["account"]).await;
    assert_eq!(account.code, 0, "{}", account.err);
    assert!(account.out.starts_with(&format!("{user} (user): 42 credits, 0 of")), "{}", account.out);

    // The new user reads what a frontend shows; the admin reads every figure.
    let mine = p.videojobs(&new_key, &["stats"]).await;
    assert_eq!(mine.code, 0, "{}", mine.err);
    assert!(mine.out.contains("Your jobs: none (0 of"), "{}", mine.out);
    assert!(!mine.out.contains("Duplicate callbacks"), "{}", mine.out);
    let stats = p.videojobs(&admin_key, &["stats", "--json"]).await;
    assert_eq!(stats.code, 0, "{}", stats.err);
    let figures: Value = serde_json::from_str(&stats.out).unwrap();
    assert_eq!(figures["jobs_by_status"]["canceled"], 1);
    assert!(stats.out.starts_with(r#"{"scope":"admin","generated_at":"#), "the API's own order: {}", stats.out);
    let summary = p.videojobs(&admin_key, &["stats"]).await;
    assert!(summary.out.contains("canceled 1"), "{}", summary.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn animate_uploads_a_local_image_and_saves_the_zoom() {
    let p = Pipeline::start(settings()).await;
    let image = std::env::temp_dir().join(format!("cli-{}.png", ulid::Ulid::new()));
    std::fs::write(&image, crate::helpers::png(320, 240)).unwrap();
    let video = std::env::temp_dir().join(format!("cli-{}.mp4", ulid::Ulid::new()));

    let run = p
        .videojobs(
            &p.app.key,
            &[
                "animate",
                "--image",
                image.to_str().unwrap(),
                "--length",
                "2",
                "--frame-rate",
                "12",
                "--out",
                video.to_str().unwrap(),
                "--poll-seconds",
                "0.2",
            ],
        )
        .await;

    assert_eq!(run.code, 0, "{}", run.err);
    let bytes = std::fs::read(&video).expect("the video was saved");
    let _ = (std::fs::remove_file(&image), std::fs::remove_file(&video));
    let (duration, _, _) = ffprobe(&bytes);
    assert!((duration - 2.0).abs() < 0.2, "{duration}");
    let status = p.app.get(&format!("/videos/jobs/{}/status", run.out.trim())).await;
    assert_eq!(status.body["workflow_type"], "image_to_video");
}
