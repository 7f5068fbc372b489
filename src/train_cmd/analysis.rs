//! Reading loss curves: sparklines, where two curves part, loss spikes, and
//! which document groups a set of batches over-represents.
//!
//! ```text
//! metrics (step, value) ──sparkline──► ▁▂▃▅▇ (bucket means)
//! two curves ──align by step or tokens──► windowed mean gap vs the curves' own noise ──► first divergence
//! one curve ──trailing window median/MAD──► robust z-scores ──► spikes (z > threshold)
//! spike batches' documents (tokens per value) vs the version's stats ──► lift per domain/source/lang
//! ```

use std::collections::BTreeMap;

/// Eight levels, low to high.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` drawn in at most `width` characters (bucket means), scaled
/// between `lo` and `hi` (shared scales let two sparklines be compared).
pub fn sparkline(values: &[f64], width: usize, lo: f64, hi: f64) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets = width.min(values.len());
    (0..buckets)
        .map(|b| {
            let (s, e) =
                (b * values.len() / buckets, ((b + 1) * values.len() / buckets).max(b * values.len() / buckets + 1));
            let mean = values[s..e].iter().sum::<f64>() / (e - s) as f64;
            let t = if hi > lo { ((mean - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
            BARS[((t * (BARS.len() - 1) as f64).round() as usize).min(BARS.len() - 1)]
        })
        .collect()
}

/// Minimum and maximum of finite values.
pub fn range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

/// Step-to-step noise of a curve: the standard deviation of its values
/// around their centred moving mean (trend removed).
pub fn noise(values: &[f64], window: usize) -> f64 {
    if values.len() < 3 {
        return 0.0;
    }
    let h = (window / 2).max(1);
    let residuals: Vec<f64> = (0..values.len())
        .map(|i| {
            let (s, e) = (i.saturating_sub(h), (i + h + 1).min(values.len()));
            values[i] - mean(&values[s..e])
        })
        .collect();
    std(&residuals)
}

/// Where two aligned curves part.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Index into the aligned points where the gap starts: in the first window whose
    /// mean gap is significant, the first point carrying at least that mean gap.
    pub index: usize,
    /// Mean of B minus A over the window that starts there.
    pub gap: f64,
    /// That gap in standard errors of a window's mean.
    pub z: f64,
}

/// The first index from which the windowed mean of `b` differs from that of
/// `a` by more than `z` times the noise of a windowed mean (pooled curve
/// noise / sqrt(window / 2)), and keeps differing for `window` more points in
/// the same direction. `None` when they never part.
pub fn divergence(a: &[f64], b: &[f64], window: usize, z: f64) -> Option<Divergence> {
    let n = a.len().min(b.len());
    let w = window.max(1);
    if n < 2 * w {
        return None;
    }
    let sigma = ((noise(&a[..n], w).powi(2) + noise(&b[..n], w).powi(2)) / 2.0).sqrt();
    let se = (sigma * (2.0 / w as f64).sqrt()).max(1e-12);
    let gaps: Vec<f64> = (0..=n - w).map(|i| mean(&b[i..i + w]) - mean(&a[i..i + w])).collect();
    let over = |g: f64| g.abs() / se > z;
    let i = (0..gaps.len()).find(|&i| {
        let sign = gaps[i].signum();
        over(gaps[i]) && gaps[i..gaps.len().min(i + w)].iter().all(|&g| over(g) && g.signum() == sign)
    })?;
    // The window says the change is within [i, i + w): its first point that carries at
    // least the window's average gap, in the same direction.
    let g = gaps[i];
    let first = (i..i + w).find(|&j| (b[j] - a[j]) * g.signum() >= g.abs()).unwrap_or(i);
    let after = first..n.min(first + w);
    let gap = after.clone().map(|j| b[j] - a[j]).sum::<f64>() / after.len() as f64;
    Some(Divergence { index: first, gap, z: gap.abs() / se })
}

/// A point of a curve that jumps above its recent past.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// Index into the curve.
    pub index: usize,
    /// The value.
    pub value: f64,
    /// Median of the trailing window.
    pub baseline: f64,
    /// Robust standard deviations above it.
    pub z: f64,
}

/// Points more than `z` robust standard deviations above the median of the
/// `window` calm points before them. The scale is the median absolute
/// deviation (x 1.4826, a normal distribution's standard deviation), so a
/// burst of bad batches does not widen its own baseline, and points flagged
/// as spikes are left out of later windows. The first `window` points have no
/// baseline and are never spikes.
pub fn spikes(values: &[f64], window: usize, z: f64) -> Vec<Spike> {
    let w = window.max(2);
    let mut out = Vec::new();
    let mut calm: Vec<f64> = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if calm.len() >= w {
            let (m, s) = median_mad(&calm[calm.len() - w..]);
            let score = (v - m) / s.max(1e-12);
            if score > z {
                out.push(Spike { index: i, value: v, baseline: m, z: score });
                continue;
            }
        }
        calm.push(v);
    }
    out
}

/// Median and 1.4826 x the median absolute deviation.
fn median_mad(v: &[f64]) -> (f64, f64) {
    let median = |mut x: Vec<f64>| {
        x.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let n = x.len();
        if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        }
    };
    let m = median(v.to_vec());
    (m, 1.4826 * median(v.iter().map(|x| (x - m).abs()).collect()))
}

/// One value of a column that a set of batches holds more of than the version does.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Lift {
    /// Column (domain, source, lang, ...).
    pub column: String,
    /// Value.
    pub value: String,
    /// Share of the batches' tokens.
    pub share: f64,
    /// Share of the version's tokens (documents when it has no token counts).
    pub baseline: f64,
    /// share / baseline.
    pub lift: f64,
    /// Documents of the batches with this value.
    pub docs: u64,
}

/// Values whose share in `observed` (column -> value -> tokens, docs) is at
/// least `min_lift` times their share in `baseline` (column -> value ->
/// weight), most over-represented first. A value the version does not list
/// has baseline share 0 and infinite lift.
pub fn lifts(
    observed: &BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    baseline: &BTreeMap<String, BTreeMap<String, f64>>,
    min_lift: f64,
) -> Vec<Lift> {
    let mut out = Vec::new();
    for (column, values) in observed {
        let total: u64 = values.values().map(|(t, _)| t).sum();
        let base = baseline.get(column);
        let base_total: f64 = base.map_or(0.0, |b| b.values().sum());
        if total == 0 {
            continue;
        }
        for (value, &(tokens, docs)) in values {
            let share = tokens as f64 / total as f64;
            let b = base.and_then(|b| b.get(value)).copied().unwrap_or(0.0);
            let base_share = if base_total > 0.0 { b / base_total } else { 0.0 };
            let lift = if base_share > 0.0 { share / base_share } else { f64::INFINITY };
            if lift >= min_lift && base_total > 0.0 {
                out.push(Lift {
                    column: column.clone(),
                    value: value.clone(),
                    share,
                    baseline: base_share,
                    lift,
                    docs,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (b.lift * b.share)
            .partial_cmp(&(a.lift * a.share))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.value.cmp(&b.value))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiggle(n: usize, level: f64, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                level + ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn sparkline_scales_bucket_means() {
        assert_eq!(sparkline(&[0.0, 1.0], 10, 0.0, 1.0), "▁█");
        assert_eq!(sparkline(&[0.0, 0.0, 1.0, 1.0], 2, 0.0, 1.0), "▁█");
        assert_eq!(sparkline(&[5.0; 3], 3, 5.0, 5.0).chars().count(), 3);
    }

    #[test]
    fn curves_part_where_one_moves_and_not_in_noise() {
        let a = wiggle(400, 3.0, 1);
        let mut b = wiggle(400, 3.0, 2);
        assert_eq!(divergence(&a, &b, 20, 4.0), None);
        for v in &mut b[250..] {
            *v += 0.5;
        }
        let d = divergence(&a, &b, 20, 4.0).unwrap();
        assert!((230..=252).contains(&d.index), "{d:?}");
        assert!(d.gap > 0.0);
    }

    #[test]
    fn spikes_stand_above_the_trailing_window() {
        let mut v = wiggle(300, 2.0, 3);
        v[150] += 2.0;
        v[151] += 2.0;
        v[220] += 1.5;
        let s: Vec<usize> = spikes(&v, 50, 4.0).iter().map(|s| s.index).collect();
        assert_eq!(s, vec![150, 151, 220]);
    }

    #[test]
    fn lifts_rank_over_represented_values() {
        let observed = BTreeMap::from([(
            "domain".to_string(),
            BTreeMap::from([("junk.example".to_string(), (900, 9)), ("news.example".to_string(), (100, 1))]),
        )]);
        let baseline = BTreeMap::from([(
            "domain".to_string(),
            BTreeMap::from([("junk.example".to_string(), 5.0), ("news.example".to_string(), 95.0)]),
        )]);
        let l = lifts(&observed, &baseline, 1.5);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].value, "junk.example");
        assert!((l[0].lift - 18.0).abs() < 1e-9);
    }
}
