//! The `petrel` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    petrel::cli::main()
}
