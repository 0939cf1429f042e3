//! The `vipctl import-keepalived` command line: arguments, output file,
//! findings on stderr and the exit status (0 all converted, 3 not all, 1 error).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Kind;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// keepalived configuration file (its includes are read too).
    pub file: PathBuf,
    /// Write the TOML here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Config id for `@id` conditional lines, like keepalived's -i (default: host name up to the first dot).
    #[arg(short = 'i', long = "config-id")]
    pub config_id: Option<String>,
}

pub fn run(args: &Args) -> ExitCode {
    let id = args.config_id.clone().unwrap_or_else(super::default_config_id);
    let imp = match super::import_file(&args.file, &id) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("vipctl: {e}");
            return ExitCode::from(1);
        }
    };
    let mut err = std::io::stderr().lock();
    let mut not_converted = 0;
    for f in &imp.findings {
        let what = match f.kind {
            Kind::NotConverted => {
                not_converted += 1;
                "not converted"
            }
            Kind::Note => "note",
        };
        let _ = writeln!(err, "{}: {what}: {}", f.loc, f.msg);
    }
    let written = match &args.output {
        Some(p) => std::fs::write(p, &imp.toml).map_err(|e| format!("{}: {e}", p.display())),
        None => std::io::stdout()
            .lock()
            .write_all(imp.toml.as_bytes())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "vipctl: cannot write the output: {e}");
        return ExitCode::from(1);
    }
    if not_converted > 0 {
        let _ = writeln!(
            err,
            "vipctl: {not_converted} directive(s) not converted (marked \"# not converted\" in the output)"
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
