//! The `herald` command line.

use clap::{CommandFactory, Parser, Subcommand};
use logging::{init_logging, LogFormat};

mod cli;
mod logging;
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
        /// Log line format: `json` (one object per line, for log shippers)
        /// or `text` (for people).
        #[arg(long, value_enum, default_value = "json", env = "HERALD_LOG_FORMAT")]
        log_format: LogFormat,
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
    /// Bring the journal's schema up to date, and say what changed.
    ///
    /// `herald serve` does this too when it starts; run it on its own before
    /// a rolling upgrade of PostgreSQL replicas. Safe beside running hosts:
    /// migrations run under an advisory lock, each exactly once.
    Migrate {
        /// The configuration file (its `[storage]` section).
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
    Runs(cli::RunsCommand),
    /// Look at deliveries of events to plugin instances over the query API.
    #[command(subcommand)]
    Deliveries(cli::DeliveriesCommand),
    /// Dead letters: list them, or queue them again.
    #[command(subcommand)]
    Dlq(cli::DlqCommand),
    /// Search hosts and tasks by name across runs (GET /v1/search).
    Search(cli::SearchArgs),
    /// Re-deliver a recorded run to one plugin instance.
    Replay(cli::ReplayArgs),
    /// Send runs recorded by ansible-runner or AWX (artifacts/<ident>/job_events/) to Herald.
    Import(cli::ImportArgs),
    /// Tools for plugin authors: `herald plugin new NAME --lang rust|python`.
    #[command(subcommand)]
    Plugin(cli::PluginCommand),
    /// Message templates of plugin instances.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Print a shell completion script on standard output.
    ///
    /// bash: `herald completions bash > ~/.local/share/bash-completion/completions/herald`;
    /// zsh: into a directory of $fpath as `_herald`; fish:
    /// `~/.config/fish/completions/herald.fish`. `make install` and the
    /// Debian package install all three.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the herald(1) manual page (roff) on standard output.
    ///
    /// `herald man | man -l -` shows it; `--dir` writes herald.1 and a page
    /// per subcommand (herald-serve.1, ...) instead, as `make install` does.
    Man {
        /// Write every page into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Print what an instance's templates render for a recorded run, without sending anything.
    ///
    /// The templates are those of `[plugins.<NAME>.templates]` in the config file, over
    /// the plugin's own defaults (marked "(default)"; the plugin is loaded and
    /// configured to give them, nothing is sent); the
    /// events come from a run over the query API (`--run`, with HERALD_URL and
    /// HERALD_TOKEN) or from a file (`--events`). A failed render is printed and
    /// makes the exit status 1.
    Render(cli::RenderArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new random token and the herald.toml lines that grant it.
    ///
    /// The token goes to the callback (HERALD_TOKEN); herald.toml keeps only
    /// its hash, printed as a `[tenants.<name>]` table to paste.
    New {
        /// The tenant named in the printed table.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Print the hash of an existing token (read from standard input).
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Runs(cmd) => cli::main_runs(cmd),
        Command::Deliveries(cmd) => cli::main_deliveries(cmd),
        Command::Dlq(cmd) => cli::main_dlq(cmd),
        Command::Search(args) => cli::main_search(args),
        Command::Replay(args) => cli::main_replay(args),
        Command::Import(args) => cli::main_import(args),
        Command::Plugin(cmd) => cli::main_plugin(cmd),
        Command::Template(TemplateCommand::Render(args)) => cli::main_template_render(args),
        Command::Token(TokenCommand::New { tenant }) => {
            let token = format!("hrld_{}", hex::encode(rand::random::<[u8; 24]>()));
            let hash = herald::config::token_hash(&token);
            // A bare key when TOML allows one, else a quoted key.
            let key = if !tenant.is_empty()
                && tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                tenant.clone()
            } else {
                serde_json::to_string(&tenant).unwrap_or_default()
            };
            println!("token: {token}");
            println!("  (give it to the callback as HERALD_TOKEN or [callback_herald] token;");
            println!("   it is not stored anywhere, keep it as a secret)");
            println!();
            println!(
                "Paste into herald.toml (for an existing tenant, add the hash to its tokens):"
            );
            println!();
            println!("[tenants.{key}]");
            println!("tokens = [\"{hash}\"]");
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            let result = match &dir {
                Some(d) => std::fs::create_dir_all(d)
                    .and_then(|()| clap_mangen::generate_to(Cli::command(), d)),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let at = dir.map(|d| format!(" into {}", d.display()));
                    eprintln!(
                        "herald man: cannot write the page{}: {e}",
                        at.unwrap_or_default()
                    );
                    ExitCode::FAILURE
                }
            }
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
        Command::Migrate { config } => {
            init_logging(LogFormat::Text, None);
            let loaded = match herald::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match herald::app::migrate(&loaded) {
                Ok(what) => {
                    println!("{what}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald migrate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => {
            init_logging(LogFormat::Text, None);
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
        Command::Serve {
            config,
            listen,
            log_format,
        } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("herald: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // One line on stderr (the journal of a systemd unit keeps it),
            // not a JSON log line beside it.
            let fail = |e: anyhow::Error| {
                eprintln!("herald: {e:#}");
                ExitCode::FAILURE
            };
            // The trace exporter is set up from the file's [telemetry]
            // section, on the runtime, before anything logs.
            let loaded = match herald::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(e.into()),
            };
            let tracing = {
                let _in_runtime = rt.enter();
                init_logging(log_format, Some(&loaded.telemetry))
            };
            let result = rt.block_on(herald::app::serve(loaded, listen));
            // Spans still queued are sent while the runtime runs.
            tracing.shutdown();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}
