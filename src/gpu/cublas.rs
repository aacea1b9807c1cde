//! cuBLAS (through cudarc) as the yardstick of our GEMM in `cpeal bench-kernels`: the same C = A·Wᵀ on the
//! same buffers, bf16 in and out, f32 compute. Only on a CUDA device; needs `libcublas.so.13` on the loader path
//! (PyTorch's `nvidia/cu13/lib` has it).

use cudarc::cublas::{result, sys};

use super::{DType, GpuBuffer, GpuDevice};
use crate::error::{Error, Result};

pub struct Cublas {
    handle: sys::cublasHandle_t,
}

fn err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::invalid("cublas", format!("{what}: {e:?}"))
}

impl Cublas {
    /// A handle on the legacy default stream of `dev`'s context (the stream our launches use).
    pub fn new(dev: &GpuDevice) -> Result<Self> {
        if dev.is_emu() {
            return Err(Error::DeviceUnavailable { device: "cublas".into(), reason: "not on the emulator".into() });
        }
        // SAFETY: only tries to dlopen libcublas; cudarc panics on calls when it is missing.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::DeviceUnavailable {
                device: "cublas".into(),
                reason: "libcublas.so.13 not found".into(),
            });
        }
        dev.synchronize()?; // makes dev's context current on this thread
        let handle = result::create_handle().map_err(|e| err("cublasCreate", e))?;
        Ok(Cublas { handle })
    }

    /// c[m, n] = a[m, k] · w[n, k]ᵀ, all bf16 row-major (column-major cuBLAS computes cᵀ = w·aᵀ).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_bf16(&self, m: usize, n: usize, k: usize, a: &GpuBuffer, w: &GpuBuffer, c: &GpuBuffer) -> Result<()> {
        for (name, b, len) in [("a", a, m * k), ("w", w, n * k), ("c", c, m * n)] {
            if b.dtype() != DType::Bf16 || b.len() < len {
                return Err(Error::kernel("cublasGemmEx", format!("`{name}` must be bf16 with {len} elements")));
            }
        }
        let (alpha, beta) = (1.0f32, 0.0f32);
        let int = |v: usize| i32::try_from(v).map_err(|_| Error::kernel("cublasGemmEx", "size exceeds int"));
        // SAFETY: the buffers are live device allocations of the sizes checked above; alpha/beta are host f32
        // as CUBLAS_COMPUTE_32F expects.
        unsafe {
            result::gemm_ex(
                self.handle,
                sys::cublasOperation_t::CUBLAS_OP_T,
                sys::cublasOperation_t::CUBLAS_OP_N,
                int(n)?,
                int(m)?,
                int(k)?,
                &alpha as *const f32 as *const _,
                w.ptr() as *const _,
                sys::cudaDataType::CUDA_R_16BF,
                int(k)?,
                a.ptr() as *const _,
                sys::cudaDataType::CUDA_R_16BF,
                int(k)?,
                &beta as *const f32 as *const _,
                c.ptr() as *mut _,
                sys::cudaDataType::CUDA_R_16BF,
                int(n)?,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
        }
        .map_err(|e| err("cublasGemmEx", e))
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: the handle was created in new() and is destroyed once.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}
