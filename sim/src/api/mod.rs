//! The `/v2` API: the request pipeline (latency, auth, rate limit, injected
//! faults, logging, common headers) and the dispatch to the endpoint handlers.

mod auth;
mod droplets;
mod json;
mod reply;
mod sizes;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::http::{Outcome, Resp};
use crate::state::{Inner, RateVerdict, State};
use crate::util;
use crate::RequestRecord;
use auth::Access;
use reply::{error, injected_error, method_not_allowed};

/// The API's 404 body, also served for paths outside every known prefix.
pub(crate) use reply::not_found;

fn set_header(resp: &mut Resp, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

enum Pre {
    /// Answer with this response, no handler.
    Deny(Resp),
    Reset,
    Handle {
        access: Access,
        after: Option<After>,
    },
}

/// An injected failure that comes after the handler ran.
enum After {
    /// A 500/502/503 instead of the answer (picked by the roll).
    Error(u64),
    /// The connection is dropped instead of the answer.
    Reset,
    /// A Cloudflare 520/524 page instead of the answer (picked by the roll).
    Cloudflare(u64),
}

/// The `/v2` pipeline: every request under `/v2` goes through here.
pub(crate) async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Outcome {
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

    // Cloudflare in front: the request never reaches the API (no auth, not counted).
    {
        let mut st = inner.lock();
        let rate = st.knobs.cloudflare_rate;
        if st.fault_rng.chance(rate) {
            let resp = reply::cloudflare(st.fault_rng.next_u64(), false);
            record.status = resp.status().as_u16();
            inner.record(&mut st, record);
            return Outcome::Respond(resp);
        }
    }

    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let params = util::parse_query(query.as_deref());
    let is_create = method == Method::POST && trimmed == "/v2/droplets";
    let (request_id, pre) = {
        let mut st = inner.lock();
        let request_id = st.id_rng.uuid();
        let access = auth::access(&inner, &st.knobs.tokens, &req);
        let pre = match access {
            None => Pre::Deny(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unable to authenticate you.",
                None,
            )),
            Some(access) => match inner.rate_check(&mut st, Instant::now()) {
                RateVerdict::Limited(retry_after) => {
                    let mut r = error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_requests",
                        "API rate limit exceeded.",
                        None,
                    );
                    if let Some(secs) = retry_after {
                        set_header(&mut r, "retry-after", secs.to_string());
                    }
                    Pre::Deny(r)
                }
                RateVerdict::Allowed => {
                    if access
                        .lacks(&auth::route_scopes(&method, &segs, &params))
                        .is_some()
                    {
                        Pre::Deny(reply::forbidden())
                    } else {
                        decide_faults(&mut st, access, is_create)
                    }
                }
            },
        };
        (request_id, pre)
    };

    let mut resp = match pre {
        Pre::Deny(r) => r,
        Pre::Reset => {
            inner.record(&mut inner.lock(), record);
            return Outcome::Reset;
        }
        Pre::Handle { access, after } => {
            let r = dispatch(&inner, req, &request_id, &access).await;
            match after {
                None => r,
                Some(After::Error(roll)) => injected_error(roll),
                Some(After::Reset) => {
                    inner.record(&mut inner.lock(), record);
                    return Outcome::Reset;
                }
                Some(After::Cloudflare(roll)) => {
                    let resp = reply::cloudflare(roll, true);
                    record.status = resp.status().as_u16();
                    inner.record(&mut inner.lock(), record);
                    return Outcome::Respond(resp);
                }
            }
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

/// Rolls the injected faults of an allowed request: a 5xx, else a reset, else a
/// Cloudflare page after the effect; each before or after the handler per its placement.
fn decide_faults(st: &mut State, access: Access, is_create: bool) -> Pre {
    let k = &st.knobs;
    let (error_rate, reset_rate, cf_rate) = (k.error_rate, k.reset_rate, k.cloudflare_after_rate);
    let (error_at, reset_at) = (k.error_placement, k.reset_placement);
    let after = if st.fault_rng.chance(error_rate) {
        let roll = st.fault_rng.next_u64();
        if !error_at.after(is_create) {
            return Pre::Deny(injected_error(roll));
        }
        Some(After::Error(roll))
    } else if st.fault_rng.chance(reset_rate) {
        if !reset_at.after(is_create) {
            return Pre::Reset;
        }
        Some(After::Reset)
    } else if st.fault_rng.chance(cf_rate) {
        Some(After::Cloudflare(st.fault_rng.next_u64()))
    } else {
        None
    };
    Pre::Handle { access, after }
}

async fn dispatch(inner: &Arc<Inner>, req: Request<Incoming>, rid: &str, access: &Access) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = util::parse_query(req.uri().query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match segs.as_slice() {
        ["v2", "droplets"] => match method {
            Method::GET => droplets::list_droplets(inner, &query, rid),
            Method::POST => droplets::create_droplets(inner, req, rid, access).await,
            Method::DELETE => droplets::delete_by_tag(inner, &query, rid),
            _ => method_not_allowed(),
        },
        ["v2", "droplets", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            match method {
                Method::GET => droplets::get_droplet(inner, id),
                Method::DELETE => droplets::delete_droplet(inner, id),
                _ => method_not_allowed(),
            }
        }
        ["v2", "actions", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            match method {
                Method::GET => droplets::get_action(inner, id),
                _ => method_not_allowed(),
            }
        }
        ["v2", "sizes"] => match method {
            Method::GET => {
                let nulls = inner.lock().knobs.nulls_for_empty;
                sizes::list_sizes(&inner.url, &query, nulls)
            }
            _ => method_not_allowed(),
        },
        ["v2", "account"] => match method {
            Method::GET => droplets::account(inner),
            _ => method_not_allowed(),
        },
        _ => not_found(),
    }
}
