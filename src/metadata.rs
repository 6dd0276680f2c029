//! The droplet metadata service, asked only for the load balancer's own public IPv4 (the
//! frontend's default bind address, as the original template did with curl).

use anyhow::{anyhow, Context, Result};
use std::net::Ipv4Addr;
use std::time::Duration;

/// `GET <base>/metadata/v1/interfaces/public/0/ipv4/address`, with a 2 s timeout.
pub async fn public_ipv4(base: &str) -> Result<Ipv4Addr> {
    let url = format!("{base}/metadata/v1/interfaces/public/0/ipv4/address");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .user_agent(concat!("doproxy/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("metadata service {url} did not answer (not on a droplet? set frontend_bind in doproxy.yml)"))?;
    if !resp.status().is_success() {
        return Err(anyhow!(
            "metadata service {url}: HTTP {}",
            resp.status().as_u16()
        ));
    }
    let text = resp
        .text()
        .await
        .with_context(|| format!("metadata service {url}"))?;
    text.trim().parse().map_err(|_| {
        anyhow!(
            "metadata service {url}: {:?} is not an IPv4 address",
            text.trim()
        )
    })
}
