//! What weir's own load (`spec.traffic`) sends: a request the Rollout's
//! rule matches — its VirtualService's host, the first match block weir
//! can satisfy (exact and prefix values, presence; a regex cannot be
//! written from), the port it asks for — marked as synthetic so logs and
//! the app can tell it from users' requests. Requests that the rule does
//! not match would reach another rule, and judge nothing.

use weir_api::istio::{HttpMatchRequest, StringMatch, VirtualServiceSpec};

/// The header that marks weir's own requests; its value names the Rollout.
pub const SYNTHETIC_HEADER: &str = "x-weir-synthetic";

/// One request the rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticRequest {
    /// The Host header; `None` when any host matches.
    pub host: Option<String>,
    /// Path and query.
    pub path: String,
    /// Headers, the synthetic marker included.
    pub headers: Vec<(String, String)>,
    /// The gateway port it must arrive on, when the match names one.
    pub port: Option<u32>,
}

/// A value `m` matches, when one can be written.
fn satisfying(m: &StringMatch) -> Option<String> {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(v), _, _) | (None, Some(v), _) => Some(v.clone()),
        (None, None, Some(_)) => None,
        (None, None, None) => Some("1".into()),
    }
}

/// The request for one match block, if every condition can be satisfied.
fn for_block(block: &HttpMatchRequest, host: Option<String>) -> Option<SyntheticRequest> {
    let mut path = match &block.uri {
        Some(uri) => satisfying(uri).filter(|p| p.starts_with('/'))?,
        None => "/".into(),
    };
    let mut query = Vec::new();
    for (name, value) in block.query_params.iter().flatten() {
        query.push(format!("{name}={}", satisfying(value)?));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let host = match &block.authority {
        Some(a) => Some(satisfying(a)?),
        None => host,
    };
    let mut headers = Vec::new();
    for (name, value) in block.headers.iter().flatten() {
        headers.push((name.clone(), satisfying(value)?));
    }
    if block.method.is_some() || block.scheme.is_some() || block.without_headers.is_some() {
        // The load generator sends plain GETs: a block that needs another
        // method, a scheme or an absent header is not written.
        let method_ok = block
            .method
            .as_ref()
            .is_none_or(|m| satisfying(m).as_deref() == Some("GET"));
        let scheme_ok = block
            .scheme
            .as_ref()
            .is_none_or(|s| satisfying(s).as_deref() == Some("http"));
        if !method_ok || !scheme_ok || block.without_headers.is_some() {
            return None;
        }
    }
    Some(SyntheticRequest {
        host,
        path,
        headers,
        port: block.port,
    })
}

/// The request weir's own load sends for the Rollout `rollout` through rule
/// `rule_index` of `vs`; the error says why none can be written.
pub fn synthetic_request(
    vs: &VirtualServiceSpec,
    rule_index: usize,
    rollout: &str,
) -> Result<SyntheticRequest, String> {
    let host = vs
        .hosts
        .iter()
        .find(|h| *h != "*")
        .map(|h| match h.strip_prefix("*.") {
            Some(domain) => format!("weir-synthetic.{domain}"),
            None => h.clone(),
        });
    let rule = vs
        .http
        .get(rule_index)
        .ok_or_else(|| format!("the VirtualService has no http rule {rule_index}"))?;
    let blocks = rule.matches.clone().unwrap_or_default();
    let mut request = if blocks.is_empty() {
        SyntheticRequest {
            host,
            path: "/".into(),
            headers: Vec::new(),
            port: None,
        }
    } else {
        blocks
            .iter()
            .find_map(|b| for_block(b, host.clone()))
            .ok_or_else(|| {
                format!(
                    "no match block of http rule {rule_index} can be written as a GET (regex values, methods, absent headers)"
                )
            })?
    };
    request
        .headers
        .push((SYNTHETIC_HEADER.into(), format!("rollout/{rollout}")));
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> VirtualServiceSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// Host, path, headers besides the marker, port; or words of the error.
    type Expected = Result<
        (
            Option<&'static str>,
            &'static str,
            Vec<(&'static str, &'static str)>,
            Option<u32>,
        ),
        &'static str,
    >;

    #[test]
    fn the_request_is_one_the_rule_matches_and_is_marked() {
        let marker = (SYNTHETIC_HEADER.to_owned(), "rollout/my-app".to_owned());
        // (VirtualService, rule, expected host, path, extra headers, port) or an error's words
        let cases: Vec<(&str, usize, Expected)> = vec![
            (
                "hosts: ['*']\nhttp:\n- route: [{destination: {host: my-app}}]\n",
                0,
                Ok((None, "/", vec![], None)),
            ),
            (
                "hosts: [my-app.local]\nhttp:\n- match: [{headers: {x-canary: {exact: 'yes'}}}]\n  route: [{destination: {host: my-app}}]\n- route: [{destination: {host: my-app}}]\n",
                0,
                Ok((Some("my-app.local"), "/", vec![("x-canary", "yes")], None)),
            ),
            (
                "hosts: ['*.example.com']\nhttp:\n- match: [{uri: {regex: '/a.*'}}, {uri: {prefix: /api}, queryParams: {v: {exact: '2'}}, port: 8080}]\n  route: [{destination: {host: my-app}}]\n",
                0,
                Ok((
                    Some("weir-synthetic.example.com"),
                    "/api?v=2",
                    vec![],
                    Some(8080),
                )),
            ),
            (
                "hosts: [my-app]\nhttp:\n- match: [{authority: {exact: shop.example}, headers: {x-beta: {}}}]\n  route: [{destination: {host: my-app}}]\n",
                0,
                Ok((Some("shop.example"), "/", vec![("x-beta", "1")], None)),
            ),
            (
                "hosts: [my-app]\nhttp:\n- match: [{uri: {regex: '/a.*'}}, {method: {exact: POST}}]\n  route: [{destination: {host: my-app}}]\n",
                0,
                Err("no match block of http rule 0"),
            ),
            ("hosts: [my-app]\nhttp: []\n", 0, Err("no http rule 0")),
        ];
        for (text, rule, expected) in cases {
            let got = synthetic_request(&vs(text), rule, "my-app");
            match (expected, got) {
                (Ok((host, path, headers, port)), Ok(r)) => {
                    let mut want: Vec<(String, String)> = headers
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                        .collect();
                    want.push(marker.clone());
                    assert_eq!(
                        r,
                        SyntheticRequest {
                            host: host.map(str::to_owned),
                            path: path.into(),
                            headers: want,
                            port,
                        },
                        "{text}"
                    );
                }
                (Err(words), Err(why)) => assert!(why.contains(words), "{text}: {why}"),
                (want, got) => panic!("{text}: {want:?} vs {got:?}"),
            }
        }
    }
}
