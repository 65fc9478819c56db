//! How the embedded SQLite library allocates memory.
//!
//! SQLite's own C code allocates with the system `malloc` and, by default, counts every
//! allocation under one global mutex (memory statistics). On the writer thread, which
//! builds a record and moves b-tree cells for every index row, the two came to about a
//! tenth of its time in a profile of a create burst. Here SQLite allocates from mimalloc
//! (the allocator the rest of the server already uses) and keeps no statistics.
//!
//! SQLite accepts this configuration only before it initializes, that is before the first
//! connection of the process opens; `configure` is called first thing by the store.

use std::ffi::{c_int, c_void};
use std::sync::Once;

use rusqlite::ffi;

/// Configures SQLite's allocator once per process. When SQLite was initialized before (by
/// other code in the same process), it keeps its defaults: that is slower, not wrong.
pub fn configure() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(allocate),
            xFree: Some(free),
            xRealloc: Some(reallocate),
            xSize: Some(size),
            xRoundup: Some(round_up),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config is called once, before any connection opens (see module
        // docs), and copies `methods` before it returns. The functions are mimalloc's,
        // which are thread-safe and accept frees from any thread.
        let results = unsafe {
            [
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            ]
        };
        if results.iter().any(|&rc| rc != ffi::SQLITE_OK) {
            tracing::debug!(
                ?results,
                "SQLite was already initialized; it keeps its own allocator"
            );
        }
    });
}

unsafe extern "C" fn allocate(bytes: c_int) -> *mut c_void {
    // SAFETY: mi_malloc takes any size; SQLite never asks for a negative one.
    unsafe { libmimalloc_sys::mi_malloc(bytes.max(0) as usize) }
}

unsafe extern "C" fn free(pointer: *mut c_void) {
    // SAFETY: SQLite frees only what `allocate` or `reallocate` returned.
    unsafe { libmimalloc_sys::mi_free(pointer) }
}

unsafe extern "C" fn reallocate(pointer: *mut c_void, bytes: c_int) -> *mut c_void {
    // SAFETY: as for `free`; mi_realloc keeps the contents up to the smaller size.
    unsafe { libmimalloc_sys::mi_realloc(pointer, bytes.max(0) as usize) }
}

unsafe extern "C" fn size(pointer: *mut c_void) -> c_int {
    // SAFETY: as for `free`. SQLite allows the usable size to exceed the requested one.
    unsafe { libmimalloc_sys::mi_usable_size(pointer) as c_int }
}

unsafe extern "C" fn round_up(bytes: c_int) -> c_int {
    (bytes + 7) & !7
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}
