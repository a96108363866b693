use clap::Parser;

fn main() {
    let cli = unitgen::cmd::cli::Cli::parse();
    std::process::exit(unitgen::cmd::run(cli));
}
