//! The endpoint handlers: droplets (get, list, create, delete, delete by tag),
//! actions and the account; and the validation of create requests.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::auth::{create_body_scopes, Access};
use super::json::{
    droplet_json, null_empties, nulls_links, page_links, region_json, resolve_region,
};
use super::reply::{bad_request, forbidden, no_content, not_found, unprocessable};
use crate::http::{self, Resp};
use crate::state::{CreateSpec, Droplet, ImageRef, Inner};
use crate::util::{self, pct_encode};

const HOSTNAME_MSG: &str = "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)";
const LIMIT_MSG: &str = "creating this/these droplet(s) will exceed your droplet limit";
/// Largest accepted `user_data`, in bytes (64 KiB).
const MAX_USER_DATA: usize = 64 * 1024;
/// Largest accepted request body.
const MAX_BODY: usize = 1024 * 1024;
const MAX_NAMES: usize = 10;
pub(super) const DEFAULT_PER_PAGE: u64 = 20;
pub(super) const MAX_PER_PAGE: u64 = 200;

// -------------------------------------------------------------------- get / delete

pub(super) fn get_droplet(inner: &Inner, id: u64) -> Resp {
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    let nulls = st.knobs.nulls_for_empty;
    match st.droplets.get(&id) {
        Some(d) if Inner::get_visible(d, now) => http::json(
            StatusCode::OK,
            &null_empties(json!({ "droplet": droplet_json(d, nulls) }), nulls),
        ),
        _ => not_found(),
    }
}

pub(super) fn delete_droplet(inner: &Inner, id: u64) -> Resp {
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    if inner.delete(&mut st, id, now) {
        no_content()
    } else {
        not_found()
    }
}

pub(super) fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(super) fn delete_by_tag(inner: &Inner, query: &[(String, String)], rid: &str) -> Resp {
    let tag = match first(query, "tag_name") {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => return unprocessable("tag_name is required to delete droplets by tag", rid),
    };
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    let ids: Vec<u64> = st
        .droplets
        .values()
        .filter(|d| d.deleted_at.is_none() && d.spec.tags.contains(&tag))
        .map(|d| d.id)
        .collect();
    for id in ids {
        inner.delete(&mut st, id, now);
    }
    no_content()
}

// -------------------------------------------------------------------- list

pub(super) fn parse_positive(v: Option<&str>, default: u64) -> Option<u64> {
    match v {
        None | Some("") => Some(default),
        Some(s) => s.parse::<u64>().ok().filter(|n| *n >= 1),
    }
}

pub(super) fn list_droplets(inner: &Inner, query: &[(String, String)], rid: &str) -> Resp {
    let Some(page) = parse_positive(first(query, "page"), 1) else {
        return bad_request("page must be an integer greater than or equal to 1");
    };
    let Some(per_page) = parse_positive(first(query, "per_page"), DEFAULT_PER_PAGE) else {
        return bad_request("per_page must be an integer greater than or equal to 1");
    };
    let per_page = per_page.min(MAX_PER_PAGE);
    let tag = first(query, "tag_name").filter(|s| !s.is_empty());
    let name = first(query, "name").filter(|s| !s.is_empty());
    let kind = first(query, "type").filter(|s| !s.is_empty());
    if tag.is_some() && (name.is_some() || kind.is_some()) {
        return unprocessable("tag_name cannot be combined with name or type", rid);
    }
    let gpus_only = match kind {
        None | Some("droplets") => false,
        Some("gpus") => true,
        Some(_) => return unprocessable("type must be one of: droplets, gpus", rid),
    };

    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    let nulls = st.knobs.nulls_for_empty;
    let matching: Vec<&Droplet> = st
        .droplets
        .values()
        .filter(|d| Inner::list_visible(d, now))
        .filter(|_| !gpus_only)
        .filter(|d| tag.is_none_or(|t| d.spec.tags.iter().any(|x| x == t)))
        .filter(|d| name.is_none_or(|n| d.spec.name.eq_ignore_ascii_case(n)))
        .collect();
    let total = matching.len() as u64;
    let start = (page - 1).saturating_mul(per_page);
    let droplets: Vec<Value> = matching
        .iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(per_page as usize)
        .map(|d| droplet_json(d, nulls))
        .collect();

    let mut extra = String::new();
    for (key, v) in [("tag_name", tag), ("name", name), ("type", kind)] {
        if let Some(v) = v {
            extra.push_str(&format!("&{key}={}", pct_encode(v)));
        }
    }
    let links = page_links(&inner.url, "/v2/droplets", page, per_page, total, &extra);
    let body = json!({ "droplets": droplets, "links": nulls_links(links, total, nulls), "meta": { "total": total } });
    http::json(StatusCode::OK, &null_empties(body, nulls))
}

// -------------------------------------------------------------------- create

fn valid_name(n: &str) -> bool {
    // ^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$, at most 255 characters.
    !n.is_empty()
        && n.len() <= 255
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    // ^[a-zA-Z0-9_\-\:]+$, at most 255 characters.
    !t.is_empty()
        && t.len() <= 255
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Validates a create body; returns the specs (one per name) or a 422 message.
fn parse_create(v: &Value) -> Result<Vec<CreateSpec>, String> {
    let Some(o) = v.as_object() else {
        return Err("The request body must be a JSON object.".into());
    };
    let names: Vec<String> = match (o.get("name"), o.get("names")) {
        (Some(_), Some(_)) => return Err("Specify either name or names, not both.".into()),
        (Some(Value::String(n)), None) => vec![n.clone()],
        (Some(_), None) => return Err("name must be a string.".into()),
        (None, Some(Value::Array(a))) => {
            let mut out = Vec::with_capacity(a.len());
            for n in a {
                match n {
                    Value::String(s) => out.push(s.clone()),
                    _ => return Err("names must be an array of strings.".into()),
                }
            }
            if out.is_empty() {
                return Err("names must contain at least one name.".into());
            }
            out
        }
        (None, Some(_)) => return Err("names must be an array of strings.".into()),
        (None, None) => return Err("You must specify a name or names for the Droplet(s).".into()),
    };
    if names.len() > MAX_NAMES {
        return Err(format!(
            "You can create at most {MAX_NAMES} Droplets at a time; {} names were given.",
            names.len()
        ));
    }
    if !names.iter().all(|n| valid_name(n)) {
        return Err(HOSTNAME_MSG.into());
    }
    let size = match o.get("size") {
        Some(Value::String(s)) if valid_slug(s) => s.clone(),
        Some(Value::String(s)) if !s.is_empty() => {
            return Err("You specified an invalid size for Droplet creation.".into())
        }
        _ => return Err("size is required: you must specify a size for the Droplet.".into()),
    };
    let image = match o.get("image") {
        Some(Value::String(s)) if valid_slug(s) => ImageRef::Slug(s.clone()),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|i| i > 0) => {
            ImageRef::Id(n.as_u64().unwrap_or(1))
        }
        None | Some(Value::Null) => {
            return Err("image is required: you must specify an image for the Droplet.".into())
        }
        Some(_) => return Err("You specified an invalid image for Droplet creation.".into()),
    };
    let region = match o.get("region") {
        None | Some(Value::Null) => "nyc3".to_string(),
        Some(Value::String(r))
            if !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            resolve_region(r)
        }
        Some(_) => return Err("You specified an invalid region for Droplet creation.".into()),
    };
    let mut tags: Vec<String> = Vec::new();
    match o.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for t in a {
                let Value::String(t) = t else {
                    return Err("tags must be an array of strings.".into());
                };
                if !valid_tag(t) {
                    return Err(format!(
                        "Tag \"{t}\" is invalid: tags may contain only letters, numbers, colons, dashes and underscores, up to 255 characters."
                    ));
                }
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        Some(_) => return Err("tags must be an array of strings.".into()),
    }
    let user_data = match o.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_USER_DATA => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err("user_data is too long: it may not exceed 64 KiB (65536 bytes).".into())
        }
        Some(_) => return Err("user_data must be a string.".into()),
    };
    let ssh_keys = match o.get("ssh_keys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(|k| k.is_string() || k.is_u64()) => a.clone(),
        Some(_) => return Err("ssh_keys must be an array of key ids or fingerprints.".into()),
    };
    let vpc_uuid = match o.get("vpc_uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err("vpc_uuid must be a UUID string.".into()),
    };
    let flag = |k: &str| -> Result<bool, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{k} must be a boolean.")),
        }
    };
    let backups = flag("backups")?;
    let ipv6 = flag("ipv6")?;
    let monitoring = flag("monitoring")?;
    let volumes = match o.get("volumes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "volumes must be an array of strings.".to_string())?,
        Some(_) => return Err("volumes must be an array of strings.".into()),
    };
    Ok(names
        .into_iter()
        .map(|name| CreateSpec {
            name,
            region: region.clone(),
            size: size.clone(),
            image: image.clone(),
            tags: tags.clone(),
            user_data: user_data.clone(),
            ssh_keys: ssh_keys.clone(),
            vpc_uuid: vpc_uuid.clone(),
            backups,
            ipv6,
            monitoring,
            volumes: volumes.clone(),
        })
        .collect())
}

pub(super) async fn create_droplets(
    inner: &Arc<Inner>,
    req: Request<Incoming>,
    rid: &str,
    access: &Access,
) -> Resp {
    let Some(body) = http::read_body(req, MAX_BODY).await else {
        return unprocessable("The request body is too large or could not be read.", rid);
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return unprocessable("The request body is not valid JSON.", rid),
    };
    let single = v.get("name").is_some();
    let specs = match parse_create(&v) {
        Ok(s) => s,
        Err(msg) => return unprocessable(&msg, rid),
    };
    // Every spec has the same fields but the name.
    if let Some(spec) = specs.first() {
        if access.lacks(&create_body_scopes(spec)).is_some() {
            return forbidden();
        }
    }

    let now = Instant::now();
    let (body, timer_at) = {
        let mut st = inner.lock();
        inner.advance(&mut st, now);
        let live = Inner::live_count(&st);
        if live + specs.len() > inner.opts.droplet_limit as usize {
            return unprocessable(LIMIT_MSG, rid);
        }
        let mut created = Vec::with_capacity(specs.len());
        for spec in specs {
            let rate = st.knobs.create_failure_rate;
            let fails = st.fault_rng.chance(rate);
            created.push(inner.create(&mut st, spec, fails, now));
        }
        let nulls = st.knobs.nulls_for_empty;
        let droplets: Vec<Value> = created
            .iter()
            .filter_map(|(id, _)| st.droplets.get(id))
            .map(|d| droplet_json(d, nulls))
            .collect();
        let mut actions: Vec<Value> = created
            .iter()
            .map(|(_, a)| json!({ "id": a, "rel": "create", "href": format!("{}/v2/actions/{a}", inner.url) }))
            .collect();
        if !single && st.knobs.shuffle_actions {
            shuffle(&mut actions, &mut st.shuffle_rng);
        }
        let timer_at = now + st.knobs.active_after;
        // With a zero delay the droplet is active from now on (the create
        // response above still shows it as it was created: `new`).
        inner.advance(&mut st, now);
        let body = if single {
            json!({ "droplet": droplets.into_iter().next().unwrap_or(Value::Null), "links": { "actions": actions } })
        } else {
            json!({ "droplets": droplets, "links": { "actions": actions } })
        };
        let body = null_empties(body, nulls);
        (body, timer_at)
    };
    inner.arm_timer(timer_at);
    http::json(StatusCode::ACCEPTED, &body)
}

/// Shuffles `v` (Fisher-Yates) into an order other than the original one (when it has
/// two or more entries), so that the i-th action need not belong to the i-th droplet.
fn shuffle(v: &mut [Value], rng: &mut util::Prng) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let before = v.to_vec();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    if v == before.as_slice() {
        v.rotate_left(1);
    }
}

// -------------------------------------------------------------------- actions / account

pub(super) fn get_action(inner: &Inner, id: u64) -> Resp {
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    let Some(a) = st.actions.get(&id) else {
        return not_found();
    };
    let done = now >= a.completes_at;
    let status = match (done, a.fails) {
        (false, _) => "in-progress",
        (true, false) => "completed",
        (true, true) => "errored",
    };
    let completed_at = if done {
        json!(util::rfc3339(
            a.started_epoch_secs + a.duration.as_secs_f64().round() as u64
        ))
    } else {
        Value::Null
    };
    let nulls = st.knobs.nulls_for_empty;
    let body = json!({ "action": {
        "id": a.id,
        "status": status,
        "type": "create",
        "started_at": util::rfc3339(a.started_epoch_secs),
        "completed_at": completed_at,
        "resource_id": a.droplet_id,
        "resource_type": "droplet",
        "region": region_json(&a.region),
        "region_slug": a.region,
    }});
    http::json(StatusCode::OK, &null_empties(body, nulls))
}

pub(super) fn account(inner: &Inner) -> Resp {
    let mut r = util::Prng::new(util::mix64(inner.opts.seed ^ 0xacc0_0000));
    let uuid = r.uuid();
    let team = r.uuid();
    http::json(
        StatusCode::OK,
        &json!({ "account": {
            "droplet_limit": inner.opts.droplet_limit,
            "floating_ip_limit": 3,
            "email": "sammy@example.com",
            "name": "Sammy the Simulated Shark",
            "uuid": uuid,
            "email_verified": true,
            "status": "active",
            "status_message": " ",
            "team": { "uuid": team, "name": "My Team" },
        }}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_pattern() {
        for ok in ["a", "web-1", "example.com", "-a", ".a", "A.b-C9"] {
            assert!(valid_name(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in ["", "a-", "a.", "a_b", "a b", "é", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(255)));
    }

    #[test]
    fn shuffles_never_keep_the_order() {
        let mut rng = util::Prng::new(3);
        for n in 2..12 {
            for _ in 0..50 {
                let orig: Vec<Value> = (0..n).map(|i| json!(i)).collect();
                let mut v = orig.clone();
                shuffle(&mut v, &mut rng);
                assert_ne!(v, orig);
                let mut sorted = v.clone();
                sorted.sort_by_key(|x| x.as_u64());
                assert_eq!(sorted, orig, "a permutation");
            }
        }
        let mut one = vec![json!(1)];
        shuffle(&mut one, &mut rng);
        assert_eq!(one, vec![json!(1)]);
    }

    #[test]
    fn tags_follow_the_spec_pattern() {
        assert!(valid_tag("env:prod") && valid_tag("a_b-C:9"));
        assert!(!valid_tag("") && !valid_tag("a b") && !valid_tag("a/b"));
        assert!(!valid_tag(&"t".repeat(256)) && valid_tag(&"t".repeat(255)));
    }
}
