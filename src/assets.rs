//! SHELL: writes the generated install assets of a binary — its man page
//! (clap_mangen) and shell completions (clap_complete: bash, zsh, fish) — from
//! the binary's own clap definition (hidden `--generate-assets DIR`), so the
//! package never carries a second copy of the command line.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Write `DIR/man/NAME.SECTION` (and `NAME-SUB.SECTION` per subcommand) and `DIR/completions/{NAME.bash,_NAME,NAME.fish}`
/// for `cmd`; returns the files written.
pub fn generate(cmd: clap::Command, section: &str, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_string();
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Vec::new();
    // One page per command and per subcommand (`vipctl-status(8)`...), as the
    // SUBCOMMANDS section of the parent's page refers to them.
    let mut man_cmd = cmd.clone().disable_help_subcommand(true);
    man_cmd.build();
    write_pages(&man_cmd, section, &man_dir, &mut written)?;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let path = comp_dir.join(file);
        let mut out = Vec::new();
        let mut c = cmd.clone();
        clap_complete::generate(shell, &mut c, name.clone(), &mut out);
        std::fs::write(&path, out)?;
        written.push(path);
    }
    Ok(written)
}

fn write_pages(cmd: &clap::Command, section: &str, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, section, dir, written)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("System Administration")
        .source(format!("vipd {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut f = std::fs::File::create(&path)?;
    man.render(&mut f)?;
    f.flush()?;
    written.push(path);
    Ok(())
}

/// The `--generate-assets DIR` action of a binary: write, list, exit status.
pub fn generate_and_report(cmd: clap::Command, section: &str, dir: &Path) -> std::process::ExitCode {
    match generate(cmd, section, dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write assets into {}: {e}", dir.display());
            std::process::ExitCode::from(1)
        }
    }
}
