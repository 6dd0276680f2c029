//! Who may do what: the bearer tokens (the main one has every scope, the extra ones
//! [`crate::ScopedToken`] only theirs) and the DigitalOcean custom scopes each endpoint
//! needs (spec: each operation's `security`; the create body's fields, `models/
//! droplet_create.yml`).

use hyper::body::Incoming;
use hyper::{Method, Request};

use crate::state::Inner;
use crate::ScopedToken;

/// What an authenticated request may do.
#[derive(Clone, Debug)]
pub(crate) enum Access {
    /// The main token: everything.
    Full,
    /// An extra token: only these scopes.
    Scoped(Vec<String>),
}

impl Access {
    /// The first of `needed` this access lacks.
    pub(crate) fn lacks<'a>(&self, needed: &[&'a str]) -> Option<&'a str> {
        match self {
            Access::Full => None,
            Access::Scoped(have) => needed
                .iter()
                .find(|n| !have.iter().any(|h| h == *n))
                .copied(),
        }
    }
}

/// The bearer token of a request (the scheme is case-insensitive).
fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let v = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `None` for a 401.
pub(crate) fn access(
    inner: &Inner,
    tokens: &[ScopedToken],
    req: &Request<Incoming>,
) -> Option<Access> {
    let token = bearer(req)?;
    if token == inner.opts.token {
        return Some(Access::Full);
    }
    tokens
        .iter()
        .find(|t| t.token == token)
        .map(|t| Access::Scoped(t.scopes.clone()))
}

/// The scopes an endpoint needs, from its method, path and query (not the body: see
/// [`create_body_scopes`]). Unknown routes need none: they answer 404 or 405.
pub(crate) fn route_scopes(
    method: &Method,
    segs: &[&str],
    query: &[(String, String)],
) -> Vec<&'static str> {
    let by_tag = query.iter().any(|(k, v)| k == "tag_name" && !v.is_empty());
    let mut s = match (method, segs) {
        (&Method::GET, ["v2", "droplets"]) | (&Method::GET, ["v2", "droplets", _]) => {
            vec!["droplet:read"]
        }
        (&Method::POST, ["v2", "droplets"]) => vec!["droplet:create"],
        (&Method::DELETE, ["v2", "droplets"]) | (&Method::DELETE, ["v2", "droplets", _]) => {
            vec!["droplet:delete"]
        }
        (&Method::GET, ["v2", "actions", _]) => vec!["actions:read"],
        (&Method::GET, ["v2", "account"]) => vec!["account:read"],
        (&Method::GET, ["v2", "sizes"]) => vec!["sizes:read"],
        _ => Vec::new(),
    };
    // Filtering or deleting by tag also needs `tag:read` (spec `droplets/parameters.yml`,
    // `droplets_destroy_byTag.yml`).
    if by_tag
        && matches!(segs, ["v2", "droplets"])
        && matches!(*method, Method::GET | Method::DELETE)
    {
        s.push("tag:read");
    }
    s
}

/// The extra scopes a create body needs, per the spec's `droplet_create.yml`: `tags`
/// needs `tag:create`, `ssh_keys` `ssh_key:read`, `vpc_uuid` `vpc:read`, `volumes`
/// `block_storage:read`. (`image:read`, also named there, is one of the scopes the
/// control panel adds to every token with `droplet:create`; it is not checked.)
pub(crate) fn create_body_scopes(spec: &crate::state::CreateSpec) -> Vec<&'static str> {
    let mut s = Vec::new();
    if !spec.tags.is_empty() {
        s.push("tag:create");
    }
    if !spec.ssh_keys.is_empty() {
        s.push("ssh_key:read");
    }
    if spec.vpc_uuid.is_some() {
        s.push("vpc:read");
    }
    if !spec.volumes.is_empty() {
        s.push("block_storage:read");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_route() {
        let q = |s: &str| crate::util::parse_query(Some(s));
        let r = |m: Method, p: &str, query: &str| {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            route_scopes(&m, &segs, &q(query))
        };
        assert_eq!(r(Method::GET, "/v2/droplets", ""), ["droplet:read"]);
        assert_eq!(
            r(Method::GET, "/v2/droplets", "tag_name=a"),
            ["droplet:read", "tag:read"]
        );
        assert_eq!(
            r(Method::GET, "/v2/droplets/7", "tag_name=a"),
            ["droplet:read"]
        );
        assert_eq!(r(Method::POST, "/v2/droplets", ""), ["droplet:create"]);
        assert_eq!(
            r(Method::DELETE, "/v2/droplets", "tag_name=a"),
            ["droplet:delete", "tag:read"]
        );
        assert_eq!(r(Method::DELETE, "/v2/droplets/7", ""), ["droplet:delete"]);
        assert_eq!(r(Method::GET, "/v2/actions/7", ""), ["actions:read"]);
        assert_eq!(r(Method::GET, "/v2/account", ""), ["account:read"]);
        assert_eq!(r(Method::GET, "/v2/sizes", "per_page=5"), ["sizes:read"]);
        assert!(r(Method::GET, "/v2/nothing", "").is_empty());
        assert!(r(Method::PUT, "/v2/droplets", "").is_empty());
        let a = Access::Scoped(vec!["droplet:read".into()]);
        assert_eq!(a.lacks(&["droplet:read", "tag:read"]), Some("tag:read"));
        assert_eq!(a.lacks(&["droplet:read"]), None);
        assert_eq!(Access::Full.lacks(&["anything"]), None);
    }
}
