//! Control endpoints under `/_sim/` (no auth, not logged, not rate limited).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::http::{self, Resp};
use crate::state::Inner;
use crate::Faults;

#[derive(Deserialize)]
struct DirectCreate {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct Lock {
    locked: bool,
}

/// Body of `POST /_sim/droplets/{id}/app`: `service_time_ms` is required; `null`
/// clears the droplet's override.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppKnobs {
    service_time_ms: Option<u64>,
}

fn bad(msg: &str) -> Resp {
    http::json(StatusCode::BAD_REQUEST, &json!({ "error": msg }))
}

fn not_found() -> Resp {
    http::json(
        StatusCode::NOT_FOUND,
        &json!({ "error": "no such control endpoint or droplet" }),
    )
}

pub(crate) async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["_sim", "state"]) => {
            let droplets = inner.sim_droplets();
            let st = inner.lock();
            http::json(
                StatusCode::OK,
                &json!({ "droplets": droplets, "options": inner.options_json(&st) }),
            )
        }
        (Method::GET, ["_sim", "requests"]) => http::json(StatusCode::OK, &json!(inner.requests())),
        (Method::DELETE, ["_sim", "requests"]) => {
            inner.clear_requests();
            http::empty(StatusCode::NO_CONTENT)
        }
        (Method::POST, ["_sim", "faults"]) => {
            let Some(body) = http::read_body(req, 64 * 1024).await else {
                return bad("body too large");
            };
            let faults: Faults = match serde_json::from_slice(&body) {
                Ok(f) => f,
                Err(e) => return bad(&format!("invalid Faults JSON: {e}")),
            };
            if let Err(e) = faults.validate() {
                return bad(&e.to_string());
            }
            inner.set_faults(&faults);
            let st = inner.lock();
            http::json(StatusCode::OK, &inner.options_json(&st))
        }
        (Method::GET, ["_sim", "droplets"]) => {
            http::json(StatusCode::OK, &json!(inner.sim_droplets()))
        }
        (Method::POST, ["_sim", "droplets"]) => {
            let Some(body) = http::read_body(req, 64 * 1024).await else {
                return bad("body too large");
            };
            let c: DirectCreate = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => return bad(&format!("expected {{\"name\": .., \"tags\": [..]}}: {e}")),
            };
            let id = inner.create_direct(&c.name, c.tags);
            let st = inner.lock();
            match st.droplets.get(&id) {
                Some(d) => http::json(StatusCode::CREATED, &json!(inner.sim_droplet(d))),
                None => http::json(StatusCode::CREATED, &json!({ "id": id })),
            }
        }
        (Method::GET, ["_sim", "droplets", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            let droplets = inner.sim_droplets();
            let st = inner.lock();
            match st.droplets.get(&id) {
                Some(d) => http::json(
                    StatusCode::OK,
                    &detail(inner, d, droplets.iter().any(|x| x.id == id)),
                ),
                None => not_found(),
            }
        }
        (Method::POST, ["_sim", "droplets", id, "lock"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            let Some(body) = http::read_body(req, 64 * 1024).await else {
                return bad("body too large");
            };
            let l: Lock = match serde_json::from_slice(&body) {
                Ok(l) => l,
                Err(e) => return bad(&format!("expected {{\"locked\": true|false}}: {e}")),
            };
            if !inner.lock_direct(id, l.locked) {
                return not_found();
            }
            let st = inner.lock();
            match st.droplets.get(&id) {
                Some(d) => http::json(StatusCode::OK, &json!(inner.sim_droplet(d))),
                None => not_found(),
            }
        }
        (Method::POST, ["_sim", "droplets", id, "app"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            let Some(body) = http::read_body(req, 64 * 1024).await else {
                return bad("body too large");
            };
            let expected = "expected {\"service_time_ms\": N|null}";
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return bad(&format!("{expected}: {e}")),
            };
            // `null` is a value here (clear), so the key itself must be present.
            if v.get("service_time_ms").is_none() {
                return bad(expected);
            }
            let a: AppKnobs = match serde_json::from_value(v) {
                Ok(a) => a,
                Err(e) => return bad(&format!("{expected}: {e}")),
            };
            let t = a.service_time_ms.map(std::time::Duration::from_millis);
            if !inner.set_app_service_time_direct(id, t) {
                return not_found();
            }
            http::json(
                StatusCode::OK,
                &json!({ "id": id, "service_time_ms": a.service_time_ms }),
            )
        }
        (Method::DELETE, ["_sim", "droplets", id]) => match id.parse::<u64>() {
            Ok(id) if inner.delete_direct(id) => http::empty(StatusCode::NO_CONTENT),
            _ => not_found(),
        },
        _ => not_found(),
    }
}

/// Everything the simulator stores about a droplet, including what the
/// create request asked for.
fn detail(inner: &Inner, d: &crate::state::Droplet, live: bool) -> serde_json::Value {
    let image = match &d.spec.image {
        crate::state::ImageRef::Slug(s) => json!(s),
        crate::state::ImageRef::Id(i) => json!(i),
    };
    json!({
        "droplet": inner.sim_droplet(d),
        "deleted": !live,
        "region": d.spec.region,
        "size": d.spec.size,
        "image": image,
        "ssh_keys": d.spec.ssh_keys,
        "vpc_uuid": d.vpc_uuid,
        "backups": d.spec.backups,
        "ipv6": d.spec.ipv6,
        "monitoring": d.spec.monitoring,
        "create_fails": d.fails,
        "app_service_time_ms": d.app_override.get().map(|t| t.as_millis() as u64),
    })
}
