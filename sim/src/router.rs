//! Which handler serves a request: `/v2/...` the API, `/metadata/...` the
//! metadata service, `/_sim/...` the control endpoints. The only module that
//! knows all three; the HTTP plumbing gets it as its handler.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use tokio::net::TcpListener;

use crate::http::{self, Outcome};
use crate::state::Inner;
use crate::{api, control, metadata};

/// Serves the API, metadata and control endpoints on `listener` until dropped.
pub(crate) async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    http::serve(listener, move |req| route(inner.clone(), req)).await
}

/// Entry point for every request on the main listener.
async fn route(inner: Arc<Inner>, req: Request<Incoming>) -> Outcome {
    let path = req.uri().path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return Outcome::Respond(control::handle(&inner, req).await);
    }
    if path == "/metadata" || path.starts_with("/metadata/") || path == "/metadata/v1.json" {
        return Outcome::Respond(metadata::handle(&inner, &path));
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return api::handle(inner, req).await;
    }
    Outcome::Respond(api::not_found())
}
