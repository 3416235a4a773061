//! One access-log line per request, in Envoy's default format, written by
//! a background thread so a slow disk or pipe never blocks a worker. When
//! the queue is full, lines are dropped rather than stall traffic.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// A handle that queues lines for the writer thread.
pub struct AccessLog {
    tx: SyncSender<String>,
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn start(target: AccessLogTarget) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(16 * 1024);
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                while let Ok(line) = rx.recv() {
                    buf.extend_from_slice(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.as_bytes());
                        if buf.len() > 60 * 1024 {
                            break;
                        }
                    }
                    if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                    buf.clear();
                }
            })?;
        Ok(Self { tx })
    }

    /// Queues one line (with its newline); a full queue drops it.
    pub fn write(&self, line: String) {
        let _ = self.tx.try_send(line);
    }
}
