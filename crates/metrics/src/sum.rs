//! NumPy's pairwise summation: the one implementation the clustering and OOD metrics share.

/// NumPy's pairwise summation (`np.add.reduce` on a contiguous float64 array), so that sums
/// round as scikit-learn's and NumPy's do (the clustering and OOD metrics' one implementation).
pub fn numpy_sum(a: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(0.0, |acc, v| acc + v)
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let whole = n - n % 8;
            for chunk in a[8..whole].chunks_exact(8) {
                for (rj, v) in r.iter_mut().zip(chunk) {
                    *rj += v;
                }
            }
            let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            a[whole..].iter().fold(res, |acc, v| acc + v)
        } else {
            let mut n2 = n / 2;
            n2 -= n2 % 8;
            pairwise(&a[..n2]) + pairwise(&a[n2..])
        }
    }
    0.0 + pairwise(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_sum_is_exact_on_integers_and_long_arrays() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(numpy_sum(&v), 500500.0);
        assert_eq!(numpy_sum(&[]), 0.0);
    }
}
