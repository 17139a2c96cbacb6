//! The `respan-exporter` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use respan_exporter::config::API_KEY_ENV;
use respan_exporter::{Application, Cli, Config, shutdown_signal, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env_key = match std::env::var(API_KEY_ENV) {
        Ok(k) => Some(k),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("respan-exporter: error: {API_KEY_ENV}: is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_cli(cli, env_key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("respan-exporter: error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_level, config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("respan-exporter: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match Application::build(config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("respan-exporter: error: {e}");
                return ExitCode::from(2);
            }
        };
        app.run_until_stopped(shutdown_signal(), true).await;
        ExitCode::SUCCESS
    })
}
