//! `POST /videos/batch`: every item checked first (see
//! [`crate::model::batch`]), then each created as a create of its own, in
//! order: credits, the active-job cap and the checks that need a read (an
//! upload's bytes, where a `webhook_url` points) apply per item, and each
//! item gets its own answer. Under an `Idempotency-Key` each item is replayed
//! on its own record (`{key}#{index}`), so a batch sent again answers as it
//! did for every item that was created, and makes only what was refused.

use crate::model::batch::{BatchItem, ItemRequest};
use crate::model::ids::IdempotencyKey;
use crate::model::request::InvalidRequest;
use crate::ports::Principal;
use crate::services::error::AppError;
use crate::services::jobs::{Accepted, Idempotency, JobSpec, Services};

impl Services {
    /// Creates each item in order; the answer of each, with its reference.
    pub async fn create_batch(
        &self,
        who: &Principal,
        items: Vec<BatchItem>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Vec<(String, Result<Accepted, AppError>)>, AppError> {
        let mut answers = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let idempotency = match key {
                Some(key) => {
                    let item_key = key.for_item(index).map_err(|_| InvalidRequest::new("Idempotency-Key", "is too long for a batch"))?;
                    let route = format!("batch:{index}");
                    Some(Idempotency::for_request(item_key, &self.settings.prompt_hash_key, &route, &item.body))
                }
                None => None,
            };
            let spec = match item.request {
                ItemRequest::Generate(request) => JobSpec::Generate(request),
                ItemRequest::Animate(request) => JobSpec::Animate(request),
            };
            answers.push((item.reference, self.create_job(who, spec, idempotency).await));
        }
        Ok(answers)
    }

    /// As [`Services::authenticate_to_create`], for a batch of `items`: each
    /// item counts against the key's create limit.
    pub async fn authenticate_to_create_many(&self, presented: Option<&str>, items: usize) -> Result<Principal, AppError> {
        let mut limits = vec![crate::model::ratelimit::Policy::Requests];
        limits.extend(std::iter::repeat_n(crate::model::ratelimit::Policy::Creates, items.max(1)));
        self.authenticate_for(presented, &limits).await
    }
}
