//! `mvault-chart bench.json bench.png`: one panel per data set, throughput (MB/s) of cold backup, restore
//! and check --read-data for every tool, from bench/run's results. Text uses the system's DejaVu Sans.

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;

const OPS: [(&str, &str); 3] = [("backup_cold", "backup"), ("restore", "restore"), ("check_read_data", "check")];
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: mvault-chart bench.json bench.png".into());
    };
    let font = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?;
    register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| "the font does not load")?;
    let v: Value = serde_json::from_str(&std::fs::read_to_string(input)?)?;
    let sets = v["sets"].as_array().ok_or("no sets in the results")?;
    let root = BitMapBackend::new(output, (1200, 360 * sets.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
    for (set, area) in sets.iter().zip(root.split_evenly((sets.len(), 1))) {
        let tools = set["tools"].as_array().ok_or("no tools")?;
        let mb_s = |t: &Value, op: &str| t[op]["mb_s"].as_f64().unwrap_or(0.0);
        let max = tools.iter().flat_map(|t| OPS.iter().map(move |(op, _)| mb_s(t, op))).fold(1.0, f64::max);
        let title = format!(
            "{}: {:.0} MiB, {} files (MB/s, higher is better)",
            set["set"].as_str().unwrap_or("?"),
            set["source_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            set["files"]
        );
        let n = tools.len() as i32;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0..n * 4, 0.0..max * 1.15)?;
        chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc("MB/s").label_style(("sans-serif", 14)).draw()?;
        for (i, t) in tools.iter().enumerate() {
            let x0 = i as i32 * 4;
            for (j, (op, _)) in OPS.iter().enumerate() {
                let v = mb_s(t, op);
                let c = colors[j];
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0 + j as i32, 0.0), (x0 + j as i32 + 1, v)],
                    c.filled(),
                )))?;
                if v > 0.0 {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{v:.0}"),
                        (x0 + j as i32, v + max * 0.02),
                        ("sans-serif", 12),
                    )))?;
                }
            }
            chart.draw_series(std::iter::once(Text::new(
                t["tool"].as_str().unwrap_or("?").to_string(),
                (x0, -max * 0.07),
                ("sans-serif", 14),
            )))?;
        }
        for (j, (_, label)) in OPS.iter().enumerate() {
            let c = colors[j];
            chart
                .draw_series(std::iter::once(Rectangle::new([(0, 0.0), (0, 0.0)], c.filled())))?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
