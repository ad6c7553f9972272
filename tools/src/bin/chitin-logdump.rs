//! `chitin-logdump DIR`: prints a core's raft log (see the crate docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: chitin-logdump STORE/core-N/raft");
        return ExitCode::from(2);
    };
    match chitin_tools::dump_raft_log(std::path::Path::new(&dir)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
