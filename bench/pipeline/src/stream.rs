//! The jobs table's writes as its DynamoDB stream records them (the item
//! before and after each put, update and delete, transactions' included),
//! read with plain HTTP: the streams API is a handful of JSON calls, not
//! worth an SDK crate's build time. What each write cost the table's global
//! secondary indexes is computed from them ([`crate::index_writes`]).

use crate::index_writes::{self, Image, Index, Projection};
use crate::Error;
use aws_sdk_dynamodb::types::{KeySchemaElement, KeyType, ProjectionType, StreamSpecification, StreamViewType};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The stream of the jobs table, and the table's and its indexes' keys.
pub struct JobsStream {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    access_key: String,
    arn: String,
    shard_id: String,
    /// The sequence number of the shard's first record.
    first: u128,
    table_keys: Vec<String>,
    pub indexes: Vec<Index>,
}

/// What the writes of a stretch of the stream cost the indexes, and the
/// table itself as computed from the same images.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexWrites {
    /// Index name → write units.
    pub per_index: BTreeMap<String, u64>,
    /// The table's write units, each write once (not doubled in a transaction).
    pub table_units: u64,
    /// The writes seen.
    pub writes: u64,
}

impl IndexWrites {
    pub fn total(&self) -> u64 {
        self.per_index.values().sum()
    }
}

/// Key attributes, the hash key's first.
fn key_names(schema: &[KeySchemaElement]) -> Vec<String> {
    let mut keys: Vec<&KeySchemaElement> = schema.iter().collect();
    keys.sort_by_key(|k| *k.key_type() != KeyType::Hash);
    keys.into_iter().map(|k| k.attribute_name().to_owned()).collect()
}

impl JobsStream {
    /// Turns the table's stream on (old and new images) and reads its indexes.
    pub async fn enable(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Self, Error> {
        let spec = StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::NewAndOldImages).build()?;
        dynamodb.update_table().table_name(table).stream_specification(spec).send().await?;
        let described = dynamodb.describe_table().table_name(table).send().await?;
        let description = described.table().ok_or("DescribeTable: no table")?;
        let arn = description.latest_stream_arn().ok_or("the table has no stream")?.to_owned();
        let indexes = description
            .global_secondary_indexes()
            .iter()
            .map(|gsi| {
                let projection = gsi.projection();
                let projection = match projection.and_then(|p| p.projection_type()) {
                    Some(ProjectionType::KeysOnly) => Projection::KeysOnly,
                    Some(ProjectionType::Include) => {
                        Projection::Include(projection.map(|p| p.non_key_attributes().to_vec()).unwrap_or_default())
                    }
                    _ => Projection::All,
                };
                Index { name: gsi.index_name().unwrap_or_default().to_owned(), keys: key_names(gsi.key_schema()), projection }
            })
            .collect();
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let mut stream = Self {
            http: reqwest::Client::new(),
            endpoint: env("AWS_ENDPOINT_URL", "").trim_end_matches('/').to_owned(),
            region: env("AWS_REGION", "us-east-1"),
            access_key: env("AWS_ACCESS_KEY_ID", "testing"),
            arn,
            shard_id: String::new(),
            first: 0,
            table_keys: key_names(description.key_schema()),
            indexes,
        };
        let described = stream.call("DescribeStream", json!({"StreamArn": stream.arn})).await?;
        let shard = &described["StreamDescription"]["Shards"][0];
        stream.shard_id = shard["ShardId"].as_str().ok_or("the stream has no shard")?.to_owned();
        stream.first = sequence_number(&shard["SequenceNumberRange"]["StartingSequenceNumber"])?;
        Ok(stream)
    }

    /// One streams API call. moto routes a request by its credential scope's
    /// service (`dynamodb`, the streams API's signing name) and target; it
    /// does not check the signature.
    async fn call(&self, action: &str, body: Value) -> Result<Value, Error> {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/20250101/{}/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-target, Signature=0",
            self.access_key, self.region
        );
        let reply = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{action}"))
            .header("Authorization", authorization)
            .body(body.to_string())
            .send()
            .await?;
        let status = reply.status();
        let text = reply.text().await?;
        if !status.is_success() {
            return Err(format!("{action}: {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Where the stream ends now: the sequence number its next record gets.
    pub async fn position(&self) -> Result<u128, Error> {
        let records = self.records_since(self.first).await?;
        records.last().map_or(Ok(self.first), |last| Ok(sequence_number(&last["dynamodb"]["SequenceNumber"])? + 1))
    }

    /// Every record from sequence number `position` to the end of the stream.
    /// An iterator is taken anew each time, by number: moto rolls a
    /// cancelled transaction back by putting a copy of the table in its
    /// place, stream included, and an iterator taken before reads the
    /// replaced stream from then on (the records rolled back, none after).
    pub async fn records_since(&self, position: u128) -> Result<Vec<Value>, Error> {
        let reply = self
            .call(
                "GetShardIterator",
                json!({"StreamArn": self.arn, "ShardId": self.shard_id, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": position.to_string()}),
            )
            .await?;
        let mut iterator = reply["ShardIterator"].as_str().ok_or("GetShardIterator: no iterator")?.to_owned();
        let mut records = Vec::new();
        loop {
            let mut reply = self.call("GetRecords", json!({"ShardIterator": iterator, "Limit": 1000})).await?;
            let page = reply["Records"].as_array_mut().map(std::mem::take).unwrap_or_default();
            if page.is_empty() {
                return Ok(records);
            }
            records.extend(page);
            iterator = reply["NextShardIterator"].as_str().ok_or("GetRecords: no next iterator")?.to_owned();
        }
    }

    /// The index writes of `records`.
    pub fn tally(&self, records: &[Value]) -> IndexWrites {
        tally(&self.table_keys, &self.indexes, records)
    }
}

/// Sequence numbers are decimal strings, longer than a u64 holds.
fn sequence_number(value: &Value) -> Result<u128, Error> {
    Ok(value.as_str().ok_or("a sequence number is missing")?.parse()?)
}

/// The index (and table) write units of a run of stream records.
pub fn tally(table_keys: &[String], indexes: &[Index], records: &[Value]) -> IndexWrites {
    let image = |record: &Value, which: &str| record["dynamodb"][which].as_object().cloned();
    let mut writes = IndexWrites { per_index: indexes.iter().map(|i| (i.name.clone(), 0)).collect(), ..IndexWrites::default() };
    for (i, record) in records.iter().enumerate() {
        if is_moto_placeholder(table_keys, records, i) {
            continue;
        }
        let (old, new): (Option<Image>, Option<Image>) = (image(record, "OldImage"), image(record, "NewImage"));
        writes.writes += 1;
        writes.table_units += index_writes::table_write_units(old.as_ref(), new.as_ref());
        for index in indexes {
            *writes.per_index.entry(index.name.clone()).or_insert(0) +=
                index_writes::index_write_units(table_keys, index, old.as_ref(), new.as_ref());
        }
    }
    writes
}

/// moto's UpdateItem on an item that is not there first puts the bare key
/// (a record of its own), then records the whole update as the insert: one
/// write on DynamoDB, so the first record is not counted. It is an insert of
/// nothing but the table's keys, followed by another insert of the same item.
fn is_moto_placeholder(table_keys: &[String], records: &[Value], i: usize) -> bool {
    let record = &records[i]["dynamodb"];
    let bare_insert = record.get("OldImage").is_none()
        && record["NewImage"].as_object().is_some_and(|new| new.keys().all(|name| table_keys.contains(name)));
    bare_insert
        && records[i + 1..]
            .iter()
            .find(|later| later["dynamodb"]["Keys"] == record["Keys"])
            .is_some_and(|later| later["dynamodb"].get("OldImage").is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(old: Option<Value>, new: Option<Value>) -> Value {
        let mut dynamodb = json!({"Keys": {"pk": {"S": "ACCOUNT#u1"}, "sk": {"S": "ACCOUNT"}}});
        if let Some(old) = old {
            dynamodb["OldImage"] = old;
        }
        if let Some(new) = new {
            dynamodb["NewImage"] = new;
        }
        json!({ "dynamodb": dynamodb })
    }

    #[test]
    fn the_bare_key_insert_moto_records_before_an_update_that_creates_the_item_is_not_a_write_of_its_own() {
        // Arrange: what moto records for an UpdateItem that creates the item, then a later update.
        let keys = vec!["pk".to_owned(), "sk".to_owned()];
        let bare = json!({"pk": {"S": "ACCOUNT#u1"}, "sk": {"S": "ACCOUNT"}});
        let full = json!({"pk": {"S": "ACCOUNT#u1"}, "sk": {"S": "ACCOUNT"}, "credits": {"N": "5"}});
        let records = [record(None, Some(bare.clone())), record(None, Some(full.clone())), record(Some(full), Some(bare.clone()))];

        // Act
        let writes = tally(&keys, &[], &records);

        // Assert: the insert and the update, not the placeholder; an update
        // that leaves the bare keys is a write like any.
        assert_eq!((writes.writes, writes.table_units), (2, 2));
    }
}
