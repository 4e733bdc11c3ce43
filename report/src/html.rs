//! The page: a fleet table (sortable, filterable, one row per machine), a detail section per
//! alerted machine, and the evaluation. Everything is inline; every text from the inputs is
//! escaped.

use crate::charts;
use crate::fleet::{thin_out, MachineSeries};
use crate::inputs::{area, roc_curve, EvalRow};
use crate::{Report, ReportError};
use auscult_schemas::AlertState;
use std::fmt::Write;

/// Most alerts drawn per machine (the latest ones).
const ALERTS_DRAWN: usize = 6;
/// Most ROC charts drawn (the table lists every machine).
const ROC_CHARTS: usize = 120;

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An id attribute for a machine: its name with anything but letters, digits, `-` and `_`
/// spelled as `.XX` hex, so two machine names never share one.
fn anchor(machine_id: &str) -> String {
    let mut out = String::from("m-");
    for byte in machine_id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            let _ = write!(out, ".{byte:02x}");
        }
    }
    out
}

fn duration(seconds: f64) -> String {
    let total = seconds.round() as u64;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}")
    } else {
        format!("{minutes}:{secs:02}")
    }
}

fn level_name(level: AlertState) -> &'static str {
    match level {
        AlertState::Normal => "normal",
        AlertState::Warning => "warning",
        AlertState::Alarm => "alarm",
    }
}

fn fmt3(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// A band list as the stream writes it: `852-1278 Hz +6.1 sd`.
fn band_text(low_hz: f64, high_hz: f64, deviation_sd: f64) -> String {
    format!("{low_hz:.0}–{high_hz:.0} Hz {deviation_sd:+.1} sd")
}

/// The bands of alert `index` of a machine: those the stream reported in its event when there
/// are events, else the largest deviations computed from the archive. Each is (band, text).
fn alert_bands(report: &Report, series: &MachineSeries, index: usize) -> (Vec<(usize, String)>, &'static str) {
    let span = &series.spans[index];
    if let Some(bands) =
        report.events.as_ref().and_then(|e| e.bands_within(&series.machine_id, span.start_us, span.end_us))
    {
        let listed =
            bands.iter().map(|b| (usize::from(b.band), band_text(b.low_hz, b.high_hz, b.deviation_sd))).collect();
        return (listed, "reported by the stream");
    }
    let Some(detail) = report.details.get(&series.machine_id) else { return (Vec::new(), "") };
    let deviation = detail.deviation_sd(index);
    let mut order: Vec<usize> = (0..deviation.len()).collect();
    order.sort_by(|&a, &b| deviation[b].abs().total_cmp(&deviation[a].abs()));
    let listed = order
        .into_iter()
        .take(3)
        .filter_map(|band| {
            let (low, high) = report.band_edges_hz(band)?;
            Some((band, band_text(low, high, deviation[band])))
        })
        .collect();
    (listed, "computed from the archive")
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1000px; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
th, td { padding: 0.25rem 0.5rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f4f4f4; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " ▲"; } th[aria-sort="descending"]::after { content: " ▼"; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.status { padding: 0 0.4rem; border-radius: 0.6rem; font-size: 0.8rem; }
.s-alarm { background: #dc3545; color: white; } .s-warning { background: #ffc107; }
.s-normal { background: #d4edda; } .s-learning { background: #e2e3e5; }
article { margin: 1.5rem 0; padding-top: 0.5rem; border-top: 1px dashed #ccc; }
.alerts { display: flex; flex-wrap: wrap; gap: 1rem; } .alerts > div { flex: 0 0 470px; }
.rocs { display: flex; flex-wrap: wrap; gap: 0.5rem; }
svg { max-width: 100%; height: auto; }
#filter { margin: 0.5rem 0; padding: 0.3rem; width: 20rem; }
.notes { color: #8a6d3b; font-size: 0.85rem; }
"#;

/// Sorting by a column header (numbers by their `data-v`, text otherwise) and filtering rows
/// by a typed word; nothing else runs.
const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('fleet-table');
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, column) {
    th.addEventListener('click', function () {
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      Array.prototype.forEach.call(headers, function (other) { other.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var numeric = th.getAttribute('data-type') === 'number';
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute('data-v'), y = b.cells[column].getAttribute('data-v');
        var order = numeric ? (parseFloat(x) - parseFloat(y)) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  var filter = document.getElementById('filter');
  filter.addEventListener('input', function () {
    var word = filter.value.toLowerCase();
    Array.prototype.forEach.call(body.rows, function (row) {
      row.hidden = word !== '' && row.textContent.toLowerCase().indexOf(word) < 0;
    });
  });
})();
"#;

pub(crate) fn render(report: &Report, notes: &[String]) -> Result<String, ReportError> {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    page.push_str("<title>auscult report</title><style>");
    page.push_str(STYLE);
    page.push_str("</style></head><body>\n<h1>auscult report</h1>\n");
    header(&mut page, report, notes);
    if report.inputs.archive.is_some() {
        fleet_table(&mut page, report);
        details(&mut page, report)?;
    }
    if report.eval.is_some() {
        evaluation(&mut page, report)?;
    }
    let _ = write!(page, "<p class=\"meta\">made by auscult {}</p>", env!("CARGO_PKG_VERSION"));
    page.push_str("<script>");
    page.push_str(SCRIPT);
    page.push_str("</script></body></html>\n");
    Ok(page)
}

fn header(page: &mut String, report: &Report, notes: &[String]) {
    page.push_str("<p class=\"meta\">");
    let inputs = &report.inputs;
    let archive = inputs.archive.as_ref().map(ToString::to_string);
    let events = inputs.events.as_ref().map(|path| path.display().to_string());
    let eval = inputs.eval.as_ref().map(|path| path.display().to_string());
    for (label, name) in [("archive", archive), ("events", events), ("evaluation", eval)] {
        if let Some(name) = name {
            let _ = write!(page, "{label}: <code>{}</code><br>", escape(&name));
        }
    }
    let machines = &report.fleet.machines;
    if let (Some(first), Some(last)) =
        (machines.values().map(|m| m.first_us).min(), machines.values().map(|m| m.last_us).max())
    {
        let _ = write!(page, "capture time {} to {} UTC", charts::short_time(first), charts::short_time(last));
    }
    page.push_str("</p>\n");
    if !notes.is_empty() {
        page.push_str("<ul class=\"notes\">");
        for note in notes.iter().take(20) {
            let _ = write!(page, "<li>{}</li>", escape(note));
        }
        if notes.len() > 20 {
            let _ = write!(page, "<li>and {} more</li>", notes.len() - 20);
        }
        page.push_str("</ul>\n");
    }
}

fn fleet_table(page: &mut String, report: &Report) {
    let machines = &report.fleet.machines;
    let alerted = machines.values().filter(|m| !m.spans.is_empty()).count();
    let mut by_status = std::collections::BTreeMap::new();
    for machine in machines.values() {
        *by_status.entry(machine.status()).or_insert(0usize) += 1;
    }
    let status_counts: Vec<String> = by_status.iter().map(|(status, count)| format!("{count} {status}")).collect();
    let _ = write!(
        page,
        "<h2 id=\"fleet\">Fleet</h2>\n<p>{} machines ({}); {alerted} alerted.",
        machines.len(),
        status_counts.join(", ")
    );
    if alerted > report.details.len() {
        let _ = write!(page, " Detail is shown for the {} most severe.", report.details.len());
    }
    page.push_str(" Click a column to sort.</p>\n");
    page.push_str(
        "<input id=\"filter\" type=\"search\" placeholder=\"filter machines\" aria-label=\"filter machines\">\n",
    );
    page.push_str("<table id=\"fleet-table\"><thead><tr>");
    let columns = [
        ("machine", "text"),
        ("type", "text"),
        ("status", "text"),
        ("audio heard", "number"),
        ("learned", "number"),
        ("scored", "number"),
        ("alerts", "number"),
        ("max score", "number"),
        ("last alert", "number"),
        ("its bands", "text"),
    ];
    for (name, kind) in columns {
        let _ = write!(page, "<th data-type=\"{kind}\">{name}</th>");
    }
    page.push_str("</tr></thead><tbody>\n");
    for machine in machines.values() {
        let id = escape(&machine.machine_id);
        let name = if report.details.contains_key(&machine.machine_id) {
            format!("<a href=\"#{}\">{id}</a>", anchor(&machine.machine_id))
        } else {
            id.clone()
        };
        let status = machine.status();
        let _ = write!(
            page,
            "<tr><td data-v=\"{id}\">{name}</td><td data-v=\"{kind}\">{kind}</td>\
             <td data-v=\"{status}\"><span class=\"status s-{status}\">{status}</span></td>\
             <td class=\"n\" data-v=\"{audio:.1}\">{audio_text}</td><td class=\"n\" data-v=\"{learned}\">{learned}</td>\
             <td class=\"n\" data-v=\"{scored}\">{scored}</td><td class=\"n\" data-v=\"{alerts}\">{alerts}</td>\
             <td class=\"n\" data-v=\"{max}\">{max_text}</td>",
            kind = escape(machine.machine_type.as_str()),
            audio = machine.audio_s,
            audio_text = duration(machine.audio_s),
            learned = machine.windows_learned,
            scored = machine.windows_scored,
            alerts = machine.spans.len(),
            max = machine.max_score.unwrap_or(0.0),
            max_text = machine.max_score.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
        );
        match machine.spans.last() {
            Some(span) => {
                let (bands, _) = alert_bands(report, machine, machine.spans.len() - 1);
                let texts: Vec<&str> = bands.iter().map(|(_, text)| text.as_str()).collect();
                let _ = write!(
                    page,
                    "<td data-v=\"{}\">{} {}</td><td data-v=\"{bands}\">{bands}</td>",
                    span.start_us,
                    escape(&charts::short_time(span.start_us)),
                    level_name(span.level),
                    bands = escape(&texts.join(", "))
                );
            }
            None => page.push_str("<td data-v=\"0\">-</td><td data-v=\"\">-</td>"),
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table>\n");
}

fn details(page: &mut String, report: &Report) -> Result<(), ReportError> {
    if report.details.is_empty() {
        return Ok(());
    }
    page.push_str("<h2 id=\"alerted\">Machines that alerted</h2>\n");
    let band_centre = |band: usize| report.band_centre_hz(band);
    for series in report.fleet.alerted(report.inputs.detail_limit) {
        let Some(detail) = report.details.get(&series.machine_id) else { continue };
        let _ = writeln!(
            page,
            "<article id=\"{}\"><h3>{} <small>({})</small> <span class=\"status s-{status}\">{status}</span></h3>",
            anchor(&series.machine_id),
            escape(&series.machine_id),
            escape(series.machine_type.as_str()),
            status = series.status()
        );
        let _ = writeln!(
            page,
            "<p class=\"meta\">{} of audio; {} windows learned, {} scored; {} alert{}; highest score {}.</p>",
            duration(series.audio_s),
            series.windows_learned,
            series.windows_scored,
            series.spans.len(),
            if series.spans.len() == 1 { "" } else { "s" },
            series.max_score.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
        );
        page.push_str("<h4>Score over time</h4>\n");
        let points = thin_out(&series.points, report.inputs.timeline_points);
        page.push_str(&charts::timeline(&points, &series.spans, series.first_us, series.last_us)?);
        page.push_str("\n<h4>Mean log-mel over time</h4>\n");
        match charts::heat_map(&detail.heat, &band_centre) {
            Ok(svg) => page.push_str(&svg),
            Err(error) => {
                let _ = write!(page, "<p class=\"notes\">{}</p>", escape(&error.to_string()));
            }
        }
        page.push_str("\n<h4>Alerts: the bands that moved</h4>\n<div class=\"alerts\">");
        let first_drawn = series.spans.len().saturating_sub(ALERTS_DRAWN);
        if first_drawn > 0 {
            let _ = write!(page, "<p>The latest {ALERTS_DRAWN} of {} alerts.</p>", series.spans.len());
        }
        for (index, span) in series.spans.iter().enumerate().skip(first_drawn) {
            let (bands, source) = alert_bands(report, series, index);
            let span_us = span.end_us - span.start_us;
            let _ = write!(
                page,
                "<div><p><b>{}</b> from {} for {}{}; bands {source}: {}</p>",
                level_name(span.level),
                escape(&charts::short_time(span.start_us)),
                duration(span_us as f64 / 1e6),
                if span.open { ", still open" } else { "" },
                escape(&bands.iter().map(|(_, text)| text.as_str()).collect::<Vec<_>>().join(", "))
            );
            let marked: Vec<usize> = bands.iter().map(|(band, _)| *band).collect();
            match charts::alert_bands(&detail.learned, &detail.alerts[index], &marked, &band_centre) {
                Ok(svg) => page.push_str(&svg),
                Err(error) => {
                    let _ = write!(page, "<p class=\"notes\">{}</p>", escape(&error.to_string()));
                }
            }
            page.push_str("</div>\n");
        }
        page.push_str("</div></article>\n");
    }
    Ok(())
}

/// Mean and sample standard deviation (`None` for the spread of fewer than two values).
fn mean_std(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if values.len() < 2 {
        return (Some(mean), None);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    (Some(mean), Some(variance.sqrt()))
}

fn pm(values: &[f64]) -> String {
    match mean_std(values) {
        (Some(mean), Some(std)) => format!("{mean:.3} ± {std:.3}"),
        (Some(mean), None) => format!("{mean:.3}"),
        _ => "-".to_owned(),
    }
}

fn evaluation(page: &mut String, report: &Report) -> Result<(), ReportError> {
    let Some(eval) = &report.eval else { return Ok(()) };
    let machines = eval.by_machine();
    let folds = eval.folds.map(|k| format!(", {k}-fold cross-validation")).unwrap_or_default();
    let _ = write!(page, "<h2 id=\"evaluation\">Evaluation</h2>\n<p>{} machines{folds}. AUC and pAUC (p = 0.1) per machine, mean ± standard deviation over folds; the means below are over machines.</p>\n", machines.len());
    page.push_str("<table id=\"eval-table\"><thead><tr><th>type</th><th>machine</th><th>folds</th><th>AUC</th><th>pAUC</th><th>recall</th><th>false alarms</th></tr></thead><tbody>\n");
    let mut by_type: std::collections::BTreeMap<&str, (Vec<f64>, Vec<f64>)> = std::collections::BTreeMap::new();
    let collect = |rows: &[&EvalRow], pick: fn(&EvalRow) -> Option<f64>| {
        rows.iter().filter_map(|r| pick(r)).collect::<Vec<f64>>()
    };
    for ((machine_type, machine_id), rows) in &machines {
        let aucs = collect(rows, |r| r.auc);
        let paucs = collect(rows, |r| r.pauc);
        let (auc_mean, _) = mean_std(&aucs);
        let (pauc_mean, _) = mean_std(&paucs);
        let entry = by_type.entry(machine_type).or_default();
        entry.0.extend(auc_mean);
        entry.1.extend(pauc_mean);
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\" data-auc=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(machine_type),
            escape(machine_id),
            rows.len(),
            fmt3(auc_mean),
            pm(&aucs),
            pm(&paucs),
            fmt3(mean_std(&collect(rows, |r| r.recall)).0),
            fmt3(mean_std(&collect(rows, |r| r.false_alarm_rate)).0),
        );
    }
    let mut all = (Vec::new(), Vec::new());
    for (machine_type, (aucs, paucs)) in &by_type {
        let _ = writeln!(
            page,
            "<tr><th colspan=\"3\">mean {}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td></tr>",
            escape(machine_type),
            fmt3(mean_std(aucs).0),
            fmt3(mean_std(paucs).0)
        );
        all.0.extend(aucs);
        all.1.extend(paucs);
    }
    let _ = writeln!(
        page,
        "<tr><th colspan=\"3\">mean (all machines)</th><td class=\"n\" id=\"eval-mean-auc\">{}</td><td class=\"n\">{}</td><td></td><td></td></tr>",
        fmt3(mean_std(&all.0).0),
        fmt3(mean_std(&all.1).0)
    );
    page.push_str("</tbody></table>\n<h3>ROC curves</h3>\n<div class=\"rocs\">");
    for ((machine_type, machine_id), rows) in machines.iter().take(ROC_CHARTS) {
        let curves: Vec<Vec<(f64, f64)>> =
            rows.iter().map(|row| roc_curve(&row.clips)).filter(|c| !c.is_empty()).collect();
        if curves.is_empty() {
            continue;
        }
        let mean_area = curves.iter().map(|c| area(c)).sum::<f64>() / curves.len() as f64;
        let title = format!("{machine_type} {machine_id}: AUC {mean_area:.3}");
        page.push_str(&charts::roc(&curves, &title)?);
    }
    if machines.len() > ROC_CHARTS {
        let _ = write!(page, "<p>ROC curves for the first {ROC_CHARTS} of {} machines.</p>", machines.len());
    }
    page.push_str("</div>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_anchors_stay_distinct() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(anchor("fan-00"), "m-fan-00");
        assert_ne!(anchor("a.b"), anchor("a_b"));
        assert_eq!(anchor("a.b"), "m-a.2eb");
    }

    #[test]
    fn durations_read_as_clock_spans() {
        assert_eq!(duration(65.4), "1:05");
        assert_eq!(duration(3725.0), "1:02:05");
        assert_eq!(mean_std(&[1.0, 3.0]), (Some(2.0), Some(2f64.sqrt())));
        assert_eq!(pm(&[0.5]), "0.500");
    }
}
