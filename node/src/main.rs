fn main() -> std::process::ExitCode {
    hubcat_node::cli::main()
}
