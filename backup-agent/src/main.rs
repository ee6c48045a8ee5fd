use std::process::ExitCode;

fn main() -> ExitCode {
    backup_agent::alloc::tune();
    backup_agent::cli::main()
}
