//! `tern ca init | issue`: the cluster CA that authenticates bridges to each
//! other on the relay mesh. Only files and printing here; the certificates
//! themselves are made in `crate::relay_net`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::relay_net::{BridgeId, ClusterCa};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a cluster CA: writes DIR/ca.pem and DIR/ca-key.pem (mode
    /// 0600). Refuses to overwrite an existing CA.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lifetime of the CA certificate.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue a certificate for one bridge: writes OUT/<id>.pem and
    /// OUT/<id>-key.pem (mode 0600). Its id must be the bridge's `bridge.id`.
    Issue {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Bridge id: 1-63 of a-z, 0-9 and '-'.
        #[arg(long, value_name = "BRIDGE_ID")]
        id: BridgeId,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lifetime of the bridge certificate.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

pub fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { out, days } => {
            let ca = ClusterCa::generate_valid_for(DAY * u32::try_from(days)?)?;
            let (cert, key) = ca.write(&out)?;
            println!("wrote {} and {}", cert.display(), key.display());
            println!(
                "keep {} offline; bridges need only {}",
                key.display(),
                cert.display()
            );
        }
        CaCommand::Issue { ca, id, out, days } => {
            let ca = ClusterCa::load(&ca)?;
            let identity = ca.issue_valid_for(&id, DAY * u32::try_from(days)?)?;
            let (cert, key) = identity.write(&out)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
}
