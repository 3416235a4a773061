//! What live `weir top` remembers between refreshes, so it shows the story
//! and not only the present: each version's request rate, share and p99,
//! each Deployment's ready replicas and HPA utilization, over the last
//! minutes, and marks where a route's weights changed. Pure: the command
//! pushes each snapshot with its time; the drawing reads the series.

use std::collections::VecDeque;
use std::time::SystemTime;

use super::top_snapshot::Snapshot;

/// Snapshots kept (10 minutes at the default 1 s interval).
pub const KEEP: usize = 600;
/// Weight changes kept.
pub const KEEP_MARKS: usize = 20;

/// A route's weights changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    /// When it was seen.
    pub at: SystemTime,
    /// The route and its new weights.
    pub what: String,
}

/// The snapshots so far, bounded, and the weight changes among them.
#[derive(Debug, Default)]
pub struct Story {
    points: VecDeque<Snapshot>,
    marks: VecDeque<Mark>,
}

impl Story {
    /// Adds the snapshot taken at `at`; a route whose weights differ from
    /// the previous snapshot's is marked.
    pub fn push(&mut self, at: SystemTime, snapshot: Snapshot) {
        if let Some(previous) = self.points.back() {
            for route in &snapshot.weights {
                let before = previous.weights.iter().find(|w| w.route == route.route);
                if before.is_some_and(|b| b.weights != route.weights) {
                    self.marks.push_back(Mark {
                        at,
                        what: format!("{}: {}", route.route, route.weights),
                    });
                }
            }
        }
        while self.marks.len() > KEEP_MARKS {
            self.marks.pop_front();
        }
        self.points.push_back(snapshot);
        while self.points.len() > KEEP {
            self.points.pop_front();
        }
    }

    /// The latest snapshot.
    pub fn current(&self) -> Option<&Snapshot> {
        self.points.back()
    }

    /// The weight changes, oldest first.
    pub fn marks(&self) -> impl Iterator<Item = &Mark> {
        self.marks.iter()
    }

    /// One value per snapshot (0 where it is missing), scaled to whole
    /// numbers for a sparkline.
    fn series(&self, value: impl Fn(&Snapshot) -> Option<f64>, scale: f64) -> Vec<u64> {
        self.points
            .iter()
            .map(|s| value(s).map_or(0, |v| (v * scale).round().max(0.0) as u64))
            .collect()
    }

    /// A version's request rate over time (tenths of req/s).
    pub fn rate(&self, version: &str) -> Vec<u64> {
        self.series(
            |s| {
                s.versions
                    .iter()
                    .find(|v| v.version == version)
                    .map(|v| v.rps)
            },
            10.0,
        )
    }

    /// A version's share over time (tenths of a percent).
    pub fn share(&self, version: &str) -> Vec<u64> {
        self.series(
            |s| {
                s.versions
                    .iter()
                    .find(|v| v.version == version)
                    .map(|v| v.share)
            },
            10.0,
        )
    }

    /// A version's p99 over time (hundredths of a ms).
    pub fn p99(&self, version: &str) -> Vec<u64> {
        self.series(
            |s| {
                s.versions
                    .iter()
                    .find(|v| v.version == version)
                    .and_then(|v| v.p99_ms)
            },
            100.0,
        )
    }

    /// A Deployment's ready replicas over time.
    pub fn replicas(&self, deployment: &str) -> Vec<u64> {
        self.series(
            |s| {
                s.deployments
                    .iter()
                    .find(|d| d.name == deployment)
                    .map(|d| d.ready as f64)
            },
            1.0,
        )
    }

    /// A Deployment's HPA utilization over time (percent).
    pub fn utilization(&self, deployment: &str) -> Vec<u64> {
        self.series(
            |s| {
                s.deployments
                    .iter()
                    .find(|d| d.name == deployment)
                    .and_then(|d| d.cpu_utilization)
                    .map(|u| u as f64)
            },
            1.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::top_snapshot::{DeploymentRow, RouteWeights, VersionRow};
    use std::time::Duration;

    fn snapshot(v2_rps: f64, weights: &str, v2_ready: i64) -> Snapshot {
        Snapshot {
            versions: vec![VersionRow {
                version: "v2.0.0".into(),
                rps: v2_rps,
                share: 50.0,
                p99_ms: Some(1.25),
                error_rate: 0.0,
            }],
            deployments: vec![DeploymentRow {
                name: "my-app-v2".into(),
                ready: v2_ready,
                desired: v2_ready,
                cpu_utilization: Some(80),
                cpu_target: Some(50),
                cpu_millis: Some(4),
            }],
            weights: vec![RouteWeights {
                route: "my-app http[0]".into(),
                weights: weights.into(),
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn live_top_draws_the_story() {
        use ratatui::Terminal;
        use ratatui::backend::TestBackend;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut story = Story::default();
        story.push(t0, snapshot(1.0, "v1 90, v2 10", 1));
        story.push(
            t0 + Duration::from_secs(1),
            snapshot(20.0, "v1 0, v2 100", 3),
        );
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        terminal
            .draw(|f| crate::commands::top_view::draw(f, &story))
            .unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .chunks(120)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        for text in [
            "traffic by version",
            "v2.0.0 req/s 20.0",
            "share 50.0%",
            "p99 1.25 ms",
            "my-app-v2 ready 3",
            "hpa cpu 80%",
            "weights changed",
            "1970-01-01T00:16:41Z  my-app http[0]: v1 0, v2 100",
        ] {
            assert!(screen.contains(text), "{text:?} not on screen:\n{screen}");
        }
    }

    #[test]
    fn the_story_keeps_series_and_marks_weight_changes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut story = Story::default();
        story.push(t0, snapshot(1.0, "v1 90, v2 10", 1));
        story.push(
            t0 + Duration::from_secs(1),
            snapshot(2.5, "v1 90, v2 10", 1),
        );
        story.push(
            t0 + Duration::from_secs(2),
            snapshot(10.0, "v1 0, v2 100", 3),
        );
        assert_eq!(story.rate("v2.0.0"), [10, 25, 100]);
        assert_eq!(
            story.rate("v1.0.0"),
            [0, 0, 0],
            "a version not seen reads 0"
        );
        assert_eq!(story.share("v2.0.0"), [500, 500, 500]);
        assert_eq!(story.p99("v2.0.0"), [125, 125, 125]);
        assert_eq!(story.replicas("my-app-v2"), [1, 1, 3]);
        assert_eq!(story.utilization("my-app-v2"), [80, 80, 80]);
        let marks: Vec<&Mark> = story.marks().collect();
        assert_eq!(marks.len(), 1, "the first snapshot is no change");
        assert_eq!(marks[0].what, "my-app http[0]: v1 0, v2 100");
        assert_eq!(marks[0].at, t0 + Duration::from_secs(2));
        for i in 0..KEEP + 5 {
            story.push(t0, snapshot(i as f64, &format!("v1 {i}"), 1));
        }
        assert_eq!(story.rate("v2.0.0").len(), KEEP);
        assert_eq!(story.marks().count(), KEEP_MARKS);
        assert_eq!(story.current().unwrap().versions[0].rps, (KEEP + 4) as f64);
    }
}
