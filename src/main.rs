fn main() -> anyhow::Result<()> {
    tern::cli::main()
}
