//! `auscult report` as a user meets it: the demo ends by writing one, `eval --report` writes
//! one, and each is opened from disk in a real headless Chromium (Debian's, through
//! ChromeDriver) with no console message, a working sort and filter, and a screenshot that is
//! not blank. The numbers on the page are checked against the archive (read by DuckDB), the
//! events and the eval JSON.

mod common;

use common::{auscult, python_ok, read_json, read_jsonl, repo, run_ok};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Chromium and ChromeDriver, from `scripts/browser.sh` (which installs them once).
fn browser() -> &'static (PathBuf, PathBuf) {
    static BROWSER: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BROWSER.get_or_init(|| {
        let output = run_ok(std::process::Command::new("bash").arg(repo().join("scripts/browser.sh")).arg("install"));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let line = stdout.lines().last().expect("browser.sh prints the paths");
        let (chromium, driver) = line.split_once(' ').expect("two paths");
        (PathBuf::from(chromium), PathBuf::from(driver))
    })
}

/// Opens `page` in the browser; optionally sorts the fleet table by `sort` and filters it by
/// `filter`. Returns what the page showed; the screenshot goes to `screenshot`.
fn open_in_browser(page: &Path, screenshot: &Path, sort_and_filter: Option<(&str, &str)>) -> Value {
    let (chromium, driver) = browser();
    let script = repo().join("tests/browser/check_page.py");
    let mut args: Vec<&Path> = vec![&script, chromium, driver, page, screenshot];
    let extra: Vec<PathBuf> = sort_and_filter.map_or_else(Vec::new, |(sort, filter)| vec![sort.into(), filter.into()]);
    args.extend(extra.iter().map(PathBuf::as_path));
    let output = run_ok(common::python().args(&args).env("SE_OFFLINE", "true"));
    serde_json::from_slice(&output.stdout).expect("the page check prints JSON")
}

/// The screenshot has real content: many colours, and not mostly one.
fn assert_not_blank(screenshot: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(screenshot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for pixel in pixels[..info.buffer_size()].chunks(channels) {
        *counts.entry(&pixel[..3]).or_default() += 1;
    }
    let total = (info.width * info.height) as usize;
    let commonest = counts.values().max().copied().unwrap_or(0);
    assert!(counts.len() > 200, "{}: only {} colours", screenshot.display(), counts.len());
    assert!(commonest < total * 95 / 100, "{}: one colour covers {commonest} of {total} pixels", screenshot.display());
}

/// The rows of the table `id`: each row's `data-v` cell values, in page order.
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html.find(&format!("<table id=\"{id}\">")).unwrap_or_else(|| panic!("no table {id}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("data-v=\"")
                .skip(1)
                .map(|cell| cell[..cell.find('"').unwrap()].replace("&amp;", "&"))
                .collect::<Vec<String>>()
        })
        .collect()
}

/// Asserts the page fetches nothing: no external script, style, image or frame.
fn assert_self_contained(html: &str) {
    for needle in ["<script src", "<link", "<iframe", "src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(needle), "the report refers to something outside itself: {needle}");
    }
}

#[test]
fn the_demo_report_shows_the_archive_and_the_events_and_works_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = run_ok(auscult().args(["demo", "--out"]).arg(&out));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let page = out.join("report.html");
    assert!(stdout.contains(&format!("report: {}", page.display())), "the demo says where its report is:\n{stdout}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    // Each machine's row against the archive, read by DuckDB.
    let archive = out.join("archive");
    let query = python_ok(
        "import duckdb, json, sys\n\
         rows = duckdb.sql(f\"select machine_id, count(*) filter (where profile_state = 'learning'), \
         count(*) filter (where profile_state = 'scoring'), max(score) \
         from read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true) group by all\").fetchall()\n\
         print(json.dumps({r[0]: [r[1], r[2], r[3]] for r in rows}))",
        &[&archive],
    );
    let truth: BTreeMap<String, (u64, u64, f64)> = serde_json::from_str(&query).unwrap();
    let rows = table_rows(&html, "fleet-table");
    assert_eq!(rows.len(), truth.len(), "one row per machine");
    let events = read_jsonl(&out.join("events.jsonl"));
    for row in &rows {
        let (learned, scored, max_score) = truth[&row[0]];
        assert_eq!(row[4].parse::<u64>().unwrap(), learned, "{row:?}");
        assert_eq!(row[5].parse::<u64>().unwrap(), scored, "{row:?}");
        assert!((row[7].parse::<f64>().unwrap() - max_score).abs() < 1e-9 * max_score.abs().max(1.0), "{row:?}");
        // Alerts are the archive's alert spans; the stream opened one event per alert.
        let opened: Vec<&Value> =
            events.iter().filter(|e| e["machine_id"] == row[0].as_str() && e["kind"] == "opened").collect();
        assert_eq!(row[6].parse::<usize>().unwrap(), opened.len(), "{row:?}");
        if let Some(last) = opened.last() {
            // The row names the bands the stream reported, and the machine has a detail section.
            let band = &last["top_bands"][0];
            let text = format!("{:.0}–{:.0} Hz", band["low_hz"].as_f64().unwrap(), band["high_hz"].as_f64().unwrap());
            assert!(row[9].contains(&text), "{text} not in {row:?}");
            assert!(html.contains(&format!("<article id=\"m-{}\">", row[0])), "no detail for {}", row[0]);
        }
    }
    let alerted = rows.iter().filter(|row| row[6] != "0").count();
    assert!(alerted >= 1, "the demo's faults alert");
    // Per alerted machine: a timeline, a heat map and one bands chart per alert.
    assert!(html.matches("<svg").count() >= 3 * alerted, "charts are drawn into the page");
    assert!(html.contains("data:image/png;base64,"), "the heat map's cells are embedded");

    let screenshot = dir.path().join("demo.png");
    let seen = open_in_browser(&page, &screenshot, Some(("max score", "pump")));
    assert_eq!(seen["console"], Value::Array(Vec::new()), "the browser console stays empty");
    assert_eq!(seen["title"], "auscult report");
    assert!(seen["svgs"].as_u64().unwrap() >= 3 * alerted as u64, "{seen}");
    let by_score = |descending: bool| {
        let mut machines: Vec<(&String, f64)> = truth.iter().map(|(m, (_, _, s))| (m, *s)).collect();
        machines.sort_by(|a, b| a.1.total_cmp(&b.1));
        if descending {
            machines.reverse();
        }
        machines.into_iter().map(|(m, _)| Value::from(m.as_str())).collect::<Vec<_>>()
    };
    assert_eq!(seen["ascending"], Value::Array(by_score(false)), "{seen}");
    assert_eq!(seen["descending"], Value::Array(by_score(true)), "{seen}");
    assert_eq!(seen["aria_sort"], "descending");
    let pumps: Vec<Value> = by_score(true).into_iter().filter(|m| m.as_str().unwrap().starts_with("pump")).collect();
    assert!(!pumps.is_empty());
    assert_eq!(seen["filtered"], Value::Array(pumps), "{seen}");
    assert_not_blank(&screenshot);
}

#[test]
fn eval_report_holds_the_evaluation_tables_and_roc_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (json, page) = (dir.path().join("eval.json"), dir.path().join("eval.html"));
    let output = run_ok(
        auscult()
            .args(["eval", "--folds", "5", "-w", "2"])
            .arg(common::mimii())
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(&page),
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("report: {}", page.display())));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    let document = read_json(&json);
    let machines = document["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 12);
    for machine in machines {
        let id = machine["machine_id"].as_str().unwrap();
        let expected = format!("{:.3}", machine["auc_mean"].as_f64().unwrap());
        let cell = format!("<td>{id}</td><td class=\"n\">5</td><td class=\"n\" data-auc=\"{expected}\">");
        assert!(html.contains(&cell), "{id}: AUC {expected} not on the page");
    }
    let mean = format!("id=\"eval-mean-auc\">{:.3}<", document["mean"]["auc"].as_f64().unwrap());
    assert!(html.contains(&mean), "{mean}");
    assert_eq!(html.matches("<svg").count(), 12, "one ROC chart per machine");

    // The same report from the saved JSON, through `auscult report --eval`.
    let again = dir.path().join("again.html");
    run_ok(auscult().args(["report", "--eval"]).arg(&json).arg("-o").arg(&again));
    let section = |text: &str| text[text.find("<h2 id=\"evaluation\">").expect("an evaluation section")..].to_owned();
    let second = std::fs::read_to_string(&again).unwrap();
    assert!(section(&html) == section(&second), "eval --report and report --eval draw the same evaluation");

    let screenshot = dir.path().join("eval.png");
    let seen = open_in_browser(&page, &screenshot, None);
    assert_eq!(seen["console"], Value::Array(Vec::new()), "the browser console stays empty");
    assert_eq!(seen["svgs"], 12);
    assert_not_blank(&screenshot);
}

#[test]
fn report_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.html");
    let fails = |args: &[&str]| {
        let output = auscult().arg("report").args(args).arg("-o").arg(&out).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        stderr
    };
    assert!(fails(&[]).contains("nothing to report"));
    let missing = dir.path().join("no-archive");
    assert!(fails(&["--archive", missing.to_str().unwrap()]).contains("no-archive"));
    let bad_eval = dir.path().join("eval.json");
    std::fs::write(&bad_eval, "{\"rows\": 3}").unwrap();
    let error = fails(&["--eval", bad_eval.to_str().unwrap()]);
    assert!(error.contains("eval.json") && error.contains("not an auscult eval JSON document"), "{error}");
    assert!(!out.exists(), "no page is left behind");
}
