//! `agent-paas`: see `agent-paas --help`.

fn main() -> std::process::ExitCode {
    paas_api::cli::main()
}
