/// mimalloc instead of the system allocator: the writer and the HTTP
/// workers allocate and free many small objects per report, and glibc's
/// allocator spent about a fifth of the writer's time in `malloc`/`free`
/// under load (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    anonstats::cli::main()
}
