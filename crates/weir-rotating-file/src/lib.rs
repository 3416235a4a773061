//! A file written by appending and rotated by size, as the kubelet
//! rotates container logs (`containerLogMaxSize` 10 MiB,
//! `containerLogMaxFiles` 5 by default): `NAME` is the current file,
//! `NAME.1` the newest rotated one, up to `NAME.{files-1}`; older ones are
//! deleted. Files are 0600. Pods' logs and the gateway's access log are
//! both kept so: every log weir writes is bounded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How much a rotated file keeps.
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

/// A size-rotated file being written.
pub struct RotatingFile {
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

impl RotatingFile {
    /// Opens (appending to) the file at `path`.
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

    /// Appends `bytes`, rotating first if they would overflow the current
    /// file (a single write larger than the limit is cut to it).
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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
        let mut log = RotatingFile::open(&path, limits).unwrap();
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
        let mut log = RotatingFile::open(&path, limits).unwrap();
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
        let mut log = RotatingFile::open(&path, limits).unwrap();
        log.write(b"0123456789").unwrap();
        log.write(b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert!(!rotated(&path, 1).exists());
    }
}
