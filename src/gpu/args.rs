//! Kernel arguments packed as `cuLaunchKernel` wants them: an array of pointers, one per parameter, each to
//! that parameter's value. The emulator's trampolines unpack the very same array.

use std::ffi::c_void;

use super::GpuBuffer;

/// Arguments of one launch, pushed in the order of the kernel's C parameters.
#[derive(Default)]
pub struct KernelArgs {
    /// 8-byte slots; a parameter takes one slot, or several for a by-value struct (a TMA descriptor).
    values: Vec<u64>,
    /// The first slot of each parameter beyond the one-slot rule: (parameter index, slots).
    wide: Vec<(usize, usize)>,
    buffers: Vec<GpuBuffer>,
    /// Told apart from other launches of the same kernel in a profile (`CPEAL_PROFILE`), e.g. a GEMM's shape.
    tag: Option<String>,
}

impl KernelArgs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Profile this launch as `<kernel> <tag>`.
    pub fn tag(&mut self, tag: String) -> &mut Self {
        self.tag = Some(tag);
        self
    }

    pub(crate) fn take_tag(&mut self) -> Option<String> {
        self.tag.take()
    }

    /// An `int` parameter.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.values.push(v as u32 as u64);
        self
    }

    /// An `unsigned` parameter.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.values.push(v as u64);
        self
    }

    /// A `float` parameter.
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.values.push(v.to_bits() as u64);
        self
    }

    /// A pointer parameter (`const T*` / `T*`); the buffer is kept alive with the arguments.
    pub fn buf(&mut self, b: &GpuBuffer) -> &mut Self {
        self.values.push(b.ptr());
        self.buffers.push(b.clone());
        self
    }

    /// A pointer parameter that may be null (an optional input such as a bias).
    pub fn opt_buf(&mut self, b: Option<&GpuBuffer>) -> &mut Self {
        match b {
            Some(b) => self.buf(b),
            None => {
                self.values.push(0);
                self
            }
        }
    }

    /// A 128-byte by-value parameter (`const __grid_constant__` CUtensorMap): 16 consecutive slots.
    pub fn tensor_map(&mut self, words: &[u64; 16]) -> &mut Self {
        self.wide.push((self.len(), 16));
        self.values.extend_from_slice(words);
        self
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.values.len() - self.wide.iter().map(|(_, slots)| slots - 1).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// One pointer per parameter, valid while `self` is neither moved nor changed. Values are stored in
    /// 8-byte little-endian slots, so a pointer to a slot is also a pointer to its 4-byte `int`/`float`, and a
    /// wide parameter's first slot points at its consecutive bytes.
    pub(crate) fn params(&mut self) -> Vec<*mut c_void> {
        let mut out = Vec::with_capacity(self.len());
        let mut slot = 0;
        for p in 0..self.len() {
            out.push(&mut self.values[slot] as *mut u64 as *mut c_void);
            slot += self.wide.iter().find(|(i, _)| *i == p).map_or(1, |(_, n)| *n);
        }
        out
    }
}
