//! Only in the instrumented build of `pnpm coverage` (cargo-llvm-cov sets `cfg(coverage)`).
//!
//! vitest stops each test process with SIGTERM and SIGKILLs it 500 ms later. The profile is
//! normally written by an `atexit` handler, which a busy process may not reach in time, so the
//! test processes write it themselves first (`__test__/helpers/coverage-exit.ts`).

use napi_derive::napi;

extern "C" {
    /// compiler-rt: writes the profile and keeps the exit handler from writing it again.
    fn __llvm_profile_dump() -> i32;
}

/// Writes this process's coverage profile now; 0 on success.
#[napi]
pub fn write_coverage_profile() -> i32 {
    // SAFETY: compiler-rt's own entry point, linked into every instrumented build.
    unsafe { __llvm_profile_dump() }
}
