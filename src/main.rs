use clap::Parser;

fn main() {
    let cli = unitgen::cli::Cli::parse();
    std::process::exit(unitgen::app::run(cli));
}
