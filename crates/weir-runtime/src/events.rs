//! Events, as Kubernetes' controllers and kubelet record them for `kubectl
//! describe`: what happened to an object (Scheduled, Started, Killing,
//! BackOff, ScalingReplicaSet, SuccessfulRescale, …), by whom, when first
//! and last, how many times. A repeat of an object's latest event (same
//! reason and message) counts up instead of adding a line, as the kubelet's
//! event aggregation does. Kept in memory, bounded in number; an object's
//! events go with it.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;
use weir_api::resource::ObjectRef;

/// Events kept at most (the oldest go first), over all objects.
pub const MAX_EVENTS: usize = 1000;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Something that went as it should.
    Normal,
    /// Something that did not.
    Warning,
}

/// One event about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What it is about.
    pub object: ObjectRef,
    /// Normal or Warning.
    pub kind: EventType,
    /// A CamelCase word (`Started`).
    pub reason: String,
    /// What happened, in a sentence.
    pub message: String,
    /// Who saw it (`kubelet`, `deployment-controller`, …).
    pub source: &'static str,
    /// When it first happened.
    pub first: SystemTime,
    /// When it last happened.
    pub last: SystemTime,
    /// How many times.
    pub count: u32,
}

impl Event {
    /// As the Kubernetes API shows an event (`core/v1` Event).
    pub fn to_json(&self) -> serde_json::Value {
        let ts = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            "type": self.kind,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "firstTimestamp": ts(self.first),
            "lastTimestamp": ts(self.last),
            "source": {"component": self.source},
            "involvedObject": {
                "kind": self.object.kind.name(),
                "namespace": self.object.namespace,
                "name": self.object.name,
            },
        })
    }
}

/// The runtime's events.
#[derive(Debug, Default)]
pub struct EventLog {
    events: VecDeque<Event>,
}

/// What an event says, before it is recorded.
pub struct Happened<'a> {
    /// Normal or Warning.
    pub kind: EventType,
    /// The reason.
    pub reason: &'a str,
    /// The message.
    pub message: String,
    /// Who saw it.
    pub source: &'static str,
}

impl EventLog {
    /// Records that `what` happened to `object` at `now`.
    pub fn record(&mut self, object: &ObjectRef, what: Happened<'_>, now: SystemTime) {
        let latest = self.events.iter_mut().rev().find(|e| e.object == *object);
        if let Some(e) = latest
            && e.reason == what.reason
            && e.message == what.message
        {
            e.count = e.count.saturating_add(1);
            e.last = now;
            return;
        }
        self.events.push_back(Event {
            object: object.clone(),
            kind: what.kind,
            reason: what.reason.to_owned(),
            message: what.message,
            source: what.source,
            first: now,
            last: now,
            count: 1,
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// An object's events, oldest first.
    pub fn of(&self, object: &ObjectRef) -> Vec<&Event> {
        self.events.iter().filter(|e| e.object == *object).collect()
    }

    /// Drops an object's events (it was deleted).
    pub fn forget(&mut self, object: &ObjectRef) {
        self.events.retain(|e| e.object != *object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weir_api::resource::Kind;

    fn pod(name: &str) -> ObjectRef {
        ObjectRef {
            kind: Kind::Pod,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn started() -> Happened<'static> {
        Happened {
            kind: EventType::Normal,
            reason: "Started",
            message: "Started container my-app".into(),
            source: "kubelet",
        }
    }

    #[test]
    fn repeats_count_up_other_events_add_lines_and_the_log_is_bounded() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut log = EventLog::default();
        log.record(&pod("a"), started(), t0);
        log.record(&pod("b"), started(), t0);
        log.record(&pod("a"), started(), t0 + Duration::from_secs(5));
        let a = log.of(&pod("a"));
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].count, a[0].first, a[0].last),
            (2, t0, t0 + Duration::from_secs(5))
        );
        log.record(
            &pod("a"),
            Happened {
                kind: EventType::Warning,
                reason: "BackOff",
                message: "Back-off restarting failed container my-app".into(),
                source: "kubelet",
            },
            t0,
        );
        log.record(&pod("a"), started(), t0);
        let reasons: Vec<&str> = log
            .of(&pod("a"))
            .into_iter()
            .map(|e| e.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            ["Started", "BackOff", "Started"],
            "only the latest aggregates"
        );
        log.forget(&pod("a"));
        assert_eq!(log.of(&pod("a")).len(), 0);
        assert_eq!(log.of(&pod("b")).len(), 1);
        for i in 0..MAX_EVENTS + 10 {
            log.record(&pod(&format!("p{i}")), started(), t0);
        }
        assert_eq!(log.events.len(), MAX_EVENTS);
        assert_eq!(log.of(&pod("b")).len(), 0, "the oldest went first");
        let json = log.of(&pod("p1009"))[0].to_json();
        assert_eq!(json["involvedObject"]["name"], "p1009");
        assert_eq!(json["type"], "Normal");
        assert_eq!(json["source"]["component"], "kubelet");
    }
}
