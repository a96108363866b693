fn main() {
    std::process::exit(unitgen::runner::main());
}
