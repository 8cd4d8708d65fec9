//! Every file in `events/` (the ones `sam local invoke -e` and `cargo lambda
//! invoke` use) runs through its function's handler here.

use crate::harness::{repo_root, TestApp};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use videojobs_core::model::ids::{JobId, Role, UserId};
use videojobs_core::model::job::{timestamp, Job, JobParams};
use videojobs_core::model::request::{AspectRatio, Resolution};
use videojobs_core::JobStatus;

/// The key and job the sample events name.
const SAMPLE_KEY: &str = "vj_sampleUserKey000000000000000000000000000";
const SAMPLE_JOB: &str = "job_01kaz000000000000000000000";
/// The reviewer's key the review samples carry.
const SAMPLE_REVIEWER_KEY: &str = "vj_sampleReviewerKey00000000000000000000000";
/// The admin key the stats and admin samples name.
const SAMPLE_ADMIN_KEY: &str = "vj_sampleAdminKey00000000000000000000000000";

enum Function {
    Create,
    Status,
    Webhook,
    Worker,
    /// A scheduled worker message: handled, and no job changes.
    Scheduled,
    /// A message on the notification queue, for the same binary as the
    /// worker (the sample job has no webhook_url: it is dead-lettered).
    Notifier,
}

/// Each sample, the function that takes it, and the status it should get.
const SAMPLES: &[(&str, Function, u16)] = &[
    ("account.json", Function::Status, 200),
    ("admin-credits.json", Function::Status, 200),
    ("admin-keys.json", Function::Status, 201),
    ("animate.json", Function::Create, 202),
    ("batch.json", Function::Create, 200),
    ("deliveries-failed.json", Function::Status, 200),
    ("deliveries-recover.json", Function::Status, 202),
    ("docs-page.json", Function::Status, 200),
    ("generate.json", Function::Create, 202),
    ("job-cancel.json", Function::Status, 200),
    ("job-children.json", Function::Status, 200),
    ("job-deliveries.json", Function::Status, 200),
    ("job-events.json", Function::Status, 200),
    // The sample job is canceled with a webhook_url first: its notification is sent again.
    ("job-redeliver.json", Function::Status, 202),
    // The sample job keeps its prompt, and a remix may start from any status.
    ("job-remix.json", Function::Create, 202),
    ("job-result.json", Function::Status, 409),
    // The sample job is canceled first: a retry makes it again.
    ("job-retry.json", Function::Create, 202),
    // The sample job is completed first (see `complete_sample_job`).
    ("job-review.json", Function::Status, 200),
    ("job-status.json", Function::Status, 200),
    ("jobs-active.json", Function::Status, 200),
    ("jobs-list-filtered.json", Function::Status, 200),
    ("jobs-list.json", Function::Status, 200),
    ("notify-sqs.json", Function::Notifier, 0),
    ("openapi.json", Function::Status, 200),
    ("review-page.json", Function::Status, 200),
    ("review-queue.json", Function::Status, 200),
    ("stats.json", Function::Status, 200),
    ("uploads.json", Function::Create, 201),
    // Signed with made-up signatures: the webhook must refuse them and write nothing.
    // The sample user has no paused endpoint: 200 with `resumed: false`.
    ("webhook-endpoints-resume.json", Function::Status, 200),
    ("webhook-fal.json", Function::Webhook, 401),
    ("webhook-local.json", Function::Webhook, 401),
    ("webhook-replicate.json", Function::Webhook, 401),
    ("webhook-secret-rotate.json", Function::Status, 200),
    ("webhook-secret.json", Function::Status, 200),
    ("worker-check-stuck.json", Function::Scheduled, 0),
    ("worker-sqs.json", Function::Worker, 0),
];

/// The sample job's prompt, as a create stores it beside the job.
async fn store_sample_prompt(app: &TestApp) {
    let stack = app.stack();
    let item = [("job_id", SAMPLE_JOB), ("prompt", "A paper boat drifting down a rainy street, cinematic")]
        .map(|(k, v)| (k.to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned())));
    let put = stack.clients.dynamodb.put_item().table_name(&stack.resources.prompts_table).set_item(Some(item.into_iter().collect()));
    put.send().await.expect("prompt stored");
}

async fn seed_sample_user_and_job(app: &TestApp) -> UserId {
    let user: UserId = "sample-user".parse().unwrap();
    app.save_key(&SAMPLE_KEY.parse().unwrap(), &user, Role::User).await;
    app.services.accounts.open_account(&user, 1_000).await.unwrap();
    app.save_key(&SAMPLE_ADMIN_KEY.parse().unwrap(), &"sample-admin".parse().unwrap(), Role::Admin).await;
    let now = timestamp::now();
    let params = JobParams::TextToVideo { duration_seconds: 2, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Hd };
    let job = Job::accepted(SAMPLE_JOB.parse::<JobId>().unwrap(), user.clone(), params, "local".parse().unwrap(), 2, now);
    app.put_job(&job).await;
    store_sample_prompt(app).await;
    app.save_key(&SAMPLE_REVIEWER_KEY.parse().unwrap(), &"sample-reviewer".parse().unwrap(), Role::Reviewer).await;
    user
}

/// The sample job as the worker leaves it: completed, with a stored video.
async fn complete_sample_job(app: &TestApp) {
    let mut job = app.job(&SAMPLE_JOB.parse().unwrap()).await;
    let now = timestamp::now();
    job.status = JobStatus::Completed;
    job.progress = 100;
    job.completed_at = Some(now);
    job.output_expires_at = Some(now + time::Duration::days(1));
    job.output = Some(videojobs_core::model::job::Artifact {
        video_key: format!("outputs/{SAMPLE_JOB}/video.mp4"),
        thumbnail_key: None,
        mime_type: "video/mp4".into(),
        size_bytes: 1_000,
        thumbnail_size_bytes: None,
        duration_seconds: 2.0,
        width: 1280,
        height: 720,
    });
    app.put_job(&job).await;
}

#[tokio::test]
async fn every_sample_event_runs_through_its_handler() {
    let secret = || videojobs_core::model::signing::WebhookSecret::generate_text();
    let app = TestApp::builder()
        .credits(0)
        .provider_env([
            ("LOCAL_PROVIDER_URL", "http://127.0.0.1:9".to_owned()),
            ("LOCAL_PROVIDER_WEBHOOK_SECRETS", secret()),
            ("REPLICATE_WEBHOOK_SECRET", secret()),
            ("FAL_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json".to_owned()),
            ("FAL_USER_ID", "sample-fal-user".to_owned()),
        ])
        .on_the_stack()
        .build()
        .await;
    let dir = repo_root().join("events");
    let mut files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    let listed: Vec<&str> = SAMPLES.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(files, listed, "every file in events/ needs a line in SAMPLES");

    for (name, function, expected) in SAMPLES {
        seed_sample_user_and_job(&app).await;
        if *name == "job-review.json" {
            complete_sample_job(&app).await;
        }
        if *name == "job-redeliver.json" {
            let mut job = app.job(&SAMPLE_JOB.parse().unwrap()).await;
            job.status = JobStatus::Canceled;
            job.webhook_url = Some("https://hooks.example.com/videojobs".into());
            app.put_job(&job).await;
        }
        if *name == "job-retry.json" {
            let mut job = app.job(&SAMPLE_JOB.parse().unwrap()).await;
            job.status = JobStatus::Canceled;
            app.put_job(&job).await;
        }
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let status = match function {
            Function::Create | Function::Status | Function::Webhook => {
                let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let response = match function {
                    Function::Create => create::handler(&app.app.create, request).await,
                    Function::Status => status::handler(&app.app.status, request).await,
                    _ => webhook::handler(&app.app.webhook.providers, &app.app.webhook, request).await,
                }
                .unwrap();
                // What each sample answers follows the published contract too.
                let status = response.status().as_u16();
                crate::contract::check(&method, &path, status, response.headers(), response.body().as_ref());
                status
            }
            Function::Worker => {
                let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let worker = app.app.worker.clone();
                let response = worker::handler(&worker, LambdaEvent::new(event, Context::default())).await.unwrap();
                assert!(response.batch_item_failures.is_empty(), "{name}");
                assert_eq!(app.job(&SAMPLE_JOB.parse().unwrap()).await.status, JobStatus::Expired, "{name}");
                0
            }
            Function::Notifier => {
                let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let response = worker::handler(&app.app.notifier, LambdaEvent::new(event, Context::default())).await.unwrap();
                assert!(response.batch_item_failures.is_empty(), "{name}: dead-lettered, not retried");
                let dlq = app.stack().resources.notify_dlq_url.clone().expect("a notification dead-letter queue");
                let out = app.stack().clients.sqs.receive_message().queue_url(&dlq).max_number_of_messages(10).send().await.unwrap();
                let bodies: Vec<&str> = out.messages().iter().filter_map(|m| m.body()).collect();
                assert!(bodies.iter().any(|b| b.contains("\"notify\"") && b.contains(SAMPLE_JOB)), "{name}: {bodies:?}");
                0
            }
            Function::Scheduled => {
                let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let before = app.job(&SAMPLE_JOB.parse().unwrap()).await;
                let response = worker::handler(&app.app.worker, LambdaEvent::new(event, Context::default())).await.unwrap();
                assert!(response.batch_item_failures.is_empty(), "{name}");
                assert_eq!(app.job(&SAMPLE_JOB.parse().unwrap()).await, before, "{name}");
                0
            }
        };
        assert_eq!(status, *expected, "{name}");
    }
}
