//! Arbitrary bytes from a client, through a real gateway listener, to a
//! recording upstream. Each input is written on its own TCP connection to a
//! gateway running in this process (so libFuzzer sees its coverage), the
//! write side is closed, and whatever comes back is read until the gateway
//! closes. Invariants, any breach of which aborts the process:
//!
//! - nothing panics, in the gateway's tasks either (the panic hook aborts);
//! - every request that reaches the upstream is one well-formed HTTP/1.1
//!   request: it parses, carries exactly one Host, whose value the client
//!   sent (or is empty; for h2, whose HPACK may Huffman-code it, this part
//!   is not checked), no hop-by-hop framing headers beyond one
//!   `Content-Length` or `Transfer-Encoding: chunked` (never both), and a
//!   body framed as its head says (complete, or cut only by a close);
//! - every upstream answer (each carries a unique serial in its body)
//!   reaches at most one client, at most once.
#![no_main]

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_gateway::{Gateway, GatewayOptions, RouteInputs, static_endpoints};

const MARKER: &str = "upstream-answer-";

struct Harness {
    _runtime: tokio::runtime::Runtime,
    _gateway: Arc<Gateway>,
    gateway: SocketAddr,
    delivered: Mutex<HashSet<u64>>,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic: {info}");
            std::process::abort();
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (gateway, addr) = runtime.block_on(async {
            let upstream = tokio::net::TcpListener::bind("127.0.0.95:0")
                .await
                .expect("upstream binds");
            let upstream_addr = upstream.local_addr().expect("address");
            tokio::spawn(async move {
                while let Ok((stream, _)) = upstream.accept().await {
                    tokio::spawn(record(stream));
                }
            });
            let manifests = format!(
                "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec:\n  ports: [{{name: http, port: 80}}]\n  selector: {{app: app}}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: app-1}}\nspec:\n  address: {}\n  ports: {{http: {}}}\n  labels: {{app: app}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: app}}}}]\n",
                upstream_addr.ip(),
                upstream_addr.port()
            );
            let loaded = weir_api::load::load_str(Path::new("fuzz.yaml"), &manifests)
                .expect("manifests load");
            let resources: Vec<_> = loaded.resources().cloned().collect();
            let mut options = GatewayOptions::default();
            options.port_map = [(80, 0)].into();
            options.limits.header_read_timeout = Duration::from_secs(2);
            options.limits.guard.first_bytes_timeout = Duration::from_secs(2);
            let gateway = Arc::new(Gateway::new(options).expect("gateway"));
            gateway
                .set_all(
                    RouteInputs::from_resources(&resources),
                    static_endpoints::from_workload_entries(&resources),
                )
                .await
                .expect("routes apply");
            let addr = gateway.listeners().await[&80];
            (gateway, addr)
        });
        Harness {
            _runtime: runtime,
            _gateway: gateway,
            gateway: addr,
            delivered: Mutex::new(HashSet::new()),
        }
    })
}

/// The upstream: checks each request on `stream` and answers it with a serial.
async fn record(mut stream: tokio::net::TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) => {}
                Err(e) => panic!("the upstream got a malformed head ({e}): {:?}", String::from_utf8_lossy(&buf)),
            }
            if buf.len() > 256 * 1024 {
                panic!("the upstream got an endless head");
            }
            if !read_more(&mut stream, &mut buf).await {
                assert!(buf.is_empty(), "a head cut short: {:?}", String::from_utf8_lossy(&buf));
                return;
            }
        };
        let framing = {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut headers);
            let _ = req.parse(&buf[..head_len]);
            check_head(&req)
        };
        buf.drain(..head_len);
        let complete = match framing {
            Framing::None => true,
            Framing::Length(n) => {
                while (buf.len() as u64) < n {
                    if !read_more(&mut stream, &mut buf).await {
                        return;
                    }
                }
                buf.drain(..n as usize);
                true
            }
            Framing::Chunked => match read_chunked(&mut stream, &mut buf).await {
                Some(()) => true,
                None => return,
            },
        };
        if complete {
            let body = format!("{MARKER}{:012}", SERIAL.fetch_add(1, Ordering::SeqCst));
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The head's invariants; its body framing.
fn check_head(req: &httparse::Request<'_, '_>) -> Framing {
    assert_eq!(req.version, Some(1), "upstream requests are HTTP/1.1");
    let named = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let hosts: Vec<&[u8]> = named("host").map(|h| h.value).collect();
    assert_eq!(hosts.len(), 1, "exactly one Host upstream: {hosts:?}");
    let recent = RECENT_INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    // An h2 client's authority may be Huffman-coded (HPACK), so it cannot
    // be found in the input as text; for h2 only the framing is checked.
    let h2_sent = recent.iter().any(|input| contains(input, b"PRI * HTTP/2.0"));
    assert!(
        hosts[0].is_empty()
            || h2_sent
            || recent.iter().any(|input| contains(input, hosts[0])),
        "a Host the client never sent: {:?}",
        String::from_utf8_lossy(hosts[0])
    );
    for hop in ["connection", "keep-alive", "proxy-connection", "te", "upgrade", "trailer"] {
        assert!(named(hop).next().is_none(), "hop-by-hop header {hop} forwarded");
    }
    let lengths: Vec<&[u8]> = named("content-length").map(|h| h.value).collect();
    let codings: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
    assert!(lengths.is_empty() || codings.is_empty(), "both Content-Length and Transfer-Encoding");
    assert!(lengths.len() <= 1 && codings.len() <= 1, "repeated framing headers");
    if let Some(coding) = codings.first() {
        assert!(coding.eq_ignore_ascii_case(b"chunked"), "coding {coding:?}");
        return Framing::Chunked;
    }
    match lengths.first() {
        Some(v) => Framing::Length(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad content-length {v:?}")),
        ),
        None => Framing::None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads one chunked body; `None` if the connection closed first. A
/// malformed chunked body from the gateway aborts.
async fn read_chunked(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            assert!(buf.len() < 4096, "an endless chunk size line");
            if !read_more(stream, buf).await {
                return None;
            }
        };
        let line = std::str::from_utf8(&buf[..line_end]).expect("chunk size is text");
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers until an empty line.
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return Some(());
                    }
                    continue;
                }
                if !read_more(stream, buf).await {
                    return None;
                }
            }
        }
        while (buf.len() as u64) < size + 2 {
            if !read_more(stream, buf).await {
                return None;
            }
        }
        assert_eq!(&buf[size as usize..size as usize + 2], b"\r\n", "chunk data not followed by CRLF");
        buf.drain(..size as usize + 2);
    }
}

/// The last inputs, for the upstream's Host check: a request of an input
/// may still reach the upstream after its client closed, several inputs
/// later on a busy machine (a pooled connection, a slow task).
const RECENT: usize = 4096;
static RECENT_INPUTS: Mutex<VecDeque<Vec<u8>>> = Mutex::new(VecDeque::new());

fuzz_target!(|data: &[u8]| {
    let h = harness();
    {
        let mut recent = RECENT_INPUTS.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(data.to_vec());
    }
    let Ok(mut stream) = TcpStream::connect(h.gateway) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(data);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let mut delivered = h.delivered.lock().unwrap_or_else(|e| e.into_inner());
    for piece in text.split(MARKER).skip(1) {
        let Some(serial) = piece.get(..12).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        assert!(serial < SERIAL.load(Ordering::SeqCst), "an answer the upstream never gave");
        assert!(delivered.insert(serial), "upstream answer {serial} delivered twice");
    }
});
