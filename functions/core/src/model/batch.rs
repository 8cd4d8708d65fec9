//! `POST /videos/batch`: up to [`MAX_ITEMS`] jobs in one request, sharing
//! defaults. Every item is checked before anything is written: one bad field
//! refuses the whole batch, naming the item (`items[3].duration_seconds`).
//! An item is the body of a `generate` (or, with an `image_url` or
//! `upload_id`, an `animate`), laid over `defaults`, plus its client
//! reference `ref`.

use crate::model::request::{parse_json, AnimateRequest, GenerateRequest, InvalidRequest, RequestLimits};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The most items a batch may hold.
pub const MAX_ITEMS: usize = 20;
/// The longest client reference.
pub const MAX_REF_CHARS: usize = 64;

/// One item, checked: its reference, what to create, and the body that
/// makes it (what the item's idempotency record fingerprints).
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The client's reference, unique in the batch, given back with the item's answer.
    pub reference: String,
    /// The job to create.
    pub request: ItemRequest,
    /// The item's own create body: `defaults` with the item's fields over them.
    pub body: Vec<u8>,
}

/// What an item creates.
#[derive(Debug, Clone)]
pub enum ItemRequest {
    /// Text to video, as `POST /videos/generate`.
    Generate(GenerateRequest),
    /// Image to video, as `POST /videos/animate`.
    Animate(AnimateRequest),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[serde(default)]
    defaults: Map<String, Value>,
    items: Vec<Map<String, Value>>,
}

/// Parses and checks a batch under the deployment's `limits`.
pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<Vec<BatchItem>, InvalidRequest> {
    let raw: BatchBody = parse_json(body)?;
    if raw.items.is_empty() || raw.items.len() > MAX_ITEMS {
        return Err(InvalidRequest::new("items", format!("must hold 1 to {MAX_ITEMS} items, not {}", raw.items.len())));
    }
    if raw.defaults.contains_key("ref") {
        return Err(InvalidRequest::new("defaults.ref", "each item has its own ref"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::with_capacity(raw.items.len());
    for (index, item) in raw.items.into_iter().enumerate() {
        let at = |field: &str| format!("items[{index}].{field}");
        let mut merged = raw.defaults.clone();
        merged.extend(item);
        let reference = match merged.remove("ref") {
            Some(Value::String(text)) if valid_ref(&text) => text,
            Some(_) => return Err(InvalidRequest::new(at("ref"), format!("must be 1 to {MAX_REF_CHARS} of A-Z a-z 0-9 . _ -"))),
            None => return Err(InvalidRequest::new(at("ref"), "is required: it names the item's answer")),
        };
        if !seen.insert(reference.clone()) {
            return Err(InvalidRequest::new(at("ref"), format!("'{reference}' is given to two items")));
        }
        let body = serde_json::to_vec(&merged).map_err(|e| InvalidRequest::new(at("body"), e.to_string()))?;
        let is_image = merged.contains_key("image_url") || merged.contains_key("upload_id");
        let within = |err: InvalidRequest| InvalidRequest::new(at(&err.field), err.message);
        let request = if is_image {
            ItemRequest::Animate(AnimateRequest::parse(&body, limits).map_err(within)?)
        } else {
            ItemRequest::Generate(GenerateRequest::parse(&body, limits).map_err(within)?)
        };
        items.push(BatchItem { reference, request, body });
    }
    Ok(items)
}

fn valid_ref(text: &str) -> bool {
    (1..=MAX_REF_CHARS).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Result<Vec<BatchItem>, InvalidRequest> {
        parse(json.as_bytes(), &RequestLimits::default())
    }

    fn refused_field(json: &str) -> String {
        parsed(json).expect_err("should be refused").field
    }

    #[test]
    fn items_lay_their_fields_over_the_defaults() {
        let items = parsed(
            r#"{"defaults":{"resolution":"480p","duration_seconds":2},
                "items":[{"ref":"a","prompt":"A kite"},{"ref":"b","prompt":"A boat","duration_seconds":4}]}"#,
        )
        .unwrap();
        let refs: Vec<&str> = items.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(refs, ["a", "b"]);
        match (&items[0].request, &items[1].request) {
            (ItemRequest::Generate(a), ItemRequest::Generate(b)) => {
                assert_eq!((a.duration_seconds, b.duration_seconds), (2, 4));
                assert_eq!(a.resolution, crate::model::request::Resolution::Sd);
            }
            other => panic!("{other:?}"),
        }
        let images = parsed(r#"{"defaults":{"length":2},"items":[{"ref":"c","image_url":"https://img.example/a.png"}]}"#).unwrap();
        assert!(matches!(images[0].request, ItemRequest::Animate(_)), "an image source makes an animate item");
        // Defaults must fit every item: a text field is refused on an image item, not dropped.
        let mixed = r#"{"defaults":{"duration_seconds":2},"items":[{"ref":"c","image_url":"https://img.example/a.png"}]}"#;
        assert_eq!(refused_field(mixed), "items[0].duration_seconds");
        let body: Value = serde_json::from_slice(&items[1].body).unwrap();
        assert_eq!(body, serde_json::json!({"resolution": "480p", "duration_seconds": 4, "prompt": "A boat"}), "the ref is not part of it");
    }

    #[test]
    fn a_bad_field_of_any_item_refuses_the_batch_naming_the_item() {
        assert_eq!(
            refused_field(r#"{"items":[{"ref":"a","prompt":"A kite"},{"ref":"b","prompt":"x","duration_seconds":99}]}"#),
            "items[1].duration_seconds"
        );
        assert_eq!(refused_field(r#"{"items":[{"ref":"a","prompt":"A kite","colour":"red"}]}"#), "items[0].colour");
        assert_eq!(refused_field(r#"{"defaults":{"seed":-1},"items":[{"ref":"a","prompt":"A kite"}]}"#), "items[0].seed");
        assert_eq!(refused_field(r#"{"items":[{"ref":"a"}]}"#), "items[0].prompt");
    }

    #[test]
    fn refs_are_required_unique_and_plain() {
        assert_eq!(refused_field(r#"{"items":[{"prompt":"A kite"}]}"#), "items[0].ref");
        assert_eq!(refused_field(r#"{"items":[{"ref":"a","prompt":"A"},{"ref":"a","prompt":"B"}]}"#), "items[1].ref");
        for bad in [r#""""#, r#""a b""#, "7", &format!(r#""{}""#, "x".repeat(MAX_REF_CHARS + 1))] {
            assert_eq!(refused_field(&format!(r#"{{"items":[{{"ref":{bad},"prompt":"A"}}]}}"#)), "items[0].ref", "{bad}");
        }
        assert_eq!(refused_field(r#"{"defaults":{"ref":"a"},"items":[{"prompt":"A"}]}"#), "defaults.ref");
    }

    #[test]
    fn a_batch_holds_one_to_twenty_items() {
        assert_eq!(refused_field(r#"{"items":[]}"#), "items");
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| format!(r#"{{"ref":"r{i}","prompt":"A"}}"#)).collect();
        assert_eq!(refused_field(&format!(r#"{{"items":[{}]}}"#, many.join(","))), "items");
        let twenty = &many[..MAX_ITEMS];
        assert_eq!(parsed(&format!(r#"{{"items":[{}]}}"#, twenty.join(","))).unwrap().len(), MAX_ITEMS);
        assert_eq!(refused_field(r#"{"items":[{"ref":"a","prompt":"A"}],"extra":1}"#), "extra");
        assert!(parsed("[1]").is_err() && parsed("not json").is_err());
    }
}
