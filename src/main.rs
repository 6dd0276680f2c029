//! The `doproxy` binary: parse arguments, run the command, map the error to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    doproxy::cli::main()
}
