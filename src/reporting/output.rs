//! Renderings of a report besides JSON: CSV for scripts and spreadsheets,
//! aligned text tables for people. Both come from the same cells.

use super::{Output, Suppressed};

/// Header and rows of a report as text cells (`""` for an absent figure).
pub fn cells(output: &Output) -> (Vec<&'static str>, Vec<Vec<String>>) {
    fn opt(n: Option<i64>) -> String {
        n.map(|n| n.to_string()).unwrap_or_default()
    }
    match output {
        Output::Summary(s) => (
            vec![
                "product",
                "active_instances",
                "install",
                "update",
                "k",
                "active_days",
                "as_of",
                "from",
                "to",
                "folded",
                "omitted",
            ],
            vec![vec![
                s.product.clone(),
                opt(s.active_instances),
                opt(s.events.install),
                opt(s.events.update),
                s.k.to_string(),
                s.active_days.to_string(),
                s.as_of.to_string(),
                s.from.to_string(),
                s.to.to_string(),
                s.suppressed.folded.to_string(),
                s.suppressed.omitted.to_string(),
            ]],
        ),
        Output::Events(e) => {
            let mut header = vec!["period", "event"];
            if let Some(by) = e.by {
                header.push(by.as_str());
            }
            header.push("reports");
            let rows = e
                .rows
                .iter()
                .map(|r| {
                    let mut row = vec![r.period.to_string(), r.event.clone()];
                    if let Some(label) = r.version.as_ref().or(r.edition.as_ref()) {
                        row.push(label.clone());
                    }
                    row.push(r.reports.to_string());
                    row
                })
                .collect();
            (header, rows)
        }
        Output::Versions(v) => (
            vec!["version", "instances", "share"],
            v.rows
                .iter()
                .map(|r| {
                    vec![
                        r.version.clone(),
                        r.instances.to_string(),
                        r.share.to_string(),
                    ]
                })
                .collect(),
        ),
        Output::Attribute(a) => (
            vec!["value", "instances", "share"],
            a.rows
                .iter()
                .map(|r| {
                    vec![
                        r.value.clone(),
                        r.instances.to_string(),
                        r.share.to_string(),
                    ]
                })
                .collect(),
        ),
        Output::Counters(c) => (
            vec![
                "counter",
                "instances",
                "total",
                "mean",
                "p50",
                "p90",
                "histogram",
            ],
            c.rows
                .iter()
                .map(|r| {
                    vec![
                        r.counter.clone(),
                        r.instances.to_string(),
                        opt(r.total),
                        r.mean.map(|m| m.to_string()).unwrap_or_default(),
                        opt(r.p50),
                        opt(r.p90),
                        r.histogram
                            .iter()
                            .map(|b| format!("{}:{}", b.bucket, b.instances))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect(),
        ),
        Output::Features(f) => (
            vec!["feature", "enabled", "instances", "share"],
            f.rows
                .iter()
                .map(|r| {
                    vec![
                        r.feature.clone(),
                        r.enabled.to_string(),
                        r.instances.to_string(),
                        r.share.to_string(),
                    ]
                })
                .collect(),
        ),
        Output::Upgrades(u) => (
            vec!["from", "to", "reports"],
            u.rows
                .iter()
                .map(|r| vec![r.from.clone(), r.to.clone(), r.reports.to_string()])
                .collect(),
        ),
    }
}

/// How many groups the report did not show as such.
pub fn suppressed(output: &Output) -> Suppressed {
    match output {
        Output::Summary(r) => r.suppressed,
        Output::Events(r) => r.suppressed,
        Output::Versions(r) => r.suppressed,
        Output::Attribute(r) => r.suppressed,
        Output::Counters(r) => r.suppressed,
        Output::Features(r) => r.suppressed,
        Output::Upgrades(r) => r.suppressed,
    }
}

/// k of the report.
pub fn k(output: &Output) -> u32 {
    match output {
        Output::Summary(r) => r.k,
        Output::Events(r) => r.k,
        Output::Versions(r) => r.k,
        Output::Attribute(r) => r.k,
        Output::Counters(r) => r.k,
        Output::Features(r) => r.k,
        Output::Upgrades(r) => r.k,
    }
}

/// The report as RFC 4180 CSV (CRLF line ends, a header line).
pub fn csv(output: &Output) -> String {
    let (header, rows) = cells(output);
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let fields: Vec<String> = cells.map(csv_field).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// One CSV field, safe to open in a spreadsheet: a cell that a spreadsheet
/// would read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) is
/// prefixed with `'`, and a field with a comma, quote or line break is
/// quoted with inner quotes doubled.
pub fn csv_field(cell: &str) -> String {
    let neutral = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

/// The report as an aligned text table with a note on what k hid. The
/// summary is shown as one figure per line.
pub fn table(output: &Output) -> String {
    let (header, rows) = cells(output);
    let mut out = String::new();
    if matches!(output, Output::Summary(_)) {
        let width = header.iter().map(|h| h.len()).max().unwrap_or(0);
        for (h, v) in header.iter().zip(&rows[0]) {
            let v = if v.is_empty() { "-" } else { v };
            out.push_str(&format!("{h:<width$}  {v}\n"));
        }
    } else if rows.is_empty() {
        out.push_str("(no rows)\n");
    } else {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .all(|r| r[i].is_empty() || r[i].parse::<f64>().is_ok())
            })
            .collect();
        let mut line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let w = widths[i];
                    if numeric[i] {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            out.push_str(padded.join("  ").trim_end());
            out.push('\n');
        };
        line(header.clone());
        line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect(),
        );
        for row in &rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
    out.push_str(&note(output));
    out.push('\n');
    out
}

/// One sentence on what k hid, for people.
pub fn note(output: &Output) -> String {
    let s = suppressed(output);
    let k = k(output);
    if s.folded == 0 && s.omitted == 0 {
        format!("k = {k}: nothing hidden.")
    } else {
        format!(
            "k = {k}: {} group(s) smaller than k folded into \"other\", {} left out.",
            s.folded, s.omitted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_neutralises_formulas_and_quotes() {
        assert_eq!(csv_field("4.10.1"), "4.10.1");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM"), "'@SUM");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field(""), "");
    }
}
