//! The other half of a cold start: from spawning the binary to its answer to
//! the first event. The functions build their AWS clients on the first event,
//! so this is where that work shows. Each binary gets an event it can answer
//! without reaching AWS (an HTTP route that does not exist, an SQS message
//! that is not a work message), so the figure is start-up plus what the first
//! event builds, not a network round trip.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const ANSWER: &str = "POST /2018-06-01/runtime/invocation/bench-1/response";
const FAILED: &str = "POST /2018-06-01/runtime/invocation/bench-1/error";

/// An API Gateway HTTP API (v2) request for a route no function has.
const HTTP_EVENT: &str = r#"{"version":"2.0","routeKey":"$default","rawPath":"/bench/no-such-route","rawQueryString":"","headers":{"host":"bench.example.com"},"requestContext":{"accountId":"123456789012","apiId":"bench","domainName":"bench.example.com","domainPrefix":"bench","http":{"method":"GET","path":"/bench/no-such-route","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"startup-bench"},"requestId":"bench-1","routeKey":"$default","stage":"$default","time":"01/Jan/2026:00:00:00 +0000","timeEpoch":1767225600000},"isBase64Encoded":false}"#;
/// An SQS batch whose one message is not a work message: the worker drops it.
const SQS_EVENT: &str = r#"{"Records":[{"messageId":"bench-1","receiptHandle":"bench","body":"not a work message","attributes":{},"messageAttributes":{},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:work","awsRegion":"us-east-1"}]}"#;

/// The event for a binary, by its file name: `hello…`, `worker…`, or an HTTP function.
pub fn event_for(name: &str) -> &'static str {
    if name.starts_with("hello") {
        "{}"
    } else if name.starts_with("worker") {
        SQS_EVENT
    } else {
        HTTP_EVENT
    }
}

/// A fake Runtime API that hands over one event and reports every request line.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    lines: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    pub fn start(event: &'static str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, lines) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let given = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                let (tx, given) = (tx.clone(), Arc::clone(&given));
                std::thread::spawn(move || serve(stream, event, &tx, &given));
            }
        });
        Ok(Self { addr, lines, stop })
    }

    /// Waits for the answer to the event; `Err` names what came instead.
    pub fn wait_for_answer(&self, started: Instant, timeout: Duration) -> Result<Duration, String> {
        loop {
            let left = timeout.checked_sub(started.elapsed()).ok_or("no answer to the first event in time")?;
            let line = self.lines.recv_timeout(left).map_err(|_| "no answer to the first event in time".to_string())?;
            if line.starts_with(ANSWER) {
                return Ok(started.elapsed());
            }
            if line.starts_with(FAILED) {
                return Err("the first event failed".into());
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection: the first `next` gets the event, answers get 202,
/// a later `next` is left waiting (the process is killed then).
fn serve(stream: TcpStream, event: &str, tx: &mpsc::Sender<String>, given: &AtomicBool) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = bench_support::read_request(&mut reader) else { return };
        let line = request.line;
        let is_next = line.starts_with(crate::NEXT_EVENT);
        let _ = tx.send(line);
        if is_next {
            if given.swap(true, Ordering::SeqCst) {
                return;
            }
            let head = bench_support::next_event_head("bench-1", event.len());
            let _ = writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(event.as_bytes()));
        } else {
            let _ = writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        }
    }
}
