//! One access-log line per request, in Envoy's default format, written by
//! a background thread so a slow disk or pipe never blocks a worker. When
//! the queue is full, lines are dropped rather than stall traffic. A file
//! is rotated by size as pods' logs are (10 MiB × 5 files by default), so
//! the log stays bounded however much traffic goes through.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};

use weir_rotating_file::{LogLimits, RotatingFile};

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output.
    Stdout,
    /// Appended to this file, rotated within these limits.
    File(PathBuf, LogLimits),
}

/// The rotated file, as the writer thread writes to it.
struct Rotated(RotatingFile);

impl Write for Rotated {
    /// Line by line, so a file rotates between lines, never inside one.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            self.0.write(line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
            AccessLogTarget::File(path, limits) => {
                Box::new(Rotated(RotatingFile::open(&path, limits)?))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_log_rotates_and_stays_within_its_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let limits = LogLimits {
            max_bytes: 1000,
            max_files: 3,
        };
        let log = AccessLog::start(AccessLogTarget::File(path.clone(), limits)).unwrap();
        // 500 lines of 100 bytes: 50 KB through a log that keeps 3 KB.
        for i in 0..500 {
            log.write(format!("{i:099}\n"));
        }
        let last = format!("{:099}\n", 499);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with(&last)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the last line never came"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .collect();
        assert_eq!(
            files.len(),
            3,
            "the current file and two rotated: {files:?}"
        );
        assert!(files.iter().all(|&n| n <= 1000), "{files:?}");
    }
}
