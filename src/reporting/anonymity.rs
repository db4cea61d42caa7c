//! k-anonymity: the only place that decides what of an aggregate may be
//! shown. Every function here is pure, so that the rules are tested without
//! a database and are the same for the HTTP API and the CLI.
//!
//! Rules (see `docs/reporting.md`), each against a reader who sees one
//! answer, or several answers of the same data, and knows these rules:
//! - a group (a version, an attribute value, an upgrade path, a period's
//!   event count split by version or edition) backed by fewer than `k`
//!   instances or reports is *small*. Small groups are summed into one
//!   [`OTHER`] row, *folded*. When they sum to less than `k`, the smallest
//!   shown groups are folded with them until `other` reaches `k`
//!   (complementary suppression): otherwise the whole, which another answer
//!   gives, minus the shown groups would be the exact size of the hidden
//!   ones, and where the catalog lists few values, the reader would know
//!   which value that is. Only when all groups together stay below `k` is
//!   anything *omitted*.
//! - a count that cannot be folded (an event total, a feature's enabled or
//!   disabled instances, a counter's population) is shown only when it is 0
//!   or at least `k`, else omitted.
//! - counters never show a minimum or a maximum. A percentile is shown only
//!   when its own fine bucket holds at least `k` instances. Histogram
//!   buckets holding fewer than `k` instances are merged with their upper
//!   neighbours (the last one with its lower neighbour) until every shown
//!   bucket holds 0 or at least `k` instances.
//! - a counter's exact total, and its mean (which gives the total back), is
//!   shown only when no install dominates it: even if the two largest values
//!   are as large as their buckets allow, all the other installs add up to
//!   at least the largest possible value (the p% dominance rule of
//!   statistical disclosure control, with p = 100%). Without it, five
//!   installs at 0 and one at 1234 would show a total of 1234, which is the
//!   sixth install's exact value; and the second-largest install, which
//!   knows its own value, could read the largest one off the total.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::grouping::{HISTOGRAM_BOUNDS, OTHER};

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
    let mut small_groups = 0u64;
    let mut other_total = 0;
    for (label, n) in groups {
        if n <= 0 {
            continue;
        }
        if &label == other {
            other_total += n;
            small_groups += u64::from(n < k);
        } else if n >= k {
            shown.push((label, n));
        } else {
            other_total += n;
            small_groups += 1;
        }
    }
    shown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut suppressed = Suppressed::default();
    if small_groups == 0 {
        if other_total > 0 {
            shown.push((other.clone(), other_total));
        }
        return Folded {
            rows: shown,
            suppressed,
        };
    }
    // Complementary suppression: the smallest shown groups join `other`
    // until it reaches k, so that no small group's size can be worked out
    // from the whole.
    let mut folded = small_groups;
    while other_total < k {
        let Some((_, n)) = shown.pop() else { break };
        other_total += n;
        folded += 1;
    }
    if other_total >= k {
        suppressed.folded = folded;
        shown.push((other.clone(), other_total));
    } else {
        suppressed.omitted = folded;
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
    /// Exact sum, when no install dominates it.
    pub total: Option<i64>,
    /// total / instances, when the total is shown.
    pub mean: Option<f64>,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub histogram: Vec<HistogramBucket>,
}

/// Largest value a fine storage bucket holds, from its lower bound: values
/// below 100 have a bucket each, larger ones share a bucket per two
/// significant digits (the scheme of `store::bucket_of`).
pub fn fine_upper(lower: i64) -> i64 {
    if lower < 100 {
        return lower;
    }
    let mut scale = 1;
    while lower / scale >= 100 {
        scale *= 10;
    }
    lower + scale - 1
}

/// Computes a counter's statistics from its fine buckets (lower bound ->
/// (instances, total)), or `None` (counted as omitted) when fewer than k
/// instances reported it. A withheld total and mean count as omitted too.
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
    let total = if no_install_dominates(buckets, total) {
        Some(total)
    } else {
        suppressed.omitted += 1;
        None
    };
    Some(CounterStats {
        instances,
        total,
        mean: total.map(|t| (t as f64 / instances as f64 * 100.0).round() / 100.0),
        p50: percentile(&fine, instances, 50, k),
        p90: percentile(&fine, instances, 90, k),
        histogram: histogram(&fine, k),
    })
}

/// The dominance rule: with the largest value and the two largest values
/// bounded from above by what their fine buckets allow, the other values
/// still add up to at least the largest one.
fn no_install_dominates(buckets: &BTreeMap<i64, (i64, i64)>, total: i64) -> bool {
    let mut top = buckets.iter().rev().filter(|(_, (n, _))| *n > 0);
    let Some((&lower, &(n, t))) = top.next() else {
        return true;
    };
    let upper = fine_upper(lower);
    // The others of a bucket hold at least its lower bound each.
    let largest = upper.min(t - (n - 1) * lower);
    let two_largest = if n >= 2 {
        (2 * upper).min(t - (n - 2) * lower)
    } else {
        let second = top
            .next()
            .map_or(0, |(&l, &(n2, t2))| fine_upper(l).min(t2 - (n2 - 1) * l));
        t + second
    };
    total - two_largest >= largest
}

/// Nearest-rank percentile over fine buckets (ascending), as the lower
/// bound of the bucket holding it; `None` unless that bucket holds at
/// least k instances.
fn percentile(fine: &[(i64, i64)], n: i64, pct: i64, k: i64) -> Option<i64> {
    let rank = (n * pct + 99) / 100; // ceil(n * pct / 100), at least 1
    let rank = rank.max(1);
    let mut below = 0;
    for (bound, count) in fine {
        let through = below + count;
        if through >= rank {
            return (*count >= k).then_some(*bound);
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
    fn the_smallest_shown_groups_join_other_until_it_reaches_k() {
        // Shown alone, a: 10 next to a whole of 13 (from another answer)
        // would tell that b has exactly 3 installs.
        let f = fold(
            groups(&[("a", 10), ("b", 3), ("c", 6)]),
            5,
            &OTHER.to_string(),
        );
        assert_eq!(f.rows, vec![("a".into(), 10), ("other".into(), 9)]);
        assert_eq!(
            f.suppressed,
            Suppressed {
                folded: 2,
                omitted: 0
            }
        );
        let f = fold(groups(&[("a", 10), ("b", 3)]), 5, &OTHER.to_string());
        assert_eq!(f.rows, vec![("other".into(), 13)]);
        assert_eq!(f.suppressed.folded, 2);
    }

    #[test]
    fn groups_are_omitted_only_when_all_of_them_stay_below_k() {
        let f = fold(groups(&[("a", 2), ("b", 1)]), 5, &OTHER.to_string());
        assert!(f.rows.is_empty());
        assert_eq!(
            f.suppressed,
            Suppressed {
                folded: 0,
                omitted: 2
            }
        );
    }

    #[test]
    fn whatever_the_groups_no_small_group_can_be_worked_out() {
        // For every split of up to 5 groups of 0..12 instances, the shown
        // rows sum to the whole (nothing hidden beside `other`), or nothing
        // is shown; and `other`, when shown, holds at least k.
        let k = 5;
        let mut sizes = vec![0i64; 5];
        loop {
            let g: BTreeMap<String, i64> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("v{i}"), *n))
                .collect();
            let whole: i64 = sizes.iter().sum();
            let f = fold(g, k, &OTHER.to_string());
            let shown: i64 = f.rows.iter().map(|(_, n)| n).sum();
            assert!(shown == whole || shown == 0, "{sizes:?} -> {:?}", f.rows);
            assert!(f.rows.iter().all(|(_, n)| *n >= k), "{sizes:?}");
            let mut i = 0;
            while i < sizes.len() && sizes[i] == 12 {
                sizes[i] = 0;
                i += 1;
            }
            if i == sizes.len() {
                break;
            }
            sizes[i] += 1;
        }
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
        assert_eq!(f.rows, vec![("other".into(), 11)]);
        assert_eq!(f.suppressed.folded, 2);
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
    fn a_percentile_needs_k_instances_in_its_own_bucket() {
        // Five instances: p90 is the largest one, p50 has only 3 at or below.
        let fine = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)];
        assert_eq!(percentile(&fine, 5, 90, 5), None);
        assert_eq!(percentile(&fine, 5, 50, 5), None);
        // A bucket shared by many is fine.
        let fine = [(10, 3), (20, 8), (30, 9)];
        assert_eq!(percentile(&fine, 20, 50, 5), Some(20));
        assert_eq!(percentile(&fine, 20, 90, 5), Some(30));
        assert_eq!(percentile(&fine, 20, 50, 1), Some(20));
        // Many at or below and many at or above, but the percentile's own
        // bucket holds 2: it would pin those two.
        let fine = [(10, 9), (20, 2), (30, 9)];
        assert_eq!(percentile(&fine, 20, 50, 5), None);
    }

    fn buckets(values: &[i64]) -> BTreeMap<i64, (i64, i64)> {
        let mut b: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for v in values {
            let e = b.entry(crate::store::bucket_of(*v)).or_default();
            e.0 += 1;
            e.1 += v;
        }
        b
    }

    #[test]
    fn fine_upper_bounds_match_the_storage_buckets() {
        for v in (0..300_000).step_by(7) {
            let lower = crate::store::bucket_of(v);
            assert!(lower <= v && v <= fine_upper(lower), "{v}");
            assert_eq!(crate::store::bucket_of(fine_upper(lower)), lower, "{v}");
            // The next value starts the next bucket.
            let next = fine_upper(lower) + 1;
            assert_eq!(crate::store::bucket_of(next), next, "{v}");
        }
    }

    #[test]
    fn a_total_one_install_dominates_is_withheld() {
        let mut s = Suppressed::default();
        // Five at 0 and one at 1234: the total is the sixth's value.
        let c = counter_stats(&buckets(&[0, 0, 0, 0, 0, 1234]), 5, &mut s).unwrap();
        assert_eq!((c.total, c.mean), (None, None));
        assert_eq!(s.omitted, 1);
        // One whale among small installs.
        let c = counter_stats(&buckets(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1_000_000]), 5, &mut s);
        assert_eq!(c.unwrap().total, None);
        // Two installs holding everything: each reads the other's value.
        let c = counter_stats(&buckets(&[0, 0, 0, 0, 0, 600, 600]), 5, &mut s);
        assert_eq!(c.unwrap().total, None);
        // No one dominates: shown, exact.
        let values: Vec<i64> = (1..=18).collect();
        let c = counter_stats(&buckets(&values), 5, &mut s).unwrap();
        assert_eq!(c.total, Some(171));
        assert_eq!(c.mean, Some(9.5));
        let c = counter_stats(
            &buckets(&[50, 52, 48, 61, 40, 55, 47, 58, 49, 60]),
            5,
            &mut s,
        );
        assert_eq!(c.unwrap().total, Some(520));
    }

    #[test]
    fn no_shown_total_ever_leaves_the_largest_value_pinned() {
        // Brute force over small populations: when the total is shown, the
        // largest install cannot be told apart from a world where it is
        // smaller by a tenth, everything else the reader knows unchanged
        // (the others' total at least matches the largest).
        for a in [0, 1, 5, 40, 99, 150, 1234, 50_000] {
            for b in [0, 1, 7, 99, 300, 1234] {
                let values = [0, 0, 1, 2, 3, a, b];
                let total: i64 = values.iter().sum();
                let max = *values.iter().max().unwrap();
                let shown = no_install_dominates(&buckets(&values), total);
                if shown {
                    assert!(total - max >= max, "{values:?}");
                }
            }
        }
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
