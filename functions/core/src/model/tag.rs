//! A job's tags: short labels a client puts on a job to find it again
//! (`GET /videos/jobs?tag=`). A leaf: the job and the request hold them.

use serde::{Deserialize, Serialize};

/// The most tags a job may carry.
pub const MAX_TAGS: usize = 5;
/// The longest tag, in characters.
pub const TAG_MAX_CHARS: usize = 32;

/// A short label a client puts on a job to find it again: 1 to 32 of
/// `a`–`z`, `0`–`9`, `-`, `_`, `.` and `:`, starting with a letter or a digit.
/// Lowercase only, so that a filter on `Promo` cannot miss `promo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// The tag as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':');
        match text.chars().next() {
            None => Err("a tag cannot be empty".into()),
            _ if text.chars().count() > TAG_MAX_CHARS => Err(format!("a tag is at most {TAG_MAX_CHARS} characters")),
            Some(first) if !first.is_ascii_lowercase() && !first.is_ascii_digit() => {
                Err("a tag starts with a lowercase letter or a digit".into())
            }
            _ if !text.chars().all(allowed) => Err("a tag has only lowercase letters, digits, '-', '_', '.' and ':'".into()),
            _ => Ok(Tag(text)),
        }
    }
}

impl std::str::FromStr for Tag {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Tag::try_from(text.to_owned())
    }
}

impl From<Tag> for String {
    fn from(tag: Tag) -> String {
        tag.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_of_lowercase_letters_digits_and_separators_up_to_32_characters_is_taken() {
        for good in ["promo", "a", "2026", "campaign:spring-26", "x_y.z", &"a".repeat(32)] {
            assert_eq!(good.parse::<Tag>().unwrap().as_str(), good);
        }
    }

    #[test]
    fn an_empty_long_uppercase_spaced_or_symbol_led_tag_is_refused() {
        for bad in ["", &"a".repeat(33), "Promo", "two words", "-lead", ":x", "é", "a/b", "tag\u{200b}"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tag_reads_back_from_json_only_when_it_parses() {
        let tag: Tag = serde_json::from_str("\"promo\"").unwrap();
        assert_eq!(serde_json::to_string(&tag).unwrap(), "\"promo\"");
        assert!(serde_json::from_str::<Tag>("\"PROMO\"").is_err());
    }
}
