//! `fhir-server`: a FHIR R4 server for medical practices. The commands are in
//! `fhir_server::cli`; this binary only picks the allocator.

use std::process::ExitCode;

/// mimalloc: the server allocates and frees many small objects per request (JSON values,
/// headers); glibc malloc spent about 15% of the request time on them in a profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fhir_server::cli::main()
}
