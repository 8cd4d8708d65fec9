//! The write units DynamoDB bills a table's global secondary indexes for one
//! write to the table, from the item as it was before and after (a stream
//! record's old and new images, in the API's JSON form: `{"S": "…"}`).
//!
//! DynamoDB's documented rules, per index:
//! - no entry before nor after (an index key attribute is missing from the
//!   item): nothing;
//! - an entry created: one write of the new entry's size;
//! - an entry removed: one write of the old entry's size;
//! - an index key's value changed: two writes, the old entry deleted at its
//!   size and the new one put at its;
//! - keys unchanged, a projected attribute changed: one write of the new
//!   entry's size; a change to attributes the index does not project costs
//!   nothing.
//!
//! An entry holds the table's key attributes, the index's and the projected
//! ones (all of the item's for `ALL`); it is billed one unit per started KB,
//! sized as the request meter sizes an item put
//! ([`videojobs_aws::metering::write_units`]), so both use one set of rules.
//!
//! A write made in a transaction is counted here once: the assumption is that
//! DynamoDB's doubling of a transaction's writes applies to the table's write
//! and not to the index writes it causes.

use serde_json::{Map, Value};

/// An item, or an index entry, as DynamoDB JSON: attribute name → typed value.
pub type Image = Map<String, Value>;

/// Which of the item's attributes an index keeps beside the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

/// A global secondary index, as DescribeTable gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    /// The hash key attribute, then the range key's if it has one.
    pub keys: Vec<String>,
    pub projection: Projection,
}

/// The index entry an item has, if it has one: none when one of the index's
/// key attributes is missing (a sparse index).
fn entry(table_keys: &[String], index: &Index, item: Option<&Image>) -> Option<Image> {
    let item = item?;
    if !index.keys.iter().all(|key| item.contains_key(key)) {
        return None;
    }
    let projected = |name: &String| match &index.projection {
        Projection::All => true,
        Projection::KeysOnly => false,
        Projection::Include(names) => names.contains(name),
    };
    Some(
        item.iter()
            .filter(|(name, _)| table_keys.contains(name) || index.keys.contains(name) || projected(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

/// One write of an entry: a unit per started KB.
fn units(entry: &Image) -> u64 {
    let item = Value::Object(entry.clone());
    videojobs_aws::metering::write_units("PutItem", &serde_json::json!({ "Item": item })).unwrap_or(1)
}

/// The write units `index` is billed when the table's item goes from `old`
/// to `new` (`None`: no item, as before a put or after a delete).
pub fn index_write_units(table_keys: &[String], index: &Index, old: Option<&Image>, new: Option<&Image>) -> u64 {
    let (before, after) = (entry(table_keys, index, old), entry(table_keys, index, new));
    match (before, after) {
        (None, None) => 0,
        (None, Some(created)) => units(&created),
        (Some(removed), None) => units(&removed),
        (Some(before), Some(after)) => {
            let key_changed = index.keys.iter().any(|key| before.get(key) != after.get(key));
            if key_changed {
                units(&before) + units(&after)
            } else if before != after {
                units(&after)
            } else {
                0
            }
        }
    }
}

/// The write units the table itself is billed for the same write, once (not
/// doubled for a transaction): the larger of the item's sizes before and
/// after, a unit per started KB.
pub fn table_write_units(old: Option<&Image>, new: Option<&Image>) -> u64 {
    old.map_or(0, units).max(new.map_or(0, units))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table_keys() -> Vec<String> {
        vec!["pk".to_owned(), "sk".to_owned()]
    }

    fn index(projection: Projection) -> Index {
        Index { name: "by_user".to_owned(), keys: vec!["user_id".to_owned(), "created_key".to_owned()], projection }
    }

    fn image(value: Value) -> Image {
        value.as_object().cloned().unwrap_or_default()
    }

    /// A job item with the index's keys, and a `note` of `note_bytes` characters.
    fn job(user: &str, note_bytes: usize) -> Image {
        image(json!({
            "pk": {"S": "JOB#1"}, "sk": {"S": "JOB"},
            "user_id": {"S": user}, "created_key": {"S": "2026-01-01#1"},
            "status": {"S": "queued"}, "note": {"S": "x".repeat(note_bytes)},
        }))
    }

    #[test]
    fn an_item_without_the_index_keys_before_or_after_costs_the_index_nothing() {
        // Arrange: a receipt, which has no user_id.
        let before = image(json!({"pk": {"S": "JOB#1"}, "sk": {"S": "RECEIPT"}, "n": {"N": "1"}}));
        let after = image(json!({"pk": {"S": "JOB#1"}, "sk": {"S": "RECEIPT"}, "n": {"N": "2"}}));

        // Act
        let units = index_write_units(&table_keys(), &index(Projection::All), Some(&before), Some(&after));

        // Assert
        assert_eq!(units, 0);
    }

    #[test]
    fn an_entry_created_is_one_write_of_the_new_entrys_size() {
        // Arrange: a put of a 1.5 KB item, and one of a small item.
        let (large, small) = (job("u1", 1500), job("u1", 10));

        // Act
        let large = index_write_units(&table_keys(), &index(Projection::All), None, Some(&large));
        let small = index_write_units(&table_keys(), &index(Projection::All), None, Some(&small));

        // Assert
        assert_eq!((large, small), (2, 1));
    }

    #[test]
    fn an_entry_removed_is_one_write_of_the_old_entrys_size() {
        // Arrange: a delete of a 1.5 KB item, and an update that takes the index's key away.
        let before = job("u1", 1500);
        let mut after = before.clone();
        after.remove("user_id");

        // Act
        let deleted = index_write_units(&table_keys(), &index(Projection::All), Some(&before), None);
        let left = index_write_units(&table_keys(), &index(Projection::All), Some(&before), Some(&after));

        // Assert
        assert_eq!((deleted, left), (2, 2));
    }

    #[test]
    fn an_index_key_changed_is_two_writes_the_old_entry_deleted_and_the_new_put_each_at_its_size() {
        // Arrange: the index's hash key changes while the item grows past 1 KB.
        let (before, after) = (job("u1", 10), job("u2", 1500));

        // Act
        let units = index_write_units(&table_keys(), &index(Projection::All), Some(&before), Some(&after));

        // Assert: 1 unit deleted, 2 units put.
        assert_eq!(units, 1 + 2);
    }

    #[test]
    fn a_projected_attribute_changed_under_the_same_keys_is_one_write_of_the_new_entrys_size() {
        // Arrange
        let before = job("u1", 10);
        let mut after = job("u1", 1500);
        after.insert("status".to_owned(), json!({"S": "completed"}));

        // Act
        let all = index_write_units(&table_keys(), &index(Projection::All), Some(&before), Some(&after));
        let included = index_write_units(&table_keys(), &index(Projection::Include(vec!["note".to_owned()])), Some(&before), Some(&after));

        // Assert
        assert_eq!((all, included), (2, 2));
    }

    #[test]
    fn a_change_to_attributes_the_index_does_not_project_costs_it_nothing() {
        // Arrange: only `note` and `status` change; neither is projected.
        let before = job("u1", 10);
        let mut after = job("u1", 1500);
        after.insert("status".to_owned(), json!({"S": "completed"}));

        // Act
        let keys_only = index_write_units(&table_keys(), &index(Projection::KeysOnly), Some(&before), Some(&after));
        let included =
            index_write_units(&table_keys(), &index(Projection::Include(vec!["job_id".to_owned()])), Some(&before), Some(&after));
        let unchanged = index_write_units(&table_keys(), &index(Projection::All), Some(&before), Some(&before));

        // Assert
        assert_eq!((keys_only, included, unchanged), (0, 0, 0));
    }

    #[test]
    fn an_entry_holds_the_table_keys_the_index_keys_and_the_projected_attributes_only() {
        // Arrange: a KEYS_ONLY index over an item far over 1 KB.
        let item = job("u1", 3000);

        // Act
        let keys_only = entry(&table_keys(), &index(Projection::KeysOnly), Some(&item)).unwrap_or_default();
        let units = index_write_units(&table_keys(), &index(Projection::KeysOnly), None, Some(&item));

        // Assert
        let mut names: Vec<&str> = keys_only.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!((names, units), (vec!["created_key", "pk", "sk", "user_id"], 1));
    }

    #[test]
    fn the_table_is_billed_the_larger_of_the_items_size_before_and_after() {
        // Arrange
        let (small, large) = (job("u1", 10), job("u1", 1500));

        // Act / Assert
        assert_eq!(table_write_units(Some(&large), Some(&small)), 2);
        assert_eq!(table_write_units(None, Some(&small)), 1);
        assert_eq!(table_write_units(Some(&large), None), 2);
    }
}
