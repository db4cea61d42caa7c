//! k-anonymity: the only place that decides what of an aggregate may be
//! shown. Every function here is pure, so that the rules are tested without
//! a database and are the same for the HTTP API and the CLI.
//!
//! Rules (see `docs/reporting.md`):
//! - a group (a version, an attribute value, an upgrade path, a period's
//!   event count split by version or edition) backed by fewer than `k`
//!   instances or reports is *small*. Small groups are summed into one
//!   [`OTHER`] row when that sum (together with a stored `other` value, if
//!   any) reaches `k`; they are then *folded*. Otherwise they are *omitted*.
//! - a count that cannot be folded (an event total, a feature's enabled or
//!   disabled instances, a counter's population) is shown only when it is 0
//!   or at least `k`, else omitted.
//! - counters never show a minimum or a maximum. Percentiles are shown only
//!   when at least `k` instances lie at or below their fine bucket and at
//!   least `k` at or above it, so that a percentile is never an extreme.
//!   Histogram buckets holding fewer than `k` instances are merged with
//!   their upper neighbours (the last one with its lower neighbour) until
//!   every shown bucket holds 0 or at least `k` instances.

use std::collections::BTreeMap;

use serde::Serialize;

/// Label of the row small groups are folded into. It is also the value the
/// collector stores for attribute values outside the catalog: both mean "a
/// value not listed separately".
pub const OTHER: &str = "other";

/// How many groups a response does not show as such.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// Groups smaller than k summed into the `other` row.
    pub folded: u64,
    /// Groups smaller than k shown nowhere (their sum did not reach k, or
    /// the figure cannot be folded).
    pub omitted: u64,
}

impl Suppressed {
    /// Adds another response part's counts.
    pub fn add(&mut self, other: Suppressed) {
        self.folded += other.folded;
        self.omitted += other.omitted;
    }
}

/// Groups that may be shown: each at least k, plus at most one `other` row
/// (last), sorted by count descending then label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded<L> {
    pub rows: Vec<(L, i64)>,
    pub suppressed: Suppressed,
}

/// Applies the folding rule to groups keyed by `L`. Groups with a zero or
/// negative count are not groups (aggregate rows whose instances all moved
/// on) and are dropped silently. `other` is the label of the fold row; a
/// group already carrying that label is treated as part of it.
pub fn fold<L: Ord + Clone>(groups: BTreeMap<L, i64>, k: i64, other: &L) -> Folded<L> {
    let mut shown: Vec<(L, i64)> = Vec::new();
    let mut small: Vec<i64> = Vec::new();
    let mut stored_other = 0;
    let mut stored_other_small = false;
    for (label, n) in groups {
        if n <= 0 {
            continue;
        }
        if &label == other {
            stored_other = n;
            stored_other_small = n < k;
        } else if n >= k {
            shown.push((label, n));
        } else {
            small.push(n);
        }
    }
    let other_total = stored_other + small.iter().sum::<i64>();
    let mut suppressed = Suppressed::default();
    let small_groups = small.len() as u64 + u64::from(stored_other_small);
    shown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if other_total >= k {
        suppressed.folded = small_groups;
        shown.push((other.clone(), other_total));
    } else {
        suppressed.omitted = small_groups;
    }
    Folded {
        rows: shown,
        suppressed,
    }
}

/// A count that cannot be folded: shown when 0 or at least k.
pub fn guard(n: i64, k: i64, suppressed: &mut Suppressed) -> Option<i64> {
    if n == 0 || n >= k {
        Some(n)
    } else {
        suppressed.omitted += 1;
        None
    }
}

/// `part / whole`, rounded to four decimals (0 when `whole` is 0).
pub fn share(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

/// Lower bounds of the fixed histogram buckets: 0, 1, 2-5, 6-25, 26-99,
/// 100-499, 500-1999, 2000-9999, 10000+. Each is also the lower bound of a
/// fine storage bucket, so that every fine bucket falls in exactly one.
pub const HISTOGRAM_BOUNDS: [i64; 9] = [0, 1, 2, 6, 26, 100, 500, 2000, 10_000];

/// One shown histogram bucket: `from` to `to` inclusive (`to` is absent for
/// the open-ended last bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistogramBucket {
    /// Human label: "2-5", "10000+", "1".
    pub bucket: String,
    pub from: i64,
    pub to: Option<i64>,
    pub instances: i64,
}

impl HistogramBucket {
    fn new(from: i64, to: Option<i64>, instances: i64) -> HistogramBucket {
        let bucket = match to {
            None => format!("{from}+"),
            Some(to) if to == from => from.to_string(),
            Some(to) => format!("{from}-{to}"),
        };
        HistogramBucket {
            bucket,
            from,
            to,
            instances,
        }
    }
}

/// Statistics of one counter that may be shown.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterStats {
    pub instances: i64,
    pub total: i64,
    pub mean: f64,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub histogram: Vec<HistogramBucket>,
}

/// Computes a counter's statistics from its fine buckets (lower bound ->
/// (instances, total)), or `None` (counted as omitted) when fewer than k
/// instances reported it.
pub fn counter_stats(
    buckets: &BTreeMap<i64, (i64, i64)>,
    k: i64,
    suppressed: &mut Suppressed,
) -> Option<CounterStats> {
    let fine: Vec<(i64, i64)> = buckets
        .iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(b, (n, _))| (*b, *n))
        .collect();
    let instances: i64 = fine.iter().map(|(_, n)| n).sum();
    let total: i64 = buckets.values().map(|(_, t)| t).sum();
    if instances == 0 {
        return None;
    }
    if instances < k {
        suppressed.omitted += 1;
        return None;
    }
    Some(CounterStats {
        instances,
        total,
        mean: (total as f64 / instances as f64 * 100.0).round() / 100.0,
        p50: percentile(&fine, instances, 50, k),
        p90: percentile(&fine, instances, 90, k),
        histogram: histogram(&fine, k),
    })
}

/// Nearest-rank percentile over fine buckets (ascending), as the lower
/// bound of the bucket holding it; `None` when fewer than k instances lie
/// at or below that bucket or fewer than k at or above it.
fn percentile(fine: &[(i64, i64)], n: i64, pct: i64, k: i64) -> Option<i64> {
    let rank = (n * pct + 99) / 100; // ceil(n * pct / 100), at least 1
    let rank = rank.max(1);
    let mut below = 0;
    for (bound, count) in fine {
        let through = below + count;
        if through >= rank {
            let at_or_above = n - below;
            return (through >= k && at_or_above >= k).then_some(*bound);
        }
        below = through;
    }
    None
}

/// Sums fine buckets into the fixed buckets, then merges buckets holding
/// fewer than k instances with their upper neighbours (the last with its
/// lower neighbour), so that every shown bucket holds 0 or at least k.
fn histogram(fine: &[(i64, i64)], k: i64) -> Vec<HistogramBucket> {
    let mut fixed = [0i64; HISTOGRAM_BOUNDS.len()];
    for (bound, count) in fine {
        let i = HISTOGRAM_BOUNDS
            .iter()
            .rposition(|b| b <= bound)
            .unwrap_or(0);
        fixed[i] += count;
    }
    let upper = |i: usize| HISTOGRAM_BOUNDS.get(i + 1).map(|next| next - 1);
    let mut out: Vec<HistogramBucket> = Vec::new();
    // The run of buckets being merged: first index and instances so far.
    let mut run: Option<(usize, i64)> = None;
    for (i, count) in fixed.iter().enumerate() {
        let (start, sum) = match run {
            Some((start, sum)) => (start, sum + count),
            None => (i, *count),
        };
        if sum == 0 || sum >= k {
            out.push(HistogramBucket::new(HISTOGRAM_BOUNDS[start], upper(i), sum));
            run = None;
        } else {
            run = Some((start, sum));
        }
    }
    if let Some((start, sum)) = run {
        // Fewer than k instances above the last shown non-empty bucket:
        // merge them, and any empty buckets between, into it.
        // (There is one: the caller shows counters of at least k instances.)
        let keep = out.iter().rposition(|b| b.instances > 0).unwrap_or(0);
        let from = out
            .get(keep)
            .map(|b| b.from)
            .unwrap_or(HISTOGRAM_BOUNDS[start]);
        let merged = out[keep..].iter().map(|b| b.instances).sum::<i64>() + sum;
        out.truncate(keep);
        out.push(HistogramBucket::new(from, None, merged));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(items: &[(&str, i64)]) -> BTreeMap<String, i64> {
        items.iter().map(|(l, n)| (l.to_string(), *n)).collect()
    }

    #[test]
    fn small_groups_fold_into_other_when_it_reaches_k() {
        let f = fold(
            groups(&[("a", 10), ("b", 3), ("c", 2), ("d", 0)]),
            5,
            &OTHER.to_string(),
        );
        assert_eq!(f.rows, vec![("a".into(), 10), ("other".into(), 5)]);
        assert_eq!(
            f.suppressed,
            Suppressed {
                folded: 2,
                omitted: 0
            }
        );
    }

    #[test]
    fn small_groups_are_omitted_when_other_stays_below_k() {
        let f = fold(groups(&[("a", 10), ("b", 3)]), 5, &OTHER.to_string());
        assert_eq!(f.rows, vec![("a".into(), 10)]);
        assert_eq!(
            f.suppressed,
            Suppressed {
                folded: 0,
                omitted: 1
            }
        );
    }

    #[test]
    fn stored_other_absorbs_small_groups() {
        let f = fold(
            groups(&[("a", 9), ("other", 6), ("b", 1)]),
            5,
            &OTHER.to_string(),
        );
        assert_eq!(f.rows, vec![("a".into(), 9), ("other".into(), 7)]);
        assert_eq!(f.suppressed.folded, 1);
        let f = fold(groups(&[("a", 9), ("other", 2)]), 5, &OTHER.to_string());
        assert_eq!(f.rows, vec![("a".into(), 9)]);
        assert_eq!(f.suppressed.omitted, 1);
    }

    #[test]
    fn rows_sort_by_count_then_label_with_other_last() {
        let f = fold(
            groups(&[("b", 7), ("a", 7), ("c", 20), ("x", 4), ("y", 4)]),
            5,
            &OTHER.to_string(),
        );
        let labels: Vec<&str> = f.rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["c", "a", "b", "other"]);
    }

    #[test]
    fn percentiles_are_never_extremes() {
        // Five instances: p90 is the largest one, p50 has only 3 at or below.
        let fine = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)];
        assert_eq!(percentile(&fine, 5, 90, 5), None);
        assert_eq!(percentile(&fine, 5, 50, 5), None);
        // A bucket shared by many is fine.
        let fine = [(10, 3), (20, 8), (30, 9)];
        assert_eq!(percentile(&fine, 20, 50, 5), Some(20));
        assert_eq!(percentile(&fine, 20, 90, 5), Some(30));
        assert_eq!(percentile(&fine, 20, 50, 1), Some(20));
    }

    #[test]
    fn histogram_merges_buckets_below_k_upwards() {
        // 1 x "0", 3 x "2-5", 4 x "26-99", 10 x "100-499", 2 x "10000+":
        // the bottom run merges up to 26-99, the top remainder down.
        let fine = [(0, 1), (3, 3), (40, 4), (120, 10), (12_000, 2)];
        let h = histogram(&fine, 5);
        let shown: Vec<(&str, i64)> = h.iter().map(|b| (b.bucket.as_str(), b.instances)).collect();
        assert_eq!(shown, [("0-99", 8), ("100+", 12)]);
        for b in &h {
            assert!(b.instances == 0 || b.instances >= 5, "{b:?}");
        }
        assert_eq!(h.iter().map(|b| b.instances).sum::<i64>(), 20);
    }
}
