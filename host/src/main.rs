//! The `herald` command line.

use clap::{Parser, Subcommand};
use herald::telemetry::{init_logging, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Herald: gets Ansible's playbook events into every system a platform team
/// runs, without slowing or failing a playbook.
///
/// The `herald` callback plugin ships events to `herald serve`, which
/// journals them durably and delivers them, at least once, to sandboxed
/// WebAssembly sink plugins configured in herald.toml.
#[derive(Parser)]
#[command(name = "herald", version, propagate_version = true)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "json",
        env = "HERALD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: ingest API, journal, dispatcher and plugins.
    ///
    /// Stops on SIGINT or SIGTERM; deliveries not done yet are done after the
    /// next start. The log level comes from RUST_LOG (default info).
    Serve {
        /// The configuration file (see examples/herald.toml).
        #[arg(short, long, env = "HERALD_CONFIG")]
        config: PathBuf,
        /// Listen on this address instead of `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file and load every plugin, without serving.
    ///
    /// Prints every problem at once as FILE:LINE:COLUMN: KEY: MESSAGE and
    /// exits with status 1 if there is any.
    Check {
        /// The configuration file.
        #[arg(short, long, env = "HERALD_CONFIG")]
        config: PathBuf,
    },
    /// Tenant tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Look at runs over the query API: list, show, events, artifacts.
    ///
    /// Reads HERALD_URL and HERALD_TOKEN (or --url/--token); answers are
    /// scoped to the token's tenant.
    #[command(subcommand)]
    Runs(herald::client::RunsCommand),
    /// Look at deliveries of events to plugin instances over the query API.
    #[command(subcommand)]
    Deliveries(herald::client::DeliveriesCommand),
    /// Dead letters: list them, or queue them again.
    #[command(subcommand)]
    Dlq(herald::client::DlqCommand),
    /// Re-deliver a recorded run to one plugin instance.
    Replay(herald::client::ReplayArgs),
    /// Send runs recorded by ansible-runner or AWX (artifacts/<ident>/job_events/) to Herald.
    Import(herald::client::ImportArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new random token and the hash to put in `tenants.<name>.tokens`.
    New,
    /// Print the hash of an existing token (read from standard input).
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Runs(cmd) => herald::client::main_runs(cmd),
        Command::Deliveries(cmd) => herald::client::main_deliveries(cmd),
        Command::Dlq(cmd) => herald::client::main_dlq(cmd),
        Command::Replay(args) => herald::client::main_replay(args),
        Command::Import(args) => herald::client::main_import(args),
        Command::Token(TokenCommand::New) => {
            let token = format!("hrld_{}", hex::encode(rand::random::<[u8; 24]>()));
            println!("token: {token}");
            println!("hash:  {}", herald::config::token_hash(&token));
            ExitCode::SUCCESS
        }
        Command::Token(TokenCommand::Hash) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim().is_empty() {
                eprintln!("herald token hash: give the token on standard input");
                return ExitCode::FAILURE;
            }
            println!("{}", herald::config::token_hash(line.trim()));
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
            init_logging(LogFormat::Text);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("herald: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(herald::app::check(&config)) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} tenants, {} plugin instances)",
                        config.display(),
                        c.tenants.len(),
                        c.plugins.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("{} problem(s) found", e.problems.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config, listen } => {
            init_logging(cli.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("herald: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(herald::app::serve(&config, listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("herald serve failed: {e:#}");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
