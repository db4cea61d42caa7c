fn main() -> anyhow::Result<()> {
    anonstats::cli::main()
}
