//! The simulator's random durations (service times, boot phases): a small distribution type
//! that parses from a flag (`const:5`, `uniform:30,90`, `lognormal:35,0.3,30,71`) and samples
//! from the simulator's seeded generator.

use anyhow::{bail, Context, Result};
use rand::RngExt;
use rand_distr::{Distribution, LogNormal};
use std::fmt;

/// A distribution of durations in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Always this value.
    Const(f64),
    /// Uniform between two values.
    Uniform(f64, f64),
    /// Log-normal with this median and shape σ, clipped to [min, max].
    LogNormal {
        /// The median (e^μ).
        median: f64,
        /// σ of the underlying normal.
        sigma: f64,
        /// Samples below are raised to this.
        min: f64,
        /// Samples above are lowered to this.
        max: f64,
    },
}

impl Dist {
    /// Parses `const:X`, `uniform:A,B` or `lognormal:MEDIAN,SIGMA[,MIN,MAX]` (seconds).
    pub fn parse(text: &str) -> Result<Dist> {
        let (kind, args) = text.split_once(':').unwrap_or((text, ""));
        let nums: Vec<f64> = args
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| {
                a.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .with_context(|| format!("{text:?}: {a:?} is not a number ≥ 0"))
            })
            .collect::<Result<_>>()?;
        let d = match (kind, nums.as_slice()) {
            ("const", [x]) => Dist::Const(*x),
            ("uniform", [a, b]) if a <= b => Dist::Uniform(*a, *b),
            ("lognormal", [m, s]) if *m > 0.0 => Dist::LogNormal {
                median: *m,
                sigma: *s,
                min: 0.0,
                max: f64::INFINITY,
            },
            ("lognormal", [m, s, lo, hi]) if *m > 0.0 && lo <= hi => Dist::LogNormal {
                median: *m,
                sigma: *s,
                min: *lo,
                max: *hi,
            },
            _ => bail!(
                "{text:?} is not a distribution (const:X, uniform:A,B with A ≤ B, lognormal:MEDIAN,SIGMA[,MIN,MAX])"
            ),
        };
        Ok(d)
    }

    /// One sample, seconds.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Dist::Const(x) => x,
            Dist::Uniform(a, b) => a + (b - a) * rng.random::<f64>(),
            Dist::LogNormal {
                median,
                sigma,
                min,
                max,
            } => {
                let v = match LogNormal::new(median.ln(), sigma) {
                    Ok(d) => d.sample(rng),
                    Err(_) => median,
                };
                v.clamp(min, max)
            }
        }
    }

    /// The mean, seconds (of the clipped distribution, estimated for the log-normal).
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Const(x) => x,
            Dist::Uniform(a, b) => (a + b) / 2.0,
            Dist::LogNormal {
                median,
                sigma,
                min,
                max,
            } => (median * (sigma * sigma / 2.0).exp()).clamp(min, max),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Const(x) => write!(f, "const:{x}"),
            Dist::Uniform(a, b) => write!(f, "uniform:{a},{b}"),
            Dist::LogNormal {
                median,
                sigma,
                min,
                max,
            } if max.is_infinite() && *min == 0.0 => write!(f, "lognormal:{median},{sigma}"),
            Dist::LogNormal {
                median,
                sigma,
                min,
                max,
            } => write!(f, "lognormal:{median},{sigma},{min},{max}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_and_prints() {
        for text in [
            "const:5",
            "uniform:30,90",
            "lognormal:35,0.3,30,71",
            "lognormal:0.1,0.5",
        ] {
            assert_eq!(Dist::parse(text).unwrap().to_string(), text);
        }
        assert!(Dist::parse("uniform:9,1").is_err());
        assert!(Dist::parse("normal:1").is_err());
        assert!(Dist::parse("const:-1").is_err());
    }

    #[test]
    fn samples_stay_in_bounds() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let d = Dist::parse("lognormal:35,0.3,30,71").unwrap();
        let u = Dist::parse("uniform:30,90").unwrap();
        for _ in 0..1000 {
            assert!((30.0..=71.0).contains(&d.sample(&mut rng)));
            assert!((30.0..=90.0).contains(&u.sample(&mut rng)));
        }
        assert_eq!(u.mean(), 60.0);
    }
}
