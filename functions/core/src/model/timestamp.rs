//! Times as the API and the store write them: RFC 3339 in UTC with whole
//! milliseconds, and now (through `determinism`, so a simulation owns it).

use serde::{Deserialize, Deserializer, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// `at` in UTC with whole milliseconds, fixed width: `2026-11-22T10:00:00.123Z`.
pub fn format(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc.format(&fmt).unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

/// An RFC 3339 time in any offset; `None` when the text is not one.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Now, cut to whole milliseconds so that a stored time reads back equal.
pub fn now() -> OffsetDateTime {
    let now = crate::model::determinism::now();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// Serde: writes the time as [`format()`] does.
pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*at))
}

/// Serde: reads an RFC 3339 time.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
}

/// Serde for an optional time: `None` is written as `null`.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serde: writes the time as [`super::format`] does, or `None`.
    pub fn serialize<S: Serializer>(at: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_some(&super::format(*at)),
            None => s.serialize_none(),
        }
    }

    /// Serde: reads an RFC 3339 time, or `None` for `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse(&text).map(Some).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
            None => Ok(None),
        }
    }
}
