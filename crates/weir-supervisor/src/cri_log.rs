//! A container's output as the kubelet logs it: each line in the CRI
//! logging format (`TIMESTAMP STREAM TAG CONTENT`, the timestamp RFC 3339
//! with nanoseconds, the tag `F` for a full line or `P` for a part of one
//! the program had not ended yet), in a size-rotated file
//! ([`weir_rotating_file`]: 10 MiB × 5 files by default, 0600). The
//! runtime reads these files back (`weir logs`).

use std::path::Path;
use std::time::SystemTime;

use weir_rotating_file::{LogLimits, RotatingFile};

/// Which of the container's outputs a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error (and the supervisor's own notes).
    Stderr,
}

/// A chunk of a container's output as CRI log lines at `now`: every line it
/// ends is one `F` line; what follows the last newline, a `P` line.
pub fn cri_lines(stream: Stream, chunk: &[u8], now: SystemTime) -> Vec<Vec<u8>> {
    let ts = humantime::format_rfc3339_nanos(now).to_string();
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let mut lines = Vec::new();
    let mut rest = chunk;
    while !rest.is_empty() {
        let (content, tag, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], "F", &rest[i + 1..]),
            None => (rest, "P", &rest[rest.len()..]),
        };
        let mut line = format!("{ts} {stream} {tag} ").into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        lines.push(line);
        rest = next;
    }
    lines
}

/// A container's log being written: CRI lines in a size-rotated file.
pub struct RotatingLog(RotatingFile);

impl RotatingLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, limits: LogLimits) -> std::io::Result<Self> {
        RotatingFile::open(path, limits).map(Self)
    }

    /// Appends a chunk of the container's `stream` as CRI lines stamped now.
    pub fn append(&mut self, stream: Stream, chunk: &[u8]) -> std::io::Result<()> {
        for line in cri_lines(stream, chunk, SystemTime::now()) {
            self.0.write(&line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_becomes_cri_lines() {
        use std::time::Duration;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text: Vec<String> = cri_lines(Stream::Stdout, b"one\ntwo\npar", t0)
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(
            text,
            [
                "2023-11-14T22:13:20.000000000Z stdout F one\n",
                "2023-11-14T22:13:20.000000000Z stdout F two\n",
                "2023-11-14T22:13:20.000000000Z stdout P par\n",
            ]
        );
        assert_eq!(
            String::from_utf8(cri_lines(Stream::Stderr, b"\n", t0).concat()).unwrap(),
            "2023-11-14T22:13:20.000000000Z stderr F \n"
        );
        assert!(cri_lines(Stream::Stdout, b"", t0).is_empty());
    }

    #[test]
    fn a_log_is_appended_to_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let mut log = RotatingLog::open(&path, LogLimits::default()).unwrap();
        log.append(Stream::Stdout, b"hello\n").unwrap();
        log.append(Stream::Stderr, b"oops\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(" stdout F hello\n"), "{text}");
        assert!(text.contains(" stderr F oops\n"), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
