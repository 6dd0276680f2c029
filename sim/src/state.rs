//! The simulator's shared state: droplets, actions, rate-limit window, request
//! log, knobs; and the lifecycle rules applied to them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Handle;

use crate::util::{self, Prng};
use crate::{
    Faults, MetadataIdentity, Placement, RequestRecord, ScopedToken, SimDroplet, SimOptions,
};

/// First droplet id handed out (the spec's example id).
const FIRST_DROPLET_ID: u64 = 3_164_444;
/// First action id handed out.
const FIRST_ACTION_ID: u64 = 982_864_273;
/// With `big_ids`, ids start this much higher: above 2^32.
const BIG_ID_BASE: u64 = 1 << 32;
/// How many request records are kept; older ones are dropped.
pub(crate) const MAX_LOG: usize = 100_000;
/// Candidate droplet addresses: 127.{128|64}.T.F with T in 0..=255 and F in
/// 1..=254, i.e. 256 * 254 candidates.
pub(crate) const IP_CANDIDATES: u32 = 256 * 254;
/// How many candidate addresses an app bind tries before giving up.
const MAX_BIND_TRIES: u32 = 512;

pub(crate) const PRIVATE_SECOND_OCTET: u8 = 128;
pub(crate) const PUBLIC_SECOND_OCTET: u8 = 64;

/// Address number `k` in the 127.<second>.0.0/16 range (never .0 or .255 last).
fn ip_in(second: u8, k: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, second, (k / 254) as u8, (k % 254 + 1) as u8)
}

pub(crate) fn private_ip(k: u32) -> Ipv4Addr {
    ip_in(PRIVATE_SECOND_OCTET, k)
}

pub(crate) fn public_ip(k: u32) -> Ipv4Addr {
    ip_in(PUBLIC_SECOND_OCTET, k)
}

pub(crate) fn public_gateway(k: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, PUBLIC_SECOND_OCTET, (k / 254) as u8, 1)
}

/// Knobs that can change at run time (their start values come from [`SimOptions`]).
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    pub latency: Duration,
    pub error_rate: f64,
    pub error_placement: Placement,
    pub reset_rate: f64,
    pub reset_placement: Placement,
    pub cloudflare_rate: f64,
    pub cloudflare_after_rate: f64,
    pub rate_limit_per_minute: Option<u32>,
    pub rate_limit_per_hour: u32,
    pub omit_hourly_retry_after: bool,
    pub create_failure_rate: f64,
    pub active_after: Duration,
    pub locked_while_new: bool,
    pub not_found_after_create: Duration,
    pub list_lag_after_create: Duration,
    pub delete_linger: Duration,
    pub lag_jitter: Duration,
    pub nulls_for_empty: bool,
    pub tokens: Vec<ScopedToken>,
    pub big_ids: bool,
    pub shuffle_actions: bool,
    pub metadata: MetadataIdentity,
}

impl Knobs {
    pub(crate) fn from_options(o: &SimOptions) -> Self {
        Knobs {
            latency: o.latency,
            error_rate: o.error_rate,
            error_placement: o.error_placement,
            reset_rate: o.reset_rate,
            reset_placement: o.reset_placement,
            cloudflare_rate: o.cloudflare_rate,
            cloudflare_after_rate: o.cloudflare_after_rate,
            rate_limit_per_minute: o.rate_limit_per_minute,
            rate_limit_per_hour: o.rate_limit_per_hour,
            omit_hourly_retry_after: o.omit_hourly_retry_after,
            create_failure_rate: o.create_failure_rate,
            active_after: o.active_after,
            locked_while_new: o.locked_while_new,
            not_found_after_create: o.not_found_after_create,
            list_lag_after_create: o.list_lag_after_create,
            delete_linger: o.delete_linger,
            lag_jitter: o.lag_jitter,
            nulls_for_empty: o.nulls_for_empty,
            tokens: o.tokens.clone(),
            big_ids: o.big_ids,
            shuffle_actions: o.shuffle_actions,
            metadata: o.metadata.clone(),
        }
    }
}

/// Options fixed at start.
#[derive(Clone, Debug)]
pub(crate) struct StaticOpts {
    pub token: String,
    pub droplet_limit: u32,
    pub serve_apps: bool,
    pub backend_port: u16,
    pub app_boot_delay: Duration,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    New,
    Active,
    /// Powered off (still exists and is billed; keeps its addresses, its app stops).
    Off,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Active => "active",
            Status::Off => "off",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum ImageRef {
    Slug(String),
    Id(u64),
}

/// What a create asks for.
#[derive(Clone, Debug)]
pub(crate) struct CreateSpec {
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: ImageRef,
    pub tags: Vec<String>,
    pub user_data: Option<String>,
    pub ssh_keys: Vec<Value>,
    pub vpc_uuid: Option<String>,
    pub backups: bool,
    pub ipv6: bool,
    pub monitoring: bool,
    pub volumes: Vec<String>,
}

impl CreateSpec {
    pub(crate) fn direct(name: &str, tags: Vec<String>, region: &str) -> Self {
        CreateSpec {
            name: name.to_string(),
            region: region.to_string(),
            size: "s-1vcpu-1gb".to_string(),
            image: ImageRef::Slug("ubuntu-24-04-x64".to_string()),
            tags,
            user_data: None,
            ssh_keys: Vec::new(),
            vpc_uuid: None,
            backups: false,
            ipv6: false,
            monitoring: false,
            volumes: Vec::new(),
        }
    }
}

pub(crate) struct Droplet {
    pub id: u64,
    pub spec: CreateSpec,
    pub vpc_uuid: String,
    pub created: Instant,
    pub created_epoch_secs: u64,
    pub active_at: Instant,
    pub fails: bool,
    pub status: Status,
    /// Index of the assigned address pair (see [`private_ip`]).
    pub ip: Option<u32>,
    pub deleted_at: Option<Instant>,
    /// When a deleted droplet stops lingering (set by the delete).
    pub gone_at: Option<Instant>,
    /// When `GET /v2/droplets/{id}` starts answering (`not_found_after_create`).
    pub get_visible_at: Instant,
    /// When lists start showing it (`list_lag_after_create`, at least `get_visible_at`).
    pub list_visible_at: Instant,
    pub app: Option<crate::apps::AppHandle>,
    /// The administrative lock ([`crate::Sim::lock_direct`]).
    pub admin_locked: bool,
    /// `locked_while_new` when the droplet was created.
    pub lock_while_new: bool,
    /// The droplet's own app service time, overriding `app_service_time` (read by its
    /// app on each request).
    pub app_override: Arc<crate::apps::AppOverride>,
}

impl Droplet {
    /// The `locked` the API reports.
    pub(crate) fn locked(&self) -> bool {
        self.admin_locked || (self.lock_while_new && self.status == Status::New)
    }

    pub(crate) fn private_ip(&self) -> Option<Ipv4Addr> {
        self.ip.map(private_ip)
    }
    pub(crate) fn public_ip(&self) -> Option<Ipv4Addr> {
        self.ip.map(public_ip)
    }
}

pub(crate) struct Action {
    pub id: u64,
    pub droplet_id: u64,
    pub region: String,
    pub started_epoch_secs: u64,
    pub duration: Duration,
    pub completes_at: Instant,
    pub fails: bool,
}

pub(crate) struct State {
    pub knobs: Knobs,
    pub droplets: BTreeMap<u64, Droplet>,
    pub actions: HashMap<u64, Action>,
    next_droplet_id: u64,
    next_action_id: u64,
    pub fault_rng: Prng,
    pub id_rng: Prng,
    /// Draws the per-droplet jitter of the visibility windows.
    pub jitter_rng: Prng,
    /// Shuffles multi-create action links.
    pub shuffle_rng: Prng,
    ip_cursor: u32,
    /// Arrival times of the requests counted against the rate limits (last hour).
    pub window: VecDeque<Instant>,
    pub log: VecDeque<RequestRecord>,
}

pub(crate) struct Inner {
    pub opts: StaticOpts,
    pub state: Mutex<State>,
    pub start: Instant,
    pub start_epoch_ms: u64,
    pub addr: SocketAddr,
    pub url: String,
    pub handle: Handle,
    /// The apps' global load knobs, read by every app on each request.
    pub app_load: Arc<crate::apps::AppLoad>,
}

pub(crate) enum RateVerdict {
    Allowed,
    /// The `retry-after` to send, in seconds until a slot frees up: `None` for an
    /// hourly-limit 429 under `omit_hourly_retry_after`.
    Limited(Option<u64>),
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}

/// A visibility window: zero stays zero; otherwise up to `lag_jitter` more, drawn from
/// the jitter PRNG.
fn jittered(st: &mut State, base: Duration) -> Duration {
    let jitter = st.knobs.lag_jitter;
    if base.is_zero() || jitter.is_zero() {
        return base;
    }
    base + jitter.mul_f64(st.jitter_rng.next_f64())
}

fn clamp_rate(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

impl Inner {
    pub(crate) fn new(
        opts: StaticOpts,
        knobs: Knobs,
        app_load: crate::apps::AppLoad,
        addr: SocketAddr,
        handle: Handle,
        start: Instant,
    ) -> Self {
        let seed = opts.seed;
        let state = State {
            knobs,
            droplets: BTreeMap::new(),
            actions: HashMap::new(),
            next_droplet_id: FIRST_DROPLET_ID,
            next_action_id: FIRST_ACTION_ID,
            fault_rng: Prng::new(seed),
            id_rng: Prng::new(util::mix64(seed ^ 0x6964_735f_7265_7173)),
            jitter_rng: Prng::new(util::mix64(seed ^ 0x6a69_7474_6572)),
            shuffle_rng: Prng::new(util::mix64(seed ^ 0x0073_6875_6666_6c65)),
            ip_cursor: (util::entropy() % u64::from(IP_CANDIDATES)) as u32,
            window: VecDeque::new(),
            log: VecDeque::new(),
        };
        Inner {
            opts,
            state: Mutex::new(state),
            start,
            start_epoch_ms: util::now_epoch_ms(),
            addr,
            url: format!("http://{addr}"),
            handle,
            app_load: Arc::new(app_load),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ms_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Wall-clock Unix seconds (rounded down) of a monotonic instant.
    pub(crate) fn epoch_secs(&self, t: Instant) -> u64 {
        (self.start_epoch_ms + self.ms_since_start(t)) / 1000
    }

    // ---------------------------------------------------------------- lifecycle

    /// Applies every transition due at `now`: new -> active (assigning
    /// addresses, starting apps), failed creates disappearing, lingering
    /// deleted droplets disappearing.
    pub(crate) fn advance(&self, st: &mut State, now: Instant) {
        let due: Vec<u64> = st
            .droplets
            .values()
            .filter(|d| d.status == Status::New && d.deleted_at.is_none() && d.active_at <= now)
            .map(|d| d.id)
            .collect();
        for id in due {
            let fails = st.droplets.get(&id).is_some_and(|d| d.fails);
            if fails {
                st.droplets.remove(&id);
                continue;
            }
            let ip = self.assign_ip(st);
            let Some(d) = st.droplets.get_mut(&id) else {
                continue;
            };
            d.status = Status::Active;
            let Some((k, socket)) = ip else { continue };
            d.ip = Some(k);
            if let Some(socket) = socket {
                let page = format!(
                    "Droplet: {}, ID: {}, IP Address: {}\n",
                    d.spec.name,
                    d.id,
                    public_ip(k)
                );
                d.app = Some(crate::apps::AppHandle::spawn(
                    &self.handle,
                    socket,
                    self.opts.app_boot_delay,
                    page,
                    self.app_load.clone(),
                    d.app_override.clone(),
                ));
            }
        }
        st.droplets.retain(|_, d| d.gone_at.is_none_or(|t| now < t));
    }

    /// Picks the next address index. With `serve_apps` it binds the app
    /// socket there (skipping addresses in use, e.g. by parallel simulators)
    /// and returns the bound socket too. `None` if no address could be bound.
    fn assign_ip(&self, st: &mut State) -> Option<(u32, Option<tokio::net::TcpSocket>)> {
        if !self.opts.serve_apps {
            let k = st.ip_cursor;
            st.ip_cursor = (st.ip_cursor + 1) % IP_CANDIDATES;
            return Some((k, None));
        }
        let mut last_err = None;
        for _ in 0..MAX_BIND_TRIES {
            let k = st.ip_cursor;
            st.ip_cursor = (st.ip_cursor + 1) % IP_CANDIDATES;
            let addr = SocketAddr::V4(SocketAddrV4::new(private_ip(k), self.opts.backend_port));
            match bind_app_socket(addr) {
                Ok(s) => return Some((k, Some(s))),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        eprintln!(
            "do-sim: could not bind an app address on port {}: {:?}; the droplet gets no address",
            self.opts.backend_port, last_err
        );
        None
    }

    pub(crate) fn create(
        &self,
        st: &mut State,
        spec: CreateSpec,
        fails: bool,
        now: Instant,
    ) -> (u64, u64) {
        if st.knobs.big_ids {
            st.next_droplet_id = st.next_droplet_id.max(BIG_ID_BASE + FIRST_DROPLET_ID);
            st.next_action_id = st.next_action_id.max(BIG_ID_BASE + FIRST_ACTION_ID);
        }
        let id = st.next_droplet_id;
        st.next_droplet_id += 1;
        let action_id = st.next_action_id;
        st.next_action_id += 1;
        let active_after = st.knobs.active_after;
        let (not_found, list_lag) = (
            st.knobs.not_found_after_create,
            st.knobs.list_lag_after_create,
        );
        let not_found = jittered(st, not_found);
        let list_lag = jittered(st, list_lag);
        let vpc_uuid = spec.vpc_uuid.clone().unwrap_or_else(|| {
            let mut r = Prng::new(util::hash_str(&spec.region) ^ self.opts.seed);
            r.uuid()
        });
        let created_epoch_secs = self.epoch_secs(now);
        st.actions.insert(
            action_id,
            Action {
                id: action_id,
                droplet_id: id,
                region: spec.region.clone(),
                started_epoch_secs: created_epoch_secs,
                duration: active_after,
                completes_at: now + active_after,
                fails,
            },
        );
        st.droplets.insert(
            id,
            Droplet {
                id,
                spec,
                vpc_uuid,
                created: now,
                created_epoch_secs,
                active_at: now + active_after,
                fails,
                status: Status::New,
                ip: None,
                deleted_at: None,
                gone_at: None,
                get_visible_at: now + not_found,
                list_visible_at: now + not_found.max(list_lag),
                app: None,
                admin_locked: false,
                lock_while_new: st.knobs.locked_while_new,
                app_override: Arc::default(),
            },
        );
        (id, action_id)
    }

    /// Arms a timer so the droplet's transition happens (and its app starts)
    /// even when nobody asks the API.
    pub(crate) fn arm_timer(self: &Arc<Self>, at: Instant) {
        let me = Arc::clone(self);
        self.handle.spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            let mut st = me.lock();
            me.advance(&mut st, Instant::now());
        });
    }

    /// Marks a droplet deleted and stops its app. False when unknown or
    /// already deleted.
    pub(crate) fn delete(&self, st: &mut State, id: u64, now: Instant) -> bool {
        let Some(d) = st.droplets.get_mut(&id) else {
            return false;
        };
        if d.deleted_at.is_some() {
            return false;
        }
        if let Some(app) = d.app.take() {
            app.stop();
        }
        let linger = st.knobs.delete_linger;
        let linger = jittered(st, linger);
        if linger.is_zero() {
            st.droplets.remove(&id);
        } else if let Some(d) = st.droplets.get_mut(&id) {
            d.deleted_at = Some(now);
            d.gone_at = Some(now + linger);
        }
        true
    }

    /// Whether `GET /v2/droplets/{id}` shows this droplet at `now` (deleted droplets past
    /// their linger are already gone after `advance`).
    pub(crate) fn get_visible(d: &Droplet, now: Instant) -> bool {
        now >= d.get_visible_at
    }

    /// Whether `GET /v2/droplets` lists this droplet at `now`.
    pub(crate) fn list_visible(d: &Droplet, now: Instant) -> bool {
        now >= d.list_visible_at
    }

    /// Live (not deleted) droplets, for the droplet limit.
    pub(crate) fn live_count(st: &State) -> usize {
        st.droplets
            .values()
            .filter(|d| d.deleted_at.is_none())
            .count()
    }

    // ---------------------------------------------------------------- rate limit

    /// Checks the sliding windows and, when allowed, counts the request.
    pub(crate) fn rate_check(&self, st: &mut State, now: Instant) -> RateVerdict {
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        while st
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= hour)
        {
            st.window.pop_front();
        }
        let minute_start = st
            .window
            .partition_point(|t| now.saturating_duration_since(*t) >= minute);
        let minute_count = st.window.len() - minute_start;
        let mut retry = 0u64;
        let mut hourly = false;
        if let Some(rpm) = st.knobs.rate_limit_per_minute {
            if minute_count >= rpm as usize {
                let wait = match st.window.get(minute_start) {
                    Some(t) => ceil_secs(minute.saturating_sub(now.saturating_duration_since(*t))),
                    None => 60,
                };
                retry = retry.max(wait.max(1));
            }
        }
        if st.window.len() >= st.knobs.rate_limit_per_hour as usize {
            let wait = match st.window.front() {
                Some(t) => ceil_secs(hour.saturating_sub(now.saturating_duration_since(*t))),
                None => 3600,
            };
            retry = retry.max(wait.max(1));
            hourly = true;
        }
        if retry > 0 {
            if hourly && st.knobs.omit_hourly_retry_after {
                return RateVerdict::Limited(None);
            }
            return RateVerdict::Limited(Some(retry));
        }
        st.window.push_back(now);
        RateVerdict::Allowed
    }

    /// (limit, remaining, reset) for the `ratelimit-*` headers.
    pub(crate) fn rate_headers(&self, st: &State, now: Instant) -> (u32, u32, u64) {
        let hour = Duration::from_secs(3600);
        let in_hour: Vec<&Instant> = st
            .window
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < hour)
            .collect();
        let limit = st.knobs.rate_limit_per_hour;
        let remaining = limit.saturating_sub(in_hour.len() as u32);
        let reset = match in_hour.first() {
            Some(t) => {
                let ms = self.start_epoch_ms + self.ms_since_start(**t) + 3_600_000;
                ms.div_ceil(1000)
            }
            None => self.epoch_secs(now),
        };
        (limit, remaining, reset)
    }

    // ---------------------------------------------------------------- log

    pub(crate) fn record(&self, st: &mut State, rec: RequestRecord) {
        if st.log.len() >= MAX_LOG {
            st.log.pop_front();
        }
        st.log.push_back(rec);
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.iter().cloned().collect()
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().log.clear();
    }

    // ---------------------------------------------------------------- helpers for Sim

    pub(crate) fn sim_droplet(&self, d: &Droplet) -> SimDroplet {
        SimDroplet {
            id: d.id,
            name: d.spec.name.clone(),
            status: d.status.as_str().to_string(),
            tags: d.spec.tags.clone(),
            private_ipv4: d.private_ip().map(|ip| ip.to_string()),
            public_ipv4: d.public_ip().map(|ip| ip.to_string()),
            user_data: d.spec.user_data.clone(),
            created_at_ms: self.ms_since_start(d.created),
            locked: d.locked(),
        }
    }

    pub(crate) fn sim_droplets(&self) -> Vec<SimDroplet> {
        let _rt = self.handle.enter();
        let mut st = self.lock();
        self.advance(&mut st, Instant::now());
        st.droplets
            .values()
            .filter(|d| d.deleted_at.is_none())
            .map(|d| self.sim_droplet(d))
            .collect()
    }

    pub(crate) fn set_faults(&self, f: &Faults) {
        let mut st = self.lock();
        let k = &mut st.knobs;
        if let Some(v) = f.latency_ms {
            k.latency = Duration::from_millis(v);
        }
        if let Some(v) = f.error_rate {
            k.error_rate = clamp_rate(v);
        }
        if let Some(v) = f.reset_rate {
            k.reset_rate = clamp_rate(v);
        }
        if let Some(v) = f.rate_limit_per_minute {
            k.rate_limit_per_minute = v;
        }
        if let Some(v) = f.rate_limit_per_hour {
            k.rate_limit_per_hour = v;
        }
        if let Some(v) = f.create_failure_rate {
            k.create_failure_rate = clamp_rate(v);
        }
        if let Some(v) = f.active_after_ms {
            k.active_after = Duration::from_millis(v);
        }
        if let Some(v) = f.locked_while_new {
            k.locked_while_new = v;
        }
        let ms = Duration::from_millis;
        if let Some(v) = f.not_found_after_create_ms {
            k.not_found_after_create = ms(v);
        }
        if let Some(v) = f.list_lag_after_create_ms {
            k.list_lag_after_create = ms(v);
        }
        if let Some(v) = f.delete_linger_ms {
            k.delete_linger = ms(v);
        }
        if let Some(v) = f.lag_jitter_ms {
            k.lag_jitter = ms(v);
        }
        if let Some(v) = f.omit_hourly_retry_after {
            k.omit_hourly_retry_after = v;
        }
        if let Some(v) = f.error_placement {
            k.error_placement = v;
        }
        if let Some(v) = f.reset_placement {
            k.reset_placement = v;
        }
        if let Some(v) = f.cloudflare_rate {
            k.cloudflare_rate = clamp_rate(v);
        }
        if let Some(v) = f.cloudflare_after_rate {
            k.cloudflare_after_rate = clamp_rate(v);
        }
        if let Some(v) = f.nulls_for_empty {
            k.nulls_for_empty = v;
        }
        if let Some(v) = f.big_ids {
            k.big_ids = v;
        }
        if let Some(v) = f.shuffle_actions {
            k.shuffle_actions = v;
        }
        if let Some(v) = f.app_service_time_ms {
            self.app_load.set_service_time(ms(v));
        }
        if let Some(v) = f.app_concurrency {
            // 0 (which `POST /_sim/faults` refuses) is clamped to 1.
            self.app_load.set_concurrency(v.map(|n| n.max(1)));
        }
        // The parts `POST /_sim/faults` would refuse with a 400.
        let checked = Faults {
            tokens: f.tokens.clone(),
            metadata: f.metadata.clone(),
            ..Faults::default()
        };
        match checked.validate() {
            Ok(()) => {
                if let Some(v) = checked.tokens {
                    k.tokens = v;
                }
                if let Some(v) = checked.metadata {
                    k.metadata = v;
                }
            }
            Err(e) => eprintln!("do-sim: set_faults ignores tokens and metadata: {e}"),
        }
    }

    pub(crate) fn create_direct(self: &Arc<Self>, name: &str, tags: Vec<String>) -> u64 {
        let _rt = self.handle.enter();
        let now = Instant::now();
        let (id, at) = {
            let mut st = self.lock();
            let spec = CreateSpec::direct(name, tags, &st.knobs.metadata.region);
            self.advance(&mut st, now);
            let (id, _) = self.create(&mut st, spec, false, now);
            let at = st.droplets.get(&id).map(|d| d.active_at).unwrap_or(now);
            // A zero delay activates at once.
            self.advance(&mut st, now);
            (id, at)
        };
        self.arm_timer(at);
        id
    }

    pub(crate) fn delete_direct(&self, id: u64) -> bool {
        let _rt = self.handle.enter();
        let now = Instant::now();
        let mut st = self.lock();
        self.advance(&mut st, now);
        self.delete(&mut st, id, now)
    }

    /// Powers a droplet off "outside doproxy" (a new one never becomes active). False if
    /// it is unknown or deleted.
    pub(crate) fn power_off_direct(&self, id: u64) -> bool {
        let _rt = self.handle.enter();
        let now = Instant::now();
        let mut st = self.lock();
        self.advance(&mut st, now);
        match st.droplets.get_mut(&id) {
            Some(d) if d.deleted_at.is_none() => {
                d.status = Status::Off;
                if let Some(app) = d.app.take() {
                    app.stop();
                }
                true
            }
            _ => false,
        }
    }

    /// Sets or lifts the administrative lock. False if the droplet is unknown or deleted.
    pub(crate) fn lock_direct(&self, id: u64, locked: bool) -> bool {
        let _rt = self.handle.enter();
        let mut st = self.lock();
        self.advance(&mut st, Instant::now());
        match st.droplets.get_mut(&id) {
            Some(d) if d.deleted_at.is_none() => {
                d.admin_locked = locked;
                true
            }
            _ => false,
        }
    }

    /// Sets (`Some`) or clears (`None`) one droplet's app service time, overriding
    /// `app_service_time`. False if the droplet is unknown or deleted.
    pub(crate) fn set_app_service_time_direct(&self, id: u64, t: Option<Duration>) -> bool {
        let _rt = self.handle.enter();
        let mut st = self.lock();
        self.advance(&mut st, Instant::now());
        match st.droplets.get(&id) {
            Some(d) if d.deleted_at.is_none() => {
                d.app_override.set(t);
                true
            }
            _ => false,
        }
    }

    /// The current knobs and options as JSON (for `/_sim/state`).
    pub(crate) fn options_json(&self, st: &State) -> Value {
        let k = &st.knobs;
        let o = &self.opts;
        let ms = |d: Duration| d.as_millis() as u64;
        serde_json::json!({
            "listen": self.addr.to_string(),
            "active_after_ms": ms(k.active_after),
            "not_found_after_create_ms": ms(k.not_found_after_create),
            "list_lag_after_create_ms": ms(k.list_lag_after_create),
            "delete_linger_ms": ms(k.delete_linger),
            "lag_jitter_ms": ms(k.lag_jitter),
            "create_failure_rate": k.create_failure_rate,
            "latency_ms": ms(k.latency),
            "rate_limit_per_minute": k.rate_limit_per_minute,
            "rate_limit_per_hour": k.rate_limit_per_hour,
            "omit_hourly_retry_after": k.omit_hourly_retry_after,
            "error_rate": k.error_rate,
            "error_placement": k.error_placement,
            "reset_rate": k.reset_rate,
            "reset_placement": k.reset_placement,
            "cloudflare_rate": k.cloudflare_rate,
            "cloudflare_after_rate": k.cloudflare_after_rate,
            "nulls_for_empty": k.nulls_for_empty,
            "tokens": k.tokens,
            "big_ids": k.big_ids,
            "shuffle_actions": k.shuffle_actions,
            "locked_while_new": k.locked_while_new,
            "seed": o.seed,
            "droplet_limit": o.droplet_limit,
            "serve_apps": o.serve_apps,
            "backend_port": o.backend_port,
            "app_boot_delay_ms": ms(o.app_boot_delay),
            "app_service_time_ms": ms(self.app_load.service_time()),
            "app_concurrency": self.app_load.concurrency(),
            "metadata": k.metadata,
        })
    }
}

/// A TCP socket bound (not yet listening) on `addr`. SO_REUSEADDR stays off
/// so that a bound-but-not-yet-listening socket of another simulator (or a
/// TIME_WAIT left by a deleted app) makes this bind fail with EADDRINUSE and
/// we move on to the next address.
fn bind_app_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(addr)?;
    Ok(s)
}
