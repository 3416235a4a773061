//! Hostile clients against a real gateway, bounded and measured: slowloris
//! (heads trickled a byte at a time), h2 rapid reset (streams opened and
//! reset at once, CVE-2023-44487) and a CONTINUATION flood (a header block
//! that never ends). Each asserts how fast the gateway cut the attacker off,
//! how much got through, and that ordinary requests kept being served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::time::Instant;
use weir_gateway::{ConnectionLimits, GatewayOptions};

/// An h2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A GET / for authority `x` in HPACK, from the static table only:
/// :method GET, :scheme http, :path /, :authority (literal, not indexed) "x".
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'x'];

fn h2_connection(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    s
}

/// Reads frames until the connection ends; whether a GOAWAY came.
fn read_until_closed(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= buf.len() {
        let len = ((buf[at] as usize) << 16) | ((buf[at + 1] as usize) << 8) | buf[at + 2] as usize;
        goaway |= buf[at + 3] == GOAWAY;
        at += 9 + len;
    }
    goaway
}

/// Ordinary requests answered while an attack runs: `n` GETs, each bounded.
async fn ordinary(url: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let fetched = tokio::time::timeout(Duration::from_secs(2), get(url, &[])).await;
        if matches!(fetched, Ok((status, _, _)) if status == 200) {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_at_the_header_deadline_and_others_are_served() {
    let v1 = App::start("127.0.0.55", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let options = GatewayOptions {
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (_gw, url) = gateway_with(&[GATEWAY, &split(100, 0), SUBSETS, &apps], options).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let cut = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let attackers: Vec<_> = (0..200)
        .map(|_| {
            let (addr, cut) = (addr.clone(), cut.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                // A byte every 100 ms, for at most 10 s.
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.write_all(b"a").is_err() {
                        break;
                    }
                    let mut probe = [0u8; 1];
                    s.set_nonblocking(true).unwrap();
                    let closed = matches!(s.read(&mut probe), Ok(0));
                    s.set_nonblocking(false).unwrap();
                    if closed {
                        break;
                    }
                }
                let lasted = started.elapsed();
                cut.fetch_add(1, Ordering::SeqCst);
                lasted
            })
        })
        .collect();
    let served = ordinary(&format!("{url}/"), 30).await;
    let lasted: Vec<Duration> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let longest = lasted.iter().max().copied().unwrap_or_default();
    assert_eq!(cut.load(Ordering::SeqCst), 200);
    assert!(
        longest < Duration::from_secs(5),
        "a slow head lasted {longest:?}"
    );
    assert_eq!(served, 30, "ordinary requests during the attack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off_with_goaway_and_reaches_the_upstream_boundedly() {
    let v1 = App::start("127.0.0.56", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let (_gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &apps]).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let before = v1.served().await;
    let started = Instant::now();
    let (sent, goaway) = tokio::task::spawn_blocking(move || {
        let mut s = h2_connection(&addr);
        let mut sent = 0;
        for i in 0..10_000u32 {
            let stream = 1 + 2 * i;
            let mut burst = frame(HEADERS, END_HEADERS | END_STREAM, stream, GET_BLOCK);
            burst.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            if s.write_all(&burst).is_err() {
                break;
            }
            sent += 1;
        }
        (sent, read_until_closed(&mut s))
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    // Ordinary requests after it: once they are answered, whatever of the
    // attack the gateway forwarded has reached the upstream before them.
    assert_eq!(ordinary(&format!("{url}/"), 20).await, 20);
    let reached = v1.served().await - before - 20.0;
    eprintln!(
        "rapid reset: {sent} streams written, GOAWAY {goaway}, {reached} reached the upstream, {elapsed:?}"
    );
    assert!(goaway, "the gateway answers with GOAWAY");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(reached < 200.0, "{reached} requests reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_continuation_block_is_cut_off_within_the_header_cap() {
    let v1 = App::start("127.0.0.57", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let (_gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &apps]).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let (written, goaway) = tokio::task::spawn_blocking(move || {
        let mut s = h2_connection(&addr);
        // HEADERS without END_HEADERS, then CONTINUATION frames of literal
        // headers (never indexed) with no end, up to 64 MiB.
        s.write_all(&frame(HEADERS, 0, 1, GET_BLOCK)).unwrap();
        let mut field = vec![0x10, 0x05];
        field.extend_from_slice(b"x-pad");
        // Value length 1000 as an HPACK integer: 127 in the 7-bit prefix,
        // then 873 in 7-bit groups, low group first.
        field.extend_from_slice(&[0x7f, 0x80 | (873 & 0x7f) as u8, (873 >> 7) as u8]);
        field.extend(std::iter::repeat_n(b'a', 1000));
        let mut block = Vec::new();
        while block.len() + field.len() <= 16 * 1024 {
            block.extend_from_slice(&field);
        }
        let chunk = frame(CONTINUATION, 0, 1, &block);
        let mut written = 0usize;
        while written < 64 * 1024 * 1024 {
            if s.write_all(&chunk).is_err() {
                break;
            }
            written += chunk.len();
        }
        (written, read_until_closed(&mut s))
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "CONTINUATION flood: {written} bytes written before the cut, GOAWAY {goaway}, {elapsed:?}"
    );
    assert!(written < 8 * 1024 * 1024, "{written} bytes accepted");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(ordinary(&format!("{url}/"), 20).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_keeps_the_gateways_connection_deadlines() {
    let limits = weir_gateway::ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        guard: weir_gateway::conn_guard::GuardLimits {
            first_bytes_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(2),
        },
        ..weir_gateway::ConnectionLimits::default()
    };
    let (gw, _) = gateway(&[GATEWAY]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(weir_gateway::metrics_server::serve(listener, gw, limits));
    // Silent, and a head trickled a byte at a time: both cut off.
    let silent = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let started = Instant::now();
            let _ = s.read(&mut [0u8; 64]);
            started.elapsed()
        }
    });
    let trickled = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let started = Instant::now();
            for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
                if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            started.elapsed()
        }
    });
    let silent = silent.join().unwrap();
    let trickled = trickled.join().unwrap();
    assert!(
        silent < Duration::from_secs(3),
        "a silent connection held {silent:?}"
    );
    assert!(
        trickled < Duration::from_secs(3),
        "a trickled head held {trickled:?}"
    );
    // The page itself is still served.
    let (status, _, body) = get(&format!("http://{addr}/metrics"), &[]).await;
    assert_eq!(status, http::StatusCode::OK);
    assert!(body.contains("# EOF"), "{body}");
}
