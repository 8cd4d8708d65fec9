//! Page cursors: the index position a query's next page starts after (its
//! `LastEvaluatedKey`), made opaque as base64url JSON of its string
//! attributes. A listing names the attributes its index position has and
//! which positions belong to it, so a cursor from another listing, or one
//! tampered with, is refused.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;
use videojobs_core::ports::ListError;
use videojobs_core::StoreError;

type Item = HashMap<String, AttributeValue>;

/// The cursor for the position after `last`, which must have every one of `fields` as a string.
pub fn encode(last: &Item, fields: &[&str]) -> Result<String, ListError> {
    let mut values = serde_json::Map::new();
    for name in fields {
        let Some(AttributeValue::S(value)) = last.get(*name) else {
            return Err(ListError::Store(StoreError::Internal(format!("index key has no {name}"))));
        };
        values.insert((*name).to_owned(), value.clone().into());
    }
    Ok(URL_SAFE_NO_PAD.encode(serde_json::Value::Object(values).to_string()))
}

/// The longest key value a cursor may carry: DynamoDB's sort key limit
/// (1,024 bytes), the lower of its two key limits. DynamoDB refuses an
/// `ExclusiveStartKey` with a longer or an empty key value (a
/// ValidationException, which would be a 500); a cursor that could carry one
/// is refused here as a bad cursor (400) instead.
pub const MAX_KEY_VALUE_BYTES: usize = 1_024;

/// The position a cursor names: exactly `fields`, all non-empty strings
/// within DynamoDB's key sizes, and one the listing `belongs` to; anything
/// else is a bad cursor.
pub fn decode(cursor: &str, fields: &[&str], belongs: impl Fn(&HashMap<String, String>) -> bool) -> Result<Item, ListError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ListError::BadCursor)?;
    let values: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| ListError::BadCursor)?;
    let key_sized = |v: &String| !v.is_empty() && v.len() <= MAX_KEY_VALUE_BYTES;
    if values.len() != fields.len() || !values.values().all(key_sized) || !belongs(&values) {
        return Err(ListError::BadCursor);
    }
    fields
        .iter()
        .map(|name| values.get(*name).map(|v| ((*name).to_owned(), AttributeValue::S(v.clone()))).ok_or(ListError::BadCursor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [&str; 2] = ["pk", "sk"];

    fn position(pk: &str) -> Item {
        HashMap::from([("pk".to_owned(), AttributeValue::S(pk.into())), ("sk".to_owned(), AttributeValue::S("JOB".into()))])
    }

    fn is_job(values: &HashMap<String, String>) -> bool {
        values.get("pk").is_some_and(|pk| pk.starts_with("JOB#"))
    }

    #[test]
    fn a_cursor_decodes_back_to_the_position_it_came_from() {
        let cursor = encode(&position("JOB#a"), &FIELDS).unwrap();
        assert_eq!(decode(&cursor, &FIELDS, is_job).unwrap(), position("JOB#a"));
    }

    #[test]
    fn a_position_without_a_named_string_attribute_cannot_be_a_cursor() {
        let mut last = position("JOB#a");
        last.insert("sk".into(), AttributeValue::N("1".into()));
        assert!(matches!(encode(&last, &FIELDS), Err(ListError::Store(StoreError::Internal(_)))));
        assert!(matches!(encode(&position("JOB#a"), &["pk", "missing"]), Err(ListError::Store(_))));
    }

    #[test]
    fn a_cursor_of_another_listing_with_other_fields_or_not_json_is_refused() {
        let other = encode(&position("USER#a"), &FIELDS).unwrap();
        assert_eq!(decode(&other, &FIELDS, is_job), Err(ListError::BadCursor));
        let extra = URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#a","sk":"JOB","z":"1"}"#);
        assert_eq!(decode(&extra, &FIELDS, is_job), Err(ListError::BadCursor));
        let renamed = URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#a","sx":"JOB"}"#);
        assert_eq!(decode(&renamed, &FIELDS, is_job), Err(ListError::BadCursor));
        let number = URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#a","sk":1}"#);
        assert_eq!(decode(&number, &FIELDS, is_job), Err(ListError::BadCursor));
        assert_eq!(decode("%%%", &FIELDS, is_job), Err(ListError::BadCursor));
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("[1]"), &FIELDS, is_job), Err(ListError::BadCursor));
    }

    #[test]
    fn a_cursor_with_an_empty_or_oversized_key_value_is_refused_before_dynamodb_sees_it() {
        let empty = URL_SAFE_NO_PAD.encode(r#"{"pk":"JOB#a","sk":""}"#);
        assert_eq!(decode(&empty, &FIELDS, is_job), Err(ListError::BadCursor));
        let long = URL_SAFE_NO_PAD.encode(format!(r#"{{"pk":"JOB#a","sk":"{}"}}"#, "x".repeat(MAX_KEY_VALUE_BYTES + 1)));
        assert_eq!(decode(&long, &FIELDS, is_job), Err(ListError::BadCursor));
        let longest = URL_SAFE_NO_PAD.encode(format!(r#"{{"pk":"JOB#a","sk":"{}"}}"#, "x".repeat(MAX_KEY_VALUE_BYTES)));
        assert!(decode(&longest, &FIELDS, is_job).is_ok());
    }
}
