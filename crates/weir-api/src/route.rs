//! Changing the weights of one http rule of a VirtualService: which rule a
//! [`RuleSelector`] names, which destinations the new weights name, and
//! whether the result is servable. Both backends use it, so `weir route`
//! accepts and refuses the same changes on a laptop and on a cluster.

use serde::{Deserialize, Serialize};

use crate::istio::{
    Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, Percent, VirtualServiceSpec,
};

/// Which http rule of a VirtualService `set_route_weights` changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleSelector {
    /// The only rule, or the first one that has weighted destinations.
    Default,
    /// The rule with this `name`.
    Named(String),
    /// The rule at this index of `spec.http`.
    Index(usize),
}

/// A weight change computed for one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightChange {
    /// The rule's index in `spec.http`.
    pub rule_index: usize,
    /// `(destination, weight)` before, in the rule's order.
    pub before: Vec<(String, u32)>,
    /// `(destination, weight)` after, in the rule's order.
    pub after: Vec<(String, u32)>,
}

/// How a destination is named on the command line: its subset, or its host
/// when it has none.
pub fn destination_label(d: &HttpRouteDestination) -> String {
    d.destination
        .subset
        .clone()
        .unwrap_or_else(|| d.destination.host.clone())
}

/// The index of the rule `rule` selects in `spec` (by default the first
/// with several destinations); the error says why there is none.
pub fn selected_rule(spec: &VirtualServiceSpec, rule: &RuleSelector) -> Result<usize, String> {
    Ok(match rule {
        RuleSelector::Index(i) => *i,
        RuleSelector::Named(n) => spec
            .http
            .iter()
            .position(|r| r.name.as_deref() == Some(n))
            .ok_or_else(|| format!("no http rule named {n:?}"))?,
        RuleSelector::Default => spec
            .http
            .iter()
            .position(|r| r.route.as_ref().is_some_and(|d| d.len() > 1))
            .unwrap_or(0),
    })
}

/// Sets the weights of the selected rule in `spec`; the error says, in one
/// sentence, why the change cannot be made (nothing is changed then).
pub fn reweigh(
    spec: &mut VirtualServiceSpec,
    rule: &RuleSelector,
    weights: &[(String, u32)],
) -> Result<WeightChange, String> {
    let index = selected_rule(spec, rule)?;
    let rules = spec.http.len();
    let Some(http) = spec.http.get_mut(index) else {
        return Err(format!(
            "no http rule at index {index} (the VirtualService has {rules})"
        ));
    };
    let mut destinations = http.route.clone().unwrap_or_default();
    let weight_of = |d: &HttpRouteDestination| d.weight.unwrap_or(0).max(0) as u32;
    let before: Vec<(String, u32)> = destinations
        .iter()
        .map(|d| (destination_label(d), weight_of(d)))
        .collect();
    for (subset, _) in weights {
        if !destinations.iter().any(|d| destination_label(d) == *subset) {
            let known: Vec<String> = destinations.iter().map(destination_label).collect();
            return Err(format!(
                "http[{index}] has no destination {subset:?} (it has {})",
                known.join(", ")
            ));
        }
    }
    for d in destinations.iter_mut() {
        if let Some((_, w)) = weights.iter().find(|(s, _)| *s == destination_label(d)) {
            d.weight = Some(i64::from(*w));
        }
    }
    if destinations.len() > 1 && destinations.iter().all(|d| d.weight.unwrap_or(0) == 0) {
        return Err(format!("http[{index}]: total destination weight = 0"));
    }
    let after = destinations
        .iter()
        .map(|d| (destination_label(d), weight_of(d)))
        .collect();
    http.route = Some(destinations);
    Ok(WeightChange {
        rule_index: index,
        before,
        after,
    })
}

/// A change a Rollout makes to its VirtualService besides weights.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteEdit {
    /// The rule `name`, routing requests that match to the canary, right
    /// before rule `before` (the one the Rollout drives); `None` removes it.
    HeaderRoute {
        /// The rule's name.
        name: String,
        /// The index it goes before.
        before: usize,
        /// The canary.
        canary: Destination,
        /// What it matches; `None`: no such rule.
        matches: Option<Vec<HttpMatchRequest>>,
    },
    /// Rule `rule` copies `percent` of its requests to the canary (0: none).
    Mirror {
        /// The rule's index.
        rule: usize,
        /// The canary.
        canary: Destination,
        /// Percent copied.
        percent: u32,
    },
}

/// Applies `edit` to `spec`; the error says why it cannot (nothing is
/// changed then).
pub fn edit_routes(spec: &mut VirtualServiceSpec, edit: &RouteEdit) -> Result<(), String> {
    match edit {
        RouteEdit::HeaderRoute {
            name,
            before,
            canary,
            matches,
        } => {
            let mut before = *before;
            if before > spec.http.len() {
                return Err(format!("no http rule {before}"));
            }
            if let Some(i) = spec
                .http
                .iter()
                .position(|r| r.name.as_deref() == Some(name))
            {
                spec.http.remove(i);
                if i < before {
                    before -= 1;
                }
            }
            if let Some(matches) = matches.as_ref().filter(|m| !m.is_empty()) {
                spec.http.insert(
                    before,
                    HttpRoute {
                        name: Some(name.clone()),
                        matches: Some(matches.clone()),
                        route: Some(vec![HttpRouteDestination {
                            destination: canary.clone(),
                            weight: Some(100),
                            headers: None,
                        }]),
                        ..HttpRoute::default()
                    },
                );
            }
        }
        RouteEdit::Mirror {
            rule,
            canary,
            percent,
        } => {
            let http = spec
                .http
                .get_mut(*rule)
                .ok_or_else(|| format!("no http rule {rule}"))?;
            if *percent == 0 {
                http.mirror = None;
                http.mirror_percentage = None;
            } else {
                http.mirror = Some(canary.clone());
                http.mirror_percentage = Some(Percent {
                    value: f64::from(*percent),
                });
            }
            http.mirror_percent = None;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VirtualServiceSpec {
        serde_json::from_value(serde_json::json!({
            "hosts": ["*"],
            "http": [
                {"name": "canary", "route": [
                    {"destination": {"host": "my-app", "subset": "v1"}, "weight": 90},
                    {"destination": {"host": "my-app", "subset": "v2"}, "weight": 10}
                ]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn changes_only_the_named_weights() {
        let mut s = spec();
        let change = reweigh(
            &mut s,
            &RuleSelector::Default,
            &[("v2".into(), 100), ("v1".into(), 0)],
        )
        .unwrap();
        assert_eq!(change.rule_index, 0);
        assert_eq!(change.before, vec![("v1".into(), 90), ("v2".into(), 10)]);
        assert_eq!(change.after, vec![("v1".into(), 0), ("v2".into(), 100)]);
        let route = s.http[0].route.as_ref().unwrap();
        assert_eq!((route[0].weight, route[1].weight), (Some(0), Some(100)));
    }

    #[test]
    fn refuses_unknown_rules_destinations_and_all_zero() {
        let zero = [("v1".into(), 0), ("v2".into(), 0)];
        for (rule, weights, wanted) in [
            (
                RuleSelector::Named("x".into()),
                &[("v1".to_owned(), 1)][..],
                "no http rule named \"x\"",
            ),
            (
                RuleSelector::Index(3),
                &[("v1".to_owned(), 1)][..],
                "no http rule at index 3 (the VirtualService has 1)",
            ),
            (
                RuleSelector::Default,
                &[("v3".to_owned(), 1)][..],
                "http[0] has no destination \"v3\" (it has v1, v2)",
            ),
            (
                RuleSelector::Named("canary".into()),
                &zero[..],
                "http[0]: total destination weight = 0",
            ),
        ] {
            let mut s = spec();
            assert_eq!(reweigh(&mut s, &rule, weights).unwrap_err(), wanted);
            assert_eq!(s, spec(), "a refused change leaves the spec as it was");
        }
    }

    #[test]
    fn a_header_route_goes_before_the_driven_rule_and_a_mirror_onto_it() {
        let canary = Destination {
            host: "my-app".into(),
            subset: Some("v2".into()),
            port: None,
        };
        let rule = |name: &str| HttpRoute {
            name: Some(name.into()),
            ..HttpRoute::default()
        };
        let names = |spec: &VirtualServiceSpec| -> Vec<String> {
            spec.http
                .iter()
                .map(|r| r.name.clone().unwrap_or_default())
                .collect()
        };
        let header = |before: usize, on: bool| RouteEdit::HeaderRoute {
            name: "weir-header-ro".into(),
            before,
            canary: canary.clone(),
            matches: on.then(|| vec![HttpMatchRequest::default()]),
        };
        let mut spec = VirtualServiceSpec {
            http: vec![rule("testers"), rule("main")],
            ..VirtualServiceSpec::default()
        };
        // (edit, the rules' names after)
        let cases = [
            (header(1, true), vec!["testers", "weir-header-ro", "main"]),
            // Set again (it is before `main`, now at 2): replaced, not doubled.
            (header(2, true), vec!["testers", "weir-header-ro", "main"]),
            (header(2, false), vec!["testers", "main"]),
            (header(1, false), vec!["testers", "main"]),
        ];
        for (edit, after) in cases {
            edit_routes(&mut spec, &edit).unwrap();
            assert_eq!(names(&spec), after, "{edit:?}");
        }
        edit_routes(&mut spec, &header(1, true)).unwrap();
        let added = &spec.http[1];
        assert_eq!(added.route.as_ref().unwrap()[0].destination, canary);
        assert_eq!(added.matches.as_ref().unwrap().len(), 1);
        let mirror = |percent| RouteEdit::Mirror {
            rule: 2,
            canary: canary.clone(),
            percent,
        };
        edit_routes(&mut spec, &mirror(30)).unwrap();
        assert_eq!(spec.http[2].mirror.as_ref(), Some(&canary));
        assert_eq!(spec.http[2].mirror_percentage.as_ref().unwrap().value, 30.0);
        edit_routes(&mut spec, &mirror(0)).unwrap();
        assert!(spec.http[2].mirror.is_none() && spec.http[2].mirror_percentage.is_none());
        assert!(
            edit_routes(
                &mut spec,
                &RouteEdit::Mirror {
                    rule: 9,
                    canary,
                    percent: 1
                }
            )
            .is_err()
        );
    }
}
