//! PromQL as far as the monitoring tests need it: which metrics an
//! expression selects (and the `le` it asks of a histogram).
#![allow(dead_code)]

// ---------------------------------------------------------------------------
// PromQL: which metrics an expression names

/// A metric an expression selects, and the `le` it asks of it, if any.
#[derive(Debug, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub le: Option<String>,
}

/// Followed by a parenthesised list of label names (`group_left` and
/// `group_right` may also stand alone).
pub const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Binary operators and modifiers that are words; numbers that are words.
pub const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "atan2", "bool", "offset", "inf", "nan",
];
/// PromQL's aggregation operators and functions (Prometheus 2.42), and
/// `start`/`end` of the `@` modifier, separated by blanks.
pub const FUNCTIONS: &str = "\
    sum avg min max count stddev stdvar topk bottomk quantile count_values group abs
    absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week
    day_of_year days_in_month deg delta deriv exp floor histogram_count
    histogram_fraction histogram_quantile histogram_sum holt_winters hour idelta increase
    irate label_join label_replace last_over_time ln log10 log2 max_over_time
    min_over_time minute month pi predict_linear present_over_time quantile_over_time rad
    rate resets round scalar sgn sin sinh sort sort_desc sqrt stddev_over_time
    stdvar_over_time sum_over_time tan tanh time timestamp vector year start end";

/// Index of the `close` matching the `open` at `s[at]`, skipping strings.
pub fn matching(s: &[char], at: usize, open: char, close: char) -> Result<usize, String> {
    let mut depth = 0;
    let mut i = at;
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => i = skip_string(s, i)?,
            c if c == open => {
                depth += 1;
                i += 1;
            }
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Err(format!("unbalanced {open:?}"))
}

/// The index after the string literal starting at `s[at]`.
pub fn skip_string(s: &[char], at: usize) -> Result<usize, String> {
    let quote = s[at];
    let mut i = at + 1;
    while i < s.len() {
        match s[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unterminated string".into())
}

pub fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `label op "value"` matchers between braces.
pub fn matchers(s: &[char]) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    let skip_blank = |i: &mut usize| {
        while *i < s.len() && (s[*i].is_whitespace() || s[*i] == ',') {
            *i += 1;
        }
    };
    loop {
        skip_blank(&mut i);
        if i >= s.len() {
            return Ok(out);
        }
        let start = i;
        while i < s.len() && is_word(s[i]) {
            i += 1;
        }
        let label: String = s[start..i].iter().collect();
        if label.is_empty() {
            return Err(format!("a label name expected at {:?}", &s[i..]));
        }
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < s.len() && matches!(s[i], '=' | '!' | '~') {
            i += 1;
        }
        let op: String = s[start..i].iter().collect();
        if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
            return Err(format!("bad matcher operator {op:?} after {label}"));
        }
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        if i >= s.len() || !matches!(s[i], '"' | '\'' | '`') {
            return Err(format!("a quoted value expected after {label}{op}"));
        }
        let end = skip_string(s, i)?;
        let value: String = s[i + 1..end - 1].iter().collect();
        out.push((label, op, value));
        i = end;
    }
}

/// The metrics a PromQL expression selects. Strings, `[…]` ranges and
/// subqueries, numbers and durations, Grafana `$variables`, label lists of
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` and label
/// matchers are not metric names; a word followed by `(` must be a PromQL
/// function or aggregation; every other word is a metric name.
pub fn selectors(promql: &str) -> Result<Vec<Selector>, String> {
    let s: Vec<char> = promql.chars().collect();
    let mut out: Vec<Selector> = Vec::new();
    // The selector a `{…}` would belong to.
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '{' {
            let end = matching(&s, i, '{', '}')?;
            let m = matchers(&s[i + 1..end])?;
            let k = match open.take() {
                Some(k) => k,
                None => {
                    let (_, _, name) = m
                        .iter()
                        .find(|(l, op, _)| l == "__name__" && op == "=")
                        .ok_or_else(|| format!("a selector without a metric name in {promql:?}"))?;
                    out.push(Selector {
                        metric: name.clone(),
                        le: None,
                    });
                    out.len() - 1
                }
            };
            out[k].le = m
                .iter()
                .find(|(l, op, _)| l == "le" && op == "=")
                .map(|(_, _, v)| v.clone());
            i = end + 1;
            continue;
        }
        open = None;
        match c {
            '#' => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => i = skip_string(&s, i)?,
            '[' => i = matching(&s, i, '[', ']')? + 1,
            '$' => {
                i += 1;
                if s.get(i) == Some(&'{') {
                    i = matching(&s, i, '{', '}')? + 1;
                } else {
                    while i < s.len() && is_word(s[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < s.len() && is_word(s[i]) {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                let mut next = i;
                while next < s.len() && s[next].is_whitespace() {
                    next += 1;
                }
                let paren = s.get(next) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if paren {
                        i = matching(&s, next, '(', ')')? + 1;
                    } else if !lower.starts_with("group_") {
                        return Err(format!("`{word}` without its label list in {promql:?}"));
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || FUNCTIONS.split_whitespace().any(|f| f == word)
                {
                    // An operator, a function or an aggregation.
                } else if paren {
                    return Err(format!("unknown function `{word}` in {promql:?}"));
                } else {
                    out.push(Selector {
                        metric: word,
                        le: None,
                    });
                    open = Some(out.len() - 1);
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// The PromQL in a Grafana variable's query: `label_values(EXPR, label)`
/// is EXPR, `label_values(label)` none.
pub fn variable_promql(query: &str) -> Option<String> {
    let q = query.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => args
            .rsplit_once(',')
            .map(|(expr, _label)| expr.trim().to_string()),
        None => Some(q.to_string()),
    }
}

#[test]
pub fn the_metric_name_extractor_finds_metrics_and_only_metrics() {
    let names = |q: &str| -> Vec<String> {
        selectors(q)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|s| s.metric)
            .collect()
    };
    assert_eq!(
        names(r#"sum by (region, state) (tern_focus_bridges{region=~"$region"})"#),
        ["tern_focus_bridges"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (shard, le) \
             (rate(tern_forward_latency_seconds_bucket{instance=\"$instance\"}[$__rate_interval])))"
        ),
        ["tern_forward_latency_seconds_bucket"]
    );
    assert_eq!(
        names(
            "tern_bridge_stress{region=~\"$region\"} * on (job, instance) group_left (bridge) \
             tern_bridge_info"
        ),
        ["tern_bridge_stress", "tern_bridge_info"]
    );
    assert_eq!(
        names(r#"up{job="tern-focus"} == 0 or absent(up{job="tern-focus"})"#),
        ["up", "up"]
    );
    assert_eq!(
        names("sum(rate(a_total[5m] offset 1h)) by (le) / ignoring (x) group_left b # c_d\n"),
        ["a_total", "b"]
    );
    assert_eq!(
        names(r#"label_replace(x, "dst", "$1", "src", "(.*)}{[")"#),
        ["x"]
    );
    assert_eq!(
        names(r#"{__name__="tern_endpoints", shard="0"}"#),
        ["tern_endpoints"]
    );
    assert_eq!(
        names("max_over_time(tern_endpoints[10m:1m]) > bool 1e3"),
        ["tern_endpoints"]
    );
    // The `le` a bucket is asked for.
    let s =
        selectors(r#"1 - sum(rate(h_bucket{le="0.05", shard!="1"}[5m])) / sum(rate(h_count[5m]))"#)
            .expect("parses");
    assert_eq!(
        s,
        [
            Selector {
                metric: "h_bucket".into(),
                le: Some("0.05".into())
            },
            Selector {
                metric: "h_count".into(),
                le: None
            }
        ]
    );
    // A typo in a metric name is a name; one in a function is an error.
    assert_eq!(
        names("sum(rate(tern_packets_recieved_total[5m]))"),
        ["tern_packets_recieved_total"]
    );
    assert!(selectors("sum(rat(tern_packets_received_total[5m]))").is_err());
    assert!(selectors("sum by region (x)").is_err());
    assert!(selectors(r#"{job="x"}"#).is_err());
    assert_eq!(
        variable_promql(r#"label_values(up{job="tern-bridge"}, instance)"#).as_deref(),
        Some(r#"up{job="tern-bridge"}"#)
    );
    assert_eq!(variable_promql("label_values(region)"), None);
}
