//! Copies a provider's output into the bucket: streamed from HTTP into an S3
//! multipart upload, part by part, so memory stays at about one part whatever
//! the video's size. The bytes are hashed and probed as they pass; the length
//! and (when the provider sends `x-checksum-sha256`) the SHA-256 must match,
//! and S3 checks each part against the CRC32 the SDK sends with it.
//!
//! The output's URL is the provider's word, so it gets the rule a client's
//! `webhook_url` gets: every address its host resolves to must be one the
//! policy allows (public, in a deployment), the connection is pinned to the
//! checked address, a redirect is followed only to an address checked the
//! same way (at most [`MAX_REDIRECTS`]), and a body over [`MAX_OUTPUT_BYTES`]
//! is refused, not stored.

use crate::errors::store_error;
use crate::resolver::SystemResolver;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use videojobs_core::model::mp4::Mp4Probe;
use videojobs_core::model::notification::{DestinationError, WebhookPolicy};
use videojobs_core::ports::{CopiedObject, CopyError, OutputStore};
use videojobs_core::services::webhook_rules::check_destination;
use videojobs_core::StoreError;

/// The object tag the bucket's safety-net lifecycle rule reads: a copy is
/// `unreviewed` until its job is approved, then has no tag at all (the rule
/// takes only objects tagged unreviewed).
pub const RETENTION_TAG: &str = "videojobs-retention";
pub const UNREVIEWED: &str = "unreviewed";

/// S3's smallest part (but the last) is 5 MiB; 8 MiB keeps a 1 GiB copy to 128 parts.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// The largest output kept: a generated clip is tens of MB; 2 GiB leaves
/// room for long 1080p ones and stops a source that never ends.
pub const MAX_OUTPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Redirects followed from an output's URL, each to a checked address.
pub const MAX_REDIRECTS: usize = 3;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct S3Outputs {
    client: Client,
    bucket: String,
    /// Where an output may be fetched from (public addresses only unless told).
    sources: WebhookPolicy,
    max_bytes: u64,
    part_bytes: usize,
}

impl S3Outputs {
    /// Copies into `bucket`, fetching from public addresses only over https.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into(), sources: WebhookPolicy::default(), max_bytes: MAX_OUTPUT_BYTES, part_bytes: PART_BYTES }
    }

    /// Fetches from where `policy` allows (the local stack's provider is on loopback).
    pub fn fetching_from(mut self, policy: WebhookPolicy) -> Self {
        self.sources = policy;
        self
    }

    /// Refuses outputs over `bytes` (tests use a small cap).
    pub fn at_most(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// GETs the output, following at most [`MAX_REDIRECTS`] redirects, each
    /// to an address the policy allows, on a connection pinned to it.
    async fn fetch(&self, url: &str) -> Result<reqwest::Response, CopyError> {
        let mut url = url::Url::parse(url).map_err(|e| CopyError::SourceUnusable(format!("the output URL is not a URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            let destination = check_destination(&url, self.sources, &SystemResolver).await.map_err(|e| match e {
                DestinationError::Unresolved { .. } => CopyError::SourceUnavailable(format!("the output URL {e}")),
                refused => CopyError::SourceUnusable(format!("the output URL {refused}")),
            })?;
            let builder = videojobs_providers::pinned_to(&destination).connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT);
            let client = builder.build().map_err(|e| CopyError::SourceUnavailable(format!("building the client: {e}")))?;
            let response =
                client.get(url.clone()).send().await.map_err(|e| {
                    CopyError::SourceUnavailable(format!("fetching the output: {}", videojobs_core::model::redact::error(&e)))
                })?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
            let next = location.and_then(|location| url.join(location).ok());
            url = next.ok_or_else(|| CopyError::SourceUnusable(format!("a redirect ({}) without a usable location", response.status())))?;
        }
        Err(CopyError::SourceUnusable(format!("more than {MAX_REDIRECTS} redirects")))
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, bytes: Vec<u8>) -> Result<CompletedPart, StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| store_error("UploadPart", e))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
    }

    async fn start_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .tagging(format!("{RETENTION_TAG}={UNREVIEWED}"))
            .send()
            .await
            .map_err(|e| store_error("CreateMultipartUpload", e))?;
        Ok(upload.upload_id().unwrap_or_default().to_owned())
    }

    /// Streams the body into `key`: one PutObject when it fits in a part,
    /// else a multipart upload started when the first part is full.
    async fn stream_into(
        &self,
        response: reqwest::Response,
        key: &str,
        content_type: &str,
        upload_id: &mut Option<String>,
    ) -> Result<CopiedObject, CopyError> {
        let expected = response.content_length();
        if expected.is_some_and(|length| length > self.max_bytes) {
            return Err(CopyError::SourceUnusable(format!("the output is {expected:?} bytes, over the {} allowed", self.max_bytes)));
        }
        // A provider that publishes a checksum gets it checked.
        let declared = response.headers().get("x-checksum-sha256").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase());
        let mut stream = response.bytes_stream();
        let mut hasher = Sha256::new();
        let mut probe = Mp4Probe::new();
        let mut buffer = Vec::with_capacity(self.part_bytes);
        let mut parts = Vec::new();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| CopyError::SourceUnavailable(format!("reading the output: {}", videojobs_core::model::redact::error(&e))))?;
            hasher.update(&chunk);
            probe.feed(&chunk);
            total += chunk.len() as u64;
            if total > self.max_bytes {
                return Err(CopyError::SourceUnusable(format!("the output is over the {} bytes allowed", self.max_bytes)));
            }
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let n = (self.part_bytes - buffer.len()).min(rest.len());
                buffer.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if buffer.len() == self.part_bytes {
                    if upload_id.is_none() {
                        *upload_id = Some(self.start_upload(key, content_type).await?);
                    }
                    let id = upload_id.as_deref().unwrap_or_default();
                    let full = std::mem::replace(&mut buffer, Vec::with_capacity(self.part_bytes));
                    parts.push(self.upload_part(key, id, parts.len() as i32 + 1, full).await?);
                }
            }
        }
        if expected.is_some_and(|length| length != total) {
            return Err(CopyError::SourceUnusable(format!("the output ended after {total} of {expected:?} bytes")));
        }
        if total == 0 {
            return Err(CopyError::SourceUnusable("the output is empty".into()));
        }
        let sha256 = hex::encode(hasher.finalize());
        if declared.as_ref().is_some_and(|d| *d != sha256) {
            return Err(CopyError::SourceUnusable(format!("checksum mismatch: got {sha256}, provider says {declared:?}")));
        }
        match upload_id.as_deref() {
            None => {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .tagging(format!("{RETENTION_TAG}={UNREVIEWED}"))
                    .body(ByteStream::from(buffer))
                    .send()
                    .await
                    .map_err(|e| store_error("PutObject", e))?;
            }
            Some(id) => {
                if !buffer.is_empty() {
                    parts.push(self.upload_part(key, id, parts.len() as i32 + 1, buffer).await?);
                }
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(|e| store_error("CompleteMultipartUpload", e))?;
                let stored =
                    self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(|e| store_error("HeadObject", e))?;
                // The assembled object must be exactly what streamed through.
                if stored.content_length() != Some(total as i64) {
                    return Err(CopyError::SourceUnusable(format!("stored {:?} bytes, streamed {total}", stored.content_length())));
                }
            }
        }
        Ok(CopiedObject { size_bytes: total, sha256, video: probe.finish() })
    }
}

#[async_trait]
impl OutputStore for S3Outputs {
    async fn copy_from_url(&self, url: &str, key: &str, content_type: &str) -> Result<CopiedObject, CopyError> {
        let response = self.fetch(url).await?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(CopyError::SourceUnavailable(format!("fetching the output: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(CopyError::SourceUnusable(format!("fetching the output: HTTP {status}")));
        }
        let mut upload_id = None;
        let outcome = self.stream_into(response, key, content_type, &mut upload_id).await;
        if let (Err(_), Some(id)) = (&outcome, &upload_id) {
            // Parts of an abandoned upload cost storage until aborted.
            let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(id).send().await;
        }
        outcome
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(|e| store_error("DeleteObject", e))?;
        }
        Ok(())
    }
}

/// Removes each object's tags, one DeleteObjectTagging each: without the
/// `unreviewed` tag the safety net's rule no longer matches it. A DELETE
/// request, which S3 does not charge for (a PutObjectTagging of another
/// value is billed as a PUT). A key with no object is skipped: nothing there
/// for the safety net to take.
pub(crate) async fn untag(client: &Client, bucket: &str, keys: &[String]) -> Result<(), StoreError> {
    for key in keys {
        match client.delete_object_tagging().bucket(bucket).key(key).send().await {
            Ok(_) => {}
            // S3 models no error type for a missing key here; its status says it.
            Err(aws_sdk_s3::error::SdkError::ServiceError(err)) if err.raw().status().as_u16() == 404 => {
                tracing::info!(key, "no object to keep");
            }
            // moto answers a missing key with a 500, not S3's 404: a failure
            // is only one when the object is there.
            Err(err) => match client.head_object().bucket(bucket).key(key).send().await {
                Err(head) if head.as_service_error().is_some_and(|e| e.is_not_found()) => {
                    tracing::info!(key, "no object to keep");
                }
                _ => return Err(store_error("DeleteObjectTagging", err)),
            },
        }
    }
    Ok(())
}
