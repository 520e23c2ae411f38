//! Benchmark harness entry point (scenarios arrive with the daemon).

fn main() {
    eprintln!("vswitch-bench: scenarios are not implemented yet; see issue \"Benchmark harness\"");
    std::process::exit(2);
}
