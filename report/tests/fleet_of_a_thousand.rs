//! The report of a large fleet stays readable: a 1,000-machine archive (written by the real
//! archive writer) gives one table row per machine, detail only for the most severe alerted
//! machines up to the limit, and a page whose size does not grow with the healthy machines'
//! audio.

use auscult_connectors::archive::{ArchiveConfig, ArchiveLocation, ArchiveWriter};
use auscult_report::{write_report, ReportInputs};
use auscult_schemas::{AlertState, MachineId, MachineType, ProfileState, WindowRecord};

const MACHINES: usize = 1_000;
const WINDOWS: i64 = 60;
const BANDS: usize = 128;

fn window(machine: usize, index: i64) -> WindowRecord {
    let learning = index < 20;
    // Every 25th machine alerts in its last 10 windows; machine 0's alert is an alarm.
    let alerting = machine % 25 == 0 && index >= WINDOWS - 10;
    let score =
        (!learning).then(|| if alerting { 20.0 + machine as f64 / 100.0 } else { 1.0 + (index % 5) as f64 / 10.0 });
    WindowRecord {
        machine_id: MachineId::new(format!("m-{machine:04}")).unwrap(),
        machine_type: MachineType::new(["fan", "pump", "valve"][machine % 3]).unwrap(),
        window_start_us: 1_767_225_600_000_000 + index * 2_048_000,
        window_end_us: 1_767_225_600_000_000 + index * 2_048_000 + 2_080_000,
        frame_count: 64,
        sample_rate_hz: 16_000,
        logmel_mean_db: (0..BANDS)
            .map(|b| -40.0 - b as f32 * 0.2 + if alerting && b == 70 { 8.0 } else { 0.0 })
            .collect(),
        logmel_std_db: vec![1.0; BANDS],
        score,
        threshold: score.map(|_| 4.0),
        alarm_threshold: score.map(|_| 30.0),
        alert_state: match (alerting, machine) {
            (true, 0) => AlertState::Alarm,
            (true, _) => AlertState::Warning,
            _ => AlertState::Normal,
        },
        profile_state: if learning { ProfileState::Learning } else { ProfileState::Scoring },
        source: "test".to_owned(),
    }
}

#[test]
fn a_thousand_machines_give_a_thousand_rows_and_bounded_detail() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = ArchiveConfig { location: ArchiveLocation::Folder(archive.clone()), ..ArchiveConfig::default() };
    let metadata = vec![
        ("auscult.n_fft".to_owned(), "1024".to_owned()),
        ("auscult.hop_length".to_owned(), "512".to_owned()),
        ("auscult.n_mels".to_owned(), BANDS.to_string()),
        ("auscult.fmin_hz".to_owned(), "0".to_owned()),
        ("auscult.fmax_hz".to_owned(), "sr/2".to_owned()),
    ];
    let mut writer = ArchiveWriter::new(config, 0, metadata).unwrap();
    for index in 0..WINDOWS {
        writer.write_batch(index as u64, (0..MACHINES).map(|m| window(m, index)).collect()).unwrap();
    }
    let out = dir.path().join("report.html");
    let inputs =
        ReportInputs { archive: Some(ArchiveLocation::Folder(archive)), detail_limit: 25, ..ReportInputs::default() };
    let outline = write_report(&inputs, &out).unwrap();
    assert_eq!((outline.machines, outline.alerted, outline.detailed), (MACHINES, 40, 25));

    let html = std::fs::read_to_string(&out).unwrap();
    let table = &html[html.find("<table id=\"fleet-table\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), MACHINES + 1, "a header row and one row per machine");
    assert_eq!(html.matches("<article id=").count(), 25, "detail for the limit only");
    assert!(html.contains("Detail is shown for the 25 most severe."), "the page says detail is cut");
    // The alarm comes first, then the warnings by score (machine 975 scores highest).
    let first = html.find("<article id=\"m-m-0000\">").unwrap();
    let second = html.find("<article id=\"m-m-0975\">").unwrap();
    assert!(first < second, "the alarm's detail comes first");
    assert!(!html.contains("<article id=\"m-m-0025\">"), "the least severe warnings have no detail");
    // The moved band is named from the archive (no events were given): mel band 70.
    assert!(html.contains("computed from the archive"));
    // About 1,000 table rows and 25 detail sections: a few MB at most.
    assert!(html.len() < 8 * 1024 * 1024, "{} bytes", html.len());
}
