//! What a client may ask for. Bodies are parsed into these types once, at the
//! edge; an unknown field, a wrong type or an out-of-range value is refused with
//! a message that names the field.

use crate::model::ids::{InvalidId, UploadId};
use crate::model::tag::{Tag, MAX_TAGS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

/// A refused request: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    /// The field's path (`metadata.color`), or `body` for the body as a whole.
    pub field: String,
    /// What is wrong with the field, in words the client can act on.
    pub message: String,
}

impl InvalidRequest {
    /// A refusal of `field` because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Parses JSON into `T`, naming the field that did not fit.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, InvalidRequest> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let full = inner.to_string();
        // serde_json appends the position; the field name says more to a client.
        let message = match full.rfind(" at line ") {
            Some(cut) => full[..cut].to_owned(),
            None => full,
        };
        if inner.is_syntax() || inner.is_eof() {
            return InvalidRequest::new("body", format!("is not valid JSON ({message})"));
        }
        // The path ends at the unknown field itself, but at the parent of a missing one.
        let field = match named_in_message(&message, "missing field `") {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        InvalidRequest::new(field, message)
    })
}

fn named_in_message<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    message.strip_prefix(marker)?.split('`').next()
}

/// The longest prompt accepted, in characters after trimming.
pub const PROMPT_MAX_CHARS: usize = 2_000;
/// The most top-level keys a job's `metadata` may have.
pub const METADATA_MAX_KEYS: usize = 20;
/// The largest a job's `metadata` may be, in bytes of JSON.
pub const METADATA_MAX_BYTES: usize = 4_096;
/// Objects and arrays nest at most this deep in `metadata` (DynamoDB stores
/// 32 levels, and the job item holds `metadata` inside itself).
pub const METADATA_MAX_DEPTH: usize = 8;

/// The shape of a text-to-video job's frame, as `16:9`, `9:16` or `1:1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AspectRatio {
    /// `16:9`, wider than tall (the default).
    #[serde(rename = "16:9")]
    Landscape,
    /// `9:16`, taller than wide.
    #[serde(rename = "9:16")]
    Portrait,
    /// `1:1`.
    #[serde(rename = "1:1")]
    Square,
}

/// The frame size of a text-to-video job, named by its shorter side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// `480p`.
    #[serde(rename = "480p")]
    Sd,
    /// `720p` (the default).
    #[serde(rename = "720p")]
    Hd,
    /// `1080p`: twice the credits per second.
    #[serde(rename = "1080p")]
    FullHd,
}

impl Resolution {
    /// Credits per second of video.
    pub fn credits_per_second(self) -> u32 {
        match self {
            Resolution::Sd | Resolution::Hd => 1,
            Resolution::FullHd => 2,
        }
    }

    /// Frame height in pixels.
    pub fn height(self) -> u32 {
        match self {
            Resolution::Sd => 480,
            Resolution::Hd => 720,
            Resolution::FullHd => 1080,
        }
    }
}

/// Frame width and height in pixels (even, as encoders want) for an aspect
/// ratio at a resolution: the resolution names the shorter side.
pub fn frame_size(aspect: AspectRatio, resolution: Resolution) -> (u32, u32) {
    let short = resolution.height();
    let long = (short * 16 / 9).div_ceil(2) * 2;
    match aspect {
        AspectRatio::Landscape => (long, short),
        AspectRatio::Portrait => (short, long),
        AspectRatio::Square => (short, short),
    }
}

/// Which kind of job this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowType {
    /// A video from a prompt (`POST /videos/generate`).
    TextToVideo,
    /// A video from a source image (`POST /videos/animate`).
    ImageToVideo,
}

impl WorkflowType {
    /// The type as the API and the records write it: `text_to_video` or `image_to_video`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowType::TextToVideo => "text_to_video",
            WorkflowType::ImageToVideo => "image_to_video",
        }
    }
}

/// A provider named on a request. Whether it is enabled in this deployment is
/// the create function's question, not the parser's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderName(String);

impl ProviderName {
    /// The name as written in requests, records and settings.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ProviderName {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, InvalidId> {
        let ok = (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidId("a provider name is 1 to 32 lower-case letters, digits or '-'"))
        }
    }
}

impl TryFrom<String> for ProviderName {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, InvalidId> {
        value.parse()
    }
}

impl From<ProviderName> for String {
    fn from(name: ProviderName) -> String {
        name.0
    }
}

impl std::fmt::Display for ProviderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the source image of an image-to-video job comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL the provider fetches the image from.
    Url(String),
    /// An image uploaded to us first, through `POST /videos/uploads`.
    Upload(UploadId),
}

/// The fields both kinds of job share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommonOptions {
    /// The provider the client asked for; the deployment's default when absent.
    pub provider: Option<ProviderName>,
    /// Where to `POST` the job's notifications; an IP literal in it is already checked.
    pub webhook_url: Option<Url>,
    /// The client's own JSON, kept with the job and given back with it.
    pub metadata: Option<Map<String, Value>>,
    /// Passed to providers that take one (the same seed and inputs give the
    /// same video there), and echoed in the job's status.
    pub seed: Option<u32>,
    /// The client's deadline: a job not completed this many seconds after it
    /// is accepted is canceled at the provider (see [`bounds::CANCEL_AFTER_SECONDS`]).
    pub cancel_after_seconds: Option<u32>,
    /// The client's labels (see [`crate::model::tag::Tag`]).
    pub tags: Vec<crate::model::tag::Tag>,
}

/// `POST /videos/generate`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRequest {
    /// What the video should show, trimmed.
    pub prompt: String,
    /// Length of the video, within [`bounds::DURATION_SECONDS`].
    pub duration_seconds: u32,
    /// The frame's shape.
    pub aspect_ratio: AspectRatio,
    /// The frame's size; sets the credits per second.
    pub resolution: Resolution,
    /// The fields both kinds of job share.
    pub common: CommonOptions,
}

/// `POST /videos/animate`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimateRequest {
    /// Where the image to animate comes from.
    pub image: ImageSource,
    /// Guidance for the motion, trimmed; `None` when absent or blank.
    pub prompt: Option<String>,
    /// Length of the video, within [`bounds::LENGTH_SECONDS`] (the request's `length`).
    pub length_seconds: u32,
    /// Frames per second, within [`bounds::FRAME_RATE`].
    pub frame_rate: u32,
    /// How fast the camera closes in, within [`bounds::ZOOM_SPEED`].
    pub zoom_speed: f64,
    /// The fields both kinds of job share.
    pub common: CommonOptions,
}

/// `POST /videos/uploads`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// The image type the client will upload; the bytes are checked against it later.
    pub content_type: ImageType,
    /// The size the client declares, from 1 to the deployment's upload cap.
    pub size_bytes: u64,
}

/// A source image type the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageType {
    /// `image/jpeg`.
    #[serde(rename = "image/jpeg")]
    Jpeg,
    /// `image/png`.
    #[serde(rename = "image/png")]
    Png,
    /// `image/webp`.
    #[serde(rename = "image/webp")]
    Webp,
}

impl ImageType {
    /// The MIME type, as in `Content-Type`.
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
        }
    }
}

/// Bounds a deployment sets on requests.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Plain `http://` webhook URLs are accepted (the local stack only).
    pub allow_http_webhooks: bool,
    /// The loopback ports webhook URLs may name (the local stack and tests only).
    pub loopback_webhook_ports: crate::model::notification::address::LoopbackPorts,
    /// The largest source image an upload may declare, in bytes (`UPLOAD_MAX_BYTES`).
    pub upload_max_bytes: u64,
    /// `metadata.local_faults` is accepted (the local stack and tests only;
    /// `ALLOW_FAULT_INJECTION`, off in a deployment).
    pub allow_fault_injection: bool,
}

impl RequestLimits {
    /// Where URLs we or a provider will call may point, by these limits.
    pub fn webhook_policy(&self) -> crate::model::notification::address::WebhookPolicy {
        crate::model::notification::address::WebhookPolicy { allow_http: self.allow_http_webhooks, loopback: self.loopback_webhook_ports }
    }
}

impl RequestLimits {
    /// Where a provider's output may be fetched from: public addresses, and
    /// in the local stack (where loopback webhooks are open at all) loopback at
    /// any port, since the local provider serves its files there.
    pub fn output_source_policy(&self) -> crate::model::notification::address::WebhookPolicy {
        use crate::model::notification::address::LoopbackPorts;
        let loopback =
            if self.loopback_webhook_ports == LoopbackPorts::NONE { LoopbackPorts::NONE } else { LoopbackPorts::range(1, u16::MAX) };
        crate::model::notification::address::WebhookPolicy { allow_http: self.allow_http_webhooks, loopback }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            allow_http_webhooks: false,
            loopback_webhook_ports: crate::model::notification::address::LoopbackPorts::NONE,
            upload_max_bytes: 10 * 1024 * 1024,
            allow_fault_injection: false,
        }
    }
}

/// The ranges and defaults of a job's numeric request fields.
pub mod bounds {
    use std::ops::RangeInclusive;
    /// Text-to-video `duration_seconds`, in seconds.
    pub const DURATION_SECONDS: RangeInclusive<u32> = 1..=20;
    /// Text-to-video `duration_seconds` when the request gives none.
    pub const DEFAULT_DURATION_SECONDS: u32 = 5;
    /// Image-to-video `length`, in seconds.
    pub const LENGTH_SECONDS: RangeInclusive<u32> = 1..=30;
    /// Image-to-video `length` when the request gives none.
    pub const DEFAULT_LENGTH_SECONDS: u32 = 5;
    /// Image-to-video `frame_rate`, in frames per second.
    pub const FRAME_RATE: RangeInclusive<u32> = 1..=60;
    /// Image-to-video `frame_rate` when the request gives none.
    pub const DEFAULT_FRAME_RATE: u32 = 24;
    /// How much closer the camera gets each second: 0.1 is 10 % a second.
    pub const ZOOM_SPEED: RangeInclusive<f64> = 0.0..=0.5;
    /// Image-to-video `zoom_speed` when the request gives none.
    pub const DEFAULT_ZOOM_SPEED: f64 = 0.1;
    /// A client's deadline (`cancel_after_seconds`, `Cancel-After`), in
    /// seconds: at least the time the state machine's own steps need, at most a day.
    pub const CANCEL_AFTER_SECONDS: RangeInclusive<u32> = 5..=86_400;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    prompt: String,
    #[serde(default, alias = "duration")]
    duration_seconds: Option<u32>,
    #[serde(default)]
    aspect_ratio: Option<AspectRatio>,
    #[serde(default)]
    resolution: Option<Resolution>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    seed: Option<u32>,
    #[serde(default)]
    cancel_after_seconds: Option<u32>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnimateBody {
    #[serde(default)]
    image_url: Option<String>,
    #[serde(default)]
    upload_id: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    length: Option<u32>,
    #[serde(default)]
    frame_rate: Option<u32>,
    #[serde(default)]
    zoom_speed: Option<f64>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    seed: Option<u32>,
    #[serde(default)]
    cancel_after_seconds: Option<u32>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadBody {
    content_type: String,
    size_bytes: u64,
}

impl GenerateRequest {
    /// Parses and checks the body under the deployment's `limits`; fills in defaults.
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<Self, InvalidRequest> {
        let raw: GenerateBody = parse_json(body)?;
        let duration_seconds =
            in_range("duration_seconds", raw.duration_seconds.unwrap_or(bounds::DEFAULT_DURATION_SECONDS), bounds::DURATION_SECONDS)?;
        Ok(Self {
            prompt: checked_prompt(&raw.prompt)?,
            duration_seconds,
            aspect_ratio: raw.aspect_ratio.unwrap_or(AspectRatio::Landscape),
            resolution: raw.resolution.unwrap_or(Resolution::Hd),
            common: checked_common(raw.provider, raw.webhook_url, raw.metadata, (raw.seed, raw.cancel_after_seconds, raw.tags), limits)?,
        })
    }

    /// What the job costs: its seconds times the resolution's credits per second.
    pub fn cost_credits(&self) -> u32 {
        self.duration_seconds * self.resolution.credits_per_second()
    }
}

impl AnimateRequest {
    /// Parses and checks the body under the deployment's `limits`; fills in defaults.
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<Self, InvalidRequest> {
        let raw: AnimateBody = parse_json(body)?;
        let image = match (raw.image_url, raw.upload_id) {
            // The provider fetches it: an address of our own network is no image source.
            (Some(url), None) => ImageSource::Url(checked_outside_url("image_url", &url, limits)?.into()),
            (None, Some(id)) => ImageSource::Upload(id.parse().map_err(|e: InvalidId| InvalidRequest::new("upload_id", e.0))?),
            (Some(_), Some(_)) => return Err(InvalidRequest::new("image_url", "give image_url or upload_id, not both")),
            (None, None) => return Err(InvalidRequest::new("image_url", "an image_url or an upload_id is required")),
        };
        let prompt = match raw.prompt {
            Some(p) if p.trim().is_empty() => None,
            Some(p) => Some(checked_prompt(&p)?),
            None => None,
        };
        let zoom_speed = raw.zoom_speed.unwrap_or(bounds::DEFAULT_ZOOM_SPEED);
        if !bounds::ZOOM_SPEED.contains(&zoom_speed) {
            return Err(out_of_range("zoom_speed", bounds::ZOOM_SPEED.start(), bounds::ZOOM_SPEED.end()));
        }
        Ok(Self {
            image,
            prompt,
            length_seconds: in_range("length", raw.length.unwrap_or(bounds::DEFAULT_LENGTH_SECONDS), bounds::LENGTH_SECONDS)?,
            frame_rate: in_range("frame_rate", raw.frame_rate.unwrap_or(bounds::DEFAULT_FRAME_RATE), bounds::FRAME_RATE)?,
            zoom_speed,
            common: checked_common(raw.provider, raw.webhook_url, raw.metadata, (raw.seed, raw.cancel_after_seconds, raw.tags), limits)?,
        })
    }

    /// What the job costs: one credit per second of video.
    pub fn cost_credits(&self) -> u32 {
        self.length_seconds
    }
}

/// Why an upload request was refused: a bad field, or a file over the cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUpload {
    /// A field is missing, of the wrong type or out of range (400).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The declared size is over the deployment's cap (413).
    #[error("size_bytes: {size} is over the limit of {max} bytes")]
    TooLarge {
        /// The size the client declared, in bytes.
        size: u64,
        /// The deployment's cap, in bytes.
        max: u64,
    },
}

impl UploadRequest {
    /// Parses and checks the body under the deployment's `limits`.
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<Self, InvalidUpload> {
        let raw: UploadBody = parse_json(body)?;
        let content_type = match raw.content_type.as_str() {
            "image/jpeg" => ImageType::Jpeg,
            "image/png" => ImageType::Png,
            "image/webp" => ImageType::Webp,
            _ => return Err(InvalidRequest::new("content_type", "must be image/jpeg, image/png or image/webp").into()),
        };
        if raw.size_bytes == 0 {
            return Err(InvalidRequest::new("size_bytes", "must be at least 1").into());
        }
        if raw.size_bytes > limits.upload_max_bytes {
            return Err(InvalidUpload::TooLarge { size: raw.size_bytes, max: limits.upload_max_bytes });
        }
        Ok(Self { content_type, size_bytes: raw.size_bytes })
    }
}

fn checked_prompt(prompt: &str) -> Result<String, InvalidRequest> {
    let trimmed = prompt.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(InvalidRequest::new("prompt", "must not be empty"));
    }
    if chars > PROMPT_MAX_CHARS {
        return Err(InvalidRequest::new("prompt", format!("is {chars} characters; the limit is {PROMPT_MAX_CHARS}")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InvalidRequest::new("prompt", "must not contain control characters"));
    }
    no_format_characters("prompt", trimmed)?;
    Ok(trimmed.to_owned())
}

/// Whether `c` is an invisible character that changes how text around it is
/// shown: Unicode's format characters (general category Cf: bidirectional
/// overrides and isolates, zero-width space, word joiner, BOM, invisible
/// operators, tags, …) and the line and paragraph separators. Zero-width
/// joiner and non-joiner (U+200D, U+200C) are allowed: emoji sequences and
/// Persian and Indic scripts need them, and they reorder nothing.
pub fn is_format_character(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}' | '\u{200E}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Refuses text (prompts, notes, metadata, labels) that carries a format character.
pub fn no_format_characters(field: &str, text: &str) -> Result<(), InvalidRequest> {
    match text.chars().find(|c| is_format_character(*c)) {
        Some(c) => {
            Err(InvalidRequest::new(field, format!("must not contain invisible formatting characters (found U+{:04X})", u32::from(c))))
        }
        None => Ok(()),
    }
}

/// Every string in a metadata value (nested too), checked for format characters.
fn checked_metadata_value(field: &str, value: &Value) -> Result<(), InvalidRequest> {
    match value {
        Value::String(text) => no_format_characters(field, text),
        Value::Array(items) => items.iter().try_for_each(|item| checked_metadata_value(field, item)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            no_format_characters(field, key)?;
            checked_metadata_value(field, item)
        }),
        _ => Ok(()),
    }
}

/// `metadata.local_faults`: the faults a job asks the local provider for,
/// accepted only where a deployment switches fault injection on, and bounded
/// there too. The local provider applies the same bounds.
pub mod faults {
    use super::InvalidRequest;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    /// The key in a job's `metadata` that holds its faults.
    pub const METADATA_KEY: &str = "local_faults";
    /// Each callback delivered at most this many times.
    pub const MAX_DUPLICATE_CALLBACKS: u32 = 5;
    /// At most this many injected submission errors (more than the state
    /// machine's attempts, so that "busy past every retry" can be asked for).
    pub const MAX_SUBMIT_ERRORS: usize = 10;
    /// The longest injected delay before rendering.
    pub const MAX_DELAY_MS: u64 = 120_000;
    /// The longest wait between the first callback and the others.
    pub const MAX_LATE_CALLBACKS_MS: u64 = 60_000;
    /// The longest injected failure code.
    pub const MAX_CODE_CHARS: usize = 64;

    /// The faults the local provider knows, as a job asks for them (and as
    /// the local provider applies them: it uses this type too).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct RequestedFaults {
        /// Deliver each callback this many times (0 or 1: once).
        pub duplicate_callbacks: u32,
        /// Deliver the callbacks in a random order, after the video is made.
        pub shuffle_callbacks: bool,
        /// Deliver the completion before the progress callbacks.
        pub completion_first: bool,
        /// Send no callbacks at all (the state machine must poll).
        pub drop_callbacks: bool,
        /// Fail the generation with this error code.
        pub fail_with: Option<String>,
        /// Answer the first submissions of a key with these statuses (429, 503…).
        pub submit_errors: Vec<u16>,
        /// Take this long before rendering.
        pub delay_ms: u64,
        /// Wait this long between the first delivery and the others (with
        /// `completion_first`: progress that arrives after the job completed).
        pub late_callbacks_ms: u64,
        /// Make the video and send its callbacks before answering the
        /// submission (the callbacks arrive before the caller knows the request id).
        pub callbacks_before_answer: bool,
    }

    /// The bounds, as one message per field out of them.
    pub fn out_of_bounds(f: &RequestedFaults) -> Option<(&'static str, String)> {
        if f.duplicate_callbacks > MAX_DUPLICATE_CALLBACKS {
            return Some(("duplicate_callbacks", format!("must be at most {MAX_DUPLICATE_CALLBACKS}")));
        }
        if f.submit_errors.len() > MAX_SUBMIT_ERRORS || f.submit_errors.iter().any(|s| !(400..=599).contains(s)) {
            return Some(("submit_errors", format!("must be at most {MAX_SUBMIT_ERRORS} statuses from 400 to 599")));
        }
        if f.delay_ms > MAX_DELAY_MS {
            return Some(("delay_ms", format!("must be at most {MAX_DELAY_MS}")));
        }
        if f.late_callbacks_ms > MAX_LATE_CALLBACKS_MS {
            return Some(("late_callbacks_ms", format!("must be at most {MAX_LATE_CALLBACKS_MS}")));
        }
        let code_ok = |c: &String| {
            (1..=MAX_CODE_CHARS).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if f.fail_with.as_ref().is_some_and(|c| !code_ok(c)) {
            return Some(("fail_with", format!("must be 1 to {MAX_CODE_CHARS} lower-case letters, digits or '_'")));
        }
        None
    }

    /// Checks a job's `local_faults` value: known fields, bounded values.
    pub fn check(value: &Value) -> Result<RequestedFaults, InvalidRequest> {
        let faults: RequestedFaults =
            serde_json::from_value(value.clone()).map_err(|e| InvalidRequest::new("metadata.local_faults", e.to_string()))?;
        match out_of_bounds(&faults) {
            Some((field, message)) => Err(InvalidRequest::new(format!("metadata.local_faults.{field}"), message)),
            None => Ok(faults),
        }
    }
}

/// A request's `tags`: at most [`MAX_TAGS`], each once, in the order given.
fn checked_tags(tags: Option<Vec<String>>) -> Result<Vec<Tag>, InvalidRequest> {
    let tags = tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(InvalidRequest::new("tags", format!("has {} tags; the limit is {MAX_TAGS}", tags.len())));
    }
    let mut checked: Vec<Tag> = Vec::with_capacity(tags.len());
    for (i, text) in tags.into_iter().enumerate() {
        let tag = Tag::try_from(text).map_err(|message| InvalidRequest::new(format!("tags[{i}]"), message))?;
        if checked.contains(&tag) {
            return Err(InvalidRequest::new(format!("tags[{i}]"), format!("'{tag}' is given twice")));
        }
        checked.push(tag);
    }
    Ok(checked)
}

fn checked_common(
    provider: Option<String>,
    webhook_url: Option<String>,
    metadata: Option<Map<String, Value>>,
    (seed, cancel_after_seconds, tags): (Option<u32>, Option<u32>, Option<Vec<String>>),
    limits: &RequestLimits,
) -> Result<CommonOptions, InvalidRequest> {
    let tags = checked_tags(tags)?;
    let cancel_after_seconds =
        cancel_after_seconds.map(|s| in_range("cancel_after_seconds", s, bounds::CANCEL_AFTER_SECONDS)).transpose()?;
    let provider = provider.map(|p| p.parse::<ProviderName>().map_err(|e| InvalidRequest::new("provider", e.0))).transpose()?;
    // An IP literal is refused here; a host name when it resolves (`Services::check_webhook_url`).
    let webhook_url = webhook_url.map(|u| checked_outside_url("webhook_url", &u, limits)).transpose()?;
    if let Some(metadata) = &metadata {
        if metadata.len() > METADATA_MAX_KEYS {
            return Err(InvalidRequest::new("metadata", format!("has {} keys; the limit is {METADATA_MAX_KEYS}", metadata.len())));
        }
        let size = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > METADATA_MAX_BYTES {
            return Err(InvalidRequest::new("metadata", format!("is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")));
        }
        for (key, value) in metadata {
            storable(value, 1).map_err(|problem| InvalidRequest::new(format!("metadata.{key}"), problem))?;
            // A key with an invisible character is named by its parent: the name itself would mislead.
            no_format_characters("metadata", key)?;
            checked_metadata_value(&format!("metadata.{key}"), value)?;
        }
        if let Some(faults) = metadata.get(faults::METADATA_KEY) {
            if !limits.allow_fault_injection {
                return Err(InvalidRequest::new("metadata.local_faults", "fault injection is not enabled in this deployment"));
            }
            faults::check(faults)?;
        }
    }
    Ok(CommonOptions { provider, webhook_url, metadata, seed, cancel_after_seconds, tags })
}

/// Whether DynamoDB can store a metadata value: nesting within
/// [`METADATA_MAX_DEPTH`], numbers within its range (magnitudes from 1e-130
/// to below 1e126, or zero).
fn storable(value: &Value, depth: usize) -> Result<(), String> {
    if depth > METADATA_MAX_DEPTH {
        return Err(format!("nests deeper than {METADATA_MAX_DEPTH} levels"));
    }
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(x) if x == 0.0 || (1e-130..1e126).contains(&x.abs()) => Ok(()),
            _ => Err("holds a number outside the range that can be stored (1e-130 to 1e125)".into()),
        },
        Value::Array(items) => items.iter().try_for_each(|v| storable(v, depth + 1)),
        Value::Object(fields) => fields.values().try_for_each(|v| storable(v, depth + 1)),
        _ => Ok(()),
    }
}

fn checked_url(field: &str, value: &str, allow_http: bool) -> Result<Url, InvalidRequest> {
    let url = Url::parse(value).map_err(|e| InvalidRequest::new(field, format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(InvalidRequest::new(field, "must be an https URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidRequest::new(field, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidRequest::new(field, "must not carry credentials"));
    }
    if value.len() > 2_048 {
        return Err(InvalidRequest::new(field, "is longer than 2048 characters"));
    }
    Ok(url)
}

/// A URL as [`checked_url`] wants it whose host, when it is an IP address, is
/// one the deployment lets us (or a provider) call.
fn checked_outside_url(field: &str, value: &str, limits: &RequestLimits) -> Result<Url, InvalidRequest> {
    let url = checked_url(field, value, limits.allow_http_webhooks)?;
    crate::model::notification::address::check_literal(&url, limits.webhook_policy())
        .map_err(|e| InvalidRequest::new(field, e.to_string()))?;
    Ok(url)
}

/// `POST /videos/webhook-test`, checked: the URL a signed `ping` goes to,
/// under the rules a `webhook_url` follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingRequest {
    /// Where to send the ping; an IP literal in it is already checked.
    pub url: Url,
}

impl PingRequest {
    /// Parses `{"url": "https://…"}` under the deployment's `limits`.
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<Self, InvalidRequest> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            url: String,
        }
        let raw: Body = parse_json(body)?;
        Ok(Self { url: checked_outside_url("url", &raw.url, limits)? })
    }
}

/// The `Cancel-After` header: whole seconds (`90`), or a duration of hours,
/// minutes and seconds as Replicate's header takes it (`90s`, `5m`, `1h30m`),
/// within [`bounds::CANCEL_AFTER_SECONDS`].
pub fn parse_cancel_after(text: &str) -> Result<u32, InvalidRequest> {
    const FIELD: &str = "Cancel-After";
    let refused = || InvalidRequest::new(FIELD, "must be whole seconds (90) or a duration such as 90s, 5m or 1h30m");
    let text = text.trim();
    if text.is_empty() || text.len() > 16 {
        return Err(refused());
    }
    let seconds: u64 = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().map_err(|_| refused())?
    } else {
        let (mut total, mut number, mut last_unit) = (0u64, String::new(), 0u64);
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(refused()),
            };
            // Each unit once, largest first, each with its number.
            if number.is_empty() || (last_unit != 0 && unit >= last_unit) {
                return Err(refused());
            }
            total += number.parse::<u64>().map_err(|_| refused())? * unit;
            (number, last_unit) = (String::new(), unit);
        }
        if !number.is_empty() {
            return Err(refused());
        }
        total
    };
    let seconds = u32::try_from(seconds)
        .map_err(|_| out_of_range(FIELD, bounds::CANCEL_AFTER_SECONDS.start(), bounds::CANCEL_AFTER_SECONDS.end()))?;
    in_range(FIELD, seconds, bounds::CANCEL_AFTER_SECONDS)
}

impl CommonOptions {
    /// Takes the deadline of a `Cancel-After` header; one that differs from
    /// the body's `cancel_after_seconds` is refused (which would win is a guess).
    pub fn with_cancel_after_header(mut self, seconds: u32) -> Result<Self, InvalidRequest> {
        match self.cancel_after_seconds {
            Some(body) if body != seconds => {
                Err(InvalidRequest::new("Cancel-After", format!("is {seconds} s but the body's cancel_after_seconds is {body}: give one")))
            }
            _ => {
                self.cancel_after_seconds = Some(seconds);
                Ok(self)
            }
        }
    }
}

fn in_range(field: &str, value: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32, InvalidRequest> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range(field, range.start(), range.end()))
    }
}

fn out_of_range(field: &str, min: impl std::fmt::Display, max: impl std::fmt::Display) -> InvalidRequest {
    InvalidRequest::new(field, format!("must be between {min} and {max}"))
}

/// A hex HMAC-SHA256 of a prompt under the deployment's `key`
/// (`PROMPT_HASH_KEY`): the job record keeps this, never the prompt. Keyed,
/// so that someone who reads the jobs table cannot confirm a guessed prompt.
pub fn prompt_hash(key: &[u8], prompt: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(prompt.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The hex SHA-256 of `bytes`, unkeyed: for legacy fingerprints and tests, never for a prompt.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A fingerprint of a request body, to tell a replay from a different request
/// under the same `Idempotency-Key`. Parsed and re-serialised so that spacing
/// and key order do not matter. A hex HMAC-SHA256 under a key derived from the
/// deployment's prompt hash `key`: the body holds the prompt, and the
/// idempotency record sits in the jobs table, so an unkeyed hash there would
/// confirm a guessed prompt. The derived key (the domain prefix
/// [`FINGERPRINT_KEY_PURPOSE`] under `key`) keeps fingerprints and prompt hashes
/// apart.
pub fn request_fingerprint(key: &[u8], route: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut derive = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    derive.update(FINGERPRINT_KEY_PURPOSE);
    let derived = derive.finalize().into_bytes();
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&derived).expect("HMAC takes any key length");
    mac.update(&fingerprint_message(route, body));
    hex::encode(mac.finalize().into_bytes())
}

/// What the key of [`request_fingerprint`] is derived with.
pub const FINGERPRINT_KEY_PURPOSE: &[u8] = b"videojobs/idempotency-fingerprint/v1";

/// The fingerprint idempotency records written before it was keyed carry: the
/// plain SHA-256 of the same message. Only compared with, never written, so
/// that a retry of such a request still replays while its record lasts
/// (a day); drop it once none can be left.
pub fn legacy_request_fingerprint(route: &str, body: &[u8]) -> String {
    sha256_hex(&fingerprint_message(route, body))
}

/// The route, a NUL, and the body parsed and re-serialised (or as sent, if it is not JSON).
fn fingerprint_message(route: &str, body: &[u8]) -> Vec<u8> {
    let canonical =
        serde_json::from_slice::<Value>(body).map(|v| v.to_string()).unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    let mut message = Vec::with_capacity(route.len() + 1 + canonical.len());
    message.extend_from_slice(route.as_bytes());
    message.push(0);
    message.extend_from_slice(canonical.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_at_most_five_tags_each_once_and_a_bad_one_is_named_by_its_place() {
        assert_eq!(checked_tags(None).unwrap(), Vec::<Tag>::new());
        let five: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        assert_eq!(checked_tags(Some(five.clone())).unwrap().len(), 5);
        let six: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        assert_eq!(checked_tags(Some(six)).unwrap_err().field, "tags");
        assert_eq!(checked_tags(Some(vec!["ok".into(), "Bad".into()])).unwrap_err().field, "tags[1]");
        assert_eq!(checked_tags(Some(vec!["ok".into(), "ok".into()])).unwrap_err().field, "tags[1]");
    }

    fn limits() -> RequestLimits {
        RequestLimits::default()
    }

    fn generate(json: &str) -> Result<GenerateRequest, InvalidRequest> {
        GenerateRequest::parse(json.as_bytes(), &limits())
    }

    fn animate(json: &str) -> Result<AnimateRequest, InvalidRequest> {
        AnimateRequest::parse(json.as_bytes(), &limits())
    }

    fn refused_field(result: Result<impl std::fmt::Debug, InvalidRequest>) -> String {
        result.expect_err("should be refused").field
    }

    #[test]
    fn a_cancel_after_header_is_seconds_or_a_duration_within_the_bounds() {
        for (text, seconds) in
            [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5_400), ("1h", 3_600), ("2m5s", 125), (" 30s ", 30), ("24h", 86_400)]
        {
            assert_eq!(parse_cancel_after(text), Ok(seconds), "{text}");
        }
        for text in ["", "4", "4s", "24h1s", "s", "-5", "1.5m", "5min", "30m1h", "1m1m", "1h30", "99999999999999999", "P5M", "5 m"] {
            let err = parse_cancel_after(text).expect_err(text);
            assert_eq!(err.field, "Cancel-After", "{text}");
        }
    }

    #[test]
    fn a_deadline_in_the_body_is_bounded_and_a_header_must_agree_with_it() {
        assert_eq!(generate(r#"{"prompt":"a fox","cancel_after_seconds":60}"#).unwrap().common.cancel_after_seconds, Some(60));
        for bad in ["4", "86401", "-1", "\"60\""] {
            assert_eq!(
                refused_field(generate(&format!(r#"{{"prompt":"a fox","cancel_after_seconds":{bad}}}"#))),
                "cancel_after_seconds",
                "{bad}"
            );
        }
        let body = generate(r#"{"prompt":"a fox","cancel_after_seconds":60}"#).unwrap().common;
        assert_eq!(body.clone().with_cancel_after_header(60).unwrap().cancel_after_seconds, Some(60));
        assert_eq!(body.with_cancel_after_header(61).unwrap_err().field, "Cancel-After");
        let none = generate(r#"{"prompt":"a fox"}"#).unwrap().common;
        assert_eq!(none.with_cancel_after_header(45).unwrap().cancel_after_seconds, Some(45));
    }

    #[test]
    fn a_seed_is_kept_as_given_and_anything_but_a_32_bit_whole_number_is_refused() {
        assert_eq!(generate(r#"{"prompt":"a fox","seed":0}"#).unwrap().common.seed, Some(0));
        assert_eq!(generate(r#"{"prompt":"a fox","seed":4294967295}"#).unwrap().common.seed, Some(u32::MAX));
        assert_eq!(generate(r#"{"prompt":"a fox"}"#).unwrap().common.seed, None);
        assert_eq!(animate(r#"{"image_url":"https://img.example/a.png","seed":42}"#).unwrap().common.seed, Some(42));
        for bad in ["-1", "4294967296", "1.5", "\"42\"", "true"] {
            assert_eq!(refused_field(generate(&format!(r#"{{"prompt":"a fox","seed":{bad}}}"#))), "seed", "{bad}");
            assert_eq!(refused_field(animate(&format!(r#"{{"image_url":"https://img.example/a.png","seed":{bad}}}"#))), "seed", "{bad}");
        }
    }

    #[test]
    fn a_minimal_generate_request_gets_the_defaults() {
        let request = generate(r#"{"prompt":"  a red fox in snow  "}"#).unwrap();
        assert_eq!(request.prompt, "a red fox in snow");
        assert_eq!(request.duration_seconds, 5);
        assert_eq!(request.aspect_ratio, AspectRatio::Landscape);
        assert_eq!(request.resolution, Resolution::Hd);
        assert_eq!(request.common, CommonOptions::default());
        assert_eq!(request.cost_credits(), 5);
    }

    #[test]
    fn a_full_generate_request_keeps_every_field() {
        let request = generate(
            r#"{"prompt":"p","duration_seconds":8,"aspect_ratio":"9:16","resolution":"1080p",
                "provider":"local","webhook_url":"https://example.com/hook","metadata":{"campaign":"x"}}"#,
        )
        .unwrap();
        assert_eq!(request.duration_seconds, 8);
        assert_eq!(request.aspect_ratio, AspectRatio::Portrait);
        assert_eq!(request.resolution, Resolution::FullHd);
        assert_eq!(request.cost_credits(), 16);
        assert_eq!(request.common.provider.unwrap().as_str(), "local");
        assert_eq!(request.common.webhook_url.unwrap().as_str(), "https://example.com/hook");
        assert_eq!(request.common.metadata.unwrap()["campaign"], "x");
    }

    #[test]
    fn duration_is_also_accepted_under_its_short_name() {
        assert_eq!(generate(r#"{"prompt":"p","duration":3}"#).unwrap().duration_seconds, 3);
    }

    #[test]
    fn prompts_must_have_between_one_and_two_thousand_characters() {
        assert_eq!(refused_field(generate(r#"{"prompt":""}"#)), "prompt");
        assert_eq!(refused_field(generate(r#"{"prompt":"   "}"#)), "prompt");
        let at_limit = "é".repeat(2_000);
        assert!(generate(&format!(r#"{{"prompt":"{at_limit}"}}"#)).is_ok());
        let over = "a".repeat(2_001);
        let err = generate(&format!(r#"{{"prompt":"{over}"}}"#)).unwrap_err();
        assert_eq!(err.field, "prompt");
        assert!(err.message.contains("2001"), "{}", err.message);
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_refused_in_prompts_and_metadata() {
        for c in ["\\u202E", "\\u2066", "\\u200B", "\\u2060", "\\uFEFF", "\\u00AD", "\\u2028", "\\u061C"] {
            let err = generate(&format!(r#"{{"prompt":"pay {c}txt.exe"}}"#)).unwrap_err();
            assert_eq!(err.field, "prompt", "{c}");
            assert!(err.message.contains("invisible"), "{}", err.message);
            assert_eq!(refused_field(generate(&format!(r#"{{"prompt":"p","metadata":{{"k":"a{c}b"}}}}"#))), "metadata.k", "{c}");
            assert_eq!(refused_field(generate(&format!(r#"{{"prompt":"p","metadata":{{"k{c}":"v"}}}}"#))), "metadata", "{c}");
            assert_eq!(
                refused_field(generate(&format!(r#"{{"prompt":"p","metadata":{{"k":{{"deep":["x{c}"]}}}}}}"#))),
                "metadata.k",
                "{c}"
            );
            assert_eq!(refused_field(animate(&format!(r#"{{"image_url":"https://e.com/a.png","prompt":"a{c}b"}}"#))), "prompt", "{c}");
        }
        // Joiners stay: emoji sequences and several scripts need them.
        assert!(generate(r#"{"prompt":"a family 👨\u200D👩\u200D👧 and می\u200Cخواهم"}"#).is_ok());
    }

    #[test]
    fn local_faults_are_refused_unless_the_deployment_allows_them_and_bounded_when_it_does() {
        let body = r#"{"prompt":"p","metadata":{"local_faults":{"duplicate_callbacks":2}}}"#;
        let err = generate(body).unwrap_err();
        assert_eq!(err.field, "metadata.local_faults");
        assert!(err.message.contains("not enabled"), "{}", err.message);
        let on = RequestLimits { allow_fault_injection: true, ..limits() };
        assert!(GenerateRequest::parse(body.as_bytes(), &on).is_ok());
        for (faults, field) in [
            (r#"{"duplicate_callbacks":2000}"#, "metadata.local_faults.duplicate_callbacks"),
            (r#"{"submit_errors":[422,422,422,422,422,422,422,422,422,422,422]}"#, "metadata.local_faults.submit_errors"),
            (r#"{"submit_errors":[200]}"#, "metadata.local_faults.submit_errors"),
            (r#"{"delay_ms":86400000}"#, "metadata.local_faults.delay_ms"),
            (r#"{"late_callbacks_ms":600000}"#, "metadata.local_faults.late_callbacks_ms"),
            (r#"{"fail_with":"Robert'); DROP"}"#, "metadata.local_faults.fail_with"),
            (r#"{"explode":true}"#, "metadata.local_faults"),
            (r#""all""#, "metadata.local_faults"),
        ] {
            let body = format!(r#"{{"prompt":"p","metadata":{{"local_faults":{faults}}}}}"#);
            assert_eq!(refused_field(GenerateRequest::parse(body.as_bytes(), &on)), field, "{faults}");
        }
        let most = r#"{"prompt":"p","metadata":{"local_faults":{"duplicate_callbacks":5,"submit_errors":[429,503,500,502,422],
            "delay_ms":120000,"late_callbacks_ms":60000,"fail_with":"content_policy","shuffle_callbacks":true,
            "completion_first":true,"drop_callbacks":false}}}"#;
        assert!(GenerateRequest::parse(most.as_bytes(), &on).is_ok());
    }

    #[test]
    fn prompts_with_control_characters_are_refused() {
        assert_eq!(refused_field(generate(r#"{"prompt":"a\u0000b"}"#)), "prompt");
        assert!(generate(r#"{"prompt":"line one\nline two"}"#).is_ok());
    }

    #[test]
    fn a_missing_prompt_is_named() {
        let err = generate(r#"{"duration_seconds":5}"#).unwrap_err();
        assert_eq!(err.field, "prompt");
        assert!(err.message.contains("missing"), "{}", err.message);
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = generate(r#"{"prompt":"p","colour":"red"}"#).unwrap_err();
        assert_eq!(err.field, "colour");
        assert!(err.message.starts_with("unknown field"), "{}", err.message);
    }

    #[test]
    fn a_wrong_type_is_named_without_the_parsers_position() {
        let err = generate(r#"{"prompt":"p","duration_seconds":"five"}"#).unwrap_err();
        assert_eq!(err.field, "duration_seconds");
        assert!(!err.message.contains("line"), "{}", err.message);
        assert_eq!(refused_field(generate(r#"{"prompt":42}"#)), "prompt");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","duration_seconds":-1}"#)), "duration_seconds");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","duration_seconds":2.5}"#)), "duration_seconds");
    }

    #[test]
    fn duration_must_be_within_bounds() {
        assert_eq!(refused_field(generate(r#"{"prompt":"p","duration_seconds":0}"#)), "duration_seconds");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","duration_seconds":21}"#)), "duration_seconds");
        assert!(generate(r#"{"prompt":"p","duration_seconds":1}"#).is_ok());
        assert!(generate(r#"{"prompt":"p","duration_seconds":20}"#).is_ok());
    }

    #[test]
    fn aspect_ratio_and_resolution_accept_only_listed_values() {
        assert_eq!(refused_field(generate(r#"{"prompt":"p","aspect_ratio":"4:3"}"#)), "aspect_ratio");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","resolution":"4k"}"#)), "resolution");
        assert_eq!(generate(r#"{"prompt":"p","aspect_ratio":"1:1"}"#).unwrap().aspect_ratio, AspectRatio::Square);
        assert_eq!(generate(r#"{"prompt":"p","resolution":"480p"}"#).unwrap().resolution, Resolution::Sd);
    }

    #[test]
    fn provider_names_must_be_well_formed() {
        assert_eq!(refused_field(generate(r#"{"prompt":"p","provider":"Bad Name"}"#)), "provider");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","provider":""}"#)), "provider");
    }

    #[test]
    fn webhook_urls_must_be_https_with_a_host_and_no_credentials() {
        for bad in ["not a url", "ftp://example.com/x", "http://example.com/x", "https://user:pw@example.com/"] {
            let json = format!(r#"{{"prompt":"p","webhook_url":"{bad}"}}"#);
            assert_eq!(refused_field(generate(&json)), "webhook_url", "{bad}");
        }
        let ports = crate::model::notification::address::LoopbackPorts::range(9000, 9000);
        let local = RequestLimits { allow_http_webhooks: true, loopback_webhook_ports: ports, ..limits() };
        let json = r#"{"prompt":"p","webhook_url":"http://127.0.0.1:9000/hook"}"#;
        assert!(GenerateRequest::parse(json.as_bytes(), &local).is_ok());
        let json = r#"{"prompt":"p","webhook_url":"http://127.0.0.1:9001/hook"}"#;
        assert_eq!(refused_field(GenerateRequest::parse(json.as_bytes(), &local)), "webhook_url", "a port nobody named");
    }

    #[test]
    fn webhook_urls_at_non_public_ip_literals_are_refused_when_parsed() {
        for bad in [
            "https://127.0.0.1/h",
            "https://10.0.0.1/h",
            "https://169.254.169.254/latest",
            "https://[::1]/h",
            "https://[fe80::1]/h",
            "https://192.168.1.1:8443/h",
            "https://2130706433/h",
        ] {
            let json = format!(r#"{{"prompt":"p","webhook_url":"{bad}"}}"#);
            assert_eq!(refused_field(generate(&json)), "webhook_url", "{bad}");
        }
        let ports = crate::model::notification::address::LoopbackPorts::range(443, 443);
        let loopback_allowed = RequestLimits { loopback_webhook_ports: ports, ..limits() };
        let json = r#"{"prompt":"p","webhook_url":"https://127.0.0.1/h"}"#;
        assert!(GenerateRequest::parse(json.as_bytes(), &loopback_allowed).is_ok());
        let json = r#"{"prompt":"p","webhook_url":"https://10.0.0.1/h"}"#;
        assert_eq!(refused_field(GenerateRequest::parse(json.as_bytes(), &loopback_allowed)), "webhook_url");
        assert!(generate(r#"{"prompt":"p","webhook_url":"https://8.8.8.8/h"}"#).is_ok());
    }

    #[test]
    fn metadata_is_capped_in_keys_and_size() {
        let many: Vec<String> = (0..21).map(|i| format!(r#""k{i}":1"#)).collect();
        let json = format!(r#"{{"prompt":"p","metadata":{{{}}}}}"#, many.join(","));
        assert_eq!(refused_field(generate(&json)), "metadata");
        let big = "x".repeat(5_000);
        let json = format!(r#"{{"prompt":"p","metadata":{{"k":"{big}"}}}}"#);
        assert_eq!(refused_field(generate(&json)), "metadata");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","metadata":[1]}"#)), "metadata");
    }

    #[test]
    fn metadata_dynamodb_cannot_store_is_refused_naming_its_key() {
        let deep = format!(r#"{{"prompt":"p","metadata":{{"deep":{}1{}}}}}"#, "[".repeat(40), "]".repeat(40));
        assert_eq!(refused_field(generate(&deep)), "metadata.deep");
        let just_deep_enough = format!(r#"{{"prompt":"p","metadata":{{"ok":{}1{}}}}}"#, "[".repeat(7), "]".repeat(7));
        assert!(generate(&just_deep_enough).is_ok());
        assert_eq!(refused_field(generate(r#"{"prompt":"p","metadata":{"n":1e200}}"#)), "metadata.n");
        assert_eq!(refused_field(generate(r#"{"prompt":"p","metadata":{"n":{"m":[1e-200]}}}"#)), "metadata.n");
        for fine in ["0", "-0.0", "1e125", "-2e-130", "12345678901234567890", "3.5"] {
            assert!(generate(&format!(r#"{{"prompt":"p","metadata":{{"n":{fine}}}}}"#)).is_ok(), "{fine}");
        }
    }

    #[test]
    fn malformed_json_is_refused_as_the_body() {
        for bad in ["", "{", "{\"prompt\":", "[]", "null", "\"p\""] {
            let err = generate(bad).unwrap_err();
            assert_eq!(err.field, "body", "{bad:?}");
        }
    }

    #[test]
    fn an_animate_request_from_a_url_gets_the_defaults() {
        let request = animate(r#"{"image_url":"https://example.com/cat.png"}"#).unwrap();
        assert_eq!(request.image, ImageSource::Url("https://example.com/cat.png".into()));
        assert_eq!(request.prompt, None);
        assert_eq!(request.length_seconds, 5);
        assert_eq!(request.frame_rate, 24);
        assert_eq!(request.zoom_speed, 0.1);
        assert_eq!(request.cost_credits(), 5);
    }

    #[test]
    fn an_animate_request_from_an_upload_keeps_its_id_and_options() {
        let upload = UploadId::generate();
        let request =
            animate(&format!(r#"{{"upload_id":"{upload}","prompt":"slow pan","length":10,"frame_rate":30,"zoom_speed":0.25}}"#)).unwrap();
        assert_eq!(request.image, ImageSource::Upload(upload));
        assert_eq!(request.prompt.as_deref(), Some("slow pan"));
        assert_eq!((request.length_seconds, request.frame_rate, request.zoom_speed), (10, 30, 0.25));
    }

    #[test]
    fn animate_needs_exactly_one_image_source() {
        assert_eq!(refused_field(animate(r#"{"prompt":"p"}"#)), "image_url");
        let upload = UploadId::generate();
        let both = format!(r#"{{"image_url":"https://e.com/a.png","upload_id":"{upload}"}}"#);
        assert_eq!(refused_field(animate(&both)), "image_url");
        assert_eq!(refused_field(animate(r#"{"upload_id":"job_nope"}"#)), "upload_id");
        assert_eq!(refused_field(animate(r#"{"image_url":"file:///etc/passwd"}"#)), "image_url");
        for inside in
            ["https://169.254.169.254/latest/meta-data", "https://10.0.0.1/a.png", "https://127.0.0.1/a.png", "https://[::1]/a.png"]
        {
            assert_eq!(refused_field(animate(&format!(r#"{{"image_url":"{inside}"}}"#))), "image_url", "{inside}");
        }
    }

    #[test]
    fn animate_options_must_be_within_bounds() {
        let base = r#""image_url":"https://e.com/a.png""#;
        for (field, value) in [
            ("length", "0"),
            ("length", "31"),
            ("frame_rate", "0"),
            ("frame_rate", "61"),
            ("zoom_speed", "-0.1"),
            ("zoom_speed", "0.51"),
            ("length", "\"5\""),
        ] {
            let json = format!(r#"{{{base},"{field}":{value}}}"#);
            assert_eq!(refused_field(animate(&json)), field, "{field}={value}");
        }
        let json = format!(r#"{{{base},"length":30,"frame_rate":60,"zoom_speed":0.5}}"#);
        assert!(animate(&json).is_ok());
        let json = format!(r#"{{{base},"length":1,"frame_rate":1,"zoom_speed":0}}"#);
        assert!(animate(&json).is_ok());
    }

    #[test]
    fn animate_refuses_unknown_fields_and_overlong_prompts() {
        assert_eq!(refused_field(animate(r#"{"image_url":"https://e.com/a.png","speed":1}"#)), "speed");
        let over = "a".repeat(2_001);
        let json = format!(r#"{{"image_url":"https://e.com/a.png","prompt":"{over}"}}"#);
        assert_eq!(refused_field(animate(&json)), "prompt");
    }

    #[test]
    fn an_upload_request_accepts_the_three_image_types_under_the_cap() {
        for (mime, kind) in [("image/jpeg", ImageType::Jpeg), ("image/png", ImageType::Png), ("image/webp", ImageType::Webp)] {
            let json = format!(r#"{{"content_type":"{mime}","size_bytes":1024}}"#);
            let request = UploadRequest::parse(json.as_bytes(), &limits()).unwrap();
            assert_eq!(request.content_type, kind);
            assert_eq!(request.content_type.mime(), mime);
        }
    }

    #[test]
    fn an_upload_request_refuses_other_types_empty_files_and_files_over_the_cap() {
        let parse = |json: &str| UploadRequest::parse(json.as_bytes(), &limits());
        assert!(
            matches!(parse(r#"{"content_type":"image/gif","size_bytes":10}"#), Err(InvalidUpload::Invalid(e)) if e.field == "content_type")
        );
        assert!(
            matches!(parse(r#"{"content_type":"image/png","size_bytes":0}"#), Err(InvalidUpload::Invalid(e)) if e.field == "size_bytes")
        );
        assert!(matches!(parse(r#"{"content_type":"image/png"}"#), Err(InvalidUpload::Invalid(e)) if e.field == "size_bytes"));
        let over = 10 * 1024 * 1024 + 1;
        assert_eq!(
            parse(&format!(r#"{{"content_type":"image/png","size_bytes":{over}}}"#)),
            Err(InvalidUpload::TooLarge { size: over, max: 10 * 1024 * 1024 })
        );
    }

    #[test]
    fn fingerprints_ignore_spacing_and_key_order_but_not_values_or_route() {
        let a = request_fingerprint(b"k", "generate", br#"{"prompt":"p","duration_seconds":5}"#);
        let b = request_fingerprint(b"k", "generate", br#"{ "duration_seconds": 5, "prompt": "p" }"#);
        let c = request_fingerprint(b"k", "generate", br#"{"prompt":"q","duration_seconds":5}"#);
        let d = request_fingerprint(b"k", "animate", br#"{"prompt":"p","duration_seconds":5}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn fingerprints_are_keyed_apart_from_prompt_hashes_and_the_legacy_form_is_the_plain_sha256() {
        let body = br#"{"prompt":"p"}"#;
        let keyed = request_fingerprint(b"k", "generate", body);
        assert_eq!(keyed.len(), 64);
        // The plain SHA-256 of a guessed body does not match it, nor does another deployment's.
        assert_ne!(keyed, sha256_hex(b"generate\0{\"prompt\":\"p\"}"));
        assert_ne!(keyed, request_fingerprint(b"k2", "generate", body));
        // Not the prompt hash of the same text either: the key is derived for its purpose.
        assert_ne!(keyed, prompt_hash(b"k", "generate\0{\"prompt\":\"p\"}"));
        // The form records had before it was keyed.
        assert_eq!(legacy_request_fingerprint("generate", br#"{ "prompt": "p" }"#), sha256_hex(b"generate\0{\"prompt\":\"p\"}"));
    }

    #[test]
    fn frame_sizes_follow_aspect_and_resolution_and_are_even() {
        assert_eq!(frame_size(AspectRatio::Landscape, Resolution::Hd), (1280, 720));
        assert_eq!(frame_size(AspectRatio::Portrait, Resolution::FullHd), (1080, 1920));
        assert_eq!(frame_size(AspectRatio::Square, Resolution::Sd), (480, 480));
        assert_eq!(frame_size(AspectRatio::Landscape, Resolution::Sd), (854, 480));
    }

    #[test]
    fn prompt_hashes_are_hex_hmac_sha256_under_the_deployments_key() {
        // RFC 4231, test case 2.
        assert_eq!(
            prompt_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Without the key, a guessed prompt cannot be confirmed: the plain SHA-256 is not what is kept.
        assert_ne!(prompt_hash(b"k", "abc"), sha256_hex(b"abc"));
        assert_ne!(prompt_hash(b"k1", "abc"), prompt_hash(b"k2", "abc"));
    }
}
