//! The review queue on DynamoDB: the sparse index `review_queue` (partition
//! `review_state`, sort `completed_at`) holds a job exactly while it is
//! `completed`, because `dynamo.rs` sets `review_state = "pending"` in the
//! write that completes a job and removes it in the write that leaves
//! `completed`. Reading it oldest first is one query.

use crate::dynamo::{INDEX_REVIEW_QUEUE, REVIEW_PENDING};
use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use videojobs_core::model::job::Job;
use videojobs_core::ports::ReviewQueue;
use videojobs_core::ports::{ListError, Page, PageRequest};
use videojobs_core::{JobStatus, StoreError};

type Item = HashMap<String, AttributeValue>;

/// The attributes of an index position, in a cursor.
const CURSOR_FIELDS: [&str; 4] = ["pk", "sk", "review_state", "completed_at"];

#[derive(Clone)]
pub struct DynamoReviewQueue {
    client: Client,
    jobs_table: String,
}

impl DynamoReviewQueue {
    pub fn new(client: Client, jobs_table: impl Into<String>) -> Self {
        Self { client, jobs_table: jobs_table.into() }
    }
}

#[async_trait]
impl ReviewQueue for DynamoReviewQueue {
    async fn waiting(&self, page: &PageRequest) -> Result<Page<Job>, ListError> {
        let start = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .index_name(INDEX_REVIEW_QUEUE)
            .key_condition_expression("review_state = :pending")
            .expression_attribute_values(":pending", AttributeValue::S(REVIEW_PENDING.into()))
            .scan_index_forward(true)
            .limit(page.limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| ListError::Store(store_error("Query", e)))?;
        let mut jobs = Vec::new();
        for item in out.items.unwrap_or_default() {
            let job: Job =
                serde_dynamo::from_item(item).map_err(|e| ListError::Store(StoreError::Internal(format!("decoding a job: {e}"))))?;
            // A global index lags its table a little: a job reviewed a moment
            // ago may still be listed there, and is left out here.
            if job.status == JobStatus::Completed {
                jobs.push(job);
            }
        }
        let next_cursor = out.last_evaluated_key.map(|k| encode_cursor(&k)).transpose()?;
        Ok(Page { items: jobs, next_cursor })
    }
}

fn encode_cursor(last: &Item) -> Result<String, ListError> {
    crate::cursor::encode(last, &CURSOR_FIELDS)
}

/// A cursor is good only for this listing: a job position in the pending queue.
fn decode_cursor(cursor: &str) -> Result<Item, ListError> {
    crate::cursor::decode(cursor, &CURSOR_FIELDS, |fields| {
        fields.get("review_state").map(String::as_str) == Some(REVIEW_PENDING)
            && fields
                .get("pk")
                .and_then(|pk| pk.strip_prefix("JOB#"))
                .is_some_and(|id| id.parse::<videojobs_core::model::ids::JobId>().is_ok())
            && fields.get("sk").map(String::as_str) == Some("JOB")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn position() -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S("JOB#job_01j0000000000000000000000a".into())),
            ("sk".to_owned(), AttributeValue::S("JOB".into())),
            ("review_state".to_owned(), AttributeValue::S("pending".into())),
            ("completed_at".to_owned(), AttributeValue::S("2026-01-01T00:00:00.000Z".into())),
        ])
    }

    #[test]
    fn a_cursor_decodes_back_to_the_position_it_came_from() {
        let cursor = encode_cursor(&position()).unwrap();
        assert_eq!(decode_cursor(&cursor).unwrap(), position());
    }

    #[test]
    fn a_cursor_from_another_listing_or_tampered_with_is_refused() {
        let user_listing = URL_SAFE_NO_PAD.encode(
            r#"{"pk":"JOB#job_01j0000000000000000000000a","sk":"JOB","user_id":"alice","created_key":"2026-01-01T00:00:00.000Z#job_a"}"#,
        );
        assert_eq!(decode_cursor(&user_listing), Err(ListError::BadCursor));
        let other_state =
            URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#job_01j0000000000000000000000a","sk":"JOB","review_state":"done","completed_at":"x"}"#);
        assert_eq!(decode_cursor(&other_state), Err(ListError::BadCursor));
        let not_a_job = URL_SAFE_NO_PAD.encode(r#"{"pk":"USER#a","sk":"ACCOUNT","review_state":"pending","completed_at":"x"}"#);
        assert_eq!(decode_cursor(&not_a_job), Err(ListError::BadCursor));
        assert_eq!(decode_cursor("%%%"), Err(ListError::BadCursor));
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("[1]")), Err(ListError::BadCursor));
    }
}
