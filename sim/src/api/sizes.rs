//! `GET /v2/sizes`: the droplet sizes with their prices (spec `resources/sizes`),
//! paginated like the droplet list.

use hyper::StatusCode;
use serde_json::{json, Value};

use super::droplets::{first, parse_positive, DEFAULT_PER_PAGE, MAX_PER_PAGE};
use super::json::{null_empties, nulls_links, page_links, size_json, size_slugs};
use super::reply::bad_request;
use crate::http::{self, Resp};

/// `{"sizes": [...], "links": L, "meta": {"total": N}}`, `page` and `per_page` as for
/// droplets; `nulls_for_empty` applies as to the droplet list.
pub(super) fn list_sizes(base: &str, query: &[(String, String)], nulls: bool) -> Resp {
    let Some(page) = parse_positive(first(query, "page"), 1) else {
        return bad_request("page must be an integer greater than or equal to 1");
    };
    let Some(per_page) = parse_positive(first(query, "per_page"), DEFAULT_PER_PAGE) else {
        return bad_request("per_page must be an integer greater than or equal to 1");
    };
    let per_page = per_page.min(MAX_PER_PAGE);
    let slugs = size_slugs();
    let total = slugs.len() as u64;
    let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let sizes: Vec<Value> = slugs
        .iter()
        .skip(start)
        .take(per_page as usize)
        .map(|s| size_json(s))
        .collect();
    let links = page_links(base, "/v2/sizes", page, per_page, total, "");
    let body = json!({ "sizes": sizes, "links": nulls_links(links, total, nulls), "meta": { "total": total } });
    http::json(StatusCode::OK, &null_empties(body, nulls))
}
