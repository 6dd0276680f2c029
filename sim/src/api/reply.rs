//! The API's canned responses: error bodies in the spec's shape (`{"id", "message",
//! "request_id"?}`) and the 204.

use hyper::header::HeaderValue;
use hyper::StatusCode;
use serde_json::json;

use crate::http::{self, Resp};

const NOT_FOUND_MSG: &str = "The resource you requested could not be found.";
/// What the real API answers a custom-scoped token that lacks a scope (seen in
/// ansible-collections/community.digitalocean#375; the spec's `forbidden.yml` example
/// says "You do not have permission to perform this action.").
pub(crate) const FORBIDDEN_MSG: &str = "You are not authorized to perform this operation.";

/// An error body `{"id", "message", "request_id"?}`.
pub(crate) fn error(status: StatusCode, id: &str, message: &str, request_id: Option<&str>) -> Resp {
    let mut body = json!({ "id": id, "message": message });
    if let Some(rid) = request_id {
        body["request_id"] = json!(rid);
    }
    http::json(status, &body)
}

/// 422 `unprocessable_entity`, with the request's id.
pub(crate) fn unprocessable(message: &str, request_id: &str) -> Resp {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
        message,
        Some(request_id),
    )
}

/// 404 `not_found`, the spec's example body.
pub(crate) fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND_MSG, None)
}

/// 400 `bad_request`.
pub(crate) fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_request", message, None)
}

/// 405 `method_not_allowed`.
pub(crate) fn method_not_allowed() -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "The requested method is not allowed for this resource.",
        None,
    )
}

/// An injected fault: 500, 502 or 503, picked by `roll`.
pub(crate) fn injected_error(roll: u64) -> Resp {
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

/// 403 `forbidden`: the token lacks a scope.
pub(crate) fn forbidden() -> Resp {
    error(StatusCode::FORBIDDEN, "forbidden", FORBIDDEN_MSG, None)
}

/// The statuses of a Cloudflare error page before the request reached the API (any of
/// them) and after it took effect (520 unknown error, 524 origin timeout).
const CLOUDFLARE_BEFORE: [u16; 5] = [520, 521, 522, 523, 524];
const CLOUDFLARE_AFTER: [u16; 2] = [520, 524];

/// A Cloudflare-generated error page: status 520..=524 (picked by `roll`), an HTML body,
/// `content-type: text/html; charset=UTF-8`, `server: cloudflare` and a `cf-ray`, and
/// none of the API's headers (no `ratelimit-*`, no `x-request-id`).
pub(crate) fn cloudflare(roll: u64, after: bool) -> Resp {
    let codes: &[u16] = if after {
        &CLOUDFLARE_AFTER
    } else {
        &CLOUDFLARE_BEFORE
    };
    let code = codes[(roll % codes.len() as u64) as usize];
    let title = match code {
        520 => "Web server is returning an unknown error",
        521 => "Web server is down",
        522 => "Connection timed out",
        523 => "Origin is unreachable",
        _ => "A timeout occurred",
    };
    let ray = format!("{:016x}", crate::util::mix64(roll));
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head>\n<title>api.digitalocean.com | {code}: {title}</title>\n\
         <meta charset=\"UTF-8\" />\n</head>\n<body>\n<div id=\"cf-error-details\">\n\
         <h1>{title}</h1>\n<span>Error code {code}</span>\n\
         <p>Visit <a href=\"https://www.cloudflare.com/\">cloudflare.com</a> for more information.</p>\n\
         <span>Cloudflare Ray ID: <strong>{ray}</strong></span>\n</div>\n</body>\n</html>\n"
    );
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = http::typed(status, "text/html; charset=UTF-8", body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::SERVER,
        HeaderValue::from_static("cloudflare"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{ray}-IAD")) {
        h.insert(hyper::header::HeaderName::from_static("cf-ray"), v);
    }
    r
}

/// 204 with an empty body; the real API sets a content type on it too.
pub(crate) fn no_content() -> Resp {
    let mut r = http::empty(StatusCode::NO_CONTENT);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
