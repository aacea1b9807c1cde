//! NVRTC: finding `libnvrtc.so.13`, checking its version, and compiling a source straight to CUBIN with the
//! compile log kept (cudarc's raw layer; its safe API drops the log, which holds the ptxas report).
//!
//! Lookup order: `CPEAL_NVRTC_LIB` (the library file or its folder), then `nvidia/cu13/lib` under the wheel
//! cache of `scripts/ci-gpu-checks.sh` ([`wheel_cache`]) and under Python's site-packages (the pip wheel `nvidia-cuda-nvrtc`, also what PyTorch installs), then the dynamic loader's own
//! search (`LD_LIBRARY_PATH`). A library found by path is opened with its `libnvrtc-builtins` first, since the
//! 13.0 wheel's library has no RUNPATH to find it.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::nvrtc::{result, sys};

use crate::error::{Error, Result};

/// NVRTC major version the kernels are built for (the GPU machines run CUDA 13).
pub const REQUIRED_MAJOR: i32 = 13;

static LOADED: OnceLock<std::result::Result<(i32, i32), String>> = OnceLock::new();

/// Load NVRTC once per process; returns its (major, minor) version.
pub fn load() -> Result<(i32, i32)> {
    LOADED.get_or_init(load_inner).clone().map_err(|reason| Error::DeviceUnavailable { device: "nvrtc".into(), reason })
}

fn load_inner() -> std::result::Result<(i32, i32), String> {
    if let Some(lib) = locate() {
        preload(&lib)?;
    }
    // SAFETY: is_culib_present only tries to dlopen the library.
    if !unsafe { sys::is_culib_present() } {
        return Err("libnvrtc.so.13 not found: set CPEAL_NVRTC_LIB to it (or its folder), or pip install \
                    nvidia-cuda-nvrtc==13.0.88 and put nvidia/cu13/lib on LD_LIBRARY_PATH"
            .into());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; nvrtcVersion writes two ints.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    if major != REQUIRED_MAJOR {
        return Err(format!("found NVRTC {major}.{minor}, need {REQUIRED_MAJOR}.x (CUDA 13)"));
    }
    Ok((major, minor))
}

/// Where `libnvrtc.so.13` is, if it can be found by path.
pub fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CPEAL_NVRTC_LIB") {
        let p = PathBuf::from(p);
        return Some(if p.is_dir() { p.join("libnvrtc.so.13") } else { p });
    }
    let mut dirs: Vec<PathBuf> = wheel_cache().into_iter().collect();
    dirs.extend(python_site_dirs());
    dirs.into_iter().map(|d| d.join("nvidia/cu13/lib/libnvrtc.so.13")).find(|p| p.is_file())
}

/// Where `scripts/ci-gpu-checks.sh` installs the CUDA 13.0 wheels: `$XDG_CACHE_HOME/cpeal/cuda13-wheels` (else
/// `~/.cache/…`).
pub fn wheel_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cpeal").join("cuda13-wheels"))
}

fn python_site_dirs() -> Vec<PathBuf> {
    let code = "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)";
    let Ok(out) = std::process::Command::new("python3").args(["-c", code]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect()
}

/// Open the builtins library and NVRTC itself by absolute path and keep them loaded, so that cudarc's later
/// `dlopen("libnvrtc.so.13")` finds this copy (the loader matches the already-loaded soname).
fn preload(lib: &Path) -> std::result::Result<(), String> {
    let dir = lib.parent().unwrap_or(Path::new("."));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("libnvrtc-builtins.so.13") {
                open_global(&e.path())?;
            }
        }
    }
    open_global(lib)
}

fn open_global(path: &Path) -> std::result::Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading NVRTC runs only its initialisers, which have no preconditions.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    std::mem::forget(lib); // stays loaded for the life of the process
    Ok(())
}

/// Result of one compile: the CUBIN and NVRTC's log (with the ptxas report when `-v` was asked for).
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// Compile `src` (named `name` in the log) with `options`, to CUBIN. The options must name a real `sm_XY`.
pub fn compile_cubin(name: &str, src: &str, options: &[String]) -> Result<Compiled> {
    load()?;
    let csrc = CString::new(src).map_err(|_| Error::kernel(name, "source contains NUL"))?;
    let cname = CString::new(name).map_err(|_| Error::kernel(name, "name contains NUL"))?;
    let prog = result::create_program(&csrc, Some(&cname))
        .map_err(|e| Error::Nvrtc { kernel: name.into(), log: format!("nvrtcCreateProgram: {e:?}") })?;
    // SAFETY: prog is a live program created above; it is destroyed once, below.
    let out = unsafe { compile_prog(name, prog, options) };
    // SAFETY: as above.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

unsafe fn compile_prog(name: &str, prog: sys::nvrtcProgram, options: &[String]) -> Result<Compiled> {
    // SAFETY: prog is live (caller).
    let status = unsafe { result::compile_program(prog, options) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }
        .map(|raw| raw.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect::<String>())
        .unwrap_or_default();
    if let Err(e) = status {
        return Err(Error::Nvrtc { kernel: name.into(), log: format!("{e:?}\n{log}") });
    }
    let mut size = 0usize;
    // SAFETY: prog compiled successfully; the size is written to `size`.
    unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| Error::Nvrtc { kernel: name.into(), log: format!("no CUBIN (virtual arch?): {e:?}") })?;
    let mut cubin = vec![0u8; size];
    // SAFETY: cubin has `size` bytes as NVRTC asked.
    unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut std::ffi::c_char) }
        .result()
        .map_err(|e| Error::Nvrtc { kernel: name.into(), log: format!("nvrtcGetCUBIN: {e:?}") })?;
    Ok(Compiled { cubin, log })
}

/// The options every kernel is compiled with for `arch` (e.g. `sm_90`).
pub fn base_options(arch: &str) -> Vec<String> {
    vec![format!("--gpu-architecture={arch}"), "--std=c++17".into(), "-lineinfo".into()]
}
