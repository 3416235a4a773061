//! ingress-nginx's canary decision for one request: the header first, then
//! the cookie; neither deciding, the weight does (the caller's exact
//! split). A pure function of the request's headers.

use http::header::{HeaderMap, HeaderName};
use regex::Regex;
use weir_api::ingress::{Canary, HeaderRule};

use crate::balance::cookie_value;

/// How the header decides, compiled.
#[derive(Debug)]
enum HeaderTest {
    AlwaysNever,
    Value(String),
    Pattern(Regex),
}

/// A canary Ingress's header and cookie rules, compiled for the request
/// path. The weight is the rule's split.
#[derive(Debug)]
pub struct CanaryPolicy {
    header: Option<(HeaderName, HeaderTest)>,
    cookie: Option<String>,
}

/// What the header and cookie say about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryChoice {
    /// To the canary.
    Canary,
    /// To the main backend.
    Main,
    /// Neither decided: the weight does.
    ByWeight,
}

impl CanaryPolicy {
    /// Compiles the annotations' rules; `None` when a header name or
    /// pattern does not compile (validation refuses those first).
    pub fn compile(canary: &Canary) -> Option<Self> {
        let header = match &canary.header {
            None => None,
            Some((name, rule)) => {
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                let test = match rule {
                    HeaderRule::AlwaysNever => HeaderTest::AlwaysNever,
                    HeaderRule::Value(v) => HeaderTest::Value(v.clone()),
                    HeaderRule::Pattern(p) => HeaderTest::Pattern(Regex::new(p).ok()?),
                };
                Some((name, test))
            }
        };
        Some(Self {
            header,
            cookie: canary.cookie.clone(),
        })
    }

    /// ingress-nginx's order: a present header decides if it is `always`
    /// or `never` (or equals the value, or the pattern finds a match, when
    /// those are set); otherwise a cookie of `always` or `never` decides;
    /// otherwise the weight.
    pub fn choose(&self, headers: &HeaderMap) -> CanaryChoice {
        if let Some((name, test)) = &self.header
            && let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
        {
            match test {
                HeaderTest::Value(want) if value == want => return CanaryChoice::Canary,
                HeaderTest::Pattern(re) if re.is_match(value) => return CanaryChoice::Canary,
                HeaderTest::AlwaysNever if value == "always" => return CanaryChoice::Canary,
                HeaderTest::AlwaysNever if value == "never" => return CanaryChoice::Main,
                _ => {}
            }
        }
        if let Some(cookie) = &self.cookie {
            match cookie_value(headers, cookie) {
                Some("always") => return CanaryChoice::Canary,
                Some("never") => return CanaryChoice::Main,
                _ => {}
            }
        }
        CanaryChoice::ByWeight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(header: Option<HeaderRule>, cookie: bool) -> CanaryPolicy {
        CanaryPolicy::compile(&Canary {
            header: header.map(|r| ("x-canary".to_owned(), r)),
            cookie: cookie.then(|| "canary".to_owned()),
            weight: 0,
            total: 100,
        })
        .unwrap()
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    /// ingress-nginx's documented behaviour, row by row
    /// (annotations.md#canary and the balancer's
    /// `route_to_alternative_balancer`).
    type Row<'a> = (
        &'a str,
        Option<HeaderRule>,
        bool,
        &'a [(&'a str, &'a str)],
        CanaryChoice,
    );

    fn check(rows: &[Row<'_>]) {
        for (name, header, cookie, headers, want) in rows {
            let got = policy(header.clone(), *cookie).choose(&request(headers));
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn header_then_cookie_then_weight_as_ingress_nginx_documents() {
        use CanaryChoice::*;
        let always_never = Some(HeaderRule::AlwaysNever);
        check(&[
            (
                "no header, no cookie",
                always_never.clone(),
                true,
                &[],
                ByWeight,
            ),
            (
                "header always",
                always_never.clone(),
                false,
                &[("x-canary", "always")],
                Canary,
            ),
            (
                "header never",
                always_never.clone(),
                false,
                &[("x-canary", "never")],
                Main,
            ),
            (
                "header name is case-insensitive",
                always_never.clone(),
                false,
                &[("X-Canary", "always")],
                Canary,
            ),
            (
                "header value is not: Always",
                always_never.clone(),
                false,
                &[("x-canary", "Always")],
                ByWeight,
            ),
            (
                "other header value falls through",
                always_never.clone(),
                false,
                &[("x-canary", "maybe")],
                ByWeight,
            ),
            (
                "header beats cookie (never over always)",
                always_never.clone(),
                true,
                &[("x-canary", "never"), ("cookie", "canary=always")],
                Main,
            ),
            (
                "header beats cookie (always over never)",
                always_never.clone(),
                true,
                &[("x-canary", "always"), ("cookie", "canary=never")],
                Canary,
            ),
            (
                "undecided header leaves it to the cookie",
                always_never.clone(),
                true,
                &[("x-canary", "maybe"), ("cookie", "a=b; canary=always")],
                Canary,
            ),
            (
                "cookie never",
                None,
                true,
                &[("cookie", "canary=never")],
                Main,
            ),
            (
                "cookie other value falls through",
                None,
                true,
                &[("cookie", "canary=yes")],
                ByWeight,
            ),
            (
                "cookie ignored when not annotated",
                None,
                false,
                &[("cookie", "canary=always")],
                ByWeight,
            ),
        ]);
    }

    #[test]
    fn header_value_and_pattern_as_ingress_nginx_documents() {
        use CanaryChoice::*;
        let value = Some(HeaderRule::Value("yes".to_owned()));
        let pattern = Some(HeaderRule::Pattern("^(yes|ja)".to_owned()));
        check(&[
            (
                "header-value: equal",
                value.clone(),
                false,
                &[("x-canary", "yes")],
                Canary,
            ),
            (
                "header-value: other value falls through",
                value.clone(),
                true,
                &[("x-canary", "no"), ("cookie", "canary=always")],
                Canary,
            ),
            (
                "header-value: always is just another value",
                value.clone(),
                false,
                &[("x-canary", "always")],
                ByWeight,
            ),
            (
                "header-value: never does not exclude",
                value.clone(),
                true,
                &[("x-canary", "never"), ("cookie", "canary=always")],
                Canary,
            ),
            (
                "header-pattern: match",
                pattern.clone(),
                false,
                &[("x-canary", "ja-bitte")],
                Canary,
            ),
            (
                "header-pattern: no match falls through",
                pattern.clone(),
                false,
                &[("x-canary", "nein")],
                ByWeight,
            ),
            (
                "header not annotated is ignored",
                None,
                false,
                &[("x-canary", "always")],
                ByWeight,
            ),
        ]);
    }
}
