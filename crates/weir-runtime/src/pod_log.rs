//! A container's log file, written and rotated as the kubelet writes them:
//! each line in the CRI logging format (`TIMESTAMP STREAM TAG CONTENT`, the
//! timestamp RFC 3339 with nanoseconds, the tag `F` for a full line or `P`
//! for a part of one the program had not ended yet), so `weir logs` can
//! show lines since a time and with their timestamps; rotated by size
//! (`containerLogMaxSize` 10 MiB, `containerLogMaxFiles` 5 by default):
//! `NAME` is the current file, `NAME.1` the newest rotated one, up to
//! `NAME.{files-1}`; older ones are deleted. Files are 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How much log a container keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Rotate when the current file would grow past this.
    pub max_bytes: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// The `i`th rotated file of `path` (`path.i`).
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

/// Every file a log at `path` may have (to delete them with their pod).
pub fn all_files(path: &Path, limits: LogLimits) -> Vec<PathBuf> {
    std::iter::once(path.to_owned())
        .chain((1..limits.max_files.max(1)).map(|i| rotated(path, i)))
        .collect()
}

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

/// Reading a CRI log back: lines since a time, with or without their
/// timestamps. A line in no CRI shape (a log from before weir wrote them)
/// is shown as it is, whatever `since` says.
#[derive(Debug, Default)]
pub struct CriReader {
    /// A line whose end has not been read yet.
    carry: String,
    /// Only lines at or after this.
    since: Option<SystemTime>,
    /// Show each line's timestamp before it.
    timestamps: bool,
}

impl CriReader {
    /// A reader of the lines at or after `since`, with their timestamps or not.
    pub fn new(since: Option<SystemTime>, timestamps: bool) -> Self {
        Self {
            carry: String::new(),
            since,
            timestamps,
        }
    }

    /// What `chunk` (the next bytes of the file) shows.
    pub fn read(&mut self, chunk: &str) -> String {
        self.carry.push_str(chunk);
        let Some(end) = self.carry.rfind('\n') else {
            return String::new();
        };
        let complete: String = self.carry.drain(..=end).collect();
        let mut out = String::new();
        for line in complete.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(ts), Some(_stream), Some(tag), content) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            let Ok(at) = humantime::parse_rfc3339(ts) else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            if self.since.is_some_and(|since| at < since) {
                continue;
            }
            if self.timestamps {
                out.push_str(ts);
                out.push(' ');
            }
            out.push_str(content.unwrap_or_default());
            if tag != "P" {
                out.push('\n');
            }
        }
        out
    }
}

/// A size-rotated log being written.
pub struct RotatingLog {
    path: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl RotatingLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, limits: LogLimits) -> std::io::Result<Self> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            limits,
            file,
            size,
        })
    }

    /// Appends a chunk of the container's `stream` as CRI lines stamped now.
    pub fn append(&mut self, stream: Stream, chunk: &[u8]) -> std::io::Result<()> {
        for line in cri_lines(stream, chunk, SystemTime::now()) {
            self.write(&line)?;
        }
        Ok(())
    }

    /// Appends `bytes`, rotating first if they would overflow the current
    /// file (a single write larger than the limit is cut to it).
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let bytes = &bytes[..bytes.len().min(self.limits.max_bytes as usize)];
        if self.size > 0 && self.size + bytes.len() as u64 > self.limits.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.limits.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            for i in (1..keep - 1).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_written_and_read_back_as_cri_lines() {
        use std::time::Duration;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lines = cri_lines(Stream::Stdout, b"one\ntwo\npar", t0);
        let text: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
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
        let later: String = cri_lines(
            Stream::Stdout,
            b"tial\nthree\n",
            t0 + Duration::from_secs(60),
        )
        .iter()
        .map(|l| String::from_utf8(l.clone()).unwrap())
        .collect();
        let all = format!("{}{later}", text.concat());
        // Read in pieces that cut lines anywhere: the same text.
        let mut reader = CriReader::default();
        let (a, b) = all.split_at(50);
        assert_eq!(
            format!("{}{}", reader.read(a), reader.read(b)),
            "one\ntwo\npartial\nthree\n"
        );
        let mut since = CriReader::new(Some(t0 + Duration::from_secs(30)), false);
        assert_eq!(since.read(&all), "tial\nthree\n");
        let mut stamped = CriReader::new(None, true);
        assert!(
            stamped
                .read(&all)
                .starts_with("2023-11-14T22:13:20.000000000Z one\n")
        );
        // A line from before weir wrote CRI lines is shown as it is.
        assert_eq!(
            CriReader::default().read("plain old line\n"),
            "plain old line\n"
        );
    }

    fn sizes(path: &Path, limits: LogLimits) -> Vec<Option<u64>> {
        all_files(path, limits)
            .iter()
            .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.log");
        let limits = LogLimits {
            max_bytes: 100,
            max_files: 3,
        };
        let mut log = RotatingLog::open(&path, limits).unwrap();
        for i in 0..10u8 {
            log.write(&[b'0' + i; 60]).unwrap();
        }
        // 10 writes of 60 bytes, one per file: the newest three kept.
        assert_eq!(sizes(&path, limits), vec![Some(60), Some(60), Some(60)]);
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'9'; 60]);
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), vec![b'8'; 60]);
        assert_eq!(std::fs::read(rotated(&path, 2)).unwrap(), vec![b'7'; 60]);
        assert!(!rotated(&path, 3).exists());
        // An oversized write is cut to the limit.
        log.write(&[b'x'; 1000]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
        // Reopened, it appends to what is there.
        drop(log);
        let mut log = RotatingLog::open(&path, limits).unwrap();
        log.write(b"y").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1);
        assert_eq!(std::fs::metadata(rotated(&path, 1)).unwrap().len(), 100);
    }

    #[test]
    fn one_file_only_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.log");
        let limits = LogLimits {
            max_bytes: 10,
            max_files: 1,
        };
        let mut log = RotatingLog::open(&path, limits).unwrap();
        log.write(b"0123456789").unwrap();
        log.write(b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert!(!rotated(&path, 1).exists());
    }
}
