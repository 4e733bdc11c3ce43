//! `auscult report`: one self-contained HTML file that shows what the archive, the anomaly
//! events and an evaluation hold, for whoever investigates an alert and would rather look
//! than query.
//!
//! The report needs no network: its charts are SVG drawn here ([`charts`]), its one script
//! (sorting and filtering the fleet table) is inline. It stays readable at thousands of
//! machines: every machine has a row in the fleet table, and only the machines that alerted,
//! the most severe first, get a detail section. The archive is read twice, first without its
//! band vectors for the whole fleet ([`fleet`]), then with them for the detailed machines only
//! ([`detail`]).

pub mod charts;
pub mod detail;
pub mod fleet;
mod html;
pub mod inputs;

use auscult_connectors::archive::reader::{read_windows, ArchiveReadError, FooterSettings};
pub use auscult_connectors::archive::ArchiveLocation;
use auscult_pipeline::dsp::MelFilterbank;
use auscult_schemas::FeatureSettings;
use detail::MachineDetail;
use fleet::Fleet;
use inputs::{EvalDocument, Events, InputError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What to draw from, and how much.
#[derive(Debug, Clone)]
pub struct ReportInputs {
    /// The archive's folder or object store.
    pub archive: Option<ArchiveLocation>,
    pub events: Option<PathBuf>,
    pub eval: Option<PathBuf>,
    /// An eval document already in memory (`auscult eval --report`), used instead of `eval`.
    pub eval_document: Option<serde_json::Value>,
    /// Most machines given a detail section.
    pub detail_limit: usize,
    /// Time bins of each heat map.
    pub heat_bins: usize,
    /// Most points on each score timeline (each bucket keeps its peak).
    pub timeline_points: usize,
}

impl Default for ReportInputs {
    fn default() -> Self {
        Self {
            archive: None,
            events: None,
            eval: None,
            eval_document: None,
            detail_limit: 50,
            heat_bins: 240,
            timeline_points: 1500,
        }
    }
}

/// Why no report was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("nothing to report: give an archive, an eval JSON, or both")]
    NoInput,
    #[error(transparent)]
    Archive(#[from] ArchiveReadError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error("{path}: cannot write the report: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What went into a written report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOutline {
    pub machines: usize,
    pub alerted: usize,
    pub detailed: usize,
    pub events: usize,
    pub eval_machines: usize,
    /// Lines of input that were set aside, one sentence each.
    pub notes: Vec<String>,
    pub bytes: u64,
}

/// Everything the page is made of.
pub(crate) struct Report {
    pub inputs: ReportInputs,
    pub fleet: Fleet,
    /// Band edges in Hz come from it.
    pub filterbank: Option<MelFilterbank>,
    pub events: Option<Events>,
    pub details: BTreeMap<String, MachineDetail>,
    pub eval: Option<EvalDocument>,
}

impl Report {
    /// The centre of mel band `band`, Hz, from the archive's feature settings.
    pub fn band_centre_hz(&self, band: usize) -> Option<f64> {
        self.band_edges_hz(band).map(|(low, high)| (low + high) / 2.0)
    }

    /// The lower and upper edge of mel band `band`, Hz: the filterbank's own, as the stream
    /// names them in its events.
    pub fn band_edges_hz(&self, band: usize) -> Option<(f64, f64)> {
        let filterbank = self.filterbank.as_ref()?;
        (band < filterbank.n_mels()).then(|| filterbank.band_range_hz(band))
    }
}

/// The filterbank the archive's features were made with, from its footer settings (`None`
/// without them: the charts then label bands by index).
fn filterbank_of(settings: &FooterSettings) -> Option<MelFilterbank> {
    let number = |key: &str| settings.get(key)?.parse::<usize>().ok();
    let rate: u32 = settings.get("auscult.sample_rates_hz")?.split(',').next()?.parse().ok()?;
    let mut features =
        FeatureSettings::new(rate, number("auscult.n_fft")?, number("auscult.hop_length")?, number("auscult.n_mels")?);
    if let Some(fmin) = settings.get("auscult.fmin_hz").and_then(|v| v.parse().ok()) {
        features.fmin_hz = fmin;
    }
    if let Some(fmax) = settings.get("auscult.fmax_hz").and_then(|v| v.parse().ok()) {
        features.fmax_hz = fmax;
    }
    Some(MelFilterbank::new(&features))
}

/// Reads the inputs and writes the report to `out` (under a temporary name, then renamed, so a
/// reader never opens half a page).
pub fn write_report(inputs: &ReportInputs, out: &Path) -> Result<ReportOutline, ReportError> {
    if inputs.archive.is_none() && inputs.eval.is_none() && inputs.eval_document.is_none() {
        return Err(ReportError::NoInput);
    }
    let mut fleet = Fleet::default();
    let mut settings = FooterSettings::new();
    if let Some(archive) = &inputs.archive {
        settings = read_windows(archive, false, &|_| true, &mut |window| fleet.add(&window))?;
    }
    let events = inputs.events.as_deref().map(Events::read).transpose()?;
    let mut details: BTreeMap<String, MachineDetail> = fleet
        .alerted(inputs.detail_limit)
        .into_iter()
        .map(|series| (series.machine_id.clone(), MachineDetail::new(series, inputs.heat_bins)))
        .collect();
    if let (Some(archive), false) = (&inputs.archive, details.is_empty()) {
        let wanted: BTreeSet<String> = details.keys().cloned().collect();
        read_windows(archive, true, &|machine| wanted.contains(machine), &mut |window| {
            if let Some(detail) = details.get_mut(&window.machine_id) {
                detail.add(&window);
            }
        })?;
    }
    let eval = match &inputs.eval_document {
        Some(document) => Some(EvalDocument::from_value(document.clone())?),
        None => inputs.eval.as_deref().map(EvalDocument::read).transpose()?,
    };
    let mut notes = Vec::new();
    if fleet.out_of_order > 0 {
        notes.push(format!(
            "{} archived windows were earlier than their machine's last one and are not drawn",
            fleet.out_of_order
        ));
    }
    if let Some(events) = &events {
        notes.extend(events.skipped.iter().cloned());
    }
    let filterbank = filterbank_of(&settings);
    let report = Report { inputs: inputs.clone(), fleet, filterbank, events, details, eval };
    let page = html::render(&report, &notes)?;
    let temporary = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name().map_or_else(|| "report.html".into(), |name| name.to_string_lossy())
    ));
    std::fs::write(&temporary, &page)
        .and_then(|()| std::fs::rename(&temporary, out))
        .map_err(|source| ReportError::Write { path: out.to_owned(), source })?;
    Ok(ReportOutline {
        machines: report.fleet.machines.len(),
        alerted: report.fleet.machines.values().filter(|m| !m.spans.is_empty()).count(),
        detailed: report.details.len(),
        events: report.events.as_ref().map_or(0, Events::count),
        eval_machines: report.eval.as_ref().map_or(0, |eval| eval.by_machine().len()),
        notes,
        bytes: page.len() as u64,
    })
}
