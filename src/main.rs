fn main() -> anyhow::Result<()> {
    tern::cmd::main()
}
