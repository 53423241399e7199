//! `borcelle dkim generate`: a new DKIM key pair, and the DNS TXT record that publishes its
//! public half.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use secrecy::ExposeSecret;

use borcelle_mail::dkim::{self, DkimAlgorithm};

#[derive(Debug, Subcommand)]
pub(super) enum DkimCommand {
    /// Make a key pair. The private key goes to --out (created with mode 0600, never
    /// overwritten) or, without --out, to stdout; the DNS TXT record to publish goes to stdout
    /// with --out, else to stderr (so that `> key.pem` keeps only the key).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(super) struct GenerateArgs {
    /// Selector: the key is published at <selector>._domainkey.<domain> (BORCELLE_DKIM_SELECTOR).
    #[arg(long)]
    selector: String,
    /// Signing domain: the From address's domain or a parent of it (BORCELLE_DKIM_DOMAIN).
    #[arg(long)]
    domain: String,
    /// rsa (2048 bits; every receiver verifies it) or ed25519 (RFC 8463; short, but not every
    /// receiver verifies it yet).
    #[arg(long, value_enum, default_value_t = Algorithm::Rsa)]
    algorithm: Algorithm,
    /// File for the private key (PKCS#8 PEM), e.g. to create the Kubernetes Secret from.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Algorithm {
    Rsa,
    Ed25519,
}

pub(super) fn run(command: DkimCommand) -> anyhow::Result<()> {
    match command {
        DkimCommand::Generate(args) => generate(&args),
    }
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let (selector, domain) = dkim::record_names(&args.selector, &args.domain)?;
    let algorithm = match args.algorithm {
        Algorithm::Rsa => DkimAlgorithm::Rsa,
        Algorithm::Ed25519 => DkimAlgorithm::Ed25519,
    };
    let key = dkim::generate_key(algorithm)?;
    let record = key.public_key.dns_record(&selector, &domain);
    let next = |key_file: &str| {
        format!(
            "Publish the TXT record, then sign with BORCELLE_DKIM_SELECTOR={selector} \
             BORCELLE_DKIM_DOMAIN={domain} BORCELLE_DKIM_KEY_FILE={key_file}"
        )
    };
    match &args.out {
        Some(path) => {
            write_new_private_file(path, key.private_key_pem.expose_secret())?;
            println!("{record}");
            eprintln!("Wrote the private key to {} (mode 0600).", path.display());
            eprintln!("{}", next(&path.display().to_string()));
        }
        None => {
            print!("{}", key.private_key_pem.expose_secret());
            std::io::stdout().flush().context("writing the private key to stdout")?;
            eprintln!("{record}");
            eprintln!("{}", next("<the file holding the key above>"));
        }
    }
    Ok(())
}

/// Creates `path` readable by its owner only; an existing file is never replaced (it may be
/// the key that DNS publishes).
fn write_new_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists: refusing to overwrite a key (remove it or choose another --out)",
                path.display()
            )
        } else {
            anyhow::Error::new(err).context(format!("creating {}", path.display()))
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
