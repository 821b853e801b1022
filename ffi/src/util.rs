//! Argument checks shared by the exported functions: pointers, strings, buffers.

use crate::status::{fail, tenure_status, R};
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

/// Reads a required C string argument: NULL is `NullArgument`, bad UTF-8 `InvalidUtf8`.
///
/// # Safety
///
/// `p` must be NULL or point to a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> R<&'a str> {
    if p.is_null() {
        return Err(fail(tenure_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        fail(
            tenure_status::InvalidUtf8,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Reads an optional C string argument: NULL is `None`.
///
/// # Safety
///
/// As [`cstr`].
pub(crate) unsafe fn opt_cstr<'a>(p: *const c_char, what: &str) -> R<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: as the caller's.
        unsafe { cstr(p, what) }.map(Some)
    }
}

/// Checks that an output pointer is not NULL.
pub(crate) fn out<T>(p: *mut T, what: &str) -> R<*mut T> {
    if p.is_null() {
        Err(fail(tenure_status::NullArgument, format!("{what} is NULL")))
    } else {
        Ok(p)
    }
}

/// Checks a `(buf, len, out_n)` triple: `out_n` is required, `buf` may be NULL only when
/// `len` is 0.
///
/// # Safety
///
/// None beyond reading the pointers' values.
pub(crate) unsafe fn check_buf(buf: *mut c_char, len: usize, out_n: *mut usize) -> R<()> {
    if out_n.is_null() {
        return Err(fail(tenure_status::NullArgument, "out_n is NULL"));
    }
    if buf.is_null() && len > 0 {
        return Err(fail(
            tenure_status::NullArgument,
            "buf is NULL but len is not 0",
        ));
    }
    Ok(())
}

/// Copies `bytes` and a NUL into `buf` when they fit; sets `*out_n` to `bytes.len()` in either
/// case. Returns `Ok` or `BufferTooSmall`. Does not touch the last error.
///
/// # Safety
///
/// `check_buf(buf, len, out_n)` passed; `buf` points to `len` writable bytes.
pub(crate) unsafe fn copy_bytes(
    bytes: &[u8],
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tenure_status {
    // SAFETY: out_n checked non-NULL by check_buf.
    unsafe { out_n.write(bytes.len()) };
    if len <= bytes.len() {
        return tenure_status::BufferTooSmall;
    }
    // SAFETY: buf has len > bytes.len() writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    tenure_status::Ok
}

/// Writes `s` into a caller's buffer (see [`copy_bytes`]), with a last-error message when it
/// does not fit.
///
/// # Safety
///
/// `buf` is NULL or points to `len` writable bytes; `out_n` is NULL or points to a `size_t`.
pub(crate) unsafe fn write_str(s: &str, buf: *mut c_char, len: usize, out_n: *mut usize) -> R<()> {
    // SAFETY: the caller's contract.
    unsafe { check_buf(buf, len, out_n)? };
    // SAFETY: checked above.
    match unsafe { copy_bytes(s.as_bytes(), buf, len, out_n) } {
        tenure_status::Ok => Ok(()),
        st => Err(fail(
            st,
            format!(
                "the buffer holds {len} bytes; {} are needed (with the NUL)",
                s.len() + 1
            ),
        )),
    }
}

/// A C string copy of `s` (a NUL inside `s`, which tenure's names never contain, ends it).
pub(crate) fn to_cstring(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(e) => {
            let at = e.nul_position();
            CString::new(&s[..at]).unwrap_or_default()
        }
    }
}

/// A duration in milliseconds from C.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Splits a 128-bit incarnation token into its high and low halves.
pub(crate) fn split_u128(v: u128) -> (u64, u64) {
    ((v >> 64) as u64, v as u64)
}
