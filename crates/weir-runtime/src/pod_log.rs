//! A container's log file read back: the supervisor writes CRI lines
//! ([`weir_supervisor::cri_log`]) to a size-rotated file, so `weir logs`
//! can show lines since a time and with their timestamps.

use std::time::SystemTime;

pub use weir_rotating_file::{LogLimits, all_files, rotated};

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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_supervisor::cri_log::{Stream, cri_lines};

    #[test]
    fn what_the_supervisor_writes_is_read_back() {
        use std::time::Duration;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text: Vec<String> = cri_lines(Stream::Stdout, b"one\ntwo\npar", t0)
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
            .collect();
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
}
