//! Reading a Prometheus histogram off `/metrics` pages, as Prometheus's
//! `histogram_quantile` would: the buckets are the `le` labels the page
//! carries, so the bridge alone decides its bucket bounds (`tern::bridge::
//! latency`) and the load tool does not have to be rebuilt in step with it.

use crate::http;

/// The cumulative `(upper bound, count)` buckets of histogram `name` that
/// were added between two pages (summed over the other labels, e.g. the
/// shards), in increasing bound order, `+Inf` last. Empty if `end` has no
/// such histogram.
pub fn buckets_between(start: &str, end: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut les: Vec<(f64, String)> = label_values(end, &bucket, "le")
        .into_iter()
        .filter_map(|le| Some((parse_le(&le)?, le)))
        .collect();
    les.sort_by(|a, b| a.0.total_cmp(&b.0));
    les.dedup_by(|a, b| a.1 == b.1);
    les.into_iter()
        .map(|(bound, le)| {
            let at = |page: &str| http::metric_sum_where(page, &bucket, Some(("le", &le)));
            (bound, at(end) - at(start))
        })
        .collect()
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        _ => le.parse().ok().filter(|b: &f64| b.is_finite()),
    }
}

/// Every value label `label` takes on metric `name` in `page` (unsorted,
/// possibly repeated).
fn label_values(page: &str, name: &str, label: &str) -> Vec<String> {
    let prefix = format!("{label}=\"");
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| {
            let (_, rest) = l.split_once('{')?;
            let (set, _) = rest.split_once('}')?;
            let kv = set.split(',').find(|kv| kv.starts_with(&prefix))?;
            Some(kv[prefix.len()..].strip_suffix('"')?.to_string())
        })
        .collect()
}

/// A quantile from cumulative `(upper bound, count)` buckets in increasing
/// order (the last bound may be infinite), interpolated linearly inside the
/// bucket as Prometheus's `histogram_quantile` does. `None` without samples;
/// a quantile that falls in the open top bucket is reported as the highest
/// finite bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = cumulative - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * frac);
        }
        lower = if bound.is_finite() { bound } else { lower };
        below = cumulative;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_the_le_labels_summed_over_shards() {
        let start = "h_bucket{shard=\"0\",le=\"0.001\"} 1\nh_bucket{shard=\"0\",le=\"+Inf\"} 1\n";
        let end = "# TYPE h_bucket counter\n\
            h_bucket{shard=\"0\",le=\"0.001\"} 3\nh_bucket{shard=\"0\",le=\"0.0005\"} 2\n\
            h_bucket{shard=\"0\",le=\"+Inf\"} 4\n\
            h_bucket{shard=\"1\",le=\"0.001\"} 1\nh_bucket{shard=\"1\",le=\"0.0005\"} 0\n\
            h_bucket{shard=\"1\",le=\"+Inf\"} 2\nh_count{shard=\"0\"} 4\n";
        assert_eq!(
            buckets_between(start, end, "h"),
            vec![(0.0005, 2.0), (0.001, 3.0), (f64::INFINITY, 5.0)]
        );
        assert!(buckets_between(start, "", "h").is_empty());
    }

    #[test]
    fn quantile_interpolates_inside_a_bucket_like_prometheus() {
        // 100 samples: 50 in (0, 0.1], 50 in (0.1, 0.2].
        let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        let p50 = quantile(&b, 0.5).expect("samples");
        assert!((p50 - 0.1).abs() < 1e-12, "{p50}");
        let p75 = quantile(&b, 0.75).expect("samples");
        assert!((p75 - 0.15).abs() < 1e-12, "{p75}");
        let p99 = quantile(&b, 0.99).expect("samples");
        assert!((p99 - 0.198).abs() < 1e-12, "{p99}");
    }

    #[test]
    fn quantile_in_the_open_top_bucket_is_the_highest_bound() {
        let b = [(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&b, 0.99), Some(0.1));
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
