//! Standard output for the command line. `println!` panics when stdout is a closed pipe
//! (`fraise-auth audit | head -1`); [`outln!`](crate::outln) instead ends the process quietly
//! (exit status 0) when the reader has gone, as `head` meant, and with status 1 and a message on any
//! other write error (a full disk behind a redirect). It only runs once a command's work is done
//! and it is printing the result, so nothing is left half written.
use std::io::Write as _;

/// Writes `args` and a newline to stdout; see the module.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that does not panic on a closed stdout: see [`crate::out`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
