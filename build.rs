//! With the `cuda-emu` feature, compile every `kernels/*.cu` with g++ against `kernels/emu.h` into the static
//! library `cpeal_emu_kernels`, plus a generated registry that maps kernel names to launch trampolines
//! (`cpeal_emu_lookup`, `cpeal_emu_launch`, used by `src/gpu/emu.rs`). Without the feature: nothing.

#[allow(dead_code)] // nvrtc_target is for the runtime, not the build
#[path = "src/gpu/scan.rs"]
mod scan;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/gpu/scan.rs");
    println!("cargo:rerun-if-changed=kernels");
    if std::env::var_os("CARGO_FEATURE_CUDA_EMU").is_some() {
        build_emu();
    }
}

fn kernel_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("kernels/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    files
}

fn build_emu() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernels = root.join("kernels");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .flag("-include")
        .flag(kernels.join("emu.h").to_str().unwrap())
        .define("CPEAL_EMU", None)
        .include(&kernels)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-function")
        .flag_if_supported("-Wno-unknown-pragmas") // `#pragma unroll` is for NVRTC; g++ ignores it, as it should
        .flag_if_supported("-Wno-psabi") // "ABI for 64-byte aligned parameters changed in GCC 4.6": TmaMap by value
        .warnings(true);
    let mut registry =
        String::from("struct CpealEmuEntry { const char* name; void (*fn)(void**); unsigned cluster; };\n");
    let mut table = String::from("static const CpealEmuEntry cpeal_emu_table[] = {\n");
    for file in kernel_files(&kernels) {
        let src = std::fs::read_to_string(&file).expect("kernel source is readable");
        if let Some(line) = scan::unreadable_declarations(&src).first() {
            panic!(
                "{}:{line}: an `extern \"C\" __global__` declaration without `void [qualifiers] name(` on its line \
                 (src/gpu/scan.rs reads kernels line by line; the emulator and the NVRTC check would miss it)",
                file.display()
            );
        }
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let mut unit = format!("#include \"{}\"\n", file.display());
        for scan::KernelDecl { name, cluster, .. } in scan::kernels(&src) {
            let _ = writeln!(
                unit,
                "extern \"C\" void cpeal_emu_entry_{name}(void** a) {{ cpeal_emu::invoke(&{name}, a); }}"
            );
            let _ = writeln!(registry, "extern \"C\" void cpeal_emu_entry_{name}(void**);");
            let _ = writeln!(table, "    {{\"{name}\", cpeal_emu_entry_{name}, {cluster}}},");
        }
        let path = out.join(format!("emu_{stem}.cpp"));
        std::fs::write(&path, unit).unwrap();
        build.file(&path);
    }
    table.push_str("    {nullptr, nullptr, 1}};\n");
    registry.push_str(&table);
    registry.push_str(REGISTRY_FNS);
    let path = out.join("emu_registry.cpp");
    std::fs::write(&path, registry).unwrap();
    build.file(&path);
    build.compile("cpeal_emu_kernels");
}

const REGISTRY_FNS: &str = r#"
extern "C" void* cpeal_emu_lookup(const char* name) {
    for (const CpealEmuEntry* e = cpeal_emu_table; e->name; ++e)
        if (std::strcmp(e->name, name) == 0) return reinterpret_cast<void*>(e->fn);
    return nullptr;
}
// The kernel's cluster size (its __cluster_dims__) comes from the table, as the GPU takes it from the binary.
extern "C" int cpeal_emu_launch(void* entry, const unsigned* grid, const unsigned* block, unsigned shared_bytes,
                                void** args, char* err, size_t errlen) {
    unsigned cluster = 1;
    for (const CpealEmuEntry* e = cpeal_emu_table; e->name; ++e)
        if (reinterpret_cast<void*>(e->fn) == entry) cluster = e->cluster;
    return cpeal_emu::launch(reinterpret_cast<void (*)(void**)>(entry), grid, block, shared_bytes, args, err, errlen,
                             cluster);
}
extern "C" void cpeal_emu_bank_count(int on) { cpeal_emu::set_bank_counting(on != 0); }
extern "C" size_t cpeal_emu_bank_sites(CpealBankSite* out, size_t cap) { return cpeal_emu::take_bank_sites(out, cap); }
"#;
