//! The API's JSON models: the droplet object (spec `models/droplet.yml`) with its
//! region, size and image objects, and the list pages' `links`.

use serde_json::{json, Map, Value};

use crate::state::{private_ip, public_gateway, public_ip, Droplet, ImageRef, Status};
use crate::util;

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
pub(super) fn resolve_region(r: &str) -> String {
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

pub(super) fn region_json(slug: &str) -> Value {
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

/// The hourly price: the monthly one over 672 hours (28 days), rounded to 5 decimals as
/// the real API shows it (`s-1vcpu-1gb`: 6.0 a month, 0.00893 an hour).
pub(super) fn price_hourly(price_monthly: f64) -> f64 {
    (price_monthly / 672.0 * 100_000.0).round() / 100_000.0
}

/// A size object (spec `resources/sizes/models/size.yml`).
pub(super) fn size_json(slug: &str) -> Value {
    let (memory, vcpus, disk, transfer, price) = size_info(slug);
    json!({
        "slug": slug,
        "memory": memory,
        "vcpus": vcpus,
        "disk": disk,
        "transfer": transfer,
        "price_monthly": price,
        "price_hourly": price_hourly(price),
        "regions": all_region_slugs(),
        "available": true,
        "description": "Basic",
        "disk_info": [{ "type": "local", "size": { "amount": disk, "unit": "gib" } }],
    })
}

/// The slugs `GET /v2/sizes` lists, cheapest first.
pub(super) fn size_slugs() -> Vec<&'static str> {
    SIZES.iter().map(|s| s.0).collect()
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

/// A droplet in the API's shape (spec `models/droplet.yml`). With `nulls`
/// (`nulls_for_empty`), a droplet without addresses has `networks: null` and no
/// `vpc_uuid` yet (`null`); [`null_empties`] does the rest.
pub(super) fn droplet_json(d: &Droplet, nulls: bool) -> Value {
    let (memory, vcpus, disk, _, _) = size_info(&d.spec.size);
    let v4: Vec<Value> = match (d.status, d.ip) {
        (Status::Active | Status::Off, Some(k)) => vec![
            json!({
                "ip_address": private_ip(k).to_string(),
                "netmask": "255.255.0.0",
                "gateway": "nil",
                "type": "private",
            }),
            json!({
                "ip_address": public_ip(k).to_string(),
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
        "locked": d.locked(),
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
        "networks": if nulls && v4.is_empty() { Value::Null } else { json!({ "v4": v4, "v6": [] }) },
        "region": region_json(&d.spec.region),
        "tags": d.spec.tags,
        "vpc_uuid": if nulls && d.ip.is_none() { Value::Null } else { json!(d.vpc_uuid) },
    })
}

/// With `nulls`, every empty array, empty object and empty string in `v`, at any depth,
/// becomes `null` (as a Go backend marshalling nil slices, maps and pointers would send
/// them); without it, `v` unchanged.
pub(super) fn null_empties(v: Value, nulls: bool) -> Value {
    if !nulls {
        return v;
    }
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Array(a) => Value::Array(a.into_iter().map(|x| null_empties(x, true)).collect()),
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, null_empties(x, true)))
                .collect(),
        ),
        Value::String(s) if s.is_empty() => Value::Null,
        other => other,
    }
}

/// A list's `links` under `nulls`: `{"pages": {}}` (the spec example's shape, which
/// [`null_empties`] turns into `{"pages": null}`) when a non-empty result fits one page,
/// `{}` (so `null`) for an empty result; unchanged otherwise.
pub(super) fn nulls_links(links: Value, total: u64, nulls: bool) -> Value {
    if nulls && total > 0 && links == json!({}) {
        json!({ "pages": {} })
    } else {
        links
    }
}

/// `{}` when everything fits one page, else `{"pages": {...}}` with full URLs of
/// `{base}{path}`.
pub(super) fn page_links(
    base: &str,
    path: &str,
    page: u64,
    per_page: u64,
    total: u64,
    extra: &str,
) -> Value {
    if total <= per_page {
        return json!({});
    }
    let last = total.div_ceil(per_page);
    let url = |n: u64| format!("{base}{path}?page={n}&per_page={per_page}{extra}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_shapes() {
        let b = "http://x";
        let d = "/v2/droplets";
        assert_eq!(page_links(b, d, 1, 20, 20, ""), json!({}));
        let l = page_links(b, d, 1, 200, 450, "&tag_name=a%3Ab");
        assert_eq!(
            l,
            json!({"pages": {
                "next": "http://x/v2/droplets?page=2&per_page=200&tag_name=a%3Ab",
                "last": "http://x/v2/droplets?page=3&per_page=200&tag_name=a%3Ab"}})
        );
        let l = page_links(b, d, 9, 200, 450, "");
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
        assert_eq!(price_hourly(6.0), 0.00893);
        assert_eq!(
            null_empties(
                json!({"a": [], "b": {}, "c": "", "d": {"e": [1, []], "f": 0, "g": false}}),
                true
            ),
            json!({"a": null, "b": null, "c": null, "d": {"e": [1, null], "f": 0, "g": false}})
        );
        let same = json!({"a": [], "b": {}, "c": ""});
        assert_eq!(null_empties(same.clone(), false), same);
        assert_eq!(nulls_links(json!({}), 3, true), json!({"pages": {}}));
        assert_eq!(nulls_links(json!({}), 0, true), json!({}));
        assert_eq!(nulls_links(json!({}), 3, false), json!({}));
        assert_eq!(price_hourly(4.0), 0.00595);
        assert_eq!(size_json("s-2vcpu-4gb")["price_hourly"], 0.03571);
    }
}
