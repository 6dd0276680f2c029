//! The droplet metadata service, asked for the load balancer's own addresses: the public
//! IPv4 (the frontend's default bind address, as the original template did with curl), the
//! anchor IPv4 (what to bind to behind a reserved IP) and the reserved IPv4 itself.
//!
//! The service is plain HTTP on a link-local address: it is always reached directly (never
//! through a proxy), redirects are not followed, an answer is at most [`BODY_LIMIT`] bytes,
//! and an address is accepted as a bind address only when [`usable_bind`] says so.

use crate::digitalocean::{printable, ECHO_LIMIT};
use anyhow::{anyhow, bail, Context, Result};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The largest answer read from the metadata service (an address is a few bytes).
pub const BODY_LIMIT: usize = 4096;

/// `GET <base>/metadata/v1/interfaces/public/0/ipv4/address`, with a 2 s timeout; the
/// address must pass [`usable_bind`].
pub async fn public_ipv4(base: &str) -> Result<Ipv4Addr> {
    let ip = required(base, "interfaces/public/0/ipv4/address").await?;
    usable_bind(ip).context("metadata public_ipv4 (set frontend_bind in doproxy.yml)")?;
    Ok(ip)
}

/// `GET <base>/metadata/v1/interfaces/public/0/anchor_ipv4/address`: the address a droplet
/// behind a reserved IP binds its services to. Must pass [`usable_bind`].
pub async fn anchor_ipv4(base: &str) -> Result<Ipv4Addr> {
    let ip = required(base, "interfaces/public/0/anchor_ipv4/address").await?;
    usable_bind(ip).context("metadata anchor_ipv4 (set frontend_bind in doproxy.yml)")?;
    Ok(ip)
}

/// `GET <base>/metadata/v1/reserved_ip/ipv4/ip_address`: the reserved IP assigned to this
/// droplet, `None` when the answer is empty or a 404 (no reserved IP). Not a bind address
/// (traffic to it arrives on the anchor address).
pub async fn reserved_ipv4(base: &str) -> Result<Option<Ipv4Addr>> {
    let url = format!("{base}/metadata/v1/reserved_ip/ipv4/ip_address");
    match get(&url).await? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse(&url, &text).map(Some),
    }
}

/// Accepts `ip` as an address to bind a frontend to: a unicast address that is not
/// unspecified (0.0.0.0), loopback (127/8), link-local (169.254/16), multicast (224/4),
/// broadcast (255.255.255.255) or reserved (240/4). The error names the value.
pub fn usable_bind(ip: Ipv4Addr) -> Result<()> {
    let why = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else if ip.octets()[0] >= 240 {
        "a reserved address (240.0.0.0/4)"
    } else {
        return Ok(());
    };
    bail!("{ip} is {why}, not a unicast address to bind a frontend to")
}

async fn required(base: &str, rel: &str) -> Result<Ipv4Addr> {
    let url = format!("{base}/metadata/v1/{rel}");
    match get(&url).await? {
        Some(text) => parse(&url, &text),
        None => Err(anyhow!("metadata service {url}: HTTP 404")),
    }
}

fn parse(url: &str, text: &str) -> Result<Ipv4Addr> {
    text.trim().parse().map_err(|_| {
        anyhow!(
            "metadata service {url}: {:?} is not an IPv4 address",
            printable(text.trim(), None, ECHO_LIMIT)
        )
    })
}

/// The text at `url`, `None` for a 404; any other non-200 answer, a redirect, or a body
/// over [`BODY_LIMIT`] is an error.
async fn get(url: &str) -> Result<Option<String>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("doproxy/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("metadata service {url} did not answer (not on a droplet? set frontend_bind in doproxy.yml)"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status != reqwest::StatusCode::OK {
        bail!("metadata service {url}: HTTP {}", status.as_u16());
    }
    let body = match crate::digitalocean::read_capped(&mut resp, BODY_LIMIT).await {
        Ok(b) => b,
        Err(crate::digitalocean::ReadError::TooLarge) => {
            bail!("metadata service {url}: the answer exceeds {BODY_LIMIT} bytes")
        }
        Err(crate::digitalocean::ReadError::Http(e)) => {
            return Err(anyhow!(e).context(format!("metadata service {url}")))
        }
    };
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        for ok in [
            "192.241.165.154",
            "10.0.0.5",
            "172.16.0.1",
            "100.64.0.1",
            "192.0.2.10",
        ] {
            assert!(usable_bind(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
        ] {
            let e = usable_bind(bad.parse().unwrap()).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }
}
