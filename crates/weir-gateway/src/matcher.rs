//! Istio `HTTPMatchRequest`s compiled for the request path: every condition
//! of one match block must hold (AND); a rule matches if any block does (OR);
//! a rule without blocks matches everything.

use http::HeaderMap;
use http::header::HeaderName;
use regex::Regex;
use weir_api::istio::{HttpMatchRequest, StringMatch};

/// How one string is compared.
#[derive(Clone, Debug)]
pub enum StrMatch {
    /// Equal to.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches the whole value (RE2 semantics: anchored at both ends).
    Regex(Regex),
    /// Present, whatever the value (a header match written `{}`).
    Present,
}

impl StrMatch {
    /// Compiles an Istio `StringMatch`; `None` means the regex did not
    /// compile (validation rejects that before it gets here).
    pub fn compile(sm: &StringMatch) -> Option<Self> {
        Some(match (&sm.exact, &sm.prefix, &sm.regex) {
            (Some(e), _, _) => StrMatch::Exact(e.clone()),
            (_, Some(p), _) => StrMatch::Prefix(p.clone()),
            (_, _, Some(r)) => StrMatch::Regex(Regex::new(&format!("^(?:{r})$")).ok()?),
            _ => StrMatch::Present,
        })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value == e,
            StrMatch::Prefix(p) => value.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(value),
            StrMatch::Present => true,
        }
    }

    fn matches_ignoring_case(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value.eq_ignore_ascii_case(e),
            StrMatch::Prefix(p) => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            other => other.matches(value),
        }
    }
}

/// The parts of a request the matchers read.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a str,
    /// `http` (weir's listeners are plaintext).
    pub scheme: &'a str,
    /// Host / :authority, as sent.
    pub authority: &'a str,
    /// All headers.
    pub headers: &'a HeaderMap,
    /// The Gateway port the request arrived on.
    pub port: u16,
    /// The Gateway (`namespace/name`) whose listener took the request.
    pub gateway: &'a str,
}

/// One compiled match block.
#[derive(Clone, Debug, Default)]
pub struct MatchBlock {
    uri: Option<StrMatch>,
    ignore_uri_case: bool,
    scheme: Option<StrMatch>,
    method: Option<StrMatch>,
    authority: Option<StrMatch>,
    headers: Vec<(HeaderKey, StrMatch)>,
    without_headers: Vec<(HeaderKey, StrMatch)>,
    query: Vec<(String, StrMatch)>,
    port: Option<u16>,
    gateways: Option<Vec<String>>,
}

/// What a header match reads: a header, or one of the HTTP/2
/// pseudo-headers Envoy lets a header match name (`:authority` is the Host
/// header, which the proxy sets from the authority of every request).
#[derive(Clone, Debug)]
enum HeaderKey {
    Named(HeaderName),
    Method,
    Scheme,
    /// `:path`: the path with its query string, as Envoy matches it.
    PathAndQuery,
}

impl HeaderKey {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            ":authority" => HeaderKey::Named(http::header::HOST),
            ":method" => HeaderKey::Method,
            ":scheme" => HeaderKey::Scheme,
            ":path" => HeaderKey::PathAndQuery,
            _ => HeaderKey::Named(HeaderName::from_bytes(name.as_bytes()).ok()?),
        })
    }
}

/// Names a header match cannot be compiled for (not a valid header name).
#[derive(Debug, thiserror::Error)]
#[error("invalid header name {0:?} in a match")]
pub struct BadMatch(pub String);

impl MatchBlock {
    /// Compiles one Istio match block; `namespace` qualifies gateway names.
    pub fn compile(m: &HttpMatchRequest, namespace: &str) -> Result<Self, BadMatch> {
        let sm = |s: &Option<StringMatch>| s.as_ref().and_then(StrMatch::compile);
        let headers = |map: &Option<std::collections::BTreeMap<String, StringMatch>>| {
            map.iter()
                .flatten()
                .map(|(name, s)| {
                    let header = HeaderKey::parse(name).ok_or_else(|| BadMatch(name.clone()))?;
                    // Istio reads `regex: "*"` on a header as "present".
                    let matcher = if s.regex.as_deref() == Some("*") {
                        StrMatch::Present
                    } else {
                        StrMatch::compile(s).ok_or_else(|| BadMatch(name.clone()))?
                    };
                    Ok((header, matcher))
                })
                .collect::<Result<Vec<_>, BadMatch>>()
        };
        Ok(Self {
            uri: sm(&m.uri),
            ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
            scheme: sm(&m.scheme),
            method: sm(&m.method),
            authority: sm(&m.authority),
            headers: headers(&m.headers)?,
            without_headers: headers(&m.without_headers)?,
            query: m
                .query_params
                .iter()
                .flatten()
                .filter_map(|(k, s)| Some((k.clone(), StrMatch::compile(s)?)))
                .collect(),
            port: m.port.and_then(|p| u16::try_from(p).ok()),
            gateways: m
                .gateways
                .as_ref()
                .map(|gs| gs.iter().map(|g| qualify(g, namespace)).collect()),
        })
    }

    /// Whether every condition of the block holds for `req`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(uri) = &self.uri {
            let ok = if self.ignore_uri_case {
                uri.matches_ignoring_case(req.path)
            } else {
                uri.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        if self.port.is_some_and(|p| p != req.port) {
            return false;
        }
        if let Some(gateways) = &self.gateways
            && !gateways.iter().any(|g| g == req.gateway)
        {
            return false;
        }
        for (field, value) in [
            (&self.method, req.method),
            (&self.scheme, req.scheme),
            (&self.authority, req.authority),
        ] {
            if field.as_ref().is_some_and(|m| !m.matches(value)) {
                return false;
            }
        }
        let header_matches = |key: &HeaderKey, m: &StrMatch| {
            let name = match key {
                HeaderKey::Named(name) => name,
                HeaderKey::Method => return m.matches(req.method),
                HeaderKey::Scheme => return m.matches(req.scheme),
                HeaderKey::PathAndQuery => {
                    return match req.query {
                        Some(q) => m.matches(&format!("{}?{q}", req.path)),
                        None => m.matches(req.path),
                    };
                }
            };
            let mut values = req.headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                return false;
            }
            // Envoy joins repeated headers with ',' before matching.
            let joined: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
            m.matches(&joined.join(","))
        };
        if !self.headers.iter().all(|(n, m)| header_matches(n, m)) {
            return false;
        }
        if self
            .without_headers
            .iter()
            .any(|(n, m)| header_matches(n, m))
        {
            return false;
        }
        self.query
            .iter()
            .all(|(key, m)| query_value(req.query, key).is_some_and(|v| m.matches(v)))
    }
}

/// The first value of a query parameter, undecoded.
pub fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// A rule's match blocks: OR of ANDs; empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct RuleMatch(Vec<MatchBlock>);

impl RuleMatch {
    /// Compiles a rule's `match` list.
    pub fn compile(blocks: Option<&[HttpMatchRequest]>, namespace: &str) -> Result<Self, BadMatch> {
        Ok(Self(
            blocks
                .unwrap_or_default()
                .iter()
                .map(|b| MatchBlock::compile(b, namespace))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Whether the rule applies to `req`.
    #[inline]
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.0.is_empty() || self.0.iter().any(|b| b.matches(req))
    }
}

/// Qualifies a gateway reference (`name` or `namespace/name`).
pub fn qualify(gateway: &str, namespace: &str) -> String {
    if gateway.contains('/') {
        gateway.to_owned()
    } else {
        format!("{namespace}/{gateway}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            path,
            query,
            method: "GET",
            scheme: "http",
            authority: "example.com",
            headers,
            port: 80,
            gateway: "default/gw",
        }
    }

    fn sm(kind: &str, v: &str) -> StringMatch {
        let mut s = StringMatch::default();
        match kind {
            "exact" => s.exact = Some(v.into()),
            "prefix" => s.prefix = Some(v.into()),
            _ => s.regex = Some(v.into()),
        }
        s
    }

    #[test]
    fn uri_exact_prefix_regex_and_case() {
        let h = HeaderMap::new();
        let m = |kind, v: &str, ignore| {
            let mut req = HttpMatchRequest {
                uri: Some(sm(kind, v)),
                ..Default::default()
            };
            req.ignore_uri_case = Some(ignore);
            MatchBlock::compile(&req, "default").unwrap()
        };
        assert!(m("exact", "/api", false).matches(&view("/api", None, &h)));
        assert!(!m("exact", "/api", false).matches(&view("/api/x", None, &h)));
        assert!(m("prefix", "/api", false).matches(&view("/api/x", None, &h)));
        assert!(m("prefix", "/API", true).matches(&view("/api/x", None, &h)));
        assert!(!m("prefix", "/API", false).matches(&view("/api/x", None, &h)));
        // Regex is a full match, as RE2 in Envoy.
        assert!(m("regex", "/v[0-9]+", false).matches(&view("/v12", None, &h)));
        assert!(!m("regex", "/v[0-9]+", false).matches(&view("/v12/x", None, &h)));
    }

    #[test]
    fn pseudo_headers_and_the_star_regex_match_as_in_envoy() {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static("shop.example"));
        let block = |name: &str, s: StringMatch| {
            let req = HttpMatchRequest {
                headers: Some([(name.to_owned(), s)].into()),
                ..Default::default()
            };
            MatchBlock::compile(&req, "default").unwrap()
        };
        let cases = [
            (":authority", sm("exact", "shop.example"), true),
            (":authority", sm("exact", "other.example"), false),
            (":method", sm("exact", "GET"), true),
            (":method", sm("exact", "POST"), false),
            (":scheme", sm("exact", "http"), true),
            (":path", sm("exact", "/cart?id=7"), true),
            (":path", sm("exact", "/cart"), false),
            ("host", sm("regex", "*"), true),
            ("x-absent", sm("regex", "*"), false),
        ];
        for (name, s, want) in cases {
            let got = block(name, s.clone()).matches(&view("/cart", Some("id=7"), &h));
            assert_eq!(got, want, "{name} {s:?}");
        }
    }

    #[test]
    fn headers_presence_absence_and_query() {
        let mut h = HeaderMap::new();
        h.insert("x-canary", HeaderValue::from_static("yes"));
        let req = HttpMatchRequest {
            headers: Some([("x-canary".to_owned(), StringMatch::default())].into()),
            ..Default::default()
        };
        assert!(
            MatchBlock::compile(&req, "default")
                .unwrap()
                .matches(&view("/", None, &h))
        );
        assert!(
            !MatchBlock::compile(&req, "default").unwrap().matches(&view(
                "/",
                None,
                &HeaderMap::new()
            ))
        );

        let without = HttpMatchRequest {
            without_headers: Some([("x-canary".to_owned(), sm("exact", "yes"))].into()),
            ..Default::default()
        };
        assert!(
            !MatchBlock::compile(&without, "default")
                .unwrap()
                .matches(&view("/", None, &h))
        );

        let q = HttpMatchRequest {
            query_params: Some([("user".to_owned(), sm("exact", "alice"))].into()),
            ..Default::default()
        };
        let q = MatchBlock::compile(&q, "default").unwrap();
        assert!(q.matches(&view("/", Some("a=1&user=alice"), &h)));
        assert!(!q.matches(&view("/", Some("user=bob"), &h)));
        assert!(!q.matches(&view("/", None, &h)));
    }

    #[test]
    fn no_blocks_match_everything_and_blocks_are_ored() {
        let h = HeaderMap::new();
        assert!(
            RuleMatch::compile(None, "default")
                .unwrap()
                .matches(&view("/x", None, &h))
        );
        let blocks = vec![
            HttpMatchRequest {
                uri: Some(sm("exact", "/a")),
                ..Default::default()
            },
            HttpMatchRequest {
                uri: Some(sm("exact", "/b")),
                ..Default::default()
            },
        ];
        let rule = RuleMatch::compile(Some(&blocks), "default").unwrap();
        assert!(rule.matches(&view("/b", None, &h)));
        assert!(!rule.matches(&view("/c", None, &h)));
    }

    proptest! {
        #[test]
        fn matching_never_panics(path in ".*", query in proptest::option::of(".*"), value in ".*", pattern in "[a-z/]{0,8}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert("x-user", v);
            }
            for kind in ["exact", "prefix", "regex"] {
                let req = HttpMatchRequest {
                    uri: Some(sm(kind, &pattern)),
                    headers: Some([("x-user".to_owned(), sm(kind, &pattern))].into()),
                    query_params: Some([("u".to_owned(), sm(kind, &pattern))].into()),
                    ignore_uri_case: Some(true),
                    ..Default::default()
                };
                let block = MatchBlock::compile(&req, "default").unwrap();
                let _ = block.matches(&view(&path, query.as_deref(), &h));
            }
        }

        #[test]
        fn exact_implies_prefix(path in "/[a-z/]{0,12}") {
            let h = HeaderMap::new();
            let exact = MatchBlock::compile(&HttpMatchRequest { uri: Some(sm("exact", &path)), ..Default::default() }, "d").unwrap();
            let prefix = MatchBlock::compile(&HttpMatchRequest { uri: Some(sm("prefix", &path)), ..Default::default() }, "d").unwrap();
            prop_assert!(exact.matches(&view(&path, None, &h)));
            prop_assert!(prefix.matches(&view(&path, None, &h)));
        }
    }
}
