//! How live `weir top` draws: the present as tables (traffic by version,
//! Deployments and Rollouts), the last minutes as sparklines (each
//! version's rate, share and p99; each Deployment's ready replicas and HPA
//! utilization), and the route weight changes it saw.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table};

use super::top_snapshot::Snapshot;
use super::top_story::Story;

/// A sparkline of `data` (its latest points that fit) in `area`, titled.
fn sparkline(
    frame: &mut ratatui::Frame<'_>,
    area: ratatui::layout::Rect,
    title: String,
    data: &[u64],
) {
    let width = usize::from(area.width.saturating_sub(2));
    let data = &data[data.len().saturating_sub(width)..];
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(title))
            .data(data),
        area,
    );
}

/// Draws the live view: the present as tables, the last minutes as
/// sparklines, and the weight changes.
pub fn draw(frame: &mut ratatui::Frame<'_>, story: &Story) {
    let empty = Snapshot::default();
    let s = story.current().unwrap_or(&empty);
    let versions_height = u16::try_from(s.versions.len()).unwrap_or(8).min(8) * 3;
    let deployments_height = u16::try_from(s.deployments.len()).unwrap_or(8).min(8) * 3;
    let [
        table_area,
        version_charts,
        deployment_table,
        deployment_charts,
        marks_area,
    ] = Layout::vertical([
        Constraint::Length(u16::try_from(s.versions.len()).unwrap_or(8).min(8) + 3),
        Constraint::Length(versions_height),
        Constraint::Length(u16::try_from(s.deployments.len()).unwrap_or(8).min(8) + 3),
        Constraint::Length(deployments_height),
        Constraint::Min(3),
    ])
    .areas(frame.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let versions = Table::new(
        s.versions.iter().map(|v| {
            Row::new(vec![
                Cell::from(v.version.clone()),
                Cell::from(format!("{:.1}", v.rps)),
                Cell::from(format!("{:.1}%", v.share)),
                Cell::from(v.p99_ms.map_or("-".into(), |p| format!("{p:.2} ms"))),
                Cell::from(format!("{:.2}%", v.error_rate)),
            ])
        }),
        [
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["VERSION", "REQ/S", "SHARE", "P99", "5XX"]).style(bold))
    .block(Block::bordered().title(format!(
        " traffic by version, from {} (q to quit) ",
        s.source.describe()
    )));
    frame.render_widget(versions, table_area);
    let rows = Layout::vertical(vec![Constraint::Length(3); s.versions.len().min(8)])
        .split(version_charts);
    for (v, row) in s.versions.iter().zip(rows.iter()) {
        let [rate, share, p99] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(*row);
        sparkline(
            frame,
            rate,
            format!(" {} req/s {:.1} ", v.version, v.rps),
            &story.rate(&v.version),
        );
        sparkline(
            frame,
            share,
            format!(" share {:.1}% ", v.share),
            &story.share(&v.version),
        );
        sparkline(
            frame,
            p99,
            format!(
                " p99 {} ",
                v.p99_ms.map_or("-".into(), |p| format!("{p:.2} ms"))
            ),
            &story.p99(&v.version),
        );
    }
    let deployments = Table::new(
        s.deployments.iter().map(|d| {
            Row::new(vec![
                Cell::from(d.name.clone()),
                Cell::from(format!("{}/{}", d.ready, d.desired)),
                Cell::from(match (d.cpu_utilization, d.cpu_target) {
                    (Some(u), Some(t)) => format!("cpu: {u}%/{t}%"),
                    (None, Some(t)) => format!("cpu: <unknown>/{t}%"),
                    _ => "-".into(),
                }),
                Cell::from(d.cpu_millis.map_or("-".into(), |m| format!("{m}m"))),
            ])
        }),
        [
            Constraint::Length(24),
            Constraint::Length(8),
            Constraint::Length(20),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(["DEPLOYMENT", "READY", "HPA", "CPU"]).style(bold));
    let rollout_lines: Vec<String> = s
        .rollouts
        .iter()
        .map(|r| {
            format!(
                "rollout {}: {} step {} canary {} %",
                r.name, r.phase, r.step, r.canary_weight
            )
        })
        .collect();
    let title = if rollout_lines.is_empty() {
        " deployments ".to_owned()
    } else {
        format!(" deployments — {} ", rollout_lines.join("; "))
    };
    frame.render_widget(
        deployments.block(Block::bordered().title(title)),
        deployment_table,
    );
    let rows = Layout::vertical(vec![Constraint::Length(3); s.deployments.len().min(8)])
        .split(deployment_charts);
    for (d, row) in s.deployments.iter().zip(rows.iter()) {
        let [replicas, utilization] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(*row);
        sparkline(
            frame,
            replicas,
            format!(" {} ready {} ", d.name, d.ready),
            &story.replicas(&d.name),
        );
        sparkline(
            frame,
            utilization,
            format!(
                " hpa cpu {} ",
                d.cpu_utilization
                    .map_or("<unknown>".into(), |u| format!("{u}%"))
            ),
            &story.utilization(&d.name),
        );
    }
    let marks: Vec<String> = story
        .marks()
        .map(|m| format!("{}  {}", humantime::format_rfc3339_seconds(m.at), m.what))
        .collect();
    let text = if marks.is_empty() {
        "no weight change seen yet".to_owned()
    } else {
        marks.join("\n")
    };
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" weights changed ")),
        marks_area,
    );
}
