//! The `/v2` API: the request pipeline (latency, auth, rate limit, injected
//! faults, logging, common headers) and the dispatch to the endpoint handlers.

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
use crate::state::{Inner, RateVerdict};
use crate::util;
use crate::RequestRecord;
use reply::{error, injected_error, method_not_allowed};

/// The API's 404 body, also served for paths outside every known prefix.
pub(crate) use reply::not_found;

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

async fn dispatch(inner: &Arc<Inner>, req: Request<Incoming>, rid: &str) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = util::parse_query(req.uri().query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match segs.as_slice() {
        ["v2", "droplets"] => match method {
            Method::GET => droplets::list_droplets(inner, &query, rid),
            Method::POST => droplets::create_droplets(inner, req, rid).await,
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
            Method::GET => sizes::list_sizes(&inner.url, &query),
            _ => method_not_allowed(),
        },
        ["v2", "account"] => match method {
            Method::GET => droplets::account(inner),
            _ => method_not_allowed(),
        },
        _ => not_found(),
    }
}
