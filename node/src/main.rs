/// mimalloc instead of glibc malloc: ingest allocates many small, short-lived values (decoded
/// changes, parsed records, views), where glibc's `malloc_consolidate` / `unlink_chunk` took
/// about an eighth of all cycles (BENCHMARKS.md, ingest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hubcat_node::cli::main()
}
