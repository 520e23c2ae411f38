//! The plot's font: plotters draws text with a TrueType font we hand it
//! (no fontconfig); DejaVu Sans comes with Debian's fonts-dejavu-core.

use anyhow::{bail, Result};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

pub fn register() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let path = std::env::var("VSWITCH_BENCH_FONT").ok();
        let paths: Vec<&str> = path.as_deref().into_iter().chain(CANDIDATES.iter().copied()).collect();
        for p in &paths {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{p} is not a usable TrueType font"));
            }
        }
        Err(format!(
            "no font for the plot: install fonts-dejavu-core (make bench-deps) or set VSWITCH_BENCH_FONT to a .ttf (looked at {})",
            paths.join(", ")
        ))
    });
    match r {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}
