//! `--plot FILE.svg`: one panel per policy on one time axis — the load (as the droplets it
//! needs at 70 % of their slots), the fleet by role stacked (serving, booting, standby,
//! draining) and the SLO-violation minutes shaded — drawn with plotters' SVG backend.

use super::engine::{Minute, Model, Outcome};
use super::Score;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Draws `runs` (each policy's score and outcome) into an SVG file at `path`.
pub fn draw(path: &Path, title: &str, runs: &[(Score, Outcome)], model: &Model) -> Result<()> {
    let n = runs.len().max(1) as u32;
    let (width, panel) = (1200u32, 250u32);
    let root = SVGBackend::new(path, (width, 40 + panel * n)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (head, body) = root.split_vertically(40);
    head.draw(&Text::new(
        title.to_string(),
        (10, 10),
        ("sans-serif", 20).into_font(),
    ))
    .map_err(err)?;
    let per_droplet = f64::from(model.maxconn) * 0.7 / model.service.mean();
    let needed = |m: &Minute| m.rate / per_droplet;
    let total = |m: &Minute| m.serving + m.booting + m.standby + m.draining;
    let minutes = runs.iter().map(|r| r.1.minutes.len()).max().unwrap_or(1);
    let hours = (minutes as f64 / 60.0).max(1.0 / 60.0);
    let serving = RGBColor(66, 133, 244);
    let booting = RGBColor(251, 188, 4);
    let standby = RGBColor(52, 168, 83);
    let draining = RGBColor(160, 160, 160);
    let violation = RGBColor(234, 67, 53);
    for (i, (area, (score, o))) in body
        .split_evenly((n as usize, 1))
        .iter()
        .zip(runs)
        .enumerate()
    {
        let caption = format!(
            "{}: {} SLO-violation min, {:.0} droplet-h, {} actions",
            score.policy,
            score.slo_violation_minutes,
            score.droplet_seconds / 3600.0,
            score.actions
        );
        // Each panel its own scale (one policy's overshoot would flatten the others); the
        // time axis is the same for all.
        let ymax = o
            .minutes
            .iter()
            .map(|m| total(m).max(needed(m)))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(6)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..hours, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("droplets")
            .light_line_style(WHITE)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let x = |j: usize| j as f64 / 60.0;
        chart
            .draw_series(
                o.minutes
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.violation)
                    .map(|(j, _)| {
                        Rectangle::new([(x(j), 0.0), (x(j + 1), ymax)], violation.mix(0.3).filled())
                    }),
            )
            .map_err(err)?
            .label("SLO violation (minute)")
            .legend(move |(a, b)| {
                Rectangle::new([(a, b - 5), (a + 12, b + 5)], violation.mix(0.3).filled())
            });
        // Stacked: draw each cumulative top, the largest first.
        type Layer = (&'static str, RGBColor, fn(&Minute) -> f64);
        let layers: [Layer; 4] = [
            ("draining", draining, |m| {
                m.serving + m.booting + m.standby + m.draining
            }),
            ("standby", standby, |m| m.serving + m.booting + m.standby),
            ("booting", booting, |m| m.serving + m.booting),
            ("serving", serving, |m| m.serving),
        ];
        for (label, color, top) in layers {
            chart
                .draw_series(AreaSeries::new(
                    o.minutes.iter().enumerate().map(|(j, m)| (x(j), top(m))),
                    0.0,
                    color.mix(0.75),
                ))
                .map_err(err)?
                .label(label)
                .legend(move |(a, b)| {
                    Rectangle::new([(a, b - 5), (a + 12, b + 5)], color.filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                o.minutes.iter().enumerate().map(|(j, m)| (x(j), needed(m))),
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label("load: droplets needed at 70 % of their slots")
            .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 12, b)], BLACK));
        if i == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
