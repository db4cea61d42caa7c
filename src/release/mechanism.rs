//! The noise of public releases: the exact discrete Gaussian sampler of
//! Canonne, Kamath and Steinke (2020), as implemented by the `prio` crate.
//!
//! A count with L2 sensitivity 1 plus discrete Gaussian noise of scale
//! `sigma` is `1 / (2 sigma^2)`-zCDP (CKS20, Theorem 4). The sampler works
//! on exact rationals and big integers: no floating-point arithmetic is
//! involved in drawing noise, so the guarantee does not depend on rounding.
//! Floats are used only to compute `sigma` from the budget, and that scale
//! is rounded *up* to a rational, so the rho actually spent is at most the
//! rho allotted.

use num_bigint_dp::BigInt;
use prio::dp::distributions::DiscreteGaussian;
use prio::dp::Rational;
use rand_dp::distr::Distribution;
use rand_dp::rngs::StdRng;
use rand_dp::Rng;

/// Denominator of the rational noise scale (six decimals).
const SCALE_DENOMINATOR: u64 = 1_000_000;

/// A noise scale as an exact rational with denominator 10^6, rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sigma {
    millionths: u64,
}

impl Sigma {
    /// The smallest scale with six decimals that is at least `sigma`.
    /// `sigma` must be finite and positive.
    pub fn at_least(sigma: f64) -> Sigma {
        assert!(sigma.is_finite() && sigma > 0.0, "sigma must be positive");
        let millionths = (sigma * SCALE_DENOMINATOR as f64).ceil() as u64;
        Sigma {
            millionths: millionths.max(1),
        }
    }

    /// The scale as a float, for display and error estimates.
    pub fn value(self) -> f64 {
        self.millionths as f64 / SCALE_DENOMINATOR as f64
    }

    /// zCDP rho of one count of L2 sensitivity 1 noised at this scale.
    pub fn rho(self) -> f64 {
        1.0 / (2.0 * self.value() * self.value())
    }
}

/// Draws discrete Gaussian noise. Production draws from an OS-seeded
/// cryptographic generator ([`Mechanism::from_os`]); tests pass a seeded one
/// ([`Mechanism::with_rng`]), which no configuration or flag can select.
pub struct Mechanism {
    rng: Box<dyn Rng>,
}

impl Mechanism {
    /// A mechanism drawing from ChaCha12 seeded by the operating system.
    pub fn from_os() -> Mechanism {
        Mechanism {
            rng: Box::new(rand_dp::make_rng::<StdRng>()),
        }
    }

    /// A mechanism drawing from the given generator: reproducible noise,
    /// for tests only.
    pub fn with_rng(rng: impl Rng + 'static) -> Mechanism {
        Mechanism { rng: Box::new(rng) }
    }

    /// One draw from the discrete Gaussian of scale `sigma`, centred on 0.
    pub fn noise(&mut self, sigma: Sigma) -> i64 {
        let std = Rational::from_unsigned(sigma.millionths, SCALE_DENOMINATOR)
            .expect("a positive denominator");
        let dist = DiscreteGaussian::new(std).expect("a valid scale");
        let draw: BigInt = dist.sample(&mut self.rng);
        // Beyond i64 the probability is below 10^-10^30 at any scale we use.
        i64::try_from(&draw).unwrap_or(if draw.sign() == num_bigint_dp::Sign::Minus {
            i64::MIN / 2
        } else {
            i64::MAX / 2
        })
    }

    /// `count` plus noise of scale `sigma`.
    pub fn noisy(&mut self, count: i64, sigma: Sigma) -> i64 {
        count.saturating_add(self.noise(sigma))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_dp::SeedableRng;

    fn seeded(seed: u64) -> Mechanism {
        Mechanism::with_rng(StdRng::seed_from_u64(seed))
    }

    #[test]
    fn sigma_is_rounded_up_so_rho_never_exceeds_the_allotment() {
        for s in [
            0.3,
            1.0,
            3.162_277_660_168_379_5,
            32.557_641_192_199_41,
            1234.5678901,
        ] {
            let sigma = Sigma::at_least(s);
            assert!(sigma.value() >= s);
            assert!(sigma.value() - s <= 1e-6);
            assert!(sigma.rho() <= 1.0 / (2.0 * s * s));
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_noise() {
        let sigma = Sigma::at_least(5.0);
        let a: Vec<i64> = (0..50).map(|_| seeded(7).noise(sigma)).collect();
        let b: Vec<i64> = (0..50).map(|_| seeded(7).noise(sigma)).collect();
        assert_eq!(a, b);
        let mut m = seeded(7);
        let c: Vec<i64> = (0..50).map(|_| m.noise(sigma)).collect();
        assert!(c.iter().any(|x| *x != c[0]), "draws vary");
    }

    /// Goodness of fit: 40,000 draws at sigma 3 against the discrete
    /// Gaussian pmf, exp(-x^2 / (2 sigma^2)) normalised over the integers,
    /// by Pearson's chi-square over the cells -9..=9 and the two tails.
    #[test]
    fn draws_fit_the_discrete_gaussian_pmf() {
        let s = 3.0_f64;
        let sigma = Sigma::at_least(s);
        let draws = 40_000;
        let mut m = seeded(20_261_201);
        let mut observed = [0u64; 21];
        let mut sum = 0i64;
        for _ in 0..draws {
            let x = m.noise(sigma);
            sum += x;
            observed[(x.clamp(-10, 10) + 10) as usize] += 1;
        }
        let weight = |x: i64| (-((x * x) as f64) / (2.0 * s * s)).exp();
        let norm: f64 = (-200..=200).map(weight).sum();
        let mut expected = [0f64; 21];
        for x in -200i64..=200 {
            expected[(x.clamp(-10, 10) + 10) as usize] += weight(x) / norm * draws as f64;
        }
        let chi2: f64 = observed
            .iter()
            .zip(expected)
            .map(|(o, e)| (*o as f64 - e).powi(2) / e)
            .sum();
        // 20 degrees of freedom: the 99.9% quantile is 45.31.
        assert!(chi2 < 45.31, "chi-square {chi2:.2} (observed {observed:?})");
        // The mean is 0, within 5 standard errors.
        let mean = sum as f64 / draws as f64;
        assert!(mean.abs() < 5.0 * s / (draws as f64).sqrt(), "mean {mean}");
    }

    #[test]
    fn the_os_seeded_mechanism_draws_noise() {
        let mut m = Mechanism::from_os();
        let sigma = Sigma::at_least(1000.0);
        let draws: Vec<i64> = (0..20).map(|_| m.noise(sigma)).collect();
        assert!(draws.iter().any(|x| *x != 0));
    }
}
