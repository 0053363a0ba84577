//! The loaded objects of an ELF system (glibc, musl, the BSDs), from `dl_iterate_phdr`.

use std::ffi::{c_void, CStr, CString};

/// Call `each` with every loaded object, in load order, until it returns `false`.
pub fn for_each_object<F: FnMut(&libc::dl_phdr_info) -> bool>(mut each: F) {
    unsafe extern "C" fn call<G: FnMut(&libc::dl_phdr_info) -> bool>(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info; `data` is the `&mut F` given below, alive for
        // the whole iteration.
        let go_on = unsafe { (*data.cast::<G>())(&*info) };
        libc::c_int::from(!go_on)
    }
    // SAFETY: the callback only calls `each` through `data`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(call::<F>), (&raw mut each).cast()) };
}

/// Paths of every loaded object that has one (not the main program, nor the vDSO).
pub fn object_names() -> Vec<CString> {
    let mut names = Vec::new();
    for_each_object(|info| {
        if !info.dlpi_name.is_null() {
            // SAFETY: the loader's object names are NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) };
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
        true
    });
    names
}
