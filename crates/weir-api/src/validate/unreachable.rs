//! `istioctl analyze`'s unreachable-rule checks for one VirtualService's
//! HTTP rules: IST0130 (a rule no request can reach) and IST0131 (a match
//! block an earlier rule already takes). Like Istio, blocks are compared
//! for identity (their JSON form without their names), not for overlap.

use std::collections::HashMap;

use crate::istio::{HttpMatchRequest, HttpRoute};
use crate::path::FieldPath;

/// One finding: where, and the message (with its IST code).
pub type Finding = (FieldPath, String);

/// The IST0130/IST0131 findings for `rules` (a VirtualService's `http`).
pub fn unreachable_rules(rules: &[HttpRoute]) -> Vec<Finding> {
    let http = FieldPath::root().key("spec").key("http");
    let rule_name = |i: usize| rules[i].name.clone().unwrap_or_else(|| format!("#{i}"));
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut catch_all: Option<usize> = None;
    for (i, rule) in rules.iter().enumerate() {
        let blocks = rule.matches.as_deref().unwrap_or_default();
        if blocks.is_empty() {
            if catch_all.is_some() {
                out.push((
                    http.index(i),
                    format!(
                        "VirtualService rule {} not used (only the last rule can have no matches) (IST0130)",
                        rule_name(i)
                    ),
                ));
            }
            catch_all = Some(i);
            continue;
        }
        let mut duplicates = 0;
        for (m, block) in blocks.iter().enumerate() {
            let unnamed = HttpMatchRequest {
                name: None,
                ..block.clone()
            };
            let key = serde_json::to_string(&unnamed).unwrap_or_default();
            match seen.get(&key) {
                Some(&earlier) => {
                    duplicates += 1;
                    let block_name = block.name.clone().unwrap_or_else(|| format!("#{m}"));
                    out.push((
                        http.index(i).key("match").index(m),
                        format!(
                            "VirtualService rule {} match {block_name} is not used (duplicates a match in rule {}) (IST0131)",
                            rule_name(i),
                            rule_name(earlier)
                        ),
                    ));
                }
                None => {
                    seen.insert(key, i);
                }
            }
        }
        if duplicates == blocks.len() {
            out.push((
                http.index(i),
                format!(
                    "VirtualService rule {} not used (all matches used by prior rules) (IST0130)",
                    rule_name(i)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<HttpRoute> {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn codes(found: &[Finding]) -> Vec<String> {
        found
            .iter()
            .map(|(at, m)| format!("{at}: {}", &m[m.len() - 8..m.len() - 1]))
            .collect()
    }

    /// The HTTP VirtualServices of Istio's analyzer inputs
    /// (`virtualservice_dupmatches.yaml`), with the messages Istio's
    /// analyzer test expects for each.
    #[test]
    fn istios_duplicate_match_inputs_give_istios_messages() {
        // sample-foo-cluster01: two rules without matches.
        let two_catch_alls = rules(
            "- route: [{destination: {host: sample.foo.svc.cluster.local}}]\n\
             - route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]\n",
        );
        assert_eq!(
            codes(&unreachable_rules(&two_catch_alls)),
            ["spec.http[1]: IST0130"]
        );
        // duplicate-match: the second rule's only block repeats the first's.
        let duplicate = rules(
            "- name: send /api/v1/products to sample.foo\n  match: [{name: prefix /api/v1/products, uri: {prefix: /api/v1/products}}]\n  route: [{destination: {host: a}}]\n\
             - name: send /api/v1/products to sample.bar\n  match: [{uri: {prefix: /api/v1/products}}]\n  route: [{destination: {host: b}}]\n",
        );
        let found = unreachable_rules(&duplicate);
        assert_eq!(
            codes(&found),
            ["spec.http[1].match[0]: IST0131", "spec.http[1]: IST0130"]
        );
        assert!(found[1].1.starts_with(
            "VirtualService rule send /api/v1/products to sample.bar not used (all matches used by prior rules)"
        ));
        // almost-duplicate-match: one of two blocks repeats an earlier rule's.
        let almost = rules(
            "- match: [{uri: {prefix: /api/v1/products}}]\n  route: [{destination: {host: a}}]\n\
             - match: [{uri: {prefix: /api/v1/products}}, {name: prefix /potato, uri: {prefix: /potato}}]\n  route: [{destination: {host: b}}]\n",
        );
        let found = unreachable_rules(&almost);
        assert_eq!(codes(&found), ["spec.http[1].match[0]: IST0131"]);
        assert_eq!(
            found[0].1,
            "VirtualService rule #1 match #0 is not used (duplicates a match in rule #0) (IST0131)"
        );
    }

    #[test]
    fn overlapping_but_different_blocks_and_a_last_catch_all_are_fine() {
        let fine = rules(
            "- match: [{uri: {prefix: /api/v1/product}, method: {exact: GET}}]\n  route: [{destination: {host: a}}]\n\
             - match: [{uri: {prefix: /api/v1/products}, method: {exact: GET}}]\n  route: [{destination: {host: b}}]\n\
             - route: [{destination: {host: c}}]\n",
        );
        assert!(unreachable_rules(&fine).is_empty());
    }
}
