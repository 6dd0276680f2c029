//! The `/v2` API: request pipeline (latency, auth, rate limit, injected
//! faults, logging, common headers) and the endpoint handlers.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};

use crate::http::{self, Outcome, Resp};
use crate::state::{public_gateway, CreateSpec, Droplet, ImageRef, Inner, RateVerdict, Status};
use crate::util::{self, pct_encode};
use crate::RequestRecord;

pub(crate) const NOT_FOUND_MSG: &str = "The resource you requested could not be found.";
const HOSTNAME_MSG: &str = "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)";
const LIMIT_MSG: &str = "creating this/these droplet(s) will exceed your droplet limit";
/// Largest accepted `user_data`, in bytes (64 KiB).
pub(crate) const MAX_USER_DATA: usize = 64 * 1024;
/// Largest accepted request body.
const MAX_BODY: usize = 1024 * 1024;
const MAX_NAMES: usize = 10;
const DEFAULT_PER_PAGE: u64 = 20;
const MAX_PER_PAGE: u64 = 200;

/// Entry point for every request on the main listener.
pub(crate) async fn route(inner: Arc<Inner>, req: Request<Incoming>) -> Outcome {
    let path = req.uri().path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return Outcome::Respond(crate::control::handle(&inner, req).await);
    }
    if path == "/metadata" || path.starts_with("/metadata/") || path == "/metadata/v1.json" {
        return Outcome::Respond(crate::metadata::handle(&inner, &path));
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return api(inner, req).await;
    }
    Outcome::Respond(error(
        StatusCode::NOT_FOUND,
        "not_found",
        NOT_FOUND_MSG,
        None,
    ))
}

/// An error body `{"id", "message", "request_id"?}`.
pub(crate) fn error(status: StatusCode, id: &str, message: &str, request_id: Option<&str>) -> Resp {
    let mut body = json!({ "id": id, "message": message });
    if let Some(rid) = request_id {
        body["request_id"] = json!(rid);
    }
    http::json(status, &body)
}

fn unprocessable(message: &str, request_id: &str) -> Resp {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
        message,
        Some(request_id),
    )
}

fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND_MSG, None)
}

fn set_header(resp: &mut Resp, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

fn authorized(inner: &Inner, req: &Request<Incoming>) -> bool {
    let Some(v) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let Ok(v) = v.to_str() else { return false };
    let Some((scheme, token)) = v.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token.trim() == inner.opts.token
}

enum Pre {
    /// Answer with this response, no handler.
    Deny(Resp),
    Reset,
    Handle {
        reset_after: bool,
    },
}

/// The `/v2` pipeline.
async fn api(inner: Arc<Inner>, req: Request<Incoming>) -> Outcome {
    let arrived = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        status: 0,
        at_ms: inner.ms_since_start(arrived),
    };

    let latency = inner.lock().knobs.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let is_auth = authorized(&inner, &req);
    let (request_id, pre) = {
        let mut st = inner.lock();
        let request_id = st.id_rng.uuid();
        let pre = if !is_auth {
            Pre::Deny(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unable to authenticate you.",
                None,
            ))
        } else {
            match inner.rate_check(&mut st, Instant::now()) {
                RateVerdict::Limited(secs) => {
                    let mut r = error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_requests",
                        "API rate limit exceeded.",
                        None,
                    );
                    set_header(&mut r, "retry-after", secs.to_string());
                    Pre::Deny(r)
                }
                RateVerdict::Allowed => {
                    let error_rate = st.knobs.error_rate;
                    let reset_rate = st.knobs.reset_rate;
                    if st.fault_rng.chance(error_rate) {
                        Pre::Deny(injected_error(st.fault_rng.next_u64()))
                    } else if st.fault_rng.chance(reset_rate) {
                        if method == Method::POST && path.trim_end_matches('/') == "/v2/droplets" {
                            Pre::Handle { reset_after: true }
                        } else {
                            Pre::Reset
                        }
                    } else {
                        Pre::Handle { reset_after: false }
                    }
                }
            }
        };
        (request_id, pre)
    };

    let mut resp = match pre {
        Pre::Deny(r) => r,
        Pre::Reset => {
            inner.record(&mut inner.lock(), record);
            return Outcome::Reset;
        }
        Pre::Handle { reset_after } => {
            let r = dispatch(&inner, req, &request_id).await;
            if reset_after {
                inner.record(&mut inner.lock(), record);
                return Outcome::Reset;
            }
            r
        }
    };

    let mut st = inner.lock();
    let (limit, mut remaining, reset) = inner.rate_headers(&st, Instant::now());
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        remaining = 0;
    }
    set_header(&mut resp, "ratelimit-limit", limit.to_string());
    set_header(&mut resp, "ratelimit-remaining", remaining.to_string());
    set_header(&mut resp, "ratelimit-reset", reset.to_string());
    set_header(&mut resp, "x-request-id", request_id);
    record.status = resp.status().as_u16();
    inner.record(&mut st, record);
    Outcome::Respond(resp)
}

fn injected_error(roll: u64) -> Resp {
    match roll % 3 {
        0 => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Unexpected server-side error",
            None,
        ),
        1 => error(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "The server received an invalid response from an upstream server.",
            None,
        ),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The service is temporarily unavailable. Please try again later.",
            None,
        ),
    }
}

fn method_not_allowed() -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "The requested method is not allowed for this resource.",
        None,
    )
}

async fn dispatch(inner: &Arc<Inner>, req: Request<Incoming>, rid: &str) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = util::parse_query(req.uri().query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match segs.as_slice() {
        ["v2", "droplets"] => match method {
            Method::GET => list_droplets(inner, &query, rid),
            Method::POST => create_droplets(inner, req, rid).await,
            Method::DELETE => delete_by_tag(inner, &query, rid),
            _ => method_not_allowed(),
        },
        ["v2", "droplets", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            match method {
                Method::GET => get_droplet(inner, id),
                Method::DELETE => delete_droplet(inner, id),
                _ => method_not_allowed(),
            }
        }
        ["v2", "actions", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            match method {
                Method::GET => get_action(inner, id),
                _ => method_not_allowed(),
            }
        }
        ["v2", "account"] => match method {
            Method::GET => account(inner),
            _ => method_not_allowed(),
        },
        _ => not_found(),
    }
}

// -------------------------------------------------------------------- get / delete

fn get_droplet(inner: &Inner, id: u64) -> Resp {
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    match st.droplets.get(&id) {
        Some(d) if inner.api_visible(d, now) => {
            http::json(StatusCode::OK, &json!({ "droplet": droplet_json(d) }))
        }
        _ => not_found(),
    }
}

fn delete_droplet(inner: &Inner, id: u64) -> Resp {
    let now = Instant::now();
    let mut st = inner.lock();
    inner.advance(&mut st, now);
    if inner.delete(&mut st, id, now) {
        no_content()
    } else {
        not_found()
    }
}

/// 204 with an empty body; the real API sets a content type on it too.
fn no_content() -> Resp {
    let mut r = http::empty(StatusCode::NO_CONTENT);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn delete_by_tag(inner: &Inner, query: &[(String, String)], rid: &str) -> Resp {
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

fn parse_positive(v: Option<&str>, default: u64) -> Option<u64> {
    match v {
        None | Some("") => Some(default),
        Some(s) => s.parse::<u64>().ok().filter(|n| *n >= 1),
    }
}

fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_request", message, None)
}

fn list_droplets(inner: &Inner, query: &[(String, String)], rid: &str) -> Resp {
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
    let matching: Vec<&Droplet> = st
        .droplets
        .values()
        .filter(|d| inner.api_visible(d, now))
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
        .map(|d| droplet_json(d))
        .collect();

    let mut extra = String::new();
    for (key, v) in [("tag_name", tag), ("name", name), ("type", kind)] {
        if let Some(v) = v {
            extra.push_str(&format!("&{key}={}", pct_encode(v)));
        }
    }
    let links = page_links(&inner.url, page, per_page, total, &extra);
    http::json(
        StatusCode::OK,
        &json!({ "droplets": droplets, "links": links, "meta": { "total": total } }),
    )
}

/// `{}` when everything fits one page, else `{"pages": {...}}` with full URLs.
pub(crate) fn page_links(base: &str, page: u64, per_page: u64, total: u64, extra: &str) -> Value {
    if total <= per_page {
        return json!({});
    }
    let last = total.div_ceil(per_page);
    let url = |n: u64| format!("{base}/v2/droplets?page={n}&per_page={per_page}{extra}");
    let mut pages = Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(url(1)));
        pages.insert("prev".into(), json!(url((page - 1).min(last))));
    }
    if page < last {
        pages.insert("next".into(), json!(url(page + 1)));
        pages.insert("last".into(), json!(url(last)));
    }
    json!({ "pages": pages })
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
pub(crate) fn parse_create(v: &Value) -> Result<Vec<CreateSpec>, String> {
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

async fn create_droplets(inner: &Arc<Inner>, req: Request<Incoming>, rid: &str) -> Resp {
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
        let droplets: Vec<Value> = created
            .iter()
            .filter_map(|(id, _)| st.droplets.get(id))
            .map(droplet_json)
            .collect();
        let actions: Vec<Value> = created
            .iter()
            .map(|(_, a)| json!({ "id": a, "rel": "create", "href": format!("{}/v2/actions/{a}", inner.url) }))
            .collect();
        let timer_at = now + st.knobs.active_after;
        // With a zero delay the droplet is active from now on (the create
        // response above still shows it as it was created: `new`).
        inner.advance(&mut st, now);
        let body = if single {
            json!({ "droplet": droplets.into_iter().next().unwrap_or(Value::Null), "links": { "actions": actions } })
        } else {
            json!({ "droplets": droplets, "links": { "actions": actions } })
        };
        (body, timer_at)
    };
    inner.arm_timer(timer_at);
    http::json(StatusCode::ACCEPTED, &body)
}

// -------------------------------------------------------------------- actions / account

fn get_action(inner: &Inner, id: u64) -> Resp {
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
    http::json(StatusCode::OK, &body)
}

fn account(inner: &Inner) -> Resp {
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

// -------------------------------------------------------------------- models

const REGIONS: &[(&str, &str)] = &[
    ("ams3", "Amsterdam 3"),
    ("atl1", "Atlanta 1"),
    ("blr1", "Bangalore 1"),
    ("fra1", "Frankfurt 1"),
    ("lon1", "London 1"),
    ("nyc1", "New York 1"),
    ("nyc2", "New York 2"),
    ("nyc3", "New York 3"),
    ("sfo2", "San Francisco 2"),
    ("sfo3", "San Francisco 3"),
    ("sgp1", "Singapore 1"),
    ("syd1", "Sydney 1"),
    ("tor1", "Toronto 1"),
];

/// A region prefix such as `nyc` picks the first datacenter of that region.
fn resolve_region(r: &str) -> String {
    if !r.bytes().any(|b| b.is_ascii_digit()) {
        if let Some((slug, _)) = REGIONS.iter().rev().find(|(s, _)| s.starts_with(r)) {
            return slug.to_string();
        }
    }
    r.to_string()
}

/// (slug, memory MB, vcpus, disk GB, transfer TB, price_monthly)
const SIZES: &[(&str, u64, u64, u64, f64, f64)] = &[
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0),
    ("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0),
    ("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0),
    ("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0),
    ("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0),
];

fn size_info(slug: &str) -> (u64, u64, u64, f64, f64) {
    if let Some(&(_, m, c, d, t, p)) = SIZES.iter().find(|s| s.0 == slug) {
        return (m, c, d, t, p);
    }
    // Unknown slugs: read "<n>vcpu" and "<n>gb" out of the slug.
    let num_before = |suffix: &str| {
        slug.split('-').find_map(|part| {
            part.strip_suffix(suffix)
                .and_then(|n| n.parse::<u64>().ok())
        })
    };
    let vcpus = num_before("vcpu").unwrap_or(1).max(1);
    let gb = num_before("gb").unwrap_or(1).max(1);
    (gb * 1024, vcpus, 25 * gb, gb as f64, 6.0 * gb as f64)
}

fn region_json(slug: &str) -> Value {
    let name = REGIONS
        .iter()
        .find(|(s, _)| *s == slug)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| slug.to_string());
    json!({
        "name": name,
        "slug": slug,
        "features": ["private_networking", "backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"],
        "available": true,
        "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>(),
    })
}

fn all_region_slugs() -> Vec<&'static str> {
    REGIONS.iter().map(|(s, _)| *s).collect()
}

fn size_json(slug: &str) -> Value {
    let (memory, vcpus, disk, transfer, price) = size_info(slug);
    json!({
        "slug": slug,
        "memory": memory,
        "vcpus": vcpus,
        "disk": disk,
        "transfer": transfer,
        "price_monthly": price,
        "price_hourly": price / 672.0,
        "regions": all_region_slugs(),
        "available": true,
        "description": "Basic",
    })
}

fn image_json(image: &ImageRef) -> Value {
    let (id, slug, name, distribution, kind) = match image {
        ImageRef::Slug(s) => {
            let (distro, rest) = s.split_once('-').unwrap_or((s.as_str(), ""));
            let distribution = match distro {
                "ubuntu" => "Ubuntu".to_string(),
                "debian" => "Debian".to_string(),
                "centos" => "CentOS".to_string(),
                "fedora" => "Fedora".to_string(),
                "rockylinux" => "Rocky Linux".to_string(),
                "almalinux" => "AlmaLinux".to_string(),
                other => {
                    let mut c = other.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect())
                        .unwrap_or_default()
                }
            };
            let name = if rest.is_empty() {
                s.clone()
            } else {
                image_name(rest)
            };
            (
                100_000_000 + util::hash_str(s) % 100_000_000,
                json!(s),
                name,
                distribution,
                "base",
            )
        }
        ImageRef::Id(i) => (
            *i,
            Value::Null,
            format!("snapshot-{i}"),
            "Unknown".to_string(),
            "snapshot",
        ),
    };
    json!({
        "id": id,
        "name": name,
        "distribution": distribution,
        "slug": slug,
        "public": kind == "base",
        "regions": all_region_slugs(),
        "created_at": "2024-04-25T00:00:00Z",
        "type": kind,
        "min_disk_size": 15,
        "size_gigabytes": 2.36,
        "description": "",
        "tags": [],
        "status": "available",
        "error_message": "",
    })
}

/// "24-04-x64" -> "24.04 x64": numeric parts joined with dots, the rest with spaces.
fn image_name(rest: &str) -> String {
    let mut out = String::new();
    let mut prev_numeric = false;
    for (i, part) in rest.split('-').enumerate() {
        let numeric = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if i > 0 {
            out.push(if numeric && prev_numeric { '.' } else { ' ' });
        }
        out.push_str(part);
        prev_numeric = numeric;
    }
    out
}

fn features(d: &Droplet) -> Vec<&'static str> {
    let mut f = Vec::new();
    if d.spec.backups {
        f.push("backups");
    }
    f.push("private_networking");
    if d.spec.ipv6 {
        f.push("ipv6");
    }
    if d.spec.monitoring {
        f.push("monitoring");
    }
    f
}

fn next_backup_window(d: &Droplet) -> Value {
    if !d.spec.backups {
        return Value::Null;
    }
    // The next day's window, 00:00 to 23:00 UTC.
    let day = d.created_epoch_secs / 86_400 + 1;
    json!({
        "start": util::rfc3339(day * 86_400),
        "end": util::rfc3339(day * 86_400 + 23 * 3600),
    })
}

/// A droplet in the API's shape (spec `models/droplet.yml`).
pub(crate) fn droplet_json(d: &Droplet) -> Value {
    let (memory, vcpus, disk, _, _) = size_info(&d.spec.size);
    let v4: Vec<Value> = match (d.status, d.ip) {
        (Status::Active | Status::Off, Some(k)) => vec![
            json!({
                "ip_address": crate::state::private_ip(k).to_string(),
                "netmask": "255.255.0.0",
                "gateway": "nil",
                "type": "private",
            }),
            json!({
                "ip_address": crate::state::public_ip(k).to_string(),
                "netmask": "255.255.255.0",
                "gateway": public_gateway(k).to_string(),
                "type": "public",
            }),
        ],
        _ => Vec::new(),
    };
    json!({
        "id": d.id,
        "name": d.spec.name,
        "memory": memory,
        "vcpus": vcpus,
        "disk": disk,
        "disk_info": [{ "type": "local", "size": { "amount": disk, "unit": "gib" } }],
        "locked": d.status == Status::New,
        "status": d.status.as_str(),
        "kernel": null,
        "created_at": util::rfc3339(d.created_epoch_secs),
        "features": features(d),
        "backup_ids": [],
        "next_backup_window": next_backup_window(d),
        "snapshot_ids": [],
        "image": image_json(&d.spec.image),
        "volume_ids": d.spec.volumes,
        "size": size_json(&d.spec.size),
        "size_slug": d.spec.size,
        "networks": { "v4": v4, "v6": [] },
        "region": region_json(&d.spec.region),
        "tags": d.spec.tags,
        "vpc_uuid": d.vpc_uuid,
    })
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
    fn tags_follow_the_spec_pattern() {
        assert!(valid_tag("env:prod") && valid_tag("a_b-C:9"));
        assert!(!valid_tag("") && !valid_tag("a b") && !valid_tag("a/b"));
        assert!(!valid_tag(&"t".repeat(256)) && valid_tag(&"t".repeat(255)));
    }

    #[test]
    fn links_shapes() {
        let b = "http://x";
        assert_eq!(page_links(b, 1, 20, 20, ""), json!({}));
        let l = page_links(b, 1, 200, 450, "&tag_name=a%3Ab");
        assert_eq!(
            l,
            json!({"pages": {
                "next": "http://x/v2/droplets?page=2&per_page=200&tag_name=a%3Ab",
                "last": "http://x/v2/droplets?page=3&per_page=200&tag_name=a%3Ab"}})
        );
        let l = page_links(b, 9, 200, 450, "");
        assert_eq!(
            l,
            json!({"pages": {
                "first": "http://x/v2/droplets?page=1&per_page=200",
                "prev": "http://x/v2/droplets?page=3&per_page=200"}})
        );
    }

    #[test]
    fn region_prefix_and_sizes() {
        assert_eq!(resolve_region("nyc"), "nyc3");
        assert_eq!(resolve_region("xyz9"), "xyz9");
        assert_eq!(size_info("s-1vcpu-1gb").0, 1024);
        assert_eq!(size_info("c-4vcpu-8gb").1, 4);
        assert_eq!(size_info("c-4vcpu-8gb").0, 8192);
        assert_eq!(image_name("24-04-x64"), "24.04 x64");
        assert_eq!(image_name("12-x64"), "12 x64");
    }
}
