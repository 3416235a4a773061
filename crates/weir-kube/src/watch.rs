//! `get -w` on a cluster: kube's watcher (backoff, relist after 410 Gone or
//! a dropped connection, an idle timeout past the server's watch timeout)
//! turned into the changes a user sees. A relist replaces what was known,
//! so an object deleted while the watch was reconnecting is reported
//! deleted, and objects that did not change are not reported again.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

/// One change to report.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Created or changed.
    Applied(DynamicObject),
    /// Deleted.
    Deleted(DynamicObject),
}

/// What the user has been shown, by object name: the state that turns a
/// relist into deletions and changes.
#[derive(Debug, Default)]
pub struct Seen {
    known: BTreeMap<String, DynamicObject>,
    relisting: Option<BTreeMap<String, DynamicObject>>,
}

fn name(o: &DynamicObject) -> String {
    o.metadata.name.clone().unwrap_or_default()
}

fn version(o: &DynamicObject) -> Option<&str> {
    o.metadata.resource_version.as_deref()
}

impl Seen {
    /// Starts from objects already shown (the listing `get -w` prints first).
    pub fn of(objects: impl IntoIterator<Item = DynamicObject>) -> Self {
        Self {
            known: objects.into_iter().map(|o| (name(&o), o)).collect(),
            relisting: None,
        }
    }

    /// The changes one watcher event reports.
    pub fn step(&mut self, event: Event<DynamicObject>) -> Vec<Change> {
        match event {
            Event::Apply(o) => {
                self.known.insert(name(&o), o.clone());
                vec![Change::Applied(o)]
            }
            Event::Delete(o) => {
                self.known.remove(&name(&o));
                vec![Change::Deleted(o)]
            }
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                let changed = self
                    .known
                    .get(&name(&o))
                    .is_none_or(|before| version(before) != version(&o));
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name(&o), o.clone());
                if changed {
                    vec![Change::Applied(o)]
                } else {
                    Vec::new()
                }
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let gone: Vec<Change> = self
                    .known
                    .iter()
                    .filter(|(name, _)| !listed.contains_key(*name))
                    .map(|(_, o)| Change::Deleted(o.clone()))
                    .collect();
                self.known = listed;
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, version: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "resourceVersion": version}
        }))
        .unwrap()
    }

    fn shown(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Applied(o) => format!("applied {}@{}", name(o), version(o).unwrap_or("")),
                Change::Deleted(o) => format!("deleted {}", name(o)),
            })
            .collect()
    }

    #[test]
    fn a_relist_reports_what_changed_while_the_watch_was_away() {
        let mut seen = Seen::of([pod("a", "1"), pod("b", "1"), pod("c", "1")]);
        let steps: Vec<(Event<DynamicObject>, Vec<&str>)> = vec![
            (Event::Apply(pod("d", "2")), vec!["applied d@2"]),
            (Event::Delete(pod("c", "3")), vec!["deleted c"]),
            // The connection drops; the watcher relists: a is unchanged, b
            // changed, d was deleted meanwhile, e is new.
            (Event::Init, vec![]),
            (Event::InitApply(pod("a", "1")), vec![]),
            (Event::InitApply(pod("b", "5")), vec!["applied b@5"]),
            (Event::InitApply(pod("e", "6")), vec!["applied e@6"]),
            (Event::InitDone, vec!["deleted d"]),
            // Watching again from the relist.
            (Event::Apply(pod("a", "7")), vec!["applied a@7"]),
            (Event::Init, vec![]),
            (Event::InitDone, vec!["deleted a", "deleted b", "deleted e"]),
        ];
        for (i, (event, expected)) in steps.into_iter().enumerate() {
            assert_eq!(shown(&seen.step(event)), expected, "step {i}");
        }
    }
}
