//! Compiles every `bpf/*.bpf.c` into `$OUT_DIR/<name>.bpf.o` with clang (`-target bpf`), so the
//! crate can embed the objects with `include_bytes!`; the headers beside them (`bpf/*.h`:
//! xdpos_common.h) are included from the sources' directory and rebuild them when they change.
//! With the `dpdk` feature, also compiles the DPDK shim (`dpdk/shim.c`, flags from
//! `pkg-config --cflags libdpdk`) and links DPDK's libraries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::build();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = PathBuf::from("bpf");
    println!("cargo:rerun-if-changed=bpf");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch_include = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("nic/bpf exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    entries.sort();
    // The headers the programs include (xdpos_common.h); the directory line above covers new
    // files, these name each one.
    let mut headers: Vec<_> = std::fs::read_dir(&dir)
        .expect("nic/bpf exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "h"))
        .collect();
    headers.sort();
    for h in headers {
        println!("cargo:rerun-if-changed={}", h.display());
    }
    for src in entries {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src.file_name().unwrap().to_string_lossy().trim_end_matches(".c").to_string();
        let obj = out.join(format!("{stem}.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .arg(format!("-I{arch_include}"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {clang} to build {}: {e} (install clang)", src.display())
            });
        assert!(status.success(), "{clang} failed on {}", src.display());
    }
}

/// The `dpdk` feature: the shim and DPDK's shared libraries (Debian's `dpdk-dev`).
#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    fn pkg_config(arg: &str) -> Vec<String> {
        let out = Command::new("pkg-config").args([arg, "libdpdk"]).output().unwrap_or_else(|e| {
            panic!("cannot run pkg-config for libdpdk: {e} (install pkg-config)")
        });
        assert!(
            out.status.success(),
            "pkg-config {arg} libdpdk failed: {} (install dpdk-dev, see scripts/setup.sh)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=dpdk/shim.c");
        let mut b = cc::Build::new();
        b.file("dpdk/shim.c").opt_level(2).warnings(true).extra_warnings(false);
        for f in pkg_config("--cflags") {
            b.flag(&f);
        }
        b.compile("xdpos_dpdk_shim");
        for f in pkg_config("--libs") {
            if let Some(dir) = f.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }
        // Only what the shim and nic::dpdk call; the drivers are plugins EAL loads itself.
        for lib in ["rte_ethdev", "rte_mbuf", "rte_mempool", "rte_eal", "rte_kvargs"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}
