//! Counts AWS requests by service and operation, for the cost benchmark. An
//! SDK interceptor sees every call the clients make, retries included. For
//! DynamoDB writes it also counts the write units each request is billed,
//! from the sizes of the items in its body (see [`write_units`]).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The operation name under which [`RequestMeter`] counts a DynamoDB
/// operation's write units: `"PutItem (write units)"` and so on.
pub fn write_units_name(operation: &str) -> String {
    format!("{operation} (write units)")
}

/// The longest task token the Step Functions API takes. The local stack's
/// tokens are short; the items that keep one (attribute `token`) are sized
/// as if theirs were this long, so that the count holds on AWS.
pub const LONGEST_TASK_TOKEN: usize = 2048;

/// The write units one attempt of a request is billed, set before it is sent
/// and counted when its answer arrives.
#[derive(Debug, Clone, Copy)]
struct AttemptWriteUnits(u64);

impl Storable for AttemptWriteUnits {
    type Storer = StoreReplace<Self>;
}

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

    // Each attempt's body, as sent: the items it writes, with their sizes.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().filter(|m| m.service() == "DynamoDB").map(|m| m.name().to_owned());
        let body = context.request().body().bytes().and_then(|b| serde_json::from_slice::<Value>(b).ok());
        if let (Some(operation), Some(body)) = (operation, body) {
            if let Some(units) = write_units(&operation, &body) {
                cfg.interceptor_state().store_put(AttemptWriteUnits(units));
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
            let units = cfg.load::<AttemptWriteUnits>().map(|u| u.0);
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry((metadata.service().to_owned(), metadata.name().to_owned())).or_insert(0) += 1;
                if let Some(units) = units {
                    *counts.entry((metadata.service().to_owned(), write_units_name(metadata.name()))).or_insert(0) += units;
                }
            }
        }
        Ok(())
    }
}

/// The write units DynamoDB bills for one write request (None for one that
/// writes nothing): one per started KB of each item written, twice that in
/// a transaction. An item put is sized from the request, by DynamoDB's rules
/// (attribute names and values). An update, delete or condition check is
/// billed on the size of the item stored, which the request does not carry:
/// it is counted at one unit, which is exact while every item is under 1 KB
/// (the pipeline bench measures the largest item it finds in the table).
pub fn write_units(operation: &str, body: &Value) -> Option<u64> {
    let put = |item: &Value| item.as_object().map_or(1, |item| units_for(item_size(item)));
    match operation {
        "PutItem" => Some(put(&body["Item"])),
        "UpdateItem" | "DeleteItem" => Some(1),
        "BatchWriteItem" => Some(
            body["RequestItems"]
                .as_object()?
                .values()
                .filter_map(Value::as_array)
                .flatten()
                .map(|request| request.get("PutRequest").map_or(1, |p| put(&p["Item"])))
                .sum(),
        ),
        "TransactWriteItems" => {
            Some(body["TransactItems"].as_array()?.iter().map(|entry| 2 * entry.get("Put").map_or(1, |p| put(&p["Item"]))).sum())
        }
        _ => None,
    }
}

fn units_for(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

/// An item's size as DynamoDB counts it: each attribute's name and value.
fn item_size(item: &serde_json::Map<String, Value>) -> usize {
    item.iter()
        .map(|(name, value)| {
            let size = value_size(value);
            let size = if name == "token" { size.max(LONGEST_TASK_TOKEN) } else { size };
            name.len() + size
        })
        .sum()
}

/// A value in the API's JSON form (`{"S": "…"}`, `{"N": "…"}`, …).
fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|v| v.iter().next()) else { return 0 };
    let strings = || inner.as_array().into_iter().flatten().filter_map(Value::as_str);
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => number_size(inner.as_str().unwrap_or("")),
        "B" => base64_len(inner.as_str().unwrap_or("")),
        "SS" => strings().map(str::len).sum(),
        "NS" => strings().map(number_size).sum(),
        "BS" => strings().map(base64_len).sum(),
        "BOOL" | "NULL" => 1,
        // Three bytes for the container, one per element.
        "L" => 3 + inner.as_array().into_iter().flatten().map(|v| 1 + value_size(v)).sum::<usize>(),
        "M" => 3 + inner.as_object().into_iter().flatten().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        _ => 0,
    }
}

/// About one byte per two significant digits, plus one.
fn number_size(text: &str) -> usize {
    let digits = text.trim_start_matches(['-', '+']).split(['e', 'E']).next().unwrap_or("").replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

fn base64_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_put_is_one_unit_and_one_over_a_kilobyte_is_two() {
        // Arrange
        let small = json!({"Item": {"pk": {"S": "JOB#1"}, "sk": {"S": "RECEIPT"}}});
        let large = json!({"Item": {"pk": {"S": "JOB#1"}, "body": {"S": "x".repeat(1020)}}});

        // Act
        let (small, large) = (write_units("PutItem", &small), write_units("PutItem", &large));

        // Assert: 2 + 5 + 2 + 7 bytes; 2 + 5 + 4 + 1,020 bytes.
        assert_eq!((small, large), (Some(1), Some(2)));
    }

    #[test]
    fn a_transaction_pays_double_for_each_item_and_sizes_its_puts() {
        // Arrange: a small put, an update and a condition check, and a put over 1 KB.
        let body = json!({"TransactItems": [
            {"Put": {"Item": {"pk": {"S": "a"}}}},
            {"Update": {"Key": {"pk": {"S": "b"}}}},
            {"ConditionCheck": {"Key": {"pk": {"S": "c"}}}},
            {"Put": {"Item": {"pk": {"S": "d"}, "n": {"L": [{"S": "x".repeat(1100)}]}}}},
        ]});

        // Act
        let units = write_units("TransactWriteItems", &body);

        // Assert
        assert_eq!(units, Some(2 + 2 + 2 + 4));
    }

    #[test]
    fn a_task_tokens_item_is_sized_as_if_its_token_were_the_longest_there_is() {
        // Arrange: the local stack's short token.
        let body = json!({"Item": {"pk": {"S": "JOB#1"}, "sk": {"S": "TASK_TOKEN"}, "token": {"S": "short"}}});

        // Act
        let units = write_units("PutItem", &body);

        // Assert: over 2 KB with a 2,048-character token.
        assert_eq!(units, Some(3));
    }

    #[test]
    fn numbers_and_containers_are_sized_as_dynamodb_sizes_them() {
        // Arrange / Act / Assert
        assert_eq!(value_size(&json!({"N": "12345"})), 4);
        assert_eq!(value_size(&json!({"N": "-0.0100"})), 2);
        assert_eq!(value_size(&json!({"M": {"ab": {"S": "xyz"}}})), 3 + 1 + 2 + 3);
        assert_eq!(value_size(&json!({"B": "AAEC"})), 3);
        assert_eq!(write_units("GetItem", &json!({})), None);
    }
}
