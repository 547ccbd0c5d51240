//! SVG charts drawn with plotters: eigen-spectra (thesis Fig 6.3), the class overview of the
//! smallest eigenvalues ordered by λ2 (Fig 6.5) and t-SNE scatter plots (Fig 6.4).
//! plotters escapes the text it writes, so class names are safe inside the SVG.

use plotters::prelude::*;

use crate::ReportError;

/// The error of a chart titled `title`.
fn err(title: &str) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> ReportError + '_ {
    move |source| ReportError::Chart {
        title: title.to_owned(),
        source,
    }
}

/// A categorical palette (Tableau 10): cluster colours in charts and in the page agree.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

pub fn cluster_colour(cluster: i32) -> RGBColor {
    if cluster < 0 {
        return RGBColor(170, 170, 170);
    }
    let (r, g, b) = PALETTE[cluster as usize % PALETTE.len()];
    RGBColor(r, g, b)
}

pub fn cluster_css(cluster: i32) -> String {
    let c = cluster_colour(cluster);
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn y_max(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.fold(0.0f64, |a, v| a.max(v));
    if m > 0.0 {
        m * 1.08
    } else {
        1.0
    }
}

/// Eigenvalues λ1..λm as points on a line, the largest gap (after λ`gap_index`) shaded.
pub fn spectrum_svg(title: &str, values: &[f64], gap_index: i32) -> Result<String, ReportError> {
    let mut svg = String::new();
    let err = err(title);
    {
        let root = SVGBackend::with_string(&mut svg, (420, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let top = y_max(values.iter().copied());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..(values.len() as f64 + 0.5), 0f64..top)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("index i")
            .y_desc("eigenvalue λi")
            .x_labels(values.len().min(20))
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .max_light_lines(0)
            .draw()
            .map_err(&err)?;
        if gap_index >= 1 && (gap_index as usize) < values.len() {
            let i = gap_index as usize;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(i as f64, values[i - 1]), (i as f64 + 1.0, values[i])],
                    RGBColor(255, 200, 80).mix(0.45).filled(),
                )))
                .map_err(&err)?
                .label(format!("largest gap λ{}→λ{}", i, i + 1))
                .legend(|(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 12, y + 5)],
                        RGBColor(255, 200, 80).filled(),
                    )
                });
        }
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)),
                &RGBColor(31, 119, 180),
            ))
            .map_err(&err)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                Circle::new((i as f64 + 1.0, v), 3, RGBColor(31, 119, 180).filled())
            }))
            .map_err(&err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(trim(svg))
}

/// Fig 6.5: the smallest `count` eigenvalues of each class, classes ordered by λ2.
/// `classes` = (label, eigenvalues), already ordered.
pub fn overview_svg(
    title: &str,
    classes: &[(String, Vec<f64>)],
    count: usize,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    let err = err(title);
    {
        let width = (160 + 28 * classes.len()).clamp(480, 2400) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        // Headroom above the points for the legend.
        let top = 1.45
            * y_max(
                classes
                    .iter()
                    .flat_map(|(_, v)| v.iter().take(count).copied()),
            );
        let n = classes.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(90)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
            .map_err(&err)?;
        let labels: Vec<String> = classes.iter().map(|(l, _)| l.clone()).collect();
        // A name every 14 px at most: beyond ~160 classes (the width is capped) some names
        // are left out rather than drawn over each other; the ranking table has them all.
        let max_labels = (width as usize - 160) / 14;
        chart
            .configure_mesh()
            .y_desc("eigenvalue")
            .x_labels(n.min(max_labels))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate270),
            )
            .max_light_lines(0)
            .draw()
            .map_err(&err)?;
        for j in 0..count {
            let colour = cluster_colour(j as i32);
            let points: Vec<(f64, f64)> = classes
                .iter()
                .enumerate()
                .filter_map(|(i, (_, v))| v.get(j).map(|&y| (i as f64, y)))
                .collect();
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(&err)?
                .label(format!("λ{}", j + 1))
                .legend(move |(x, y)| Circle::new((x + 6, y), 3, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(trim(svg))
}

/// plotters writes every attribute; drop the ones that restate SVG's defaults (a third of a
/// scatter plot's bytes).
fn trim(svg: String) -> String {
    svg.replace(" opacity=\"1\"", "")
        .replace(" stroke=\"none\" stroke-width=\"1\"", "")
}

/// A t-SNE scatter plot. Points are drawn as circles in the order given, and only points are
/// circles, so the page's script can attach each `<circle>` to its sample by position.
pub fn scatter_svg(title: &str, points: &[(f32, f32, i32)]) -> Result<String, ReportError> {
    let mut svg = String::new();
    let err = err(title);
    {
        let root = SVGBackend::with_string(&mut svg, (420, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y, _) in points {
            x0 = x0.min(x as f64);
            x1 = x1.max(x as f64);
            y0 = y0.min(y as f64);
            y1 = y1.max(y as f64);
        }
        if points.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = |a: f64, b: f64| {
            let p = ((b - a) * 0.06).max(1e-6);
            (a - p)..(b + p)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .build_cartesian_2d(pad(x0, x1), pad(y0, y1))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(4)
            .y_labels(4)
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(points.iter().map(|&(x, y, c)| {
                Circle::new(
                    (x as f64, y as f64),
                    4,
                    cluster_colour(c).mix(0.85).filled(),
                )
            }))
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(trim(svg))
}
