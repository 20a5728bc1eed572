//! Draws `bench/chart.svg` from `bench/results.json` (written by `bench/run.sh`): throughput and
//! p99 latency per scenario, PostgreSQL and SQLite side by side.
//!
//! `cargo run --release --example bench_chart -- bench/results.json bench/chart.svg`
#![forbid(unsafe_code)]

use plotters::prelude::*;

const SCENARIOS: &[&str] = &["me-8", "me-64", "refresh-8", "refresh-64", "login", "me-during-login"];
const BACKENDS: &[(&str, RGBColor)] = &[("postgres", RGBColor(51, 102, 204)), ("sqlite", RGBColor(220, 120, 40))];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = match args.as_slice() {
        [_, i, o] => (i.clone(), o.clone()),
        _ => ("bench/results.json".to_owned(), "bench/chart.svg".to_owned()),
    };
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&input)?)?;
    let value =
        |backend: &str, scenario: &str, key: &str| results["results"][backend][scenario][key].as_f64().unwrap_or(0.0);
    let root = SVGBackend::new(&output, (1100, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    for (area, key, title) in
        [(&top, "rps", "requests/s (log scale)"), (&bottom, "p99_ms", "p99 latency, ms (log scale)")]
    {
        let max =
            SCENARIOS.iter().flat_map(|s| BACKENDS.iter().map(move |(b, _)| value(b, s, key))).fold(1.0_f64, f64::max);
        let min = SCENARIOS
            .iter()
            .flat_map(|s| BACKENDS.iter().map(move |(b, _)| value(b, s, key)))
            .filter(|v| *v > 0.0)
            .fold(max, f64::min);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..(SCENARIOS.len() as f64), ((min / 2.0)..(max * 2.0)).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(SCENARIOS.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < SCENARIOS.len() {
                    SCENARIOS[i].to_owned()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (bi, (backend, color)) in BACKENDS.iter().enumerate() {
            let color = *color;
            chart
                .draw_series(SCENARIOS.iter().enumerate().map(|(si, s)| {
                    let x0 = si as f64 + 0.1 + 0.4 * bi as f64;
                    Rectangle::new(
                        [(x0, min / 2.0), (x0 + 0.38, value(backend, s, key).max(min / 2.0))],
                        color.filled(),
                    )
                }))?
                .label(*backend)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    println!("wrote {output}");
    Ok(())
}
