//! What the start-up and cold-request benches share: their command line,
//! the environment Lambda gives a function, and the plain HTTP/1.1 their
//! stand-in servers speak (the runtime API, the replaying AWS endpoint).

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

/// What Lambda sets, and the resource names the functions read at init.
pub const LAMBDA_ENV: &[(&str, &str)] = &[
    ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[1]bench"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("JOBS_TABLE", "jobs"),
    ("PROMPTS_TABLE", "prompts"),
    ("MEDIA_BUCKET", "media"),
    ("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:jobs"),
    ("WORK_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/work"),
    ("NOTIFY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/notify"),
];

/// A bench's command line: `[--rounds N] [--FLAG…] BINARY…`.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub rounds: usize,
    /// The flags given, of those the bench knows.
    pub flags: Vec<String>,
    pub binaries: Vec<String>,
}

/// Reads a bench's arguments (without the program's name); `None` for a
/// usage error: `--rounds` without a positive number, an unknown flag, or
/// fewer than `min_binaries` binaries.
pub fn parse_args(
    args: impl IntoIterator<Item = String>,
    default_rounds: usize,
    known_flags: &[&str],
    min_binaries: usize,
) -> Option<Args> {
    let mut parsed = Args { rounds: default_rounds, flags: Vec::new(), binaries: Vec::new() };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => parsed.rounds = args.next()?.parse().ok().filter(|n| *n > 0)?,
            flag if known_flags.contains(&flag) => parsed.flags.push(arg),
            flag if flag.starts_with("--") => return None,
            _ => parsed.binaries.push(arg),
        }
    }
    (parsed.binaries.len() >= min_binaries).then_some(parsed)
}

/// One request as a stand-in server reads it.
pub struct Request {
    /// The request line, without its line end.
    pub line: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the next request of a keep-alive connection; `None` when it closed.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { line: line.trim_end().to_owned(), headers, body })
}

/// The head of the runtime API's answer to `next`: the event `request_id`, of `length` bytes.
pub fn next_event_head(request_id: &str, length: usize) -> String {
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() + 30_000;
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {request_id}\r\n\
         lambda-runtime-deadline-ms: {deadline}\r\n\
         lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
         lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
         content-length: {length}\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Option<Args> {
        parse_args(line.split_whitespace().map(str::to_owned), 30, &["--check"], 2)
    }

    #[test]
    fn a_command_line_gives_its_rounds_known_flags_and_binaries() {
        assert_eq!(
            args("--rounds 5 --check bare one"),
            Some(Args { rounds: 5, flags: vec!["--check".into()], binaries: vec!["bare".into(), "one".into()] })
        );
        assert_eq!(args("bare one").map(|a| a.rounds), Some(30), "the default rounds");
    }

    #[test]
    fn a_usage_error_gives_nothing() {
        assert_eq!(args("--rounds 0 bare one"), None);
        assert_eq!(args("--rounds many bare one"), None);
        assert_eq!(args("bare one --rounds"), None);
        assert_eq!(args("--fast bare one"), None);
        assert_eq!(args("bare"), None, "too few binaries");
    }

    #[test]
    fn requests_of_a_keep_alive_connection_are_read_one_after_another_with_their_bodies() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-Amz-Target: T.Op\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        let mut reader = std::io::BufReader::new(&wire[..]);
        let first = read_request(&mut reader).expect("a first request");
        assert_eq!(
            (first.line.as_str(), first.body.as_slice(), first.header("x-amz-target")),
            ("POST /a HTTP/1.1", &b"abc"[..], Some("T.Op"))
        );
        let second = read_request(&mut reader).expect("a second request");
        assert_eq!((second.line.as_str(), second.body.len()), ("GET /b HTTP/1.1", 0));
        assert!(read_request(&mut reader).is_none());
    }
}
