//! The adapter contract (`videojobs_testkit::contract`) on the AWS adapters
//! against moto: the same cases the in-memory adapters pass, so the two
//! cannot drift. Time passes for real here, so a case that would wait longer
//! than a few seconds (the 30 s receipt lease) runs that part in memory only.

use crate::harness::{fresh_resources, resources};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use videojobs_aws::review_queue::DynamoReviewQueue;
use videojobs_aws::{AwsClients, DynamoStore, Resources, S3Media, S3Outputs, SqsWorkQueue, StepFunctions};
use videojobs_core::model::ids::JobId;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{CopiedObject, CopyError, DelayedWorkQueue, KeepOutputs, MediaStore, OutputStore, PresignedUrl, WorkQueue};
use videojobs_core::StoreError;
use videojobs_testkit::contract::{Delivery, ObjectsUnderTest, QueueUnderTest, Subject, Time, TokenSource};

/// Real time: waits, a few seconds at most.
struct WallClock;

#[async_trait]
impl Time for WallClock {
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn can_pass(&self, by: Duration) -> bool {
        by <= Duration::from_secs(5)
    }
}

/// The stack's work queue: the adapter produces, the SDK consumes.
struct Sqs {
    adapter: SqsWorkQueue,
    client: aws_sdk_sqs::Client,
    url: String,
}

#[async_trait]
impl WorkQueue for Sqs {
    async fn enqueue(&self, message: &WorkMessage) -> Result<(), StoreError> {
        self.adapter.enqueue(message).await
    }
}

#[async_trait]
impl DelayedWorkQueue for Sqs {
    async fn enqueue_after(&self, message: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
        self.adapter.enqueue_after(message, delay).await
    }
}

#[async_trait]
impl QueueUnderTest for Sqs {
    async fn receive(&self, visibility: Duration) -> Vec<Delivery> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Delivery {
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                body: m.body.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
            })
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) {
        self.client.delete_message().queue_url(&self.url).receipt_handle(receipt_handle).send().await.expect("delete");
    }
}

/// The media bucket through both adapters, and the SDK to look inside.
struct S3 {
    outputs: S3Outputs,
    media: S3Media,
    client: aws_sdk_s3::Client,
    bucket: String,
}

#[async_trait]
impl OutputStore for S3 {
    async fn copy_from_url(&self, url: &str, key: &str, content_type: &str) -> Result<CopiedObject, CopyError> {
        self.outputs.copy_from_url(url, key, content_type).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        self.outputs.delete(keys).await
    }
}

#[async_trait]
impl KeepOutputs for S3 {
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError> {
        self.media.keep(keys).await
    }
}

#[async_trait]
impl MediaStore for S3 {
    async fn presign_put(&self, key: &str, size_bytes: u64, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        self.media.presign_put(key, size_bytes, ttl_seconds).await
    }

    async fn presign_get(&self, key: &str, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        self.media.presign_get(key, ttl_seconds).await
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.media.object_size(key).await
    }

    async fn read_prefix(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.media.read_prefix(key, max_bytes).await
    }

    async fn copy_object(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.media.copy_object(from, to).await
    }
}

#[async_trait]
impl ObjectsUnderTest for S3 {
    /// A presigned GET of an object put for the purpose: moto serves it.
    async fn source_url(&self, bytes: &[u8]) -> String {
        let key = format!("contract-sources/{}", ulid::Ulid::new());
        self.put(&key, bytes).await;
        self.media.presign_get(&key, 300).await.expect("presigned").url
    }

    async fn put(&self, key: &str, bytes: &[u8]) {
        let body = aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec());
        self.client.put_object().bucket(&self.bucket).key(key).body(body).send().await.expect("put");
    }

    async fn tags(&self, key: &str) -> Option<Vec<(String, String)>> {
        match self.client.get_object_tagging().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Some(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => None,
            Err(err) => panic!("get_object_tagging: {err:?}"),
        }
    }
}

/// The state machine's own tasks: its `submit` message carries the token.
#[async_trait]
impl TokenSource for Sqs {
    async fn waiting_token(&self, job: &JobId) -> String {
        for _ in 0..30 {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            for message in out.messages.unwrap_or_default() {
                let body: serde_json::Value = serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or_default();
                if body["kind"] == "submit" && body["job_id"] == job.as_str() {
                    self.delete(message.receipt_handle().unwrap_or_default()).await;
                    return body["task_token"].as_str().expect("a token").to_owned();
                }
            }
        }
        panic!("the execution of {job} sent no submit message")
    }
}

/// The AWS adapters on the run's shared stack, or on a stack of their own.
async fn subject(isolated: bool) -> Subject {
    let resources: Resources = if isolated { fresh_resources() } else { resources().clone() };
    let clients = AwsClients::from_env();
    let store = DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table);
    let sfn = StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn);
    let queue = Arc::new(Sqs {
        adapter: SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url),
        client: clients.sqs.clone(),
        url: resources.work_queue_url.clone(),
    });
    Subject {
        tables: Arc::new(store),
        review: Arc::new(DynamoReviewQueue::new(clients.dynamodb.clone(), &resources.jobs_table)),
        queue: queue.clone(),
        objects: Arc::new(S3 {
            // The contract serves its sources on loopback over http.
            outputs: S3Outputs::new(clients.s3.clone(), &resources.media_bucket)
                .fetching_from(crate::harness::settings().limits.output_source_policy()),
            media: S3Media::new(clients.s3.clone(), &resources.media_bucket),
            client: clients.s3.clone(),
            bucket: resources.media_bucket.clone(),
        }),
        workflows: Arc::new(sfn.clone()),
        tasks: Arc::new(sfn),
        tokens: queue,
        time: Arc::new(WallClock),
    }
}

videojobs_testkit::contract_suite!(subject);
