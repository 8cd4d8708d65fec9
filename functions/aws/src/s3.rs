//! S3: presigned URLs for source images and outputs.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::Client;
use std::time::Duration;
use videojobs_core::ports::{KeepOutputs, MediaStore, PresignedUrl};
use videojobs_core::StoreError;

#[derive(Clone)]
pub struct S3Media {
    client: Client,
    bucket: String,
}

impl S3Media {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// The status function's side of the safety net: an approval takes the
/// `unreviewed` tag off the video's objects before it commits (see
/// `videojobs_core::services::review`).
#[async_trait]
impl KeepOutputs for S3Media {
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError> {
        crate::outputs::untag(&self.client, &self.bucket, keys).await
    }
}

fn presigning(ttl_seconds: u64) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(Duration::from_secs(ttl_seconds)).map_err(|e| StoreError::Internal(format!("presigning config: {e}")))
}

fn to_url(request: PresignedRequest, method: &'static str, ttl_seconds: u64) -> PresignedUrl {
    PresignedUrl {
        url: request.uri().to_owned(),
        method,
        headers: request.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        expires_at: videojobs_core::model::job::timestamp::now() + Duration::from_secs(ttl_seconds),
    }
}

#[async_trait]
impl MediaStore for S3Media {
    async fn presign_put(&self, key: &str, size_bytes: u64, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        // The declared image type is kept on the upload record; the object itself
        // is sent as octet-stream, which every S3 (and moto) stores byte for byte.
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .content_length(i64::try_from(size_bytes).unwrap_or(i64::MAX))
            .presigned(presigning(ttl_seconds)?)
            .await
            .map_err(|e| store_error("PutObject presign", e))?;
        Ok(to_url(request, "PUT", ttl_seconds))
    }

    async fn presign_get(&self, key: &str, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(ttl_seconds)?)
            .await
            .map_err(|e| store_error("GetObject presign", e))?;
        Ok(to_url(request, "GET", ttl_seconds))
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(store_error("HeadObject", err)),
        }
    }

    async fn read_prefix(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if max_bytes == 0 {
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes=0-{}", max_bytes - 1);
        let out = match self.client.get_object().bucket(&self.bucket).key(key).range(range).send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(err) => return Err(store_error("GetObject", err)),
        };
        // A server that ignores the range still sends no more than we keep.
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::Unavailable(format!("reading an object: {e}")))? {
            let room = usize::try_from(max_bytes).unwrap_or(usize::MAX).saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if bytes.len() as u64 >= max_bytes {
                break;
            }
        }
        Ok(Some(bytes))
    }

    async fn copy_object(&self, from: &str, to: &str) -> Result<(), StoreError> {
        // Our keys are made of URL-safe characters only (ids and `/`), so the
        // source needs no encoding.
        let source = format!("{}/{from}", self.bucket);
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(source)
            .key(to)
            .send()
            .await
            .map_err(|e| store_error("CopyObject", e))?;
        Ok(())
    }
}
