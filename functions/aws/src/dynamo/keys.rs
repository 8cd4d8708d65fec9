//! API keys: the item a presented key's hash finds (`APIKEY#{hash}`), and a
//! listing entry per key under one partition (`KEYS` / `KEY#{key_id}`) that
//! admins page through and revoke by public id. The listing entry keeps the
//! hash's item key so that a revocation reaches it, and is never shown.

use super::*;
use videojobs_core::model::ids::KeyId;

const KEYS_PARTITION: &str = "KEYS";
const KEY_LIST_CURSOR: [&str; 2] = ["pk", "sk"];

fn key_item_key(hash: &ApiKeyHash) -> Item {
    key(format!("APIKEY#{}", hash.as_str()), "APIKEY")
}

fn listing_key(id: &KeyId) -> Item {
    key(KEYS_PARTITION.to_owned(), &format!("KEY#{id}"))
}

fn record_attributes(record: &KeyRecord) -> Item {
    let mut item = HashMap::from([
        ("key_id".to_owned(), s(record.key_id.as_str())),
        ("user_id".to_owned(), s(record.principal.user_id.as_str())),
        ("role".to_owned(), s(record.principal.role.as_str())),
        ("label".to_owned(), s(record.label.as_str())),
        ("created_at".to_owned(), s(timestamp::format(record.created_at))),
    ]);
    if let Some(at) = record.expires_at {
        item.insert("expires_at".into(), s(timestamp::format(at)));
    }
    if let Some(at) = record.revoked_at {
        item.insert("revoked_at".into(), s(timestamp::format(at)));
    }
    item
}

/// A key's listing entry: its record, and its item's key so that a revocation reaches it.
fn listing_item(hash: &ApiKeyHash, record: &KeyRecord) -> Item {
    let mut listing = listing_key(&record.key_id);
    listing.insert("kind".into(), s("api_key_listing"));
    listing.insert("key_pk".into(), s(format!("APIKEY#{}", hash.as_str())));
    listing.extend(record_attributes(record));
    // Listed for a month after the key expires, then gone by itself.
    if let Some(at) = record.expires_at {
        listing.insert("ttl_epoch".into(), n(at.unix_timestamp() + 30 * 86_400));
    }
    listing
}

fn optional_time(item: &Item, name: &str) -> Result<Option<time::OffsetDateTime>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => {
            timestamp::parse(&text(item, name)?).map(Some).ok_or_else(|| StoreError::Internal(format!("attribute {name} is not a time")))
        }
    }
}

/// A key's record from its item; a key saved before keys had ids gets the id derived from its hash.
fn record_of(item: &Item, hash: Option<&ApiKeyHash>) -> Result<KeyRecord, StoreError> {
    let key_id = match (item.get("key_id"), hash) {
        (Some(_), _) => parsed(item, "key_id")?,
        (None, Some(hash)) => KeyId::derived_from(hash),
        (None, None) => return Err(StoreError::Internal("key listing entry without key_id".into())),
    };
    Ok(KeyRecord {
        key_id,
        principal: Principal { user_id: parsed(item, "user_id")?, role: parsed::<Role>(item, "role")? },
        label: text(item, "label").unwrap_or_default(),
        created_at: optional_time(item, "created_at")?.unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        expires_at: optional_time(item, "expires_at")?,
        revoked_at: optional_time(item, "revoked_at")?,
    })
}

impl DynamoStore {
    /// Gives a key written without an id (by hand, as the first admin key
    /// once was) its id and listing entry, so that every key that works can
    /// be listed and revoked. Once: both writes are conditioned on their
    /// absence. A failure leaves the key working unlisted until its next use.
    async fn adopt(&self, hash: &ApiKeyHash, record: &KeyRecord) {
        let set_id = Update::builder()
            .table_name(&self.jobs_table)
            .set_key(Some(key_item_key(hash)))
            .update_expression("SET key_id = :id")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(key_id)")
            .expression_attribute_values(":id", s(record.key_id.as_str()));
        let listing = listing_item(hash, record);
        let writes = set_id
            .build()
            .map(|update| TransactWriteItem::builder().update(update).build())
            .map_err(|e| StoreError::Internal(format!("building a key's adoption: {e}")))
            .and_then(|set_id| Ok(vec![set_id, put(&self.jobs_table, listing, Some("attribute_not_exists(pk)"))?]));
        let outcome = match writes {
            Ok(writes) => self.transact(writes).await,
            Err(err) => Err(TransactFailure::Store(err)),
        };
        match outcome {
            Ok(()) => tracing::info!(key_id = %record.key_id, "a key written without an id is now listed"),
            // Another request adopted it first.
            Err(TransactFailure::Cancelled(_)) => {}
            Err(TransactFailure::Store(err)) => tracing::warn!(key_id = %record.key_id, error = %err, "listing a key failed"),
        }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn key_for(&self, hash: &ApiKeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let Some(item) = self.get(key_item_key(hash)).await? else { return Ok(None) };
        let record = record_of(&item, Some(hash))?;
        if !item.contains_key("key_id") {
            self.adopt(hash, &record).await;
        }
        Ok(Some(record))
    }

    async fn save_key_record(&self, hash: &ApiKeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        let mut key_item = key_item_key(hash);
        key_item.insert("kind".into(), s("api_key"));
        key_item.extend(record_attributes(record));
        // An expired key's item goes away by itself some time after it stops working.
        if let Some(at) = record.expires_at {
            key_item.insert("ttl_epoch".into(), n(at.unix_timestamp() + 86_400));
        }
        let listing = listing_item(hash, record);
        // Both or neither: a key that works is always listed, so it can be revoked.
        self.transact(vec![put(&self.jobs_table, key_item, None)?, put(&self.jobs_table, listing, None)?]).await.map_err(|failure| {
            match failure {
                TransactFailure::Store(err) => err,
                TransactFailure::Cancelled(reasons) => StoreError::Unavailable(format!("saving a key: {reasons:?}")),
            }
        })
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<KeyRecord>, ListError> {
        let start = page
            .cursor
            .as_deref()
            .map(|cursor| {
                crate::cursor::decode(cursor, &KEY_LIST_CURSOR, |fields| fields.get("pk").map(String::as_str) == Some(KEYS_PARTITION))
            })
            .transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.jobs_table)
            .key_condition_expression("pk = :keys")
            .expression_attribute_values(":keys", s(KEYS_PARTITION))
            .consistent_read(true)
            .limit(i32::try_from(page.limit).unwrap_or(100))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        let items = out.items.unwrap_or_default().iter().map(|item| record_of(item, None)).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match out.last_evaluated_key {
            Some(last) if !items.is_empty() => Some(crate::cursor::encode(&last, &KEY_LIST_CURSOR)?),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn revoke_key(&self, id: &KeyId, at: time::OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        let Some(listing) = self.get(listing_key(id)).await? else { return Ok(None) };
        let mut record = record_of(&listing, None)?;
        if record.revoked_at.is_some() {
            return Ok(Some(record));
        }
        let key_pk = text(&listing, "key_pk")?;
        let revoke = |item_key: Item| -> Result<TransactWriteItem, StoreError> {
            let update = Update::builder()
                .table_name(&self.jobs_table)
                .set_key(Some(item_key))
                .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":at", s(timestamp::format(at)))
                .build()
                .map_err(|e| StoreError::Internal(format!("building a revocation: {e}")))?;
            Ok(TransactWriteItem::builder().update(update).build())
        };
        let items = vec![revoke(key(key_pk, "APIKEY"))?, revoke(listing_key(id))?];
        match self.transact(items).await {
            Ok(()) => {}
            // The key's own item is gone (expired and removed by its TTL): it cannot authenticate anyway.
            Err(TransactFailure::Cancelled(_)) => {
                self.transact(vec![revoke(listing_key(id))?]).await.map_err(|failure| match failure {
                    TransactFailure::Store(err) => err,
                    TransactFailure::Cancelled(reasons) => StoreError::Unavailable(format!("revoking a key: {reasons:?}")),
                })?;
            }
            Err(TransactFailure::Store(err)) => return Err(err),
        }
        record.revoked_at = Some(at);
        Ok(Some(record))
    }
}
