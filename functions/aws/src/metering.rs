//! Counts AWS requests by service and operation, for the cost benchmark. An
//! SDK interceptor sees every call the clients make, retries included.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct RequestMeter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl RequestMeter {
    /// `(service, operation) → requests` so far.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
    }
}

impl Intercept for RequestMeter {
    fn name(&self) -> &'static str {
        "RequestMeter"
    }

    // DynamoDB bills a transaction per item written: count the items too.
    fn read_before_execution(&self, context: &BeforeSerializationInterceptorContextRef<'_>, _cfg: &mut ConfigBag) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        if let Some(input) = context.input().downcast_ref::<TransactWriteItemsInput>() {
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry(("DynamoDB".to_owned(), "TransactWriteItems (items)".to_owned())).or_insert(0) +=
                    input.transact_items().len() as u64;
            }
        }
        Ok(())
    }

    // Runs once per response received: a retried request counts each time, as
    // AWS bills it, and a presigned URL (never sent) does not count.
    fn read_before_deserialization(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry((metadata.service().to_owned(), metadata.name().to_owned())).or_insert(0) += 1;
            }
        }
        Ok(())
    }
}
