//! `videojobs`: the command line for the videojobs API, for users (generate,
//! animate, follow, download, cancel), reviewers (approve, reject) and admins
//! (keys, credits, stats). It talks to the local stack or a deployed API, by
//! URL and key from flags or the environment.
//!
//! [`run`] is the whole program with its inputs and outputs passed in, so that
//! tests run it in-process against a real API.

use clap::{ArgGroup, Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_URL: &str = "http://127.0.0.1:3000";
pub const URL_VARIABLE: &str = "VIDEOJOBS_URL";
pub const KEY_VARIABLE: &str = "VIDEOJOBS_KEY";

/// Exit codes: 0 done, 1 the API or the job said no, 2 the command line was wrong.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}

#[derive(Debug, Parser)]
#[command(name = "videojobs", version, about = "Make AI videos with the videojobs API, follow them, review them and run the service.")]
struct Cli {
    /// Base URL of the API [env: VIDEOJOBS_URL] [default: http://127.0.0.1:3000]
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// API key [env: VIDEOJOBS_KEY]
    #[arg(long, global = true, value_name = "KEY")]
    key: Option<String>,
    /// Print the API's JSON answers instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a video from a text prompt.
    Generate(GenerateArgs),
    /// Make a video from an image (a local file or a URL).
    Animate(AnimateArgs),
    /// Where a job is now.
    Status { job_id: String },
    /// How a job got where it is.
    Events { job_id: String },
    /// Your jobs, newest first. With filters a page may hold fewer jobs than
    /// --limit, even none, and still have more after it: follow the "More:" line.
    List {
        /// How many jobs per page (1 to 100).
        #[arg(long)]
        limit: Option<u32>,
        /// The page after this cursor (from the previous page; give the same filters with it).
        #[arg(long)]
        cursor: Option<String>,
        /// Only the jobs still being made (one page; takes no filter).
        #[arg(long)]
        active: bool,
        #[command(flatten)]
        filter: ListFilter,
    },
    /// Cancel a job that is still being made; its credits come back.
    Cancel { job_id: String },
    /// Make a job again with the same inputs (one that failed, expired, was rejected or canceled).
    Retry(RetryArgs),
    /// A new job from one of yours with some fields changed: --set prompt="At night" --set duration_seconds=2.
    Remix(RemixArgs),
    /// The jobs made from a job by a retry or a remix, newest first.
    Children { job_id: String },
    /// Every attempt at a job's notifications, or with --failed your failed attempts across jobs.
    ///
    /// `deliveries JOB_ID`: the job's attempts, oldest first. `deliveries --failed`:
    /// yours that failed, newest first; with --error-class a page may hold fewer
    /// than --limit, even none, and still have more after it: follow the "More:" line.
    Deliveries(DeliveriesArgs),
    /// Send a job's notification again now, or with --since every one of yours never delivered.
    ///
    /// `redeliver JOB_ID [--status STATUS]`: one more attempt, outside the retry
    /// schedule. `redeliver --since TIME`: after an outage, one attempt at each
    /// notification with a failed attempt since then that was never delivered.
    Redeliver(RedeliverArgs),
    /// Let notifications go again to one of your paused endpoints, and send again what it held.
    ///
    /// An endpoint is paused after a run of failed attempts (`videojobs account`
    /// lists yours); while paused its notifications are held, not sent.
    /// Resuming sends each held one again (up to 50), unless --keep-held.
    ResumeEndpoint {
        /// The endpoint as `videojobs account` prints it: scheme://host[:port].
        endpoint: String,
        /// Resume without sending again the notifications held while it was paused.
        #[arg(long)]
        keep_held: bool,
    },
    /// Up to 20 jobs from a JSON file: {"defaults": {…}, "items": [{"ref": "a", "prompt": "…"}, …]}.
    Batch {
        file: PathBuf,
        /// Sending the same file again with this key makes no second job for any item.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Save a job's video to a file.
    Download {
        job_id: String,
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Approve or reject a completed video (reviewers and admins).
    Review {
        #[command(subcommand)]
        decision: ReviewCommand,
    },
    /// Your credits, jobs in progress and paused notification endpoints.
    Account,
    /// Operational figures (admins).
    Stats,
    /// Keys and credits (admins).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ReviewCommand {
    Approve {
        job_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    Reject {
        job_id: String,
        /// product_changed, unreadable_text, distorted_anatomy, rights_unclear,
        /// needs_disclosure, poor_quality, off_brief or other (needs --note).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an API key (printed once), opening the user's account if new.
    CreateKey {
        #[arg(long)]
        user_id: String,
        /// user, reviewer or admin.
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long)]
        label: Option<String>,
        /// Credits added to the account.
        #[arg(long)]
        credits: Option<i64>,
        /// The key stops working after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List every API key by its public id (never the key itself).
    ListKeys {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Revoke an API key by its public id: it answers 401 from then on.
    RevokeKey { key_id: String },
    /// Add credits to an account.
    GrantCredits {
        #[arg(long)]
        user_id: String,
        #[arg(long)]
        credits: i64,
    },
}

/// The filters of `list`, each a query parameter of `GET /videos/jobs`.
#[derive(Debug, Args, Default)]
struct ListFilter {
    /// Only jobs in one of these statuses: failed,expired (or --status failed --status expired).
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with = "active")]
    status: Vec<String>,
    /// Only jobs of this kind: text_to_video or image_to_video.
    #[arg(long, value_name = "TYPE", conflicts_with = "active")]
    workflow_type: Option<String>,
    /// Only jobs carrying this tag.
    #[arg(long, value_name = "TAG", conflicts_with = "active")]
    tag: Option<String>,
    /// Only jobs made from this one by a retry or a remix.
    #[arg(long, value_name = "JOB_ID", conflicts_with = "active")]
    parent: Option<String>,
    /// Only jobs created at or after this time (RFC 3339: 2026-05-01T00:00:00Z).
    #[arg(long, value_name = "TIME", conflicts_with = "active")]
    since: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[arg(long, value_name = "TIME", conflicts_with = "active")]
    until: Option<String>,
}

impl ListFilter {
    /// `(query parameter, command-line flag, value)` for each filter given, in the API's order.
    fn given(&self) -> Vec<(&'static str, &'static str, String)> {
        let status = (!self.status.is_empty()).then(|| self.status.join(","));
        [
            ("status", "--status", status),
            ("workflow_type", "--workflow-type", self.workflow_type.clone()),
            ("tag", "--tag", self.tag.clone()),
            ("parent_job_id", "--parent", self.parent.clone()),
            ("created_after", "--since", self.since.clone()),
            ("created_before", "--until", self.until.clone()),
        ]
        .into_iter()
        .filter_map(|(name, flag, value)| value.map(|value| (name, flag, value)))
        .collect()
    }
}

/// The path and query of one page of `GET /videos/jobs`, form-urlencoded.
fn list_path(limit: Option<u32>, cursor: Option<&str>, filter: &ListFilter) -> String {
    page_path("/videos/jobs", limit, cursor, &filter.given())
}

/// The command that lists the page after `next`, with the same page size and filters.
fn next_page_command(limit: Option<u32>, filter: &ListFilter, next: &str) -> String {
    next_command("videojobs list", limit, &filter.given(), next)
}

/// `route` with one page's query: `limit`, `cursor`, then each filter, form-urlencoded.
fn page_path(route: &str, limit: Option<u32>, cursor: Option<&str>, filters: &[(&str, &str, String)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(limit) = limit {
        query.append_pair("limit", &limit.to_string());
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    for (name, _, value) in filters {
        query.append_pair(name, value);
    }
    let query = query.finish();
    if query.is_empty() {
        route.to_owned()
    } else {
        format!("{route}?{query}")
    }
}

/// `command` again for the page after `next`: the same `--limit` and filter flags, and `--cursor`.
fn next_command(command: &str, limit: Option<u32>, filters: &[(&str, &str, String)], next: &str) -> String {
    let mut command = command.to_owned();
    if let Some(limit) = limit {
        command.push_str(&format!(" --limit {limit}"));
    }
    for (_, flag, value) in filters {
        command.push_str(&format!(" {flag} {}", shell_word(value)));
    }
    command.push_str(&format!(" --cursor {}", shell_word(next)));
    command
}

/// The filters of `deliveries --failed`, each a query parameter of `GET /videos/deliveries`.
#[derive(Debug, Args, Default)]
struct DeliveryFilter {
    /// Only attempts at or after this time (RFC 3339: 2026-12-01T00:00:00Z); with --failed.
    #[arg(long, value_name = "TIME", conflicts_with = "job_id")]
    since: Option<String>,
    /// Only attempts before this time (RFC 3339); with --failed.
    #[arg(long, value_name = "TIME", conflicts_with = "job_id")]
    until: Option<String>,
    /// Only attempts that failed this way (notify_http_500, notify_network, …); with --failed.
    #[arg(long, value_name = "CLASS", conflicts_with = "job_id")]
    error_class: Option<String>,
}

impl DeliveryFilter {
    /// `(query parameter, command-line flag, value)` for each filter given, in the API's order.
    fn given(&self) -> Vec<(&'static str, &'static str, String)> {
        [("since", "--since", &self.since), ("until", "--until", &self.until), ("error_class", "--error-class", &self.error_class)]
            .into_iter()
            .filter_map(|(name, flag, value)| value.clone().map(|value| (name, flag, value)))
            .collect()
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("deliveries_of").required(true).args(["job_id", "failed"])))]
struct DeliveriesArgs {
    /// The job whose attempts to show, oldest first.
    job_id: Option<String>,
    /// Your failed attempts across your jobs instead, newest first.
    #[arg(long)]
    failed: bool,
    /// How many attempts per page (1 to 100); with --failed.
    #[arg(long, conflicts_with = "job_id")]
    limit: Option<u32>,
    /// The page after this cursor (from the "More:" line; give the same filters with it); with --failed.
    #[arg(long, conflicts_with = "job_id")]
    cursor: Option<String>,
    #[command(flatten)]
    filter: DeliveryFilter,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("redeliver_what").required(true).args(["job_id", "since"])))]
struct RedeliverArgs {
    /// The job whose notification to send again.
    job_id: Option<String>,
    /// Which of the job's notifications (completed, approved, rejected, failed,
    /// canceled or expired); by default its latest.
    #[arg(long)]
    status: Option<String>,
    /// Instead of one job: every notification of yours with a failed attempt
    /// since this time (RFC 3339) that was never delivered, up to 50 a run.
    #[arg(long, value_name = "TIME", conflicts_with = "status")]
    since: Option<String>,
}

/// `text` as one shell word: as it is when every character is plain, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:,+/=@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// Wait until the job ends, showing its progress.
    #[arg(long)]
    wait: bool,
    /// Save the video here once it is ready (implies --wait).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Seconds between two looks at the job while waiting; by default what
    /// the API's last answer asked for (`Retry-After`), or 1 when it said nothing.
    #[arg(long, value_name = "SECONDS")]
    poll_seconds: Option<f64>,
}

#[derive(Debug, Args)]
struct JobOptions {
    /// A provider other than the default.
    #[arg(long)]
    provider: Option<String>,
    /// Where to be told when the job ends.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Sending the same command again with this key makes no second job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Give the job up if it is not done by then: seconds, or 90s, 5m, 1h30m.
    #[arg(long, value_name = "DURATION")]
    cancel_after: Option<String>,
    /// A label to find the job again with `list --tag` (repeat for more, up to 5):
    /// a-z, 0-9, - _ . : (campaign:spring-26).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
}

#[derive(Debug, Args)]
struct RetryArgs {
    job_id: String,
    /// Sending the same command again with this key makes no second job.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct RemixArgs {
    job_id: String,
    /// A field of the job's create request and its new value (JSON, or text):
    /// prompt="A boat at night", duration_seconds=2, seed=null (null leaves it out).
    #[arg(long = "set", value_name = "FIELD=VALUE", required_unless_present = "tags")]
    set: Vec<String>,
    /// The new job's tags instead of the parent's (repeat for more, up to 5).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Sending the same command again with this key makes no second job.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `--set` pairs as the JSON object the remix route takes: a value that
/// parses as JSON is that value, anything else is text.
fn overrides(pairs: &[String]) -> Result<Value, CliError> {
    let mut body = serde_json::Map::new();
    for pair in pairs {
        let (field, value) = pair
            .split_once('=')
            .filter(|(field, _)| !field.trim().is_empty())
            .ok_or_else(|| CliError::Local(format!("--set {pair}: write it as FIELD=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        body.insert(field.trim().to_owned(), value);
    }
    Ok(Value::Object(body))
}

#[derive(Debug, Args)]
struct GenerateArgs {
    prompt: String,
    /// Length in seconds (1 to 20).
    #[arg(long)]
    duration: Option<u32>,
    /// 16:9, 9:16 or 1:1.
    #[arg(long)]
    aspect_ratio: Option<String>,
    /// 480p, 720p or 1080p.
    #[arg(long)]
    resolution: Option<String>,
    #[command(flatten)]
    options: JobOptions,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct AnimateArgs {
    /// A PNG, JPEG or WebP file to upload.
    #[arg(long, conflicts_with = "image_url", required_unless_present = "image_url", value_name = "FILE")]
    image: Option<PathBuf>,
    /// An image on the web.
    #[arg(long, value_name = "URL")]
    image_url: Option<String>,
    #[arg(long)]
    prompt: Option<String>,
    /// Length in seconds (1 to 30).
    #[arg(long)]
    length: Option<u32>,
    #[arg(long)]
    frame_rate: Option<u32>,
    /// How much closer the camera gets each second (0 to 0.5).
    #[arg(long)]
    zoom_speed: Option<f64>,
    #[command(flatten)]
    options: JobOptions,
    #[command(flatten)]
    wait: WaitArgs,
}

/// Something that stops a command, said as one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The API refused: its message and next step.
    Api { status: u16, message: String, next_step: Option<String> },
    /// The API could not be reached or did not answer JSON.
    Unreachable(String),
    /// A local problem: a file, a missing key.
    Local(String),
    /// The job ended without a video.
    JobEnded(String),
}

impl CliError {
    pub fn sentence(&self) -> String {
        match self {
            CliError::Api { message, next_step, .. } => {
                let mut text = sentence(message);
                if let Some(step) = next_step {
                    text.push(' ');
                    text.push_str(&sentence(step));
                }
                text
            }
            CliError::Unreachable(text) | CliError::Local(text) | CliError::JobEnded(text) => sentence(text),
        }
    }
}

/// Capitalised and ending with a full stop.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    // A leading field name (`duration_seconds: …`) keeps its spelling.
    let first_word = text.split_whitespace().next().unwrap_or("");
    let mut out = if first_word.contains('_') || first_word.ends_with(':') {
        text.to_owned()
    } else {
        let mut chars = text.chars();
        chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// The API at a URL, with a key.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Result<Value, CliError> {
        let text = self.call_text(method, path, body, headers).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|_| CliError::Unreachable(format!("the API at {} answered something that is not JSON", self.base)))
    }

    /// The text of a successful answer, as the API wrote it (its field order kept).
    async fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<String, CliError> {
        Ok(self.call_answer(method, path, body, headers).await?.0)
    }

    /// A job's status, and how long the API asks to wait before asking again (`Retry-After`), if it says.
    async fn status_with_hint(&self, job_id: &str) -> Result<(Value, Option<Duration>), CliError> {
        let path = format!("/videos/jobs/{}/status", segment(job_id)?);
        let (text, retry_after) = self.call_answer(reqwest::Method::GET, &path, None, &[]).await?;
        let status = serde_json::from_str(&text)
            .map_err(|_| CliError::Unreachable(format!("the API at {} answered something that is not JSON", self.base)))?;
        Ok((status, retry_after))
    }

    /// A successful answer's text and its `Retry-After` (in seconds, as the API sends it).
    async fn call_answer(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(String, Option<Duration>), CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| unreachable(&self.base, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| unreachable(&self.base, &e))?;
        let parsed: Option<Value> = if text.is_empty() { Some(Value::Null) } else { serde_json::from_str(&text).ok() };
        if status.is_success() {
            return Ok((text, retry_after));
        }
        let error = parsed.as_ref().map(|v| &v["error"]);
        match error.and_then(|e| e["message"].as_str()) {
            Some(message) => Err(CliError::Api {
                status: status.as_u16(),
                message: message.to_owned(),
                next_step: error.and_then(|e| e["next_step"].as_str()).map(str::to_owned),
            }),
            None => Err(CliError::Api {
                status: status.as_u16(),
                message: format!("the API answered {status} without saying why"),
                next_step: Some("Check the URL and try again".into()),
            }),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Result<Value, CliError> {
        let headers: Vec<(&str, &str)> = idempotency_key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.call(reqwest::Method::POST, path, Some(body), &headers).await
    }
}

fn unreachable(base: &str, err: &reqwest::Error) -> CliError {
    let why = if err.is_connect() {
        "nothing answered there (is the stack up? ./scripts/up starts it)".to_owned()
    } else if err.is_timeout() {
        "it did not answer in time".to_owned()
    } else {
        let mut source: &dyn std::error::Error = err;
        while let Some(next) = source.source() {
            source = next;
        }
        source.to_string()
    };
    CliError::Unreachable(format!("could not reach the videojobs API at {base}: {why}"))
}

/// Where the command writes: results to `out`, progress and errors to `err`.
struct Console<'a> {
    out: &'a mut (dyn Write + Send),
    err: &'a mut (dyn Write + Send),
    /// `err` is a terminal: the progress bar redraws in place.
    interactive: bool,
    json: bool,
    last_progress: Option<(String, u64)>,
}

impl Console<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
    }

    fn json(&mut self, value: &Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.say(&text);
    }

    fn progress(&mut self, status: &Value) {
        let name = status["status"].as_str().unwrap_or("unknown").to_owned();
        let percent = status["progress"].as_u64().unwrap_or(0).min(100);
        let line = progress_line(percent, status["status_label"].as_str().unwrap_or(&name));
        if self.interactive {
            let _ = write!(self.err, "\r{line}\x1b[K");
            let _ = self.err.flush();
        } else if self.last_progress.as_ref() != Some(&(name.clone(), percent)) {
            let _ = writeln!(self.err, "{line}");
        }
        self.last_progress = Some((name, percent));
    }

    fn end_progress(&mut self) {
        if self.interactive && self.last_progress.is_some() {
            let _ = writeln!(self.err);
        }
        self.last_progress = None;
    }
}

/// `[############------------]  50%  Generating video`
pub fn progress_line(percent: u64, label: &str) -> String {
    const WIDTH: u64 = 30;
    let filled = (percent.min(100) * WIDTH / 100) as usize;
    format!("[{}{}] {:>3}%  {label}", "#".repeat(filled), "-".repeat(WIDTH as usize - filled), percent.min(100))
}

fn in_flight(status: &str) -> bool {
    matches!(status, "queued" | "submitted" | "retrying" | "processing")
}

/// Runs the program: `args` as the shell gives them (the program name
/// first), `env` for `VIDEOJOBS_URL` and `VIDEOJOBS_KEY`. Returns the exit code.
pub async fn run<I, S>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    interactive: bool,
) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = write!(out, "{text}");
                    exit::OK
                }
                _ => {
                    let _ = write!(err, "{text}");
                    exit::USAGE
                }
            };
        }
    };
    let base = cli.url.clone().or_else(|| env(URL_VARIABLE)).unwrap_or_else(|| DEFAULT_URL.to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let mut console = Console { out, err, interactive, json: cli.json, last_progress: None };
    let Some(key) = cli.key.clone().or_else(|| env(KEY_VARIABLE)) else {
        console.note(&format!("error: no API key: pass --key or set {KEY_VARIABLE}."));
        return exit::USAGE;
    };
    // The workspace builds reqwest without a crypto provider: ring is the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(60)).build() {
        Ok(http) => http,
        Err(e) => {
            console.note(&format!("error: {}", sentence(&format!("could not start an HTTP client: {e}"))));
            return exit::FAILED;
        }
    };
    let api = Api { http, base, key };
    match execute(&api, cli.command, &mut console).await {
        Ok(()) => exit::OK,
        Err(e) => {
            console.end_progress();
            console.note(&format!("error: {}", e.sentence()));
            exit::FAILED
        }
    }
}

async fn execute(api: &Api, command: Command, console: &mut Console<'_>) -> Result<(), CliError> {
    match command {
        Command::Generate(args) => {
            let mut body = json!({"prompt": args.prompt});
            set(&mut body, "duration_seconds", args.duration.map(Value::from));
            set(&mut body, "aspect_ratio", args.aspect_ratio.map(Value::from));
            set(&mut body, "resolution", args.resolution.map(Value::from));
            create(api, "/videos/generate", body, &args.options, &args.wait, console).await
        }
        Command::Animate(args) => {
            let mut body = json!({});
            match (&args.image, &args.image_url) {
                (Some(path), _) => set(&mut body, "upload_id", Some(upload(api, path).await?)),
                (None, Some(url)) => set(&mut body, "image_url", Some(Value::from(url.as_str()))),
                (None, None) => return Err(CliError::Local("give --image FILE or --image-url URL".into())),
            }
            set(&mut body, "prompt", args.prompt.map(Value::from));
            set(&mut body, "length", args.length.map(Value::from));
            set(&mut body, "frame_rate", args.frame_rate.map(Value::from));
            set(&mut body, "zoom_speed", args.zoom_speed.map(Value::from));
            create(api, "/videos/animate", body, &args.options, &args.wait, console).await
        }
        Command::Status { job_id } => {
            let status = api.get(&format!("/videos/jobs/{}/status", segment(&job_id)?)).await?;
            if console.json {
                console.json(&status);
            } else {
                print_status(&status, console);
            }
            Ok(())
        }
        Command::Events { job_id } => {
            let events = api.get(&format!("/videos/jobs/{}/events", segment(&job_id)?)).await?;
            if console.json {
                console.json(&events);
                return Ok(());
            }
            for event in events["events"].as_array().into_iter().flatten() {
                let from = event["previous_status"].as_str().map(|s| format!("{s} → ")).unwrap_or_default();
                let code = event["error_code"].as_str().map(|c| format!(" [{c}]")).unwrap_or_default();
                console.say(&format!(
                    "{}  {from}{}  ({})  {}{code}",
                    event["at"].as_str().unwrap_or(""),
                    event["status"].as_str().unwrap_or(""),
                    event["source"].as_str().unwrap_or(""),
                    event["message"].as_str().unwrap_or("")
                ));
            }
            Ok(())
        }
        Command::List { limit, cursor, active, filter } => {
            let path = if active { "/videos/jobs/active".to_owned() } else { list_path(limit, cursor.as_deref(), &filter) };
            let list = api.get(&path).await?;
            if console.json {
                console.json(&list);
                return Ok(());
            }
            let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
            let next = list["next_cursor"].as_str();
            if jobs.is_empty() {
                // A filtered page may be empty and still have pages after it.
                console.note(if next.is_some() { "No jobs on this page; there may be more on the next." } else { "No jobs." });
            }
            for job in &jobs {
                console.say(&job_line(job));
            }
            if let Some(next) = next {
                console.note(&format!("More: {}", next_page_command(limit, &filter, next)));
            }
            Ok(())
        }
        Command::Retry(args) => {
            let options = JobOptions {
                provider: None,
                webhook_url: None,
                idempotency_key: args.idempotency_key,
                cancel_after: None,
                tags: Vec::new(),
            };
            create(api, &format!("/videos/jobs/{}/retry", segment(&args.job_id)?), json!({}), &options, &args.wait, console).await
        }
        Command::Remix(args) => {
            let body = overrides(&args.set)?;
            if !args.tags.is_empty() && body.get("tags").is_some() {
                return Err(CliError::Local("give the tags with --tag or with --set tags=…, not both".into()));
            }
            let options = JobOptions {
                provider: None,
                webhook_url: None,
                idempotency_key: args.idempotency_key,
                cancel_after: None,
                tags: args.tags,
            };
            create(api, &format!("/videos/jobs/{}/remix", segment(&args.job_id)?), body, &options, &args.wait, console).await
        }
        Command::Batch { file, idempotency_key } => {
            let text = std::fs::read_to_string(&file).map_err(|e| CliError::Local(format!("could not read {}: {e}", file.display())))?;
            let body: Value = serde_json::from_str(&text).map_err(|e| CliError::Local(format!("{} is not JSON: {e}", file.display())))?;
            let answers = api.post("/videos/batch", &body, idempotency_key.as_deref()).await?;
            if console.json {
                console.json(&answers);
                return Ok(());
            }
            let mut refused = 0;
            for item in answers["items"].as_array().into_iter().flatten() {
                let reference = item["ref"].as_str().unwrap_or("");
                match item["job"]["job_id"].as_str() {
                    Some(job_id) => console.say(&format!("{reference}  {job_id}")),
                    None => {
                        refused += 1;
                        let why = item["error"]["message"].as_str().unwrap_or("refused");
                        console.say(&format!("{reference}  refused ({}): {}", item["status"], sentence(why)));
                    }
                }
            }
            if refused > 0 {
                return Err(CliError::Local(format!("{refused} of the batch's items were refused")));
            }
            Ok(())
        }
        Command::Children { job_id } => {
            let children = api.get(&format!("/videos/jobs/{}/children", segment(&job_id)?)).await?;
            if console.json {
                console.json(&children);
                return Ok(());
            }
            for job in children["jobs"].as_array().into_iter().flatten() {
                console.say(&job_line(job));
            }
            Ok(())
        }
        Command::Deliveries(args) => deliveries(api, args, console).await,
        Command::Redeliver(args) => redeliver(api, args, console).await,
        Command::ResumeEndpoint { endpoint, keep_held } => resume_endpoint(api, &endpoint, keep_held, console).await,
        Command::Cancel { job_id } => {
            let status = api.call(reqwest::Method::DELETE, &format!("/videos/jobs/{}", segment(&job_id)?), None, &[]).await?;
            if console.json {
                console.json(&status);
            } else {
                console.say(&format!("{} canceled; its credits are back.", status["job_id"].as_str().unwrap_or(&job_id)));
            }
            Ok(())
        }
        Command::Download { job_id, out } => download(api, &job_id, &out, console).await,
        Command::Review { decision } => {
            let (job_id, body, done) = match decision {
                ReviewCommand::Approve { job_id, reason, note } => {
                    let mut body = json!({"decision": "approve"});
                    set(&mut body, "reason", reason.map(Value::from));
                    set(&mut body, "note", note.map(Value::from));
                    (job_id, body, "approved")
                }
                ReviewCommand::Reject { job_id, reason, note } => {
                    let mut body = json!({"decision": "reject", "reason": reason});
                    set(&mut body, "note", note.map(Value::from));
                    (job_id, body, "rejected")
                }
            };
            let status = api.post(&format!("/videos/jobs/{}/review", segment(&job_id)?), &body, None).await?;
            if console.json {
                console.json(&status);
            } else {
                console.say(&format!("{job_id} {done}."));
            }
            Ok(())
        }
        Command::Account => {
            let account = api.get("/videos/account").await?;
            if console.json {
                console.json(&account);
            } else {
                console.say(&format!(
                    "{} ({}): {} credits, {} of {} jobs in progress",
                    account["user_id"].as_str().unwrap_or(""),
                    account["role"].as_str().unwrap_or(""),
                    account["credits"],
                    account["active_jobs"],
                    account["max_active_jobs"]
                ));
                let paused = account["paused_endpoints"].as_array().cloned().unwrap_or_default();
                for endpoint in &paused {
                    console.say(&format!(
                        "Paused: {}  since {}  {} failed attempts in a row",
                        endpoint["endpoint"].as_str().unwrap_or(""),
                        endpoint["paused_at"].as_str().unwrap_or(""),
                        endpoint["consecutive_failures"]
                    ));
                }
                if !paused.is_empty() {
                    console.note("Resume: videojobs resume-endpoint ENDPOINT");
                }
            }
            Ok(())
        }
        Command::Stats => {
            let text = api.call_text(reqwest::Method::GET, "/videos/stats", None, &[]).await?;
            if console.json {
                console.say(&text);
            } else {
                let stats: Value = serde_json::from_str(&text).map_err(|_| CliError::Unreachable("the stats are not JSON".into()))?;
                for line in stats_summary(&stats) {
                    console.say(&line);
                }
            }
            Ok(())
        }
        Command::Admin { command } => match command {
            AdminCommand::CreateKey { user_id, role, label, credits, expires_in_days } => {
                let mut body = json!({"user_id": user_id, "role": role});
                set(&mut body, "label", label.map(Value::from));
                set(&mut body, "credits", credits.map(Value::from));
                set(&mut body, "expires_in_days", expires_in_days.map(Value::from));
                let created = api.post("/videos/admin/keys", &body, None).await?;
                if console.json {
                    console.json(&created);
                } else {
                    // The key alone on stdout, so that KEY=$(videojobs admin create-key …) works.
                    console.say(created["api_key"].as_str().unwrap_or(""));
                    console.note(&format!(
                        "Created a {} key for {} ({}). It is shown only this once: keep it now.",
                        created["role"].as_str().unwrap_or(""),
                        created["user_id"].as_str().unwrap_or(""),
                        created["key_id"].as_str().unwrap_or("")
                    ));
                    if let Some(at) = created["expires_at"].as_str() {
                        console.note(&format!("It expires at {at}."));
                    }
                }
                Ok(())
            }
            AdminCommand::ListKeys { limit, cursor } => {
                let mut query = vec![format!("limit={}", limit.unwrap_or(50))];
                if let Some(cursor) = cursor {
                    query.push(format!("cursor={}", query_value(&cursor)));
                }
                let page = api.get(&format!("/videos/admin/keys?{}", query.join("&"))).await?;
                if console.json {
                    console.json(&page);
                } else {
                    for key in page["keys"].as_array().into_iter().flatten() {
                        console.say(&format!(
                            "{}  {:<8} {:<8} {}  {}{}",
                            key["key_id"].as_str().unwrap_or(""),
                            key["state"].as_str().unwrap_or(""),
                            key["role"].as_str().unwrap_or(""),
                            key["user_id"].as_str().unwrap_or(""),
                            key["label"].as_str().unwrap_or(""),
                            key["expires_at"].as_str().map(|at| format!("  (expires {at})")).unwrap_or_default(),
                        ));
                    }
                    if let Some(next) = page["next_cursor"].as_str() {
                        console.note(&format!("More: videojobs admin list-keys --cursor {next}"));
                    }
                }
                Ok(())
            }
            AdminCommand::RevokeKey { key_id } => {
                let revoked = api.call(reqwest::Method::DELETE, &format!("/videos/admin/keys/{}", segment(&key_id)?), None, &[]).await?;
                if console.json {
                    console.json(&revoked);
                } else {
                    console.say(&format!("{} revoked: it answers 401 from now on.", revoked["key_id"].as_str().unwrap_or(&key_id)));
                }
                Ok(())
            }
            AdminCommand::GrantCredits { user_id, credits } => {
                let account = api.post("/videos/admin/credits", &json!({"user_id": user_id, "credits": credits}), None).await?;
                if console.json {
                    console.json(&account);
                } else {
                    console.say(&format!("{} now has {} credits.", account["user_id"].as_str().unwrap_or(""), account["credits"]));
                }
                Ok(())
            }
        },
    }
}

async fn deliveries(api: &Api, args: DeliveriesArgs, console: &mut Console<'_>) -> Result<(), CliError> {
    let Some(job_id) = args.job_id else {
        let filters = args.filter.given();
        let page = api.get(&page_path("/videos/deliveries", args.limit, args.cursor.as_deref(), &filters)).await?;
        if console.json {
            console.json(&page);
            return Ok(());
        }
        let attempts = page["deliveries"].as_array().cloned().unwrap_or_default();
        let next = page["next_cursor"].as_str();
        if attempts.is_empty() {
            // With --error-class a page may be empty and still have pages after it.
            console.note(if next.is_some() {
                "No failed attempts on this page; there may be more on the next."
            } else {
                "No failed attempts."
            });
        }
        for attempt in &attempts {
            console.say(&format!("{}  {}", attempt["job_id"].as_str().unwrap_or(""), delivery_line(attempt)));
        }
        if let Some(next) = next {
            console.note(&format!("More: {}", next_command("videojobs deliveries --failed", args.limit, &filters, next)));
        }
        return Ok(());
    };
    let log = api.get(&format!("/videos/jobs/{}/deliveries", segment(&job_id)?)).await?;
    if console.json {
        console.json(&log);
        return Ok(());
    }
    let attempts = log["deliveries"].as_array().cloned().unwrap_or_default();
    if attempts.is_empty() {
        console.note(&format!("No notification of {job_id} has been attempted."));
    }
    for attempt in &attempts {
        console.say(&delivery_line(attempt));
    }
    Ok(())
}

async fn redeliver(api: &Api, args: RedeliverArgs, console: &mut Console<'_>) -> Result<(), CliError> {
    let answer = match (&args.job_id, &args.since) {
        (Some(job_id), _) => {
            let path = format!("/videos/jobs/{}/redeliver", segment(job_id)?);
            // No body: the job's latest notification.
            let body = args.status.as_ref().map(|status| json!({"status": status}));
            api.call(reqwest::Method::POST, &path, body.as_ref(), &[]).await?
        }
        (None, Some(since)) => api.post("/videos/deliveries/redeliver", &json!({"since": since}), None).await?,
        (None, None) => return Err(CliError::Local("give a JOB_ID, or --since TIME for every notification never delivered".into())),
    };
    if console.json {
        console.json(&answer);
        return Ok(());
    }
    let redeliveries = answer["redeliveries"].as_array().cloned().unwrap_or_default();
    if let (Some(since), true) = (&args.since, redeliveries.is_empty()) {
        console.note(&format!("Nothing to send again: no notification of yours has failed since {since} without being delivered."));
    }
    for redelivery in &redeliveries {
        console.say(&redelivery_line(redelivery));
    }
    if answer["more"] == true {
        let since = args.since.as_deref().map(shell_word).unwrap_or_default();
        console
            .note(&format!("More notifications match than one request sends again (50): run videojobs redeliver --since {since} again."));
    }
    Ok(())
}

async fn resume_endpoint(api: &Api, endpoint: &str, keep_held: bool, console: &mut Console<'_>) -> Result<(), CliError> {
    // `send_held` is true when left out: sent only for --keep-held.
    let body = if keep_held { json!({"endpoint": endpoint, "send_held": false}) } else { json!({"endpoint": endpoint}) };
    let answer = api.post("/videos/webhook-endpoints/resume", &body, None).await?;
    if console.json {
        console.json(&answer);
        return Ok(());
    }
    let endpoint = answer["endpoint"].as_str().unwrap_or(endpoint);
    if answer["resumed"] != true {
        console.say(&format!("{endpoint} was not paused (or another resume got there first): nothing sent again."));
        return Ok(());
    }
    console.say(&format!("{endpoint} resumed: notifications go to it again."));
    let redeliveries = answer["redeliveries"].as_array().cloned().unwrap_or_default();
    if keep_held {
        console.note("The notifications held while it was paused were not sent again (--keep-held).");
    } else if redeliveries.is_empty() {
        console.note("No notification was held while it was paused.");
    }
    for redelivery in &redeliveries {
        console.say(&redelivery_line(redelivery));
    }
    if answer["more"] == true {
        console.note(
            "More notifications were held than one resume sends again (50): send the rest with \
             videojobs redeliver --since TIME (when it was paused; videojobs deliveries --failed \
             --error-class notify_endpoint_paused lists them).",
        );
    }
    Ok(())
}

/// One notification asked to be sent again (`redeliver`, `resume-endpoint`) on one line: its job, status and whether it was queued.
fn redelivery_line(redelivery: &Value) -> String {
    let (job_id, status) = (redelivery["job_id"].as_str().unwrap_or(""), redelivery["status"].as_str().unwrap_or(""));
    if redelivery["queued"] == true {
        format!("{job_id}  {status}  queued: sent again within seconds")
    } else {
        format!("{job_id}  {status}  not queued: a request within the last minute stands")
    }
}

/// One attempt at a notification on one line: when it ended, the status
/// notified, `attempt N` (the schedule's) or `manual`, where it went, and how it went.
fn delivery_line(attempt: &Value) -> String {
    let which = match (attempt["trigger"].as_str(), attempt["attempt"].as_u64()) {
        (Some("manual"), _) => "manual".to_owned(),
        (_, Some(number)) => format!("attempt {number}"),
        (trigger, None) => trigger.unwrap_or("").to_owned(),
    };
    let answer = match (attempt["http_status"].as_u64(), attempt["error_class"].as_str()) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(class)) => class.to_owned(),
        (None, None) => "no answer".to_owned(),
    };
    format!(
        "{}  {:<10} {:<10} {}  {:<9} {}  {} ms",
        attempt["at"].as_str().unwrap_or(""),
        attempt["status"].as_str().unwrap_or(""),
        which,
        attempt["endpoint"].as_str().unwrap_or(""),
        attempt["outcome"].as_str().unwrap_or(""),
        answer,
        attempt["duration_ms"]
    )
}

fn set(body: &mut Value, name: &str, value: Option<Value>) {
    if let (Some(value), Some(map)) = (value, body.as_object_mut()) {
        map.insert(name.to_owned(), value);
    }
}

/// A job id as one path segment: refused if it could change the path.
fn segment(job_id: &str) -> Result<&str, CliError> {
    if !job_id.is_empty() && job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(job_id)
    } else {
        Err(CliError::Local(format!("'{job_id}' is not a job id (they look like job_01…)")))
    }
}

fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn create(
    api: &Api,
    path: &str,
    mut body: Value,
    options: &JobOptions,
    wait: &WaitArgs,
    console: &mut Console<'_>,
) -> Result<(), CliError> {
    set(&mut body, "provider", options.provider.clone().map(Value::from));
    set(&mut body, "webhook_url", options.webhook_url.clone().map(Value::from));
    if !options.tags.is_empty() {
        set(&mut body, "tags", Some(Value::from(options.tags.clone())));
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(key) = options.idempotency_key.as_deref() {
        headers.push(("idempotency-key", key));
    }
    if let Some(deadline) = options.cancel_after.as_deref() {
        headers.push(("cancel-after", deadline));
    }
    let accepted = api.call(reqwest::Method::POST, path, Some(&body), &headers).await?;
    let job_id = accepted["job_id"].as_str().unwrap_or("").to_owned();
    if !(wait.wait || wait.out.is_some()) {
        if console.json {
            console.json(&accepted);
        } else {
            console.say(&job_id);
            console.note(&format!("Job {job_id} is queued. Follow it with: videojobs status {job_id}"));
        }
        return Ok(());
    }
    console.note(&format!("Job {job_id} is queued."));
    let status = wait_for(api, &job_id, wait.poll_seconds, console).await?;
    let ended = status["status"].as_str().unwrap_or("");
    if !matches!(ended, "completed" | "approved") {
        let why = status["error"]["message"].as_str().unwrap_or("it has no video");
        let next = status["error"]["next_step"].as_str().map(|s| format!(" {}", sentence(s))).unwrap_or_default();
        return Err(CliError::JobEnded(format!("job {job_id} ended {ended}: {}{next}", sentence(why))));
    }
    if let Some(out) = &wait.out {
        download(api, &job_id, out, console).await?;
    }
    if console.json {
        console.json(&status);
    } else {
        console.say(&job_id);
        console.note(&format!("Job {job_id} is {ended} ({}).", status["status_label"].as_str().unwrap_or("")));
    }
    Ok(())
}

/// Between two looks at a job when neither the command line nor the API says.
const DEFAULT_POLL: Duration = Duration::from_secs(1);

async fn wait_for(api: &Api, job_id: &str, poll_seconds: Option<f64>, console: &mut Console<'_>) -> Result<Value, CliError> {
    let fixed = poll_seconds.map(|s| Duration::from_secs_f64(s.clamp(0.1, 60.0)));
    loop {
        let (status, retry_after) = api.status_with_hint(job_id).await?;
        console.progress(&status);
        if !in_flight(status["status"].as_str().unwrap_or("")) {
            console.end_progress();
            return Ok(status);
        }
        let pause = fixed.or(retry_after.map(|d| d.min(Duration::from_secs(60)))).unwrap_or(DEFAULT_POLL);
        tokio::time::sleep(pause).await;
    }
}

async fn download(api: &Api, job_id: &str, out: &Path, console: &mut Console<'_>) -> Result<(), CliError> {
    let result = api.get(&format!("/videos/jobs/{}/result", segment(job_id)?)).await?;
    let url = result["video"]["url"].as_str().ok_or_else(|| CliError::Unreachable("the result has no video URL".into()))?;
    // A presigned URL: it carries its own authorisation, so no API key goes with it.
    let response = api.http.get(url).send().await.map_err(|e| unreachable(url, &e))?;
    if !response.status().is_success() {
        return Err(CliError::Unreachable(format!("the video could not be fetched ({})", response.status())));
    }
    let bytes = response.bytes().await.map_err(|e| unreachable(url, &e))?;
    std::fs::write(out, &bytes).map_err(|e| CliError::Local(format!("could not write {}: {e}", out.display())))?;
    console.note(&format!("Saved the video ({} bytes) to {}.", bytes.len(), out.display()));
    Ok(())
}

async fn upload(api: &Api, path: &Path) -> Result<Value, CliError> {
    let content_type = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => return Err(CliError::Local(format!("{} is not a .png, .jpg or .webp file", path.display()))),
    };
    let bytes = std::fs::read(path).map_err(|e| CliError::Local(format!("could not read {}: {e}", path.display())))?;
    let slot = api.post("/videos/uploads", &json!({"content_type": content_type, "size_bytes": bytes.len()}), None).await?;
    let url = slot["url"].as_str().ok_or_else(|| CliError::Unreachable("the upload answer has no URL".into()))?;
    let mut put = api.http.put(url).body(bytes);
    for (name, value) in slot["headers"].as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            put = put.header(name.as_str(), value);
        }
    }
    let response = put.send().await.map_err(|e| unreachable(url, &e))?;
    if !response.status().is_success() {
        return Err(CliError::Unreachable(format!("the image upload was refused ({})", response.status())));
    }
    Ok(slot["upload_id"].clone())
}

const STATUSES: [&str; 10] =
    ["queued", "submitted", "retrying", "processing", "completed", "approved", "rejected", "failed", "canceled", "expired"];

/// The figures of `GET /videos/stats`, one topic a line: the frontend's
/// figures for a user's key, everything for an admin's.
pub fn stats_summary(stats: &Value) -> Vec<String> {
    if stats["scope"] == "user" {
        return user_stats_summary(stats);
    }
    let percent = |rate: &Value| format!("{:.1} %", rate.as_f64().unwrap_or(0.0) * 100.0);
    let rates = |list: &Value, name: &str| -> String {
        let parts: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{} {} of {} ({})", r[name].as_str().unwrap_or(""), r["failed"], r["finished"], percent(&r["rate"])))
            .collect();
        if parts.is_empty() {
            "none finished".into()
        } else {
            parts.join(", ")
        }
    };
    let by_status: Vec<String> = STATUSES.iter().map(|s| format!("{s} {}", stats["jobs_by_status"][s])).collect();
    let ttc = &stats["time_to_complete_seconds"];
    let rejections = &stats["rejections"];
    let reasons: Vec<String> = rejections["by_reason"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {}", r["reason"].as_str().unwrap_or(""), r["count"]))
        .collect();
    let stuck = &stats["stuck_jobs"];
    let mut lines = vec![
        format!("Figures at {}", stats["generated_at"].as_str().unwrap_or("")),
        format!("Jobs: {}", by_status.join(", ")),
        match ttc["average"].as_f64() {
            Some(average) => format!("Time to complete: {} jobs, average {average} s, p95 at most {} s", ttc["count"], ttc["p95"]),
            None => "Time to complete: no job completed yet".into(),
        },
        format!("Failed by provider: {}", rates(&stats["failure_rate_by_provider"], "provider")),
        format!("Failed by workflow type: {}", rates(&stats["failure_rate_by_workflow_type"], "workflow_type")),
        format!(
            "Rejected: {} of {} reviewed ({}){}",
            rejections["rejected"],
            rejections["reviewed"],
            percent(&rejections["rate"]),
            if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join(", ")) }
        ),
        format!("Duplicate callbacks: {}", stats["duplicate_callbacks"]),
        format!("Stuck (no update for {} s): {}", stuck["threshold_seconds"], stuck["count"]),
    ];
    for job in stuck["jobs"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {}  {} at {} since {}",
            job["job_id"].as_str().unwrap_or(""),
            job["status"].as_str().unwrap_or(""),
            job["provider"].as_str().unwrap_or(""),
            job["updated_at"].as_str().unwrap_or("")
        ));
    }
    let bytes = &stats["stored_bytes_by_artifact_type"];
    lines.push(format!("Stored: videos {} bytes, thumbnails {} bytes", bytes["video"], bytes["thumbnail"]));
    lines
}

fn user_stats_summary(stats: &Value) -> Vec<String> {
    let ttc = &stats["time_to_complete_seconds"];
    let mine = &stats["your_jobs"];
    let by_status: Vec<String> = STATUSES
        .iter()
        .filter(|s| mine["by_status"][**s].as_i64().unwrap_or(0) > 0)
        .map(|s| format!("{s} {}", mine["by_status"][*s]))
        .collect();
    vec![
        format!("Figures at {}", stats["generated_at"].as_str().unwrap_or("")),
        format!("Queue: {} waiting, {} generating", stats["queue"]["waiting"], stats["queue"]["generating"]),
        match (ttc["p50"].as_f64(), ttc["p95"].as_f64()) {
            (Some(p50), Some(p95)) => format!("Typical time to complete: {p50} s (p50), at most {p95} s for 95 %"),
            _ => "Typical time to complete: no job completed yet".into(),
        },
        format!(
            "Your jobs: {}{} ({} of {} in progress)",
            if by_status.is_empty() { "none".into() } else { by_status.join(", ") },
            if mine["complete"] == false { format!(" (the newest {})", mine["counted"]) } else { String::new() },
            mine["active"],
            mine["max_active"]
        ),
    ]
}

/// One job of a listing (`list`, `children`) on one line, its tags last when it has any.
fn job_line(job: &Value) -> String {
    let mut line = format!(
        "{}  {:<10} {:>3}%  {:<14}  {}",
        job["job_id"].as_str().unwrap_or(""),
        job["status"].as_str().unwrap_or(""),
        job["progress"].as_u64().unwrap_or(0),
        job["workflow_type"].as_str().unwrap_or(""),
        job["created_at"].as_str().unwrap_or("")
    );
    let tags = tag_list(job);
    if !tags.is_empty() {
        line.push_str(&format!("  [{tags}]"));
    }
    line
}

/// A job's tags as `a, b`; empty when it has none.
fn tag_list(job: &Value) -> String {
    job["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
}

fn print_status(status: &Value, console: &mut Console<'_>) {
    let field = |name: &str| status[name].as_str().unwrap_or("").to_owned();
    console.say(&format!("{}  {} ({})  {}%", field("job_id"), field("status"), field("status_label"), status["progress"]));
    console.say(&format!(
        "  {} via {}, created {}, updated {}",
        field("workflow_type"),
        field("provider"),
        field("created_at"),
        field("updated_at")
    ));
    let tags = tag_list(status);
    if !tags.is_empty() {
        console.say(&format!("  tags: {tags}"));
    }
    if let Some(message) = status["error"]["message"].as_str() {
        let next = status["error"]["next_step"].as_str().map(|s| format!(" {}", sentence(s))).unwrap_or_default();
        console.say(&format!("  {}{next}", sentence(message)));
    }
    if let Some(url) = status["output"]["video_url"].as_str() {
        console.say(&format!("  video: {url}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_sentence_with_the_next_step() {
        let err = CliError::Api {
            status: 402,
            message: "this job costs 40 credits and the balance is 3".into(),
            next_step: Some("Add credits or ask for a shorter video".into()),
        };
        assert_eq!(err.sentence(), "This job costs 40 credits and the balance is 3. Add credits or ask for a shorter video.");
        assert_eq!(CliError::Local("nothing here.".into()).sentence(), "Nothing here.");
        let field = CliError::Api { status: 400, message: "duration_seconds: must be between 1 and 20".into(), next_step: None };
        assert_eq!(field.sentence(), "duration_seconds: must be between 1 and 20.");
    }

    #[test]
    fn the_progress_bar_fills_with_the_percentage() {
        assert_eq!(progress_line(0, "Waiting to start"), format!("[{}]   0%  Waiting to start", "-".repeat(30)));
        assert_eq!(progress_line(50, "x"), format!("[{}{}]  50%  x", "#".repeat(15), "-".repeat(15)));
        assert_eq!(progress_line(250, "x"), format!("[{}] 100%  x", "#".repeat(30)));
    }

    #[test]
    fn job_ids_that_would_change_the_path_are_refused() {
        assert!(segment("job_01abc").is_ok());
        for bad in ["", "../admin", "a/b", "a?b", "a b"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
        assert_eq!(query_value("a b/c+="), "a%20b%2Fc%2B%3D");
    }

    async fn run_captured(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(args.iter().copied(), &lookup, &mut out, &mut err, false).await;
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn the_stats_summary_reads_every_figure() {
        let stats = json!({"generated_at": "2026-11-23T06:00:00.000Z",
            "jobs_by_status": {"queued": 0, "submitted": 1, "retrying": 0, "processing": 0, "completed": 1,
                               "approved": 1, "rejected": 1, "failed": 1, "canceled": 1, "expired": 0},
            "time_to_complete_seconds": {"count": 3, "average": 2.114, "p95": 2.38},
            "failure_rate_by_provider": [{"provider": "local", "finished": 4, "failed": 1, "rate": 0.25}],
            "failure_rate_by_workflow_type": [{"workflow_type": "text_to_video", "finished": 3, "failed": 1, "rate": 0.3333}],
            "rejections": {"reviewed": 2, "rejected": 1, "rate": 0.5, "by_reason": [{"reason": "off_brief", "count": 1, "rate": 0.5}]},
            "duplicate_callbacks": 2,
            "stuck_jobs": {"threshold_seconds": 1800, "count": 1,
                           "jobs": [{"job_id": "job_1", "status": "submitted", "provider": "local", "updated_at": "2026-11-23T04:00:00.000Z"}]},
            "stored_bytes_by_artifact_type": {"video": 100, "thumbnail": 7}});
        assert_eq!(
            stats_summary(&stats),
            [
                "Figures at 2026-11-23T06:00:00.000Z",
                "Jobs: queued 0, submitted 1, retrying 0, processing 0, completed 1, approved 1, rejected 1, failed 1, canceled 1, expired 0",
                "Time to complete: 3 jobs, average 2.114 s, p95 at most 2.38 s",
                "Failed by provider: local 1 of 4 (25.0 %)",
                "Failed by workflow type: text_to_video 1 of 3 (33.3 %)",
                "Rejected: 1 of 2 reviewed (50.0 %): off_brief 1",
                "Duplicate callbacks: 2",
                "Stuck (no update for 1800 s): 1",
                "  job_1  submitted at local since 2026-11-23T04:00:00.000Z",
                "Stored: videos 100 bytes, thumbnails 7 bytes",
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_key_or_a_bad_command_line_is_a_usage_error() {
        let (code, _, err) = run_captured(&["videojobs", "status", "job_x"], &[]).await;
        assert_eq!(code, exit::USAGE);
        assert_eq!(err, "error: no API key: pass --key or set VIDEOJOBS_KEY.\n");
        let (code, _, err) = run_captured(&["videojobs", "review", "reject", "job_x"], &[("VIDEOJOBS_KEY", "k")]).await;
        assert_eq!(code, exit::USAGE);
        assert!(err.contains("--reason"), "{err}");
        let (code, out, _) = run_captured(&["videojobs", "--help"], &[]).await;
        assert_eq!(code, exit::OK);
        assert!(out.contains("generate") && out.contains("review") && out.contains("admin"), "{out}");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_said_plainly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (code, _, err) = run_captured(&["videojobs", "--url", &url, "--key", "k", "account"], &[]).await;
        assert_eq!(code, exit::FAILED);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("error: Could not reach the videojobs API at {url}: nothing answered there")), "{err}");
    }

    /// The API's stand-in: answers every request with `status` and `body`
    /// and keeps what it got.
    async fn api_answering(status: u16, body: &'static str) -> wiremock::MockServer {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(status).set_body_raw(body, "application/json"))
            .mount(&server)
            .await;
        server
    }

    /// The one request the stand-in received.
    async fn the_request(server: &wiremock::MockServer) -> wiremock::Request {
        let mut requests = server.received_requests().await.unwrap_or_default();
        assert_eq!(requests.len(), 1, "one request");
        requests.remove(0)
    }

    #[tokio::test]
    async fn review_reject_sends_the_decision_reason_and_note_to_the_review_endpoint() {
        let server = api_answering(200, r#"{"job_id":"job_1","status":"rejected"}"#).await;
        let url = server.uri();

        let (code, out, err) = run_captured(
            &["videojobs", "review", "reject", "job_1", "--reason", "other", "--note", "logo is cut off"],
            &[("VIDEOJOBS_URL", &url), ("VIDEOJOBS_KEY", "vj_reviewer")],
        )
        .await;

        assert_eq!(code, exit::OK, "{err}");
        assert_eq!(out, "job_1 rejected.\n");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("POST", "/videos/jobs/job_1/review"));
        let authorization = request.headers.get("authorization").and_then(|v| v.to_str().ok());
        assert_eq!(authorization, Some("Bearer vj_reviewer"));
        let sent: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(sent, json!({"decision": "reject", "reason": "other", "note": "logo is cut off"}));
    }

    #[tokio::test]
    async fn waiting_follows_the_apis_retry_after_between_looks() {
        // Arrange: the job is in flight for one look (asking for 1 s), then completed.
        let server = wiremock::MockServer::start().await;
        let in_flight = r#"{"job_id":"job_4","status":"processing","status_label":"Generating video","progress":40}"#;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(
                wiremock::ResponseTemplate::new(200).insert_header("retry-after", "1").set_body_raw(in_flight, "application/json"),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let done = r#"{"job_id":"job_4","status":"completed","status_label":"Ready for review","progress":100}"#;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(done, "application/json"))
            .mount(&server)
            .await;
        let api = Api { http: reqwest::Client::new(), base: server.uri(), key: "k".into() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console { out: &mut out, err: &mut err, interactive: false, json: false, last_progress: None };

        // Act
        let started = std::time::Instant::now();
        let status = wait_for(&api, "job_4", None, &mut console).await.expect("the job ended");

        // Assert: two looks, the second no sooner than the API asked.
        assert_eq!(status["status"], "completed");
        assert_eq!(server.received_requests().await.unwrap_or_default().len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn set_pairs_become_the_remix_body_with_json_values_where_they_parse() {
        let pairs = ["prompt=A boat at night", "duration_seconds=2", "seed=null", "metadata={\"a\":1}"].map(String::from);
        assert_eq!(
            overrides(&pairs).unwrap(),
            json!({"prompt": "A boat at night", "duration_seconds": 2, "seed": null, "metadata": {"a": 1}})
        );
        assert!(overrides(&["no-equals-sign".to_owned()]).is_err());
        assert!(overrides(&["=2".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn remix_sends_the_overrides_to_the_jobs_remix_route_with_its_key() {
        let server = api_answering(202, r#"{"job_id":"job_9","status":"queued","status_label":"Waiting to start"}"#).await;
        let args = [
            "videojobs",
            "--url",
            &server.uri(),
            "--key",
            "k",
            "remix",
            "job_5",
            "--set",
            "duration_seconds=2",
            "--idempotency-key",
            "r-1",
        ];

        let (code, out, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        assert_eq!(out, "job_9\n");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("POST", "/videos/jobs/job_5/remix"));
        assert_eq!(request.headers.get("idempotency-key").and_then(|v| v.to_str().ok()), Some("r-1"));
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"duration_seconds": 2}));
    }

    #[tokio::test]
    async fn a_deadline_goes_as_the_cancel_after_header() {
        let server = api_answering(202, r#"{"job_id":"job_8","status":"queued","status_label":"Waiting to start"}"#).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "generate", "A kite", "--cancel-after", "5m"];

        let (code, _, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!(request.headers.get("cancel-after").and_then(|v| v.to_str().ok()), Some("5m"));
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"prompt": "A kite"}));
    }

    #[test]
    fn list_filters_become_one_form_urlencoded_query_in_the_apis_order() {
        let filter = ListFilter {
            status: vec!["failed".into(), "expired".into()],
            workflow_type: Some("text_to_video".into()),
            tag: Some("campaign:spring-26".into()),
            parent: Some("job_01abc".into()),
            since: Some("2026-05-01T00:00:00+02:00".into()),
            until: Some("2026-06-01T00:00:00Z".into()),
        };
        assert_eq!(
            list_path(Some(10), Some("c/1+="), &filter),
            "/videos/jobs?limit=10&cursor=c%2F1%2B%3D&status=failed%2Cexpired&workflow_type=text_to_video\
             &tag=campaign%3Aspring-26&parent_job_id=job_01abc&created_after=2026-05-01T00%3A00%3A00%2B02%3A00\
             &created_before=2026-06-01T00%3A00%3A00Z"
        );
        assert_eq!(list_path(None, None, &ListFilter::default()), "/videos/jobs");
        assert_eq!(
            next_page_command(Some(10), &filter, "c2"),
            "videojobs list --limit 10 --status failed,expired --workflow-type text_to_video --tag campaign:spring-26 \
             --parent job_01abc --since 2026-05-01T00:00:00+02:00 --until 2026-06-01T00:00:00Z --cursor c2"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn a_filtered_list_sends_its_filters_and_the_more_line_keeps_them_for_the_next_page() {
        // Arrange: the first page is empty (a filtered page may be) and has a next one.
        let server = api_answering(200, r#"{"jobs":[],"next_cursor":"eyJrIjoxfQ"}"#).await;
        let base = ["videojobs", "--url", &server.uri(), "--key", "k", "list"];
        let filters = ["--status", "failed", "--status", "expired", "--tag", "promo", "--since", "2026-05-01T00:00:00+02:00"];
        let args: Vec<&str> = base.iter().chain(&filters).copied().collect();

        // Act
        let (code, out, err) = run_captured(&args, &[]).await;

        // Assert: the filters went URL-encoded, and the hint repeats them with the cursor.
        assert_eq!(code, exit::OK, "{err}");
        assert_eq!(out, "");
        let request = the_request(&server).await;
        assert_eq!(request.url.path(), "/videos/jobs");
        assert_eq!(request.url.query(), Some("status=failed%2Cexpired&tag=promo&created_after=2026-05-01T00%3A00%3A00%2B02%3A00"));
        let hint = "videojobs list --status failed,expired --tag promo --since 2026-05-01T00:00:00+02:00 --cursor eyJrIjoxfQ";
        assert_eq!(err, format!("No jobs on this page; there may be more on the next.\nMore: {hint}\n"));

        // The hint, run as printed, asks for the next page with the same filters.
        server.reset().await;
        let server_uri = server.uri();
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(
                r#"{"jobs":[{"job_id":"job_7","status":"failed","progress":0,"workflow_type":"text_to_video",
                    "created_at":"2026-05-02T10:00:00.000Z","tags":["promo","spring"]}],"next_cursor":null}"#,
                "application/json",
            ))
            .mount(&server)
            .await;
        let again: Vec<&str> = ["videojobs", "--url", &server_uri, "--key", "k"].into_iter().chain(hint.split(' ').skip(1)).collect();
        let (code, out, err) = run_captured(&again, &[]).await;
        assert_eq!(code, exit::OK, "{err}");
        assert_eq!(err, "");
        assert_eq!(out, "job_7  failed       0%  text_to_video   2026-05-02T10:00:00.000Z  [promo, spring]\n");
        let request = the_request(&server).await;
        assert_eq!(
            request.url.query(),
            Some("cursor=eyJrIjoxfQ&status=failed%2Cexpired&tag=promo&created_after=2026-05-01T00%3A00%3A00%2B02%3A00")
        );
    }

    #[test]
    fn a_job_line_shows_tags_only_when_the_job_has_some() {
        let job = json!({"job_id": "job_1", "status": "queued", "progress": 5, "workflow_type": "image_to_video",
            "created_at": "2026-05-02T10:00:00.000Z", "tags": []});
        assert_eq!(job_line(&job), "job_1  queued       5%  image_to_video  2026-05-02T10:00:00.000Z");
        let tagged = json!({"job_id": "job_1", "status": "queued", "progress": 5, "workflow_type": "image_to_video",
            "created_at": "2026-05-02T10:00:00.000Z", "tags": ["a", "campaign:spring-26"]});
        assert_eq!(job_line(&tagged), "job_1  queued       5%  image_to_video  2026-05-02T10:00:00.000Z  [a, campaign:spring-26]");
    }

    #[tokio::test]
    async fn tag_flags_go_as_the_create_bodys_tags() {
        let server = api_answering(202, r#"{"job_id":"job_8","status":"queued","status_label":"Waiting to start"}"#).await;
        let args =
            ["videojobs", "--url", &server.uri(), "--key", "k", "generate", "A kite", "--tag", "promo", "--tag", "campaign:spring-26"];

        let (code, _, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let sent: Value = serde_json::from_slice(&the_request(&server).await.body).unwrap();
        assert_eq!(sent, json!({"prompt": "A kite", "tags": ["promo", "campaign:spring-26"]}));
    }

    #[tokio::test]
    async fn remix_takes_tags_alone_but_not_twice() {
        let server = api_answering(202, r#"{"job_id":"job_9","status":"queued","status_label":"Waiting to start"}"#).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "remix", "job_5", "--tag", "night"];

        let (code, _, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        assert_eq!(serde_json::from_slice::<Value>(&the_request(&server).await.body).unwrap(), json!({"tags": ["night"]}));
        let both = ["videojobs", "--url", "http://127.0.0.1:9", "--key", "k", "remix", "job_5", "--tag", "a", "--set", r#"tags=["b"]"#];
        let (code, _, err) = run_captured(&both, &[]).await;
        assert_eq!(code, exit::FAILED);
        assert_eq!(err, "error: Give the tags with --tag or with --set tags=…, not both.\n");
        let (code, _, _) = run_captured(&["videojobs", "--key", "k", "remix", "job_5"], &[]).await;
        assert_eq!(code, exit::USAGE, "remix still needs --set or --tag");
    }

    #[tokio::test]
    async fn review_approve_sends_only_the_decision() {
        let server = api_answering(200, r#"{"job_id":"job_2","status":"approved"}"#).await;
        let (code, out, _) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "review", "approve", "job_2"], &[]).await;
        assert_eq!((code, out.as_str()), (exit::OK, "job_2 approved.\n"));
        let request = the_request(&server).await;
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"decision": "approve"}));
    }

    #[tokio::test]
    async fn an_api_refusal_prints_its_message_and_next_step_as_one_sentence() {
        let server = api_answering(
            409,
            r#"{"error":{"code":"wrong_state","message":"only a completed job can be reviewed","next_step":"Wait for the video"}}"#,
        )
        .await;
        let (code, _, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "review", "approve", "job_3"], &[]).await;
        assert_eq!(code, exit::FAILED);
        assert_eq!(err, "error: Only a completed job can be reviewed. Wait for the video.\n");
    }

    /// A delivery log's attempts: a scheduled one the endpoint refused, one it never answered, and a manual one delivered.
    const LOG: &str = r#"{"job_id":"job_1","deliveries":[
        {"job_id":"job_1","status":"completed","at":"2026-12-01T10:00:01.000Z","trigger":"scheduled","attempt":1,
         "endpoint":"https://hooks.example.com","outcome":"failed","http_status":500,"error_class":"notify_http_500","duration_ms":120},
        {"job_id":"job_1","status":"completed","at":"2026-12-01T10:00:31.000Z","trigger":"scheduled","attempt":2,
         "endpoint":"https://hooks.example.com","outcome":"failed","http_status":null,"error_class":"notify_network","duration_ms":5003},
        {"job_id":"job_1","status":"completed","at":"2026-12-01T10:05:00.000Z","trigger":"manual","attempt":null,
         "endpoint":"https://hooks.example.com","outcome":"delivered","http_status":204,"error_class":null,"duration_ms":84}]}"#;

    #[tokio::test]
    async fn deliveries_of_a_job_prints_each_attempt_on_one_line() {
        let server = api_answering(200, LOG).await;

        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "deliveries", "job_1"], &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path(), request.url.query()), ("GET", "/videos/jobs/job_1/deliveries", None));
        assert_eq!(
            out,
            "2026-12-01T10:00:01.000Z  completed  attempt 1  https://hooks.example.com  failed    HTTP 500  120 ms\n\
             2026-12-01T10:00:31.000Z  completed  attempt 2  https://hooks.example.com  failed    notify_network  5003 ms\n\
             2026-12-01T10:05:00.000Z  completed  manual     https://hooks.example.com  delivered HTTP 204  84 ms\n"
        );
        assert_eq!(err, "");
    }

    #[tokio::test]
    async fn deliveries_of_a_job_never_notified_say_so_and_json_prints_the_answer() {
        let server = api_answering(200, r#"{"job_id":"job_2","deliveries":[]}"#).await;
        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "deliveries", "job_2"], &[]).await;
        assert_eq!((code, out.as_str(), err.as_str()), (exit::OK, "", "No notification of job_2 has been attempted.\n"));

        let (code, out, _) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "--json", "deliveries", "job_2"], &[]).await;
        assert_eq!(code, exit::OK);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"job_id": "job_2", "deliveries": []}));
    }

    #[tokio::test]
    async fn failed_deliveries_send_their_filters_and_the_more_line_keeps_them_for_the_next_page() {
        // Arrange: one failed attempt, and a page after it.
        let page = r#"{"deliveries":[{"job_id":"job_3","status":"failed","at":"2026-12-01T10:00:01.000Z","trigger":"scheduled",
            "attempt":3,"endpoint":"https://hooks.example.com:8443","outcome":"failed","http_status":null,
            "error_class":"notify_unresolved","duration_ms":12}],"next_cursor":"eyJrIjoxfQ"}"#;
        let server = api_answering(200, page).await;
        let base = ["videojobs", "--url", &server.uri(), "--key", "k", "deliveries", "--failed"];
        let filters = [
            "--limit",
            "1",
            "--since",
            "2026-12-01T00:00:00+02:00",
            "--until",
            "2026-12-02T00:00:00Z",
            "--error-class",
            "notify_unresolved",
        ];
        let args: Vec<&str> = base.iter().chain(&filters).copied().collect();

        // Act
        let (code, out, err) = run_captured(&args, &[]).await;

        // Assert: the filters went URL-encoded under the API's names, and the hint repeats them with the cursor.
        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("GET", "/videos/deliveries"));
        assert_eq!(
            request.url.query(),
            Some("limit=1&since=2026-12-01T00%3A00%3A00%2B02%3A00&until=2026-12-02T00%3A00%3A00Z&error_class=notify_unresolved")
        );
        assert_eq!(
            out,
            "job_3  2026-12-01T10:00:01.000Z  failed     attempt 3  https://hooks.example.com:8443  failed    notify_unresolved  12 ms\n"
        );
        let hint = "videojobs deliveries --failed --limit 1 --since 2026-12-01T00:00:00+02:00 --until 2026-12-02T00:00:00Z \
                    --error-class notify_unresolved --cursor eyJrIjoxfQ";
        assert_eq!(err, format!("More: {hint}\n"));

        // The hint, run as printed, asks for the next page with the same filters; an empty last page says so.
        server.reset().await;
        let server_uri = server.uri();
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(r#"{"deliveries":[],"next_cursor":null}"#, "application/json"))
            .mount(&server)
            .await;
        let again: Vec<&str> = ["videojobs", "--url", &server_uri, "--key", "k"].into_iter().chain(hint.split(' ').skip(1)).collect();
        let (code, out, err) = run_captured(&again, &[]).await;
        assert_eq!((code, out.as_str(), err.as_str()), (exit::OK, "", "No failed attempts.\n"));
        let request = the_request(&server).await;
        assert_eq!(
            request.url.query(),
            Some(
                "limit=1&cursor=eyJrIjoxfQ&since=2026-12-01T00%3A00%3A00%2B02%3A00&until=2026-12-02T00%3A00%3A00Z\
                 &error_class=notify_unresolved"
            )
        );
    }

    #[tokio::test]
    async fn failed_deliveries_without_filters_send_no_query_and_an_empty_page_with_more_says_so() {
        let server = api_answering(200, r#"{"deliveries":[],"next_cursor":"c/2"}"#).await;

        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "deliveries", "--failed"], &[]).await;

        assert_eq!((code, out.as_str()), (exit::OK, ""));
        assert_eq!(the_request(&server).await.url.query(), None);
        assert_eq!(
            err,
            "No failed attempts on this page; there may be more on the next.\nMore: videojobs deliveries --failed --cursor c/2\n"
        );
    }

    #[tokio::test]
    async fn deliveries_take_a_job_or_failed_and_filters_only_with_failed() {
        for args in [
            &["videojobs", "--key", "k", "deliveries"][..],
            &["videojobs", "--key", "k", "deliveries", "job_1", "--failed"],
            &["videojobs", "--key", "k", "deliveries", "job_1", "--since", "2026-12-01T00:00:00Z"],
            &["videojobs", "--key", "k", "deliveries", "--error-class", "notify_network"],
            &["videojobs", "--key", "k", "redeliver"],
            &["videojobs", "--key", "k", "redeliver", "job_1", "--since", "2026-12-01T00:00:00Z"],
            &["videojobs", "--key", "k", "redeliver", "--since", "2026-12-01T00:00:00Z", "--status", "completed"],
        ] {
            let (code, out, err) = run_captured(args, &[]).await;
            assert_eq!((code, out.as_str()), (exit::USAGE, ""), "{args:?}: {err}");
        }
    }

    #[tokio::test]
    async fn redeliver_a_job_sends_no_body_for_its_latest_notification_and_says_it_is_queued() {
        let server = api_answering(202, r#"{"redeliveries":[{"job_id":"job_1","status":"approved","queued":true}],"more":false}"#).await;

        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "redeliver", "job_1"], &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path(), request.url.query()), ("POST", "/videos/jobs/job_1/redeliver", None));
        assert!(request.body.is_empty(), "no body: {:?}", String::from_utf8_lossy(&request.body));
        assert_eq!(out, "job_1  approved  queued: sent again within seconds\n");
        assert_eq!(err, "");
    }

    #[tokio::test]
    async fn redeliver_a_jobs_status_sends_it_and_says_when_an_earlier_request_stands() {
        let server = api_answering(202, r#"{"redeliveries":[{"job_id":"job_1","status":"completed","queued":false}],"more":false}"#).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "redeliver", "job_1", "--status", "completed"];

        let (code, out, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("POST", "/videos/jobs/job_1/redeliver"));
        assert_eq!(request.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"status": "completed"}));
        assert_eq!(out, "job_1  completed  not queued: a request within the last minute stands\n");
    }

    #[tokio::test]
    async fn redeliver_refused_for_a_job_without_a_webhook_url_is_one_sentence() {
        let server = api_answering(
            409,
            r#"{"error":{"code":"wrong_state","message":"the job has no webhook_url to notify","next_step":"Nothing to send"}}"#,
        )
        .await;
        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "redeliver", "job_1"], &[]).await;
        assert_eq!((code, out.as_str()), (exit::FAILED, ""));
        assert_eq!(err, "error: The job has no webhook_url to notify. Nothing to send.\n");
    }

    #[tokio::test]
    async fn redeliver_since_sends_the_time_prints_each_notification_and_says_when_there_are_more() {
        let answer = r#"{"redeliveries":[{"job_id":"job_5","status":"failed","queued":true},
            {"job_id":"job_4","status":"completed","queued":false}],"more":true}"#;
        let server = api_answering(202, answer).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "redeliver", "--since", "2026-12-01T00:00:00Z"];

        let (code, out, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path(), request.url.query()), ("POST", "/videos/deliveries/redeliver", None));
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"since": "2026-12-01T00:00:00Z"}));
        assert_eq!(
            out,
            "job_5  failed  queued: sent again within seconds\njob_4  completed  not queued: a request within the last minute stands\n"
        );
        assert_eq!(
            err,
            "More notifications match than one request sends again (50): run videojobs redeliver --since 2026-12-01T00:00:00Z again.\n"
        );
    }

    #[tokio::test]
    async fn redeliver_since_with_nothing_to_send_says_so_and_json_prints_the_answer() {
        let server = api_answering(202, r#"{"redeliveries":[],"more":false}"#).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "redeliver", "--since", "2026-12-01T00:00:00Z"];
        let (code, out, err) = run_captured(&args, &[]).await;
        assert_eq!((code, out.as_str()), (exit::OK, ""));
        assert_eq!(err, "Nothing to send again: no notification of yours has failed since 2026-12-01T00:00:00Z without being delivered.\n");

        let json_args = ["videojobs", "--url", &server.uri(), "--key", "k", "--json", "redeliver", "--since", "2026-12-01T00:00:00Z"];
        let (code, out, err) = run_captured(&json_args, &[]).await;
        assert_eq!((code, err.as_str()), (exit::OK, ""));
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"redeliveries": [], "more": false}));
    }

    #[tokio::test]
    async fn account_prints_each_paused_endpoint_and_how_to_resume_it() {
        let account = r#"{"user_id":"demo","role":"user","credits":996,"active_jobs":1,"max_active_jobs":5,"paused_endpoints":[
            {"endpoint":"https://hooks.example.com","paused_at":"2026-12-01T10:00:00.000Z","consecutive_failures":15},
            {"endpoint":"http://10.0.0.5:8080","paused_at":"2026-12-02T08:30:00.000Z","consecutive_failures":17}]}"#;
        let server = api_answering(200, account).await;

        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "account"], &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("GET", "/videos/account"));
        assert_eq!(
            out,
            "demo (user): 996 credits, 1 of 5 jobs in progress\n\
             Paused: https://hooks.example.com  since 2026-12-01T10:00:00.000Z  15 failed attempts in a row\n\
             Paused: http://10.0.0.5:8080  since 2026-12-02T08:30:00.000Z  17 failed attempts in a row\n"
        );
        assert_eq!(err, "Resume: videojobs resume-endpoint ENDPOINT\n");
    }

    #[tokio::test]
    async fn account_without_paused_endpoints_is_one_line_and_no_hint() {
        let account = r#"{"user_id":"demo","role":"user","credits":996,"active_jobs":0,"max_active_jobs":5,"paused_endpoints":[]}"#;
        let server = api_answering(200, account).await;
        let (code, out, err) = run_captured(&["videojobs", "--url", &server.uri(), "--key", "k", "account"], &[]).await;
        assert_eq!((code, out.as_str(), err.as_str()), (exit::OK, "demo (user): 996 credits, 0 of 5 jobs in progress\n", ""));
    }

    #[tokio::test]
    async fn resume_endpoint_sends_only_the_endpoint_and_prints_what_it_sent_again() {
        let answer = r#"{"endpoint":"https://hooks.example.com","resumed":true,"redeliveries":[
            {"job_id":"job_5","status":"failed","queued":true},{"job_id":"job_4","status":"completed","queued":false}],"more":true}"#;
        let server = api_answering(200, answer).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "resume-endpoint", "https://hooks.example.com"];

        let (code, out, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path(), request.url.query()), ("POST", "/videos/webhook-endpoints/resume", None));
        assert_eq!(request.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert_eq!(request.headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer k"));
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), json!({"endpoint": "https://hooks.example.com"}));
        assert_eq!(
            out,
            "https://hooks.example.com resumed: notifications go to it again.\n\
             job_5  failed  queued: sent again within seconds\n\
             job_4  completed  not queued: a request within the last minute stands\n"
        );
        assert_eq!(
            err,
            "More notifications were held than one resume sends again (50): send the rest with videojobs redeliver \
             --since TIME (when it was paused; videojobs deliveries --failed --error-class notify_endpoint_paused lists them).\n"
        );
    }

    #[tokio::test]
    async fn resume_endpoint_with_nothing_held_says_so() {
        let answer = r#"{"endpoint":"https://hooks.example.com","resumed":true,"redeliveries":[],"more":false}"#;
        let server = api_answering(200, answer).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "resume-endpoint", "https://hooks.example.com"];
        let (code, out, err) = run_captured(&args, &[]).await;
        assert_eq!((code, out.as_str()), (exit::OK, "https://hooks.example.com resumed: notifications go to it again.\n"));
        assert_eq!(err, "No notification was held while it was paused.\n");
    }

    #[tokio::test]
    async fn resume_endpoint_keep_held_sends_send_held_false_and_says_when_it_was_not_paused() {
        let answer = r#"{"endpoint":"http://10.0.0.5:8080","resumed":false,"redeliveries":[],"more":false}"#;
        let server = api_answering(200, answer).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "resume-endpoint", "http://10.0.0.5:8080", "--keep-held"];

        let (code, out, err) = run_captured(&args, &[]).await;

        assert_eq!(code, exit::OK, "{err}");
        let request = the_request(&server).await;
        assert_eq!((request.method.as_str(), request.url.path()), ("POST", "/videos/webhook-endpoints/resume"));
        assert_eq!(
            serde_json::from_slice::<Value>(&request.body).unwrap(),
            json!({"endpoint": "http://10.0.0.5:8080", "send_held": false})
        );
        assert_eq!(out, "http://10.0.0.5:8080 was not paused (or another resume got there first): nothing sent again.\n");
        assert_eq!(err, "");

        let json_args = ["videojobs", "--url", &server.uri(), "--key", "k", "--json", "resume-endpoint", "http://10.0.0.5:8080"];
        let (code, out, err) = run_captured(&json_args, &[]).await;
        assert_eq!((code, err.as_str()), (exit::OK, ""));
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"endpoint": "http://10.0.0.5:8080", "resumed": false, "redeliveries": [], "more": false})
        );
    }

    #[tokio::test]
    async fn resume_endpoint_keep_held_that_resumed_says_nothing_was_sent_again() {
        let answer = r#"{"endpoint":"https://hooks.example.com","resumed":true,"redeliveries":[],"more":false}"#;
        let server = api_answering(200, answer).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "resume-endpoint", "https://hooks.example.com", "--keep-held"];
        let (code, out, err) = run_captured(&args, &[]).await;
        assert_eq!((code, out.as_str()), (exit::OK, "https://hooks.example.com resumed: notifications go to it again.\n"));
        assert_eq!(err, "The notifications held while it was paused were not sent again (--keep-held).\n");
    }

    #[tokio::test]
    async fn resume_endpoint_needs_an_endpoint_and_a_refusal_is_one_sentence() {
        let (code, out, _) = run_captured(&["videojobs", "--key", "k", "resume-endpoint"], &[]).await;
        assert_eq!((code, out.as_str()), (exit::USAGE, ""));

        let refusal = r#"{"error":{"code":"invalid_request","message":"endpoint: is scheme://host[:port], as the account and the delivery log write it","field":"endpoint"}}"#;
        let server = api_answering(400, refusal).await;
        let args = ["videojobs", "--url", &server.uri(), "--key", "k", "resume-endpoint", "hooks.example.com"];
        let (code, out, err) = run_captured(&args, &[]).await;
        assert_eq!((code, out.as_str()), (exit::FAILED, ""));
        assert_eq!(err, "error: endpoint: is scheme://host[:port], as the account and the delivery log write it.\n");
    }
}
