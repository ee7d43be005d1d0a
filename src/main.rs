//! Thin entry point: everything lives in the library so tests and benches can drive it.
fn main() -> std::process::ExitCode {
    mongolake::cli::main()
}
