//! A fake Lambda Runtime API that hands over a list of events in turn and
//! notes when each answer arrives (and when each event was handed over).

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const NEXT: &str = "GET /2018-06-01/runtime/invocation/next";

/// What the runtime API saw.
pub enum Seen {
    /// Event `index` was written to the function.
    Handed {
        index: usize,
        at: Instant,
    },
    /// The answer to event `index`, with its body (the function's response).
    Answered {
        index: usize,
        at: Instant,
        body: String,
    },
    Failed {
        index: usize,
        body: String,
    },
}

pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    seen: mpsc::Receiver<Seen>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    pub fn start(events: Vec<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, seen) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let events = Arc::new(events);
        let next = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                let (tx, events, next) = (tx.clone(), Arc::clone(&events), Arc::clone(&next));
                std::thread::spawn(move || serve(stream, &events, &next, &tx));
            }
        });
        Ok(Self { addr, seen, stop })
    }

    /// Waits for the answer to event `index`: when it was handed over, when
    /// it was answered and the answer; `Err` says what came instead.
    pub fn wait_for_answer(&self, index: usize, deadline: Instant) -> Result<Answer, String> {
        let mut handed = None;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or(Duration::ZERO);
            match self.seen.recv_timeout(left) {
                Ok(Seen::Handed { index: i, at }) if i == index => handed = Some(at),
                Ok(Seen::Answered { index: i, at, body }) if i == index => {
                    let handed = handed.ok_or_else(|| format!("event {} answered before it was handed over", i + 1))?;
                    return Ok(Answer { handed, answered: at, body });
                }
                Ok(Seen::Failed { index: i, body }) if i == index => return Err(format!("event {} failed: {body}", i + 1)),
                Ok(_) => {}
                Err(_) => return Err(format!("no answer to event {} in time", index + 1)),
            }
        }
    }
}

pub struct Answer {
    pub handed: Instant,
    pub answered: Instant,
    pub body: String,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn request_id(index: usize) -> String {
    format!("bench-{}", index + 1)
}

/// Serves one connection: each `next` gets the next event (none left: left
/// waiting, the process is killed then), answers and errors get 202.
fn serve(stream: TcpStream, events: &[String], next: &AtomicUsize, tx: &mpsc::Sender<Seen>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = bench_support::read_request(&mut reader) else { return };
        let at = Instant::now();
        let line = request.line.as_str();
        if line.starts_with(NEXT) {
            let index = next.fetch_add(1, Ordering::SeqCst);
            let Some(event) = events.get(index) else { return };
            let head = bench_support::next_event_head(&request_id(index), event.len());
            // Noted before the write, so that it is in the channel before any answer.
            let _ = tx.send(Seen::Handed { index, at: Instant::now() });
            let _ = writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(event.as_bytes()));
            continue;
        }
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let index = (0..events.len()).find(|&i| line.contains(&format!("/invocation/{}/", request_id(i))));
        // Noted before the 202, which lets the function ask for the next event.
        match index {
            Some(index) if line.ends_with("/response HTTP/1.1") => {
                let _ = tx.send(Seen::Answered { index, at, body });
            }
            Some(index) => {
                let _ = tx.send(Seen::Failed { index, body });
            }
            None => {}
        }
        let _ = writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
    }
}
