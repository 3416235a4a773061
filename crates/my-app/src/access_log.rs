//! JSON log lines on stdout in the shape the Go app's zerolog logger writes:
//! `{"level":"info","version":"v1.0.0","host":"...","status":200,"size":40,
//! "duration_ms":0.05,"time":"2026-11-28T04:00:00Z","message":"request"}`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

/// One request, as `hlog.AccessHandler` reports it.
pub struct AccessRecord<'a> {
    /// The request's Host header.
    pub host: &'a str,
    /// The response status.
    pub status: u16,
    /// The response body's size in bytes.
    pub size: u64,
    /// Time from the request's arrival to its answer.
    pub duration: Duration,
}

/// Writes log lines carrying the app's `version`.
#[derive(Clone)]
pub struct Logger {
    version: Arc<str>,
}

impl Logger {
    /// A logger whose lines carry `version`.
    pub fn new(version: String) -> Self {
        Self {
            version: version.into(),
        }
    }

    /// An informational line with just a message.
    pub fn info(&self, message: &str) {
        self.write("info", Map::new(), message);
    }

    /// The access-log line of one request.
    pub fn access(&self, record: &AccessRecord<'_>) {
        let mut fields = Map::new();
        fields.insert("host".into(), json!(record.host));
        fields.insert("status".into(), json!(record.status));
        fields.insert("size".into(), json!(record.size));
        fields.insert(
            "duration_ms".into(),
            json!(record.duration.as_secs_f64() * 1000.0),
        );
        self.write("info", fields, "request");
    }

    fn write(&self, level: &str, fields: Map<String, Value>, message: &str) {
        let mut line = Map::new();
        line.insert("level".into(), json!(level));
        line.insert("version".into(), json!(&*self.version));
        line.extend(fields);
        line.insert(
            "time".into(),
            json!(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        );
        line.insert("message".into(), json!(message));
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A closed stdout must not take the server down; the line is lost.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

/// A fatal error, logged before the process exits non-zero.
pub fn fatal(message: &str) {
    let line = json!({
        "level": "fatal",
        "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "message": message,
    });
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
