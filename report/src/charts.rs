//! The report's charts, drawn as SVG text when the report is made (plotters' SVG backend): a
//! score timeline, a log-mel heat map, an alert's spectrum against the learned level, and ROC
//! curves. Nothing is drawn by a script when the page is viewed.
//!
//! The heat map's cells would be tens of thousands of SVG rectangles, so they are one small PNG
//! (embedded as a data URL) laid over the chart's plotting area; plotters draws the axes.

use crate::detail::{BandMoments, HeatMap};
use crate::fleet::{AlertSpan, ScorePoint};
use auscult_schemas::time::{rfc3339, TimestampUs};
use auscult_schemas::AlertState;
use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A chart that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {reason}")]
pub struct ChartError {
    pub chart: &'static str,
    pub reason: String,
}

fn failed<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |error| ChartError { chart, reason: error.to_string() }
}

const WARNING_FILL: RGBColor = RGBColor(255, 193, 7);
const ALARM_FILL: RGBColor = RGBColor(220, 53, 69);
const SCORE_LINE: RGBColor = RGBColor(31, 119, 180);
const LEARNED: RGBColor = RGBColor(120, 120, 120);
const FONT: &str = "sans-serif";

/// A time for people: `2026-01-01 00:07:55` (UTC, to the second).
pub fn short_time(time_us: TimestampUs) -> String {
    let text = rfc3339(time_us);
    text.get(..19).map_or_else(|| text.clone(), |seconds| seconds.replace('T', " "))
}

/// A time axis label: the UTC clock time, with the date when the axis spans more than a day.
pub fn clock_label(time_us: TimestampUs, span_us: i64) -> String {
    let text = rfc3339(time_us);
    // rfc3339 gives YYYY-MM-DDTHH:MM:SS[.ffffff]Z.
    let (date, clock) = text.split_once('T').unwrap_or((&text, ""));
    let clock = clock.get(..8).unwrap_or(clock);
    if span_us > 86_400_000_000 {
        format!("{} {}", date.get(5..).unwrap_or(date), clock.get(..5).unwrap_or(clock))
    } else {
        clock.to_owned()
    }
}

fn draw_svg(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(failed(chart))?;
        draw(&root)?;
        root.present().map_err(failed(chart))?;
    }
    Ok(svg)
}

/// The score timeline on a log axis, with the warning and alarm thresholds and the alert spans
/// shaded (amber for warning, red for alarm).
pub fn timeline(
    points: &[ScorePoint],
    spans: &[AlertSpan],
    first_us: TimestampUs,
    last_us: TimestampUs,
) -> Result<String, ChartError> {
    const CHART: &str = "score timeline";
    let span_us = (last_us - first_us).max(1);
    let seconds = |us: TimestampUs| (us - first_us) as f64 / 1e6;
    let positive = |v: f64| v.max(1e-3);
    let mut low = f64::INFINITY;
    let mut high = f64::NEG_INFINITY;
    for point in points {
        for value in [Some(point.score), point.warning, point.alarm].into_iter().flatten() {
            low = low.min(positive(value));
            high = high.max(positive(value));
        }
    }
    if !low.is_finite() {
        (low, high) = (0.1, 10.0);
    }
    let (low, high) = (low / 1.5, high * 1.5);
    draw_svg(CHART, (960, 240), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..seconds(last_us).max(1.0), (low..high).log_scale())
            .map_err(failed(CHART))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&|x| clock_label(first_us + (*x * 1e6) as i64, span_us))
            .y_label_formatter(&|y| if *y >= 10.0 { format!("{y:.0}") } else { format!("{y:.1}") })
            .y_desc("score")
            .label_style((FONT, 12))
            .draw()
            .map_err(failed(CHART))?;
        chart
            .draw_series(spans.iter().map(|span| {
                let fill = if span.level == AlertState::Alarm { ALARM_FILL } else { WARNING_FILL };
                Rectangle::new([(seconds(span.start_us), low), (seconds(span.end_us), high)], fill.mix(0.25).filled())
            }))
            .map_err(failed(CHART))?;
        let line = |pick: fn(&ScorePoint) -> Option<f64>| {
            points.iter().filter_map(move |p| pick(p).map(|v| (seconds(p.time_us), positive(v)))).collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(line(|p| Some(p.score)), SCORE_LINE.stroke_width(1)))
            .map_err(failed(CHART))?
            .label("score")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], SCORE_LINE));
        chart
            .draw_series(LineSeries::new(line(|p| p.warning), WARNING_FILL.stroke_width(2)))
            .map_err(failed(CHART))?
            .label("warning threshold")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], WARNING_FILL.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(line(|p| p.alarm), ALARM_FILL.stroke_width(2)))
            .map_err(failed(CHART))?
            .label("alarm threshold")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], ALARM_FILL.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(LEARNED)
            .label_font((FONT, 11))
            .draw()
            .map_err(failed(CHART))
    })
}

/// Viridis, five stops, linearly interpolated; `t` in 0..=1.
fn viridis(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let index = (t.floor() as usize).min(STOPS.len() - 2);
    let fraction = t - index as f64;
    let mut rgb = [0u8; 3];
    for (channel, out) in rgb.iter_mut().enumerate() {
        let value = STOPS[index][channel] + (STOPS[index + 1][channel] - STOPS[index][channel]) * fraction;
        *out = value.round() as u8;
    }
    rgb
}

/// The heat map's cells as a PNG, lowest band at the bottom; empty bins are white.
fn heat_png(heat: &HeatMap, low: f64, high: f64) -> Result<Vec<u8>, ChartError> {
    let (width, height) = (heat.bins, heat.bands);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        let band = height - 1 - row;
        for bin in 0..width {
            let rgb = match heat.value(bin, band) {
                Some(value) => viridis((value - low) / (high - low).max(1e-9)),
                None => [255, 255, 255],
            };
            pixels.extend_from_slice(&rgb);
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(failed("heat map"))?;
        writer.write_image_data(&pixels).map_err(failed("heat map"))?;
    }
    Ok(bytes)
}

/// The archived mean log-mel over time: time across, frequency up (labelled in Hz at the
/// bands' centres), colour from the lowest to the highest level seen, with the scale's ends
/// written beside it.
pub fn heat_map(heat: &HeatMap, band_centre_hz: &dyn Fn(usize) -> Option<f64>) -> Result<String, ChartError> {
    const CHART: &str = "heat map";
    let Some((low, high)) = heat.range() else {
        return Err(ChartError { chart: CHART, reason: "no window has bands".to_owned() });
    };
    let span_us = heat.end_us - heat.start_us;
    let first_us = heat.start_us;
    let mut area = (0..0, 0..0);
    let mut svg = draw_svg(CHART, (960, 240), |root| {
        let (plot, legend) = root.split_horizontally(900);
        let mut chart = ChartBuilder::on(&plot)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..span_us as f64 / 1e6, 0.0..heat.bands as f64)
            .map_err(failed(CHART))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|x| clock_label(first_us + (*x * 1e6) as i64, span_us))
            .y_label_formatter(&|band| match band_centre_hz((*band as usize).min(heat.bands.saturating_sub(1))) {
                Some(hz) if hz >= 1000.0 => format!("{:.1} kHz", hz / 1000.0),
                Some(hz) => format!("{hz:.0} Hz"),
                None => format!("band {band:.0}"),
            })
            .label_style((FONT, 12))
            .draw()
            .map_err(failed(CHART))?;
        let (x, y) = chart.plotting_area().get_pixel_range();
        area = (x, y);
        let style = (FONT, 11).into_font();
        legend.draw(&Text::new(format!("{high:.0} dB"), (4, 10), style.clone())).map_err(failed(CHART))?;
        legend.draw(&Text::new(format!("{low:.0} dB"), (4, 200), style)).map_err(failed(CHART))?;
        for step in 0..40 {
            let colour = viridis(1.0 - f64::from(step) / 39.0);
            let top = 24 + step * 4;
            legend
                .draw(&Rectangle::new([(8, top), (28, top + 4)], RGBColor(colour[0], colour[1], colour[2]).filled()))
                .map_err(failed(CHART))?;
        }
        Ok(())
    })?;
    let png = base64::engine::general_purpose::STANDARD.encode(heat_png(heat, low, high)?);
    let image = format!(
        r#"<image x="{}" y="{}" width="{}" height="{}" preserveAspectRatio="none" style="image-rendering:pixelated" href="data:image/png;base64,{png}"/>"#,
        area.0.start,
        area.1.start,
        area.0.end - area.0.start,
        area.1.end - area.1.start
    );
    let end = svg.rfind("</svg>").ok_or_else(|| ChartError { chart: CHART, reason: "no closing tag".to_owned() })?;
    svg.insert_str(end, &image);
    Ok(svg)
}

/// An alert's mean spectrum against the learned level (mean, and a band of one standard
/// deviation either side), with the reported bands marked.
pub fn alert_bands(
    learned: &BandMoments,
    alert: &BandMoments,
    marked: &[usize],
    band_centre_hz: &dyn Fn(usize) -> Option<f64>,
) -> Result<String, ChartError> {
    const CHART: &str = "alert bands";
    let mean = learned.mean();
    let std = learned.std();
    let alert_mean = alert.mean();
    if mean.is_empty() || alert_mean.len() != mean.len() {
        return Err(ChartError { chart: CHART, reason: "no learned level or no alert windows with bands".to_owned() });
    }
    let bands = mean.len();
    let values = mean.iter().zip(&std).flat_map(|(m, s)| [m - s, m + s]).chain(alert_mean.iter().copied());
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    draw_svg(CHART, (470, 230), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..(bands - 1).max(1) as f64, (low - 2.0)..(high + 2.0))
            .map_err(failed(CHART))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(5)
            .x_label_formatter(&|band| match band_centre_hz(band.round() as usize) {
                Some(hz) if hz >= 1000.0 => format!("{:.1} kHz", hz / 1000.0),
                Some(hz) => format!("{hz:.0} Hz"),
                None => format!("band {band:.0}"),
            })
            .y_desc("mean log-mel, dB")
            .label_style((FONT, 11))
            .draw()
            .map_err(failed(CHART))?;
        let upper = mean.iter().zip(&std).enumerate().map(|(b, (m, s))| (b as f64, m + s));
        let lower = mean.iter().zip(&std).enumerate().rev().map(|(b, (m, s))| (b as f64, m - s));
        chart
            .draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                LEARNED.mix(0.2).filled(),
            )))
            .map_err(failed(CHART))?;
        chart
            .draw_series(LineSeries::new(mean.iter().enumerate().map(|(b, m)| (b as f64, *m)), LEARNED.stroke_width(1)))
            .map_err(failed(CHART))?
            .label("learned normal ± 1 sd")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LEARNED));
        chart
            .draw_series(LineSeries::new(
                alert_mean.iter().enumerate().map(|(b, v)| (b as f64, *v)),
                ALARM_FILL.stroke_width(2),
            ))
            .map_err(failed(CHART))?
            .label("during the alert")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], ALARM_FILL.stroke_width(2)));
        chart
            .draw_series(
                marked
                    .iter()
                    .filter(|&&band| band < bands)
                    .map(|&band| Circle::new((band as f64, alert_mean[band]), 4, ALARM_FILL.stroke_width(2))),
            )
            .map_err(failed(CHART))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(LEARNED)
            .label_font((FONT, 11))
            .draw()
            .map_err(failed(CHART))
    })
}

/// ROC curves (one per fold) with the chance diagonal.
pub fn roc(curves: &[Vec<(f64, f64)>], title: &str) -> Result<String, ChartError> {
    const CHART: &str = "ROC";
    draw_svg(CHART, (260, 260), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .caption(title, (FONT, 13))
            .x_label_area_size(30)
            .y_label_area_size(36)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(failed(CHART))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(3)
            .y_labels(3)
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style((FONT, 10))
            .draw()
            .map_err(failed(CHART))?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], LEARNED.mix(0.6))).map_err(failed(CHART))?;
        for curve in curves {
            chart
                .draw_series(LineSeries::new(curve.iter().copied(), SCORE_LINE.mix(0.7).stroke_width(2)))
                .map_err(failed(CHART))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_labels_show_the_date_only_on_long_axes() {
        let t = 1_767_225_600_000_000 + 3_723_000_000; // 2026-01-01T01:02:03Z
        assert_eq!(short_time(t + 136_000), "2026-01-01 01:02:03");
        assert_eq!(clock_label(t, 3_600_000_000), "01:02:03");
        assert_eq!(clock_label(t, 3 * 86_400_000_000), "01-01 01:02");
    }

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(0.5), [33, 145, 140]);
    }

    #[test]
    fn the_timeline_is_an_svg_with_the_spans_and_thresholds() {
        let points: Vec<ScorePoint> = (0..50)
            .map(|i| ScorePoint { time_us: i * 1_000_000, score: 1.0 + i as f64, warning: Some(3.0), alarm: Some(9.0) })
            .collect();
        let spans = [AlertSpan { start_us: 10_000_000, end_us: 20_000_000, level: AlertState::Alarm, open: false }];
        let svg = timeline(&points, &spans, 0, 50_000_000).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("warning threshold") && svg.contains("alarm threshold"));
        assert!(svg.contains("00:00:10") || svg.contains("00:00:12"), "clock labels on the time axis");
    }
}
