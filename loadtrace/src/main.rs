use clap::Parser as _;
use loadtrace::{app, cli::Args};

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtrace: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(app::run(args)) {
        eprintln!("loadtrace: {e:#}");
        std::process::exit(1);
    }
}
