//! The API's canned responses: error bodies in the spec's shape (`{"id", "message",
//! "request_id"?}`) and the 204.

use hyper::header::HeaderValue;
use hyper::StatusCode;
use serde_json::json;

use crate::http::{self, Resp};

const NOT_FOUND_MSG: &str = "The resource you requested could not be found.";

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

/// 204 with an empty body; the real API sets a content type on it too.
pub(crate) fn no_content() -> Resp {
    let mut r = http::empty(StatusCode::NO_CONTENT);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
