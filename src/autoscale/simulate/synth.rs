//! `doproxy autoscale traces`: the shipped traces, generated deterministically from a seed —
//! a diurnal day (per second, 24 h, two peaks, about 6,000 to 40,000 requests/s), a flash
//! crowd (per minute, 3 h: 4× in a minute, then decaying), a slow ramp (per minute, 6 h: 10×
//! over 4 h) and a noisy square wave (per minute, 4 h: 3× every 15 minutes, ±10 % noise).

use super::trace::{Segment, Trace};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Poisson};

/// The shipped traces' file names, in the order they are generated.
pub const NAMES: [&str; 4] = [
    "diurnal-day.csv",
    "flash-crowd.csv",
    "slow-ramp.csv",
    "square-wave.csv",
];

/// Every shipped trace for `seed`, with its file name.
pub fn all(seed: u64) -> Vec<(&'static str, Trace)> {
    vec![
        (NAMES[0], diurnal(seed)),
        (NAMES[1], flash_crowd(seed)),
        (NAMES[2], slow_ramp(seed)),
        (NAMES[3], square_wave(seed)),
    ]
}

fn poisson<R: rand::Rng>(rng: &mut R, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(mean as u64, |p| p.sample(rng) as u64)
}

fn rows(name: &str, step: f64, counts: Vec<u64>) -> Trace {
    Trace {
        name: name.to_string(),
        segments: counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| Segment {
                start: i as f64 * step,
                end: (i + 1) as f64 * step,
                count: c,
            })
            .collect(),
    }
}

/// A day per second: a late-morning and an evening peak over a night trough, with a slow
/// multiplicative wander (±5 %) and Poisson counts.
pub fn diurnal(seed: u64) -> Trace {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let bump = |h: f64, at: f64, width: f64| (-((h - at) / width).powi(2) / 2.0).exp();
    let (trough, peak) = (6_000.0, 40_000.0);
    let mut wander = 0.0f64;
    let counts = (0..86_400)
        .map(|s| {
            if s % 60 == 0 {
                // AR(1) per minute.
                wander = 0.9 * wander + 0.1 * (rng.random::<f64>() - 0.5) * 0.5;
            }
            let h = s as f64 / 3600.0;
            let shape = (0.75 * bump(h, 11.0, 2.5) + bump(h, 20.5, 2.0)).min(1.0);
            let rate = (trough + (peak - trough) * shape) * (1.0 + wander);
            poisson(&mut rng, rate)
        })
        .collect();
    rows(NAMES[0], 1.0, counts)
}

/// Three hours per minute: 3,000 requests/s, then at minute 60 four times that, decaying
/// back with a 30-minute time constant.
pub fn flash_crowd(seed: u64) -> Trace {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed.wrapping_add(1));
    let counts = (0..180)
        .map(|m| {
            let base = 3_000.0;
            let rate = if m < 60 {
                base
            } else {
                base * (1.0 + 3.0 * (-(f64::from(m) - 60.0) / 30.0).exp())
            };
            let noise = 1.0 + (rng.random::<f64>() - 0.5) * 0.06;
            poisson(&mut rng, rate * noise * 60.0)
        })
        .collect();
    rows(NAMES[1], 60.0, counts)
}

/// Six hours per minute: 2,000 requests/s for 30 min, up to 20,000 over 4 h, 1 h flat,
/// back down over 30 min.
pub fn slow_ramp(seed: u64) -> Trace {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed.wrapping_add(2));
    let counts = (0..360)
        .map(|m| {
            let m = f64::from(m);
            let rate = if m < 30.0 {
                2_000.0
            } else if m < 270.0 {
                2_000.0 + 18_000.0 * (m - 30.0) / 240.0
            } else if m < 330.0 {
                20_000.0
            } else {
                20_000.0 - 18_000.0 * (m - 330.0) / 30.0
            };
            let noise = 1.0 + (rng.random::<f64>() - 0.5) * 0.04;
            poisson(&mut rng, rate * noise * 60.0)
        })
        .collect();
    rows(NAMES[2], 60.0, counts)
}

/// Four hours per minute: 15 minutes at 3,000 requests/s, 15 at 9,000, ±10 % noise.
pub fn square_wave(seed: u64) -> Trace {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed.wrapping_add(3));
    let counts = (0..240)
        .map(|m| {
            let rate = if (m / 15) % 2 == 0 { 3_000.0 } else { 9_000.0 };
            let noise = 1.0 + (rng.random::<f64>() - 0.5) * 0.2;
            poisson(&mut rng, rate * noise * 60.0)
        })
        .collect();
    rows(NAMES[3], 60.0, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        assert_eq!(flash_crowd(1), flash_crowd(1));
        assert_ne!(flash_crowd(1), flash_crowd(2));
        let f = flash_crowd(1);
        assert_eq!(f.duration(), 10_800.0);
        let rate = |m: usize| f.segments[m].count as f64 / 60.0;
        assert!(rate(61) > 3.5 * rate(59), "{} {}", rate(61), rate(59));
        let sq = square_wave(1);
        assert!(sq.segments[20].count > 2 * sq.segments[10].count);
        let r = slow_ramp(1);
        assert!(r.segments[300].count > 9 * r.segments[10].count);
    }

    #[test]
    fn the_shipped_traces_are_these() {
        // traces/ holds what `doproxy autoscale traces --seed 1` writes (the per-second day
        // is generated when needed: it is 1.2 MB).
        for (name, t) in all(1).into_iter().skip(1) {
            let shipped =
                std::fs::read_to_string(format!("{}/traces/{name}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap_or_default();
            assert!(
                shipped == t.to_csv(),
                "traces/{name} differs from the generated one"
            );
        }
    }
}
