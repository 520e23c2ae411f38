//! Generates the raw DPDK bindings from the system headers found by pkg-config,
//! and compiles bindgen's wrappers for DPDK's static-inline functions with the
//! same cflags so the fast path (rx/tx burst, mbuf alloc/free, ...) is callable.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config ({e}); install pkg-config and libdpdk-dev"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: `pkg-config {} libdpdk` failed: {}\nInstall DPDK's headers: apt-get install libdpdk-dev",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let cflags = pkg_config(&["--cflags"]);
    let libs = pkg_config(&["--libs"]);
    let version = pkg_config(&["--modversion"]);
    println!("cargo:rustc-env=DPDK_PKG_VERSION={}", version.join(""));

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let wrap_path = out_dir.join("dpdk_static_fns");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        // Packed types holding aligned members: rustc cannot lay them out (E0588).
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .derive_default(true)
        .derive_debug(true)
        .prepend_enum_name(false)
        .layout_tests(true)
        .generate_comments(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_path)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("dpdk-sys: bindgen failed to generate DPDK bindings");
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("dpdk-sys: cannot write bindings.rs");

    // The generated C file includes wrapper.h itself; compile it with DPDK's
    // cflags (which carry -include rte_config.h and -march).
    let mut build = cc::Build::new();
    build.file(wrap_path.with_extension("c")).include(env::current_dir().expect("cwd")).warnings(false).opt_level(3);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("dpdk_static_fns");

    // rte_vdev_init/uninit live in the vdev bus driver, which pkg-config's
    // --libs (libraries only, drivers load at init) leaves out.
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    for lib in &libs {
        if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(name) = lib.strip_prefix("-l") {
            // Shared linking: PMDs are loaded by EAL from DPDK's driver directory.
            if let Some(stripped) = name.strip_prefix(':') {
                println!("cargo:rustc-link-arg=-l:{stripped}");
            } else {
                println!("cargo:rustc-link-lib=dylib={name}");
            }
        } else if lib.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={lib}");
        }
    }
}
