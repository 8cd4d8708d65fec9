//! S3 in memory: objects with their content type and tags, presigned URLs
//! that name them, and the web the output copy reads from (the test says
//! what each URL answers).

use crate::Memory;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use videojobs_core::ports::{CopiedObject, CopyError, KeepOutputs, MediaStore, OutputStore, PresignedUrl};
use videojobs_core::StoreError;

/// The tag the output store sets (`videojobs_aws::outputs::RETENTION_TAG`).
pub const RETENTION_TAG: &str = "videojobs-retention";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub tags: BTreeMap<String, String>,
}

impl StoredObject {
    /// Whether the bucket's safety net (the lifecycle rule
    /// `DeleteStrayOutputs`) would take it: tagged `unreviewed`. An approval
    /// takes the tag off.
    pub fn unreviewed(&self) -> bool {
        self.tags.get(RETENTION_TAG).map(String::as_str) == Some("unreviewed")
    }
}

/// What a URL answers when the output store fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebResource {
    /// 200 with these bytes; `sha256` is the `x-checksum-sha256` header, if any.
    Body { bytes: Vec<u8>, sha256: Option<String> },
    /// Any other status.
    Status(u16),
    /// The connection fails.
    Unreachable,
}

#[derive(Default)]
pub(crate) struct Bucket {
    pub objects: BTreeMap<String, StoredObject>,
    pub web: HashMap<String, WebResource>,
}

impl Memory {
    /// Puts an object as a client's presigned PUT (or anyone with access) would.
    pub fn put_object(&self, key: &str, bytes: &[u8], content_type: &str) {
        let object = StoredObject { bytes: bytes.to_vec(), content_type: content_type.to_owned(), tags: BTreeMap::new() };
        self.lock().bucket.objects.insert(key.to_owned(), object);
    }

    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.lock().bucket.objects.get(key).cloned()
    }

    /// Every key in the bucket, in order.
    pub fn object_keys(&self) -> Vec<String> {
        self.lock().bucket.objects.keys().cloned().collect()
    }

    /// What `url` answers from now on.
    pub fn serve(&self, url: &str, resource: WebResource) {
        self.lock().bucket.web.insert(url.to_owned(), resource);
    }

    fn presigned(&self, key: &str, method: &'static str, ttl_seconds: u64, headers: Vec<(String, String)>) -> PresignedUrl {
        let expires_at = self.now() + Duration::from_secs(ttl_seconds);
        PresignedUrl { url: format!("memory://media/{key}?X-Amz-Expires={ttl_seconds}"), method, headers, expires_at }
    }
}

#[async_trait]
impl MediaStore for Memory {
    async fn presign_put(&self, key: &str, size_bytes: u64, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        self.call("MediaStore::presign_put", |_, _| Ok(())).await?;
        let headers =
            vec![("content-length".to_owned(), size_bytes.to_string()), ("content-type".to_owned(), "application/octet-stream".to_owned())];
        Ok(self.presigned(key, "PUT", ttl_seconds, headers))
    }

    async fn presign_get(&self, key: &str, ttl_seconds: u64) -> Result<PresignedUrl, StoreError> {
        self.call("MediaStore::presign_get", |_, _| Ok(())).await?;
        Ok(self.presigned(key, "GET", ttl_seconds, Vec::new()))
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.call("MediaStore::object_size", |state, _| Ok(state.bucket.objects.get(key).map(|o| o.bytes.len() as u64))).await
    }

    async fn read_prefix(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.call("MediaStore::read_prefix", |state, _| {
            if max_bytes == 0 {
                return Ok(Some(Vec::new()));
            }
            let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
            Ok(state.bucket.objects.get(key).map(|o| o.bytes[..o.bytes.len().min(max)].to_vec()))
        })
        .await
    }

    async fn copy_object(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.call("MediaStore::copy_object", |state, _| {
            let object = state.bucket.objects.get(from).cloned().ok_or_else(|| StoreError::Internal(format!("no object at {from}")))?;
            state.bucket.objects.insert(to.to_owned(), object);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl OutputStore for Memory {
    async fn copy_from_url(&self, url: &str, key: &str, content_type: &str) -> Result<CopiedObject, CopyError> {
        let copied = self
            .call("OutputStore::copy_from_url", |state, _| {
                let bytes = match state.bucket.web.get(url) {
                    None | Some(WebResource::Unreachable) => {
                        return Ok(Err(CopyError::SourceUnavailable("fetching the output: unreachable".into())))
                    }
                    Some(WebResource::Status(status)) if *status >= 500 || *status == 429 => {
                        return Ok(Err(CopyError::SourceUnavailable(format!("fetching the output: HTTP {status}"))))
                    }
                    Some(WebResource::Status(status)) => {
                        return Ok(Err(CopyError::SourceUnusable(format!("fetching the output: HTTP {status}"))))
                    }
                    Some(WebResource::Body { bytes, sha256: declared }) => {
                        let sha256 = hex::encode(Sha256::digest(bytes));
                        if bytes.is_empty() {
                            return Ok(Err(CopyError::SourceUnusable("the output is empty".into())));
                        }
                        if declared.as_ref().is_some_and(|d| d.trim().to_ascii_lowercase() != sha256) {
                            return Ok(Err(CopyError::SourceUnusable(format!(
                                "checksum mismatch: got {sha256}, provider says {declared:?}"
                            ))));
                        }
                        (bytes.clone(), sha256)
                    }
                };
                let (bytes, sha256) = bytes;
                let mut probe = videojobs_core::model::mp4::Mp4Probe::new();
                probe.feed(&bytes);
                let copied = CopiedObject { size_bytes: bytes.len() as u64, sha256, video: probe.finish() };
                let tags = BTreeMap::from([(RETENTION_TAG.to_owned(), "unreviewed".to_owned())]);
                state.bucket.objects.insert(key.to_owned(), StoredObject { bytes, content_type: content_type.to_owned(), tags });
                Ok(Ok(copied))
            })
            .await?;
        copied
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        self.call("OutputStore::delete", |state, _| {
            // S3 deletes a missing key without complaint.
            for key in keys {
                state.bucket.objects.remove(key);
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl KeepOutputs for Memory {
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError> {
        self.untag("KeepOutputs::keep", keys).await
    }
}

impl Memory {
    async fn untag(&self, op: &'static str, keys: &[String]) -> Result<(), StoreError> {
        self.call(op, |state, _| {
            for key in keys {
                // DeleteObjectTagging on a missing key is a 404, which the adapter skips: nothing there to keep.
                if let Some(object) = state.bucket.objects.get_mut(key) {
                    object.tags.clear();
                }
            }
            Ok(())
        })
        .await
    }
}
