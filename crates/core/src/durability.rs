//! How likely is loss: the numbers behind `mvault durability` and `mvault status`.
//!
//! - Availability of a pack: the probability that at least `k` of the `k + m` stores holding its shards are up,
//!   computed exactly for unequal store availabilities with the Poisson-binomial distribution (dynamic
//!   programming over the stores).
//! - Yearly durability, the method Backblaze publishes: a store fails within one repair window `T` with
//!   `p = 1 - exp(-AFR * T / 365)`; data is lost in a window when more than `m` of the `k + m` stores fail in it;
//!   per year `1 - (1 - P_window)^(365 / T)`. Shown as nines and as a mean time to data loss (MTTDL).
//! - Beside them the naive product of all availabilities: the chance that no store at all is down, which is
//!   what a system without redundancy has, and what redundancy improves on.

/// P(exactly j of the events happen) for j in 0..=n, for independent events with probabilities `probabilities`.
pub fn poisson_binomial(probabilities: &[f64]) -> Vec<f64> {
    let mut dist = vec![0.0; probabilities.len() + 1];
    dist[0] = 1.0;
    for (i, &pi) in probabilities.iter().enumerate() {
        for j in (0..=i + 1).rev() {
            let stay = dist[j] * (1.0 - pi);
            let come = if j > 0 { dist[j - 1] * pi } else { 0.0 };
            dist[j] = stay + come;
        }
    }
    dist
}

/// P(at least `needed` stores up), given each store's probability of being up.
pub fn availability(up: &[f64], needed: usize) -> f64 {
    poisson_binomial(up).iter().skip(needed).sum::<f64>().min(1.0)
}

/// P(more than `tolerated` of the stores fail), given each store's failure probability. Summed from the tail so tiny
/// probabilities keep their precision (1 - P(at most m) would round them to zero).
pub fn more_than_fail(fail: &[f64], tolerated: usize) -> f64 {
    poisson_binomial(fail).iter().skip(tolerated + 1).sum::<f64>().min(1.0)
}

/// The naive series product: the probability that every store is up.
pub fn naive_product(up: &[f64]) -> f64 {
    up.iter().product()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Durability {
    pub k: usize,
    pub m: usize,
    pub repair_days: f64,
    /// Probability that a store fails within one repair window, per store.
    pub window_failure: Vec<f64>,
    /// Probability of loss within one repair window.
    pub loss_per_window: f64,
    /// Probability of loss within a year.
    pub loss_per_year: f64,
    /// -log10(loss per year): 11 means 99.999999999%.
    pub nines: f64,
    /// Mean time to data loss, in years.
    pub mttdl_years: f64,
}

/// Yearly durability of one pack whose `needed + m` shards sit on stores with these annual failure rates.
pub fn yearly(afr: &[f64], needed: usize, repair_days: f64) -> Durability {
    let m = afr.len().saturating_sub(needed);
    let window_failure: Vec<f64> = afr.iter().map(|a| -(-a * repair_days / 365.0).exp_m1()).collect();
    let loss_per_window = more_than_fail(&window_failure, m);
    let windows = 365.0 / repair_days;
    // 1 - (1 - x)^n without cancellation: -expm1(n * ln1p(-x))
    let loss_per_year = -(windows * (-loss_per_window).ln_1p()).exp_m1();
    let nines = if loss_per_year > 0.0 { -loss_per_year.log10() } else { f64::INFINITY };
    let mttdl_years = if loss_per_window > 0.0 { repair_days / 365.0 / loss_per_window } else { f64::INFINITY };
    Durability { k: needed, m, repair_days, window_failure, loss_per_window, loss_per_year, nines, mttdl_years }
}

/// Nines of a probability close to 1, e.g. 0.999 -> 3.
pub fn nines_of(probability: f64) -> f64 {
    if probability >= 1.0 {
        f64::INFINITY
    } else {
        -(1.0 - probability).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator so the Monte Carlo runs are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn distribution_sums_to_one_and_matches_binomial() {
        let d = poisson_binomial(&[0.1; 5]);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Binomial(5, 0.1): P(2) = 10 * 0.01 * 0.729
        assert!((d[2] - 0.0729).abs() < 1e-12);
    }

    #[test]
    fn availability_agrees_with_monte_carlo_for_unequal_stores() {
        let up = [0.99, 0.95, 0.9, 0.97, 0.8, 0.85];
        let k = 4;
        let exact = availability(&up, k);
        let mut rng = Rng(0x1234_5678);
        let trials = 400_000;
        let mut ok = 0u64;
        for _ in 0..trials {
            let n_up = up.iter().filter(|&&p| rng.next() < p).count();
            if n_up >= k {
                ok += 1;
            }
        }
        let est = ok as f64 / trials as f64;
        let sigma = (exact * (1.0 - exact) / trials as f64).sqrt();
        assert!((est - exact).abs() < 5.0 * sigma, "Monte Carlo {est} vs exact {exact} (sigma {sigma})");
        // redundancy beats the naive product by far
        assert!(exact > naive_product(&up));
    }

    #[test]
    fn yearly_loss_agrees_with_monte_carlo_of_failure_times() {
        // High failure rates so that losses happen often enough to count.
        let afr = [0.9, 0.7, 1.1, 0.8, 1.0, 0.6];
        let (k, repair_days) = (4, 20.0);
        let d = yearly(&afr, k, repair_days);
        // Simulate windows: each store fails within a window with exponential time-to-failure.
        let mut rng = Rng(42);
        let trials = 300_000;
        let mut lost = 0u64;
        for _ in 0..trials {
            let failed = afr
                .iter()
                .filter(|&&a| {
                    let t_fail_days = -(1.0 - rng.next()).ln() / a * 365.0;
                    t_fail_days < repair_days
                })
                .count();
            if failed > afr.len() - k {
                lost += 1;
            }
        }
        let est = lost as f64 / trials as f64;
        let sigma = (d.loss_per_window * (1.0 - d.loss_per_window) / trials as f64).sqrt();
        assert!((est - d.loss_per_window).abs() < 5.0 * sigma, "MC {est} vs {}", d.loss_per_window);
    }

    #[test]
    fn backblaze_17_plus_3_is_about_eleven_nines() {
        // Backblaze's published example: 20 drives (17 data + 3 parity), AFR 0.41%, 6.5 days to rebuild.
        let d = yearly(&[0.0041; 20], 17, 6.5);
        assert!(d.nines > 10.5 && d.nines < 11.5, "{} nines", d.nines);
    }

    #[test]
    fn no_redundancy_equals_the_naive_product() {
        let up = [0.99, 0.98, 0.97];
        assert!((availability(&up, 3) - naive_product(&up)).abs() < 1e-15);
        assert!((nines_of(0.999) - 3.0).abs() < 1e-9);
    }
}
