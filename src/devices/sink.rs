//! Where a character device's output goes: `stdout`, `stderr`, `null` or `file:PATH`.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::str::FromStr;

use thiserror::Error;

/// An output choice that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SinkError {
    /// Not one of the known outputs.
    #[error("'{0}' is not an output: use stdout, stderr, null or file:PATH")]
    Unknown(String),
    /// `file:` without a path.
    #[error("file: needs a path, as in file:serial.log")]
    EmptyPath,
}

/// A parsed output choice; [`SinkSpec::open`] turns it into a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// gdbvisor's standard output.
    Stdout,
    /// gdbvisor's standard error.
    Stderr,
    /// Discarded.
    Null,
    /// A file, created or truncated.
    File(PathBuf),
}

impl FromStr for SinkSpec {
    type Err = SinkError;

    fn from_str(text: &str) -> Result<Self, SinkError> {
        match text {
            "stdout" => Ok(SinkSpec::Stdout),
            "stderr" => Ok(SinkSpec::Stderr),
            "null" => Ok(SinkSpec::Null),
            _ => match text.strip_prefix("file:") {
                Some("") => Err(SinkError::EmptyPath),
                Some(path) => Ok(SinkSpec::File(PathBuf::from(path))),
                None => Err(SinkError::Unknown(text.to_string())),
            },
        }
    }
}

impl SinkSpec {
    pub(crate) fn open(&self) -> io::Result<Sink> {
        Ok(match self {
            SinkSpec::Stdout => Sink::Stdout(io::stdout()),
            SinkSpec::Stderr => Sink::Stderr(io::stderr()),
            SinkSpec::Null => Sink::Null,
            SinkSpec::File(path) => Sink::File(File::create(path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
            })?),
        })
    }
}

/// An opened output. Devices write a byte at a time and flush each, so nothing is lost when
/// the VM ends abruptly.
pub enum Sink {
    /// Standard output.
    Stdout(io::Stdout),
    /// Standard error.
    Stderr(io::Stderr),
    /// Discards everything.
    Null,
    /// An open file.
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::Stderr(err) => err.write(buf),
            Sink::Null => Ok(buf.len()),
            Sink::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::Stderr(err) => err.flush(),
            Sink::Null => Ok(()),
            Sink::File(file) => file.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("stdout".parse(), Ok(SinkSpec::Stdout));
        assert_eq!("stderr".parse(), Ok(SinkSpec::Stderr));
        assert_eq!("null".parse(), Ok(SinkSpec::Null));
        assert_eq!("file:/tmp/x".parse(), Ok(SinkSpec::File("/tmp/x".into())));
        assert_eq!("file:".parse::<SinkSpec>(), Err(SinkError::EmptyPath));
        assert!("tcp:1".parse::<SinkSpec>().is_err());
    }
}
